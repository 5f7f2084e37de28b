/* Buffer pool: random page reads over a data set ten times the pool, through
 * three buffer managers: vmcache (Leis et al., SIGMOD 2023) on a rewire
 * arena, which is the example's manager (examples/vmcache-core.c, linked in)
 * as examples/vmcache.c runs it, the same manager on plain Linux memory (its
 * third mode: MADV_DONTNEED to evict, a page fault inside pread(2) to load),
 * and a classic pool of malloc'd frames found through a hash table. The data
 * set is a memfd, so the figures measure memory management, not a disk. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../examples/vmcache-core.h"
#include "common.h"
#include "rewire.h"

enum {
	GROUP = 16,		/* pages one request fixes together */
	EVICT_MIN = 16,		/* fewest pages one eviction round frees */
	HIT_READS = 1 << 20,	/* reads of resident pages per hit-path run */
	CHAIN = 4096,		/* entries of the sequence that chained reads use */
};
enum { REF = 2, PINNED = 4 };	/* the hash pool's frame states */
enum kind { REWIRE, PLAIN, HASHED, NKINDS };
static const char *const kind_names[NKINDS] = { "vmcache on rewire", "vmcache, plain memory",
						"hash-table pool" };
static const char *const pattern_names[2] = { "uniform", "skewed" };
#define EMPTY UINT32_MAX

struct slot {
	uint32_t pid, frame;
};

struct bp {
	enum kind kind;
	size_t npages, pool, words;
	size_t first;			/* the data set's page of this manager's page 0 */
	uint64_t rng;
	bool failed;
	/* vmcache, on a rewire arena or on plain memory: the example's */
	struct bm vm;
	bool open;			/* vm is open: bm_close() it */
	struct rewire_arena *arena;	/* the manager's own arena or mapping, */
	char *map;			/* when it has one */
	/* the hash-table pool: page id -> frame, open addressing */
	int fd;
	char *frames;
	uint8_t *state;			/* per frame */
	size_t hand, resident;
	struct slot *table;
	size_t mask;
	int shift;
	uint32_t *frame_pid;
	/* counts since the last reset */
	uint64_t loads;
	double miss_ns;
};

static size_t hash(const struct bp *b, uint32_t pid)
{
	return (uint32_t)(pid * 2654435761u) >> b->shift;
}

/* The hash pool's hit path: a page's frame, or NULL when it is not resident. */
static inline char *hashed_get(struct bp *b, uint32_t pid)
{
	for (size_t h = hash(b, pid);; h = (h + 1) & b->mask) {
		struct slot s = b->table[h];

		if (s.pid == pid) {
			if (!(b->state[s.frame] & REF))
				b->state[s.frame] |= REF;
			return b->frames + (size_t)s.frame * ps;
		}
		if (s.pid == EMPTY)
			return NULL;
	}
}

static void hashed_insert(struct bp *b, uint32_t pid, uint32_t frame)
{
	size_t h = hash(b, pid);

	while (b->table[h].pid != EMPTY)
		h = (h + 1) & b->mask;
	b->table[h] = (struct slot){ pid, frame };
}

/* Linear probing's deletion: later entries of the cluster shift back. */
static void hashed_remove(struct bp *b, uint32_t pid)
{
	size_t i = hash(b, pid), j = i;

	while (b->table[i].pid != pid)
		i = (i + 1) & b->mask;
	for (j = i;;) {
		size_t k;

		j = (j + 1) & b->mask;
		if (b->table[j].pid == EMPTY)
			break;
		k = hash(b, b->table[j].pid);
		if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
			b->table[i] = b->table[j];
			i = j;
		}
	}
	b->table[i].pid = EMPTY;
}

/* Clock over the frames, all in use: the next not pinned, not used since
 * the hand passed. */
static uint32_t hashed_victim(struct bp *b)
{
	for (;;) {
		uint32_t f = (uint32_t)b->hand;

		b->hand = (b->hand + 1) % b->pool;
		if (b->state[f] & PINNED)
			continue;
		if (!(b->state[f] & REF))
			return f;
		b->state[f] &= (uint8_t)~REF;
	}
}

static int hashed_miss(struct bp *b, const uint32_t *miss, size_t m)
{
	for (size_t i = 0; i < m; i++) {
		off_t at = (off_t)(b->first + miss[i]) * (off_t)ps;
		uint32_t f;

		if (b->resident < b->pool) {
			f = (uint32_t)b->resident++;
		} else {
			f = hashed_victim(b);
			hashed_remove(b, b->frame_pid[f]);
		}
		if (pread(b->fd, b->frames + (size_t)f * ps, ps, at) != (ssize_t)ps)
			return -1;
		hashed_insert(b, miss[i], f);
		b->frame_pid[f] = miss[i];
		b->state[f] = REF | PINNED;
	}
	return 0;
}

static int hashed_fix(struct bp *b, const uint32_t *pids, char **pages, size_t n)
{
	uint32_t miss[GROUP];
	size_t m = 0;
	double t;
	int ret;

	for (size_t i = 0; i < n; i++) {
		pages[i] = hashed_get(b, pids[i]);
		if (pages[i]) {
			b->state[(pages[i] - b->frames) / ps] |= PINNED;
			continue;
		}
		for (size_t j = 0; j <= m; j++) {
			if (j == m) {
				miss[m++] = pids[i];
				break;
			}
			if (miss[j] == pids[i])
				break;
		}
	}
	if (!m)
		return 0;
	t = now_ns();
	ret = hashed_miss(b, miss, m);
	b->miss_ns += now_ns() - t;
	b->loads += m;
	for (size_t i = 0; i < n && !ret; i++)
		if (!pages[i])
			pages[i] = hashed_get(b, pids[i]);
	return ret;
}

/* pages[i] is where pids[i] is once the request's pages are all resident
 * and pinned. vmcache's fix is the example's bm_fix(), timed between its
 * two halves: the misses' evict+load is bm_load(). */
static int fix(struct bp *b, const uint32_t *pids, char **pages, size_t n)
{
	size_t m;
	int ret = 0;

	if (b->kind == HASHED)
		return hashed_fix(b, pids, pages, n);
	m = bm_pin(&b->vm, pids, n);
	if (m) {
		double t = now_ns();

		ret = bm_load(&b->vm, m);
		b->miss_ns += now_ns() - t;
		b->loads += m;
	}
	for (size_t i = 0; i < n; i++)
		pages[i] = b->vm.db + pids[i] * ps;
	return ret;
}

static void unfix(struct bp *b, const uint32_t *pids, char **pages, size_t n)
{
	if (b->kind != HASHED) {
		bm_unfix(&b->vm, pids, n);
		return;
	}
	for (size_t i = 0; i < n; i++)
		b->state[(pages[i] - b->frames) / ps] &= (uint8_t)~PINNED;
}

/* Uniform, or skewed: u^4 puts half the reads on 6% of the pages, which a
 * multiplication by a prime scatters over the data set. */
static uint64_t next(struct bp *b)
{
	b->rng ^= b->rng << 13;
	b->rng ^= b->rng >> 7;
	b->rng ^= b->rng << 17;
	return b->rng;
}

static uint32_t pick(struct bp *b, size_t npages, int skewed)
{
	double u;

	if (!skewed)
		return (uint32_t)(next(b) % npages);
	u = (double)(next(b) >> 11) / (double)(1ull << 53);
	return (uint32_t)((size_t)((double)npages * u * u * u * u) * 2654435761u % npages);
}

/* Requests of GROUP random pages; one word of each page read is checked. */
static void requests(struct bp *b, int skewed, long n)
{
	uint32_t pids[GROUP];
	char *pages[GROUP];

	for (long r = 0; r < n && !b->failed; r++) {
		for (int i = 0; i < GROUP; i++)
			pids[i] = pick(b, b->npages, skewed);
		if (fix(b, pids, pages, GROUP)) {
			b->failed = true;
			break;
		}
		for (int i = 0; i < GROUP; i++)
			b->failed |= ((uint64_t *)pages[i])[pids[i] & (b->words - 1)] !=
				     b->first + pids[i];
		unfix(b, pids, pages, GROUP);
	}
}

/* Frees the manager; -1 if the example's closing checks fail (its page-state
 * table against the arena's records). */
static int destroy(struct bp *b)
{
	int ret = b->open ? bm_close(&b->vm) : 0;

	if (b->arena)
		rewire_arena_destroy(b->arena);
	if (b->map)
		munmap(b->map, b->npages * ps);
	if (b->kind == HASHED)
		free(b->frames);
	free(b->state);
	free(b->table);
	free(b->frame_pid);
	return ret;
}

/* A manager of npages pages of the data set from page first, with a pool
 * of pool pages; with threads, each thread's manager takes its pages from
 * one arena or one mapping, arena or map, which the caller owns. */
static int create(struct bp *b, enum kind kind, size_t npages, size_t pool, int fd, size_t first,
		  struct rewire_arena *arena, char *map)
{
	struct bm_config cfg = {
		.mode = kind == PLAIN ? BM_PLAIN : BM_EVICT, .arena = arena, .map = map,
		.fd = fd, .first = first, .npages = npages, .pool = pool, .group = GROUP,
		.evict_min = EVICT_MIN,
	};

	memset(b, 0, sizeof(*b));
	b->kind = kind;
	b->npages = npages;
	b->pool = pool;
	b->words = ps / sizeof(uint64_t);
	b->fd = fd;
	b->first = first;
	b->rng = rnd() | 1;
	if (kind == HASHED) {
		size_t slots = 1;

		for (b->shift = 32; slots < 2 * pool; slots *= 2)
			b->shift--;
		b->mask = slots - 1;
		b->state = calloc(pool, 1);
		b->frame_pid = calloc(pool, sizeof(*b->frame_pid));
		b->table = malloc(slots * sizeof(*b->table));
		b->frames = aligned_alloc(ps, pool * ps);
		if (!b->state || !b->frame_pid || !b->table || !b->frames)
			return -1;
		memset(b->table, 0xff, slots * sizeof(*b->table));
		memset(b->frames, 0, pool * ps);	/* a classic pool owns its memory */
		return 0;
	}
	/* Without threads, the manager's arena or mapping is its own. */
	if (kind == PLAIN && !map) {
		cfg.map = b->map = bm_map(npages);
		if (!b->map)
			return -1;
	}
	if (kind == REWIRE && !arena) {
		if (bm_arena(npages, pool, 0, &b->arena))
			return -1;
		cfg.arena = b->arena;
	}
	if (bm_open(&b->vm, &cfg))
		return -1;
	b->open = true;
	return 0;
}

/* Pages resident now, in random order, for the hit path to read. */
static uint32_t *hit_sequence(struct bp *b)
{
	uint32_t *res = malloc(b->pool * sizeof(*res)), *seq = malloc(HIT_READS * sizeof(*seq));
	size_t n = 0;

	if (!res || !seq) {
		free(res);
		free(seq);
		return NULL;
	}
	if (b->kind == HASHED)
		for (size_t f = 0; f < b->resident; f++)
			res[n++] = b->frame_pid[f];
	else
		for (uint32_t p = 0; p < b->npages && n < b->pool; p++)
			if (b->vm.state[p] & BM_RESIDENT)
				res[n++] = p;
	for (size_t i = 0; i < HIT_READS; i++)
		seq[i] = res[rnd() % n];
	free(res);
	return seq;
}

enum how { DIRECT, VMCACHE, HASH_TABLE };

/* What a hit path needs, copied by value into the loops so that a store
 * through the uint8_t state pointer cannot make them reload it. */
struct hitctx {
	const uint32_t *seq;
	uint8_t *state;
	char *db, *frames;
	const struct slot *table;
	size_t mask, hmask, page;
	int shift;
};

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE char *hit_find(struct hitctx c, enum how how, uint32_t pid)
{
	if (how == DIRECT)
		return c.db + pid * c.page;
	if (how == VMCACHE)
		return bm_hit(c.state, c.db, c.page, pid);
	for (size_t h = (uint32_t)(pid * 2654435761u) >> c.shift;; h = (h + 1) & c.hmask) {
		if (c.table[h].pid == pid) {
			uint32_t f = c.table[h].frame;

			if (!(c.state[f] & REF))
				c.state[f] |= REF;
			return c.frames + f * c.page;
		}
		if (c.table[h].pid == EMPTY)
			return NULL;
	}
}

/* Independent reads of seq's pages, or chained ones, where the page read
 * next depends on the word just read, as in an index traversal. Each takes
 * one word of its page. */
static ALWAYS_INLINE uint64_t hit_loop(struct hitctx c, enum how how, bool chained)
{
	uint64_t sum = 0;

	for (size_t i = 0, j = 0; i < HIT_READS; i++) {
		char *p = hit_find(c, how, c.seq[chained ? j : i]);
		uint64_t w;

		if (__builtin_expect(!p, 0))
			return 0;
		w = ((uint64_t *)p)[(i * 67) & c.mask];
		sum += w;
		if (chained)
			j = (i + w) & (CHAIN - 1);
	}
	return sum;
}

#define HIT_LOOP(name, how, chained) \
	static __attribute__((noinline)) uint64_t name(struct hitctx c) \
	{ \
		return hit_loop(c, how, chained); \
	}
HIT_LOOP(direct_reads, DIRECT, false)
HIT_LOOP(direct_chain, DIRECT, true)
HIT_LOOP(vmcache_reads, VMCACHE, false)
HIT_LOOP(vmcache_chain, VMCACHE, true)
HIT_LOOP(hashed_reads, HASH_TABLE, false)
HIT_LOOP(hashed_chain, HASH_TABLE, true)

/* What hit_loop() over seq sums: every word of page p is p. */
static uint64_t hit_sum(const uint32_t *seq, bool chained)
{
	uint64_t want = 0;

	for (size_t i = 0, j = 0; i < HIT_READS; i++) {
		uint32_t pid = seq[chained ? j : i];

		want += pid;
		j = (i + pid) & (CHAIN - 1);
	}
	return want;
}

/* ns per read of a resident page through the manager's hit path, or (for
 * DIRECT) straight at db + p * ps. Each loop is a function of its own, so
 * that no loop's code shares a function with another's. */
static double hits(struct bp *b, const uint32_t *seq, enum how how, bool chained, uint64_t want)
{
	static uint64_t (*const loops[3][2])(struct hitctx) = {
		{ direct_reads, direct_chain },
		{ vmcache_reads, vmcache_chain },
		{ hashed_reads, hashed_chain },
	};
	struct hitctx c = { seq, how == HASH_TABLE ? b->state : b->vm.state, b->vm.db, b->frames,
			    b->table, b->words - 1, b->mask, ps, b->shift };
	double t = now_ns();
	uint64_t sum = loops[how][chained](c);

	t = now_ns() - t;
	b->failed |= sum != want;
	return t / HIT_READS;
}

struct figures {
	double access_rate, load_rate, miss_ns;
	double hit_ns[2], direct_ns[2];		/* independent reads, chained reads */
	double vs_direct[2], hashed_vs[2];	/* medians of ratios within one round */
	bool ok, ran;
};

/* The request phase: warm up, then reps timed runs; b stays for hits(). */
static void measure(struct bp *b, enum kind kind, int skewed, size_t npages, size_t pool, int fd,
		    long n, struct figures *fig)
{
	double acc[32], ld[32], miss[32];

	memset(fig, 0, sizeof(*fig));
	if (create(b, kind, npages, pool, fd, 0, NULL, NULL)) {
		destroy(b);
		memset(b, 0, sizeof(*b));
		return;
	}
	fig->ran = true;
	/* Warm up: fill the pool, then let the clock settle. */
	requests(b, skewed, (long)(4 * pool / GROUP));
	for (int r = 0; r < reps && !b->failed; r++) {
		double t;

		progress("bufferpool: %s, %s, run %d of %d", pattern_names[skewed], kind_names[kind],
			 r + 1, reps);
		b->loads = 0;
		b->miss_ns = 0;
		t = now_ns();
		requests(b, skewed, n);
		t = (now_ns() - t) / 1e9;
		acc[r] = (double)n * GROUP / t;
		ld[r] = (double)b->loads / t;
		miss[r] = b->loads ? b->miss_ns / (double)b->loads : 0;
	}
	progress_done();
	fig->ok = !b->failed;
	if (fig->ok) {
		fig->access_rate = median(acc, reps);
		fig->load_rate = median(ld, reps);
		fig->miss_ns = median(miss, reps);
	}
}

/* The hit paths of all the managers and plain access, in rounds that run
 * each once, each round starting with the next one; ratios are taken within
 * a round, as the machine is shared and its caches with it. Each loop runs
 * twice and the second is timed: a loop that follows another manager's finds
 * its pages out of the caches and runs up to 2x slower, which a hot buffer
 * pool would not. */
static void measure_hits(struct bp b[NKINDS], struct figures f[NKINDS])
{
	enum { PATHS = NKINDS + 1, DIRECT_PATH = NKINDS };
	double t[PATHS][2][32] = { { { 0 } } }, ratio[2][2][32];
	uint32_t *seq[NKINDS] = { NULL };
	uint64_t want[NKINDS][2];
	int hreps = 4 * reps < 32 ? 4 * reps : 32;

	for (int k = 0; k < NKINDS; k++) {
		if (!f[k].ok)
			continue;
		seq[k] = hit_sequence(&b[k]);
		f[k].ok = seq[k] != NULL;
		for (int c = 0; c < 2 && seq[k]; c++)
			want[k][c] = hit_sum(seq[k], c);
	}
	for (int c = 0; c < 2; c++) {
		for (int r = 0; r < hreps; r++) {
			for (int i = 0; i < PATHS; i++) {
				int p = (r + i) % PATHS, k = p == DIRECT_PATH ? REWIRE : p;

				enum how how = p == DIRECT_PATH ? DIRECT : k == HASHED ? HASH_TABLE :
					       VMCACHE;

				if (!seq[k])
					continue;
				hits(&b[k], seq[k], how, c, want[k][c]);
				t[p][c][r] = hits(&b[k], seq[k], how, c, want[k][c]);
			}
			ratio[0][c][r] = t[REWIRE][c][r] / t[DIRECT_PATH][c][r];
			ratio[1][c][r] = t[HASHED][c][r] / t[REWIRE][c][r];
		}
	}
	for (int k = 0; k < NKINDS; k++) {
		f[k].ok &= !b[k].failed;
		for (int c = 0; c < 2 && f[k].ok; c++) {
			f[k].hit_ns[c] = median(t[k][c], hreps);
			if (k != REWIRE)
				continue;
			f[k].direct_ns[c] = median(t[DIRECT_PATH][c], hreps);
			f[k].vs_direct[c] = median(ratio[0][c], hreps);
			if (f[HASHED].ok)
				f[k].hashed_vs[c] = median(ratio[1][c], hreps);
		}
		free(seq[k]);
	}
}

/* With threads: each thread a manager of its own share of the data set and
 * of the pool, all in one arena (rewire) or one mapping (plain memory), so
 * that their page-table changes meet in one process as a database's
 * workers' would; uniform requests, timed from one barrier to the next. */
struct part {
	pthread_t tid;
	struct bp b;
	pthread_barrier_t *go;
	long n;
	uint64_t loads[32];
	double miss_ns[32];
};

static void *part_work(void *arg)
{
	struct part *w = arg;

	requests(&w->b, 0, (long)(4 * w->b.pool / GROUP));
	for (int r = 0; r < reps; r++) {
		pthread_barrier_wait(w->go);
		w->b.loads = 0;
		w->b.miss_ns = 0;
		requests(&w->b, 0, w->n);
		w->loads[r] = w->b.loads;
		w->miss_ns[r] = w->b.miss_ns;
		pthread_barrier_wait(w->go);
	}
	return NULL;
}

static void measure_threads(enum kind kind, int t, size_t npages, size_t pool, int fd, long n,
			    struct figures *fig)
{
	size_t share = npages / (size_t)t, spool = pool / (size_t)t;
	double acc[32], ld[32], miss[32];
	struct rewire_arena *arena = NULL;
	pthread_barrier_t go;
	struct part *w = calloc((size_t)t, sizeof(*w));
	char *map = NULL;
	int started = 0;

	memset(fig, 0, sizeof(*fig));
	if (!w || (kind == REWIRE && bm_arena(npages, pool, 0, &arena)) ||
	    (kind == PLAIN && !(map = bm_map(npages)))) {
		free(w);
		return;
	}
	fig->ran = true;
	fig->ok = true;
	pthread_barrier_init(&go, NULL, (unsigned)t + 1);
	for (int i = 0; i < t && fig->ok; i++) {
		w[i].go = &go;
		w[i].n = n;
		fig->ok = !create(&w[i].b, kind, share, spool, fd, (size_t)i * share, arena,
				  map ? map + (size_t)i * share * ps : NULL);
	}
	for (; started < t && fig->ok; started++)
		fig->ok = !pthread_create(&w[started].tid, NULL, part_work, &w[started]);
	/* A thread that could not start would leave the others at the barrier
	 * for good: stop here, as a failed benchmark. */
	if (started && started != t) {
		printf("  %d threads: could not start them all\n", t);
		exit(1);
	}
	if (started == t) {
		for (int r = 0; r < reps; r++) {
			double el;
			uint64_t loads = 0;
			double ns = 0;

			progress("bufferpool: %d threads, %s, run %d of %d", t, kind_names[kind],
				 r + 1, reps);
			pthread_barrier_wait(&go);
			el = now_ns();
			pthread_barrier_wait(&go);
			el = (now_ns() - el) / 1e9;
			for (int i = 0; i < t; i++) {
				loads += w[i].loads[r];
				ns += w[i].miss_ns[r];
			}
			acc[r] = (double)n * GROUP * t / el;
			ld[r] = (double)loads / el;
			miss[r] = loads ? ns / (double)loads : 0;
		}
		progress_done();
	}
	for (int i = 0; i < t; i++) {
		if (i < started)
			pthread_join(w[i].tid, NULL);
		fig->ok &= !w[i].b.failed;
		fig->ok &= !destroy(&w[i].b);
	}
	pthread_barrier_destroy(&go);
	if (fig->ok) {
		fig->access_rate = median(acc, reps);
		fig->load_rate = median(ld, reps);
		fig->miss_ns = median(miss, reps);
	}
	if (arena)
		rewire_arena_destroy(arena);
	if (map)
		munmap(map, npages * ps);
	free(w);
}

/* The data set: page p holds p in every word. */
static int data_set(size_t npages)
{
	uint64_t *chunk = malloc(64 * ps);
	int fd = memfd_create("rewire-bench-bufferpool", MFD_CLOEXEC);

	for (size_t p = 0; fd >= 0 && chunk && p < npages; p += 64) {
		size_t n = npages - p < 64 ? npages - p : 64;

		for (size_t i = 0; i < n * ps / sizeof(*chunk); i++)
			chunk[i] = p + i / (ps / sizeof(*chunk));
		if (pwrite(fd, chunk, n * ps, (off_t)(p * ps)) != (ssize_t)(n * ps)) {
			close(fd);
			fd = -1;
		}
	}
	free(chunk);
	return fd;
}

void bench_bufferpool(void)
{
	size_t pool = quick ? 2048 : 8192, npages = 10 * pool;
	long n = quick ? 8000 : 30000;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int threads = cpus > 16 ? 16 : (int)cpus;
	struct figures f[2][NKINDS], tf[NKINDS];
	struct rewire_arena *a;
	struct rewire_options o;
	char backend[32] = "?";
	int fd = data_set(npages);
	double raw_move = 0, raw_plain = 0;
	double edge;
	bool have_raw;

	rewire_options_init(&o);
	o.reserve = 16 * ps;
	if (!rewire_arena_create(&o, &a)) {
		snprintf(backend, sizeof(backend), "%s", rewire_backend_name(a));
		rewire_arena_destroy(a);
	}
	printf("\nbufferpool: requests of %d random pages over %zu pages (%zu MiB in a memfd), "
	       "a pool of %zu;\n%ld requests a run, one thread; rewire on %s\n", GROUP, npages,
	       npages * ps >> 20, pool, n, backend);
	if (fd < 0) {
		printf("  no memfd for the data set: %s\n", strerror(errno));
		bench_failed = true;
		return;
	}
	printf("  %-8s %-24s %11s %11s %9s %7s %7s %s\n", "pattern", "buffer manager", "accesses/s",
	       "page-ins/s", "ns/evict", "hit ns", "chained", "");
	printf("  %-8s %-24s %11s %11s %9s %7s %7s\n", "", "", "", "", "+load", "", "hit ns");
	for (int s = 0; s < 2; s++) {
		struct bp b[NKINDS];

		for (int k = 0; k < NKINDS; k++)
			measure(&b[k], (enum kind)k, s, npages, pool, fd, n, &f[s][k]);
		measure_hits(b, f[s]);
		for (int k = 0; k < NKINDS; k++) {
			struct figures *x = &f[s][k];
			char name[96];

			if (destroy(&b[k]))
				x->ok = false;
			if (!x->ran) {
				printf("  %-8s %-24s not available here\n", pattern_names[s],
				       kind_names[k]);
				continue;
			}
			bench_failed |= !x->ok;
			printf("  %-8s %-24s %11.0f %11.0f %9.0f %7.2f %7.2f %s\n", pattern_names[s],
			       kind_names[k], x->access_rate, x->load_rate, x->miss_ns, x->hit_ns[0],
			       x->hit_ns[1], x->ok ? "" : "FAILED OR WRONG DATA");
			snprintf(name, sizeof(name), "%s, %s", pattern_names[s], kind_names[k]);
			record("bufferpool", name, "accesses_per_s", x->access_rate);
			record("bufferpool", name, "pageins_per_s", x->load_rate);
			record("bufferpool", name, "ns_per_evict_load", x->miss_ns);
			record("bufferpool", name, "hit_ns", x->hit_ns[0]);
			record("bufferpool", name, "chained_hit_ns", x->hit_ns[1]);
		}
		if (f[s][REWIRE].ok) {
			char name[64];

			printf("  %-8s %-24s %11s %11s %9s %7.2f %7.2f\n", pattern_names[s],
			       "plain memory access", "", "", "", f[s][REWIRE].direct_ns[0],
			       f[s][REWIRE].direct_ns[1]);
			snprintf(name, sizeof(name), "%s, plain memory access", pattern_names[s]);
			record("bufferpool", name, "hit_ns", f[s][REWIRE].direct_ns[0]);
			record("bufferpool", name, "chained_hit_ns", f[s][REWIRE].direct_ns[1]);
		}
	}
	if (threads > 1) {
		printf("  %d threads, uniform, each a manager of 1/%d of the data set and pool, "
		       "in one arena or mapping\n", threads, threads);
		for (int k = 0; k < NKINDS; k++) {
			struct figures *x = &tf[k];
			char name[96];

			measure_threads((enum kind)k, threads, npages, pool, fd, n, x);
			if (!x->ran) {
				printf("  %-8s %-24s not available here\n", "threads", kind_names[k]);
				continue;
			}
			bench_failed |= !x->ok;
			printf("  %-8s %-24s %11.0f %11.0f %9.0f %s\n", "threads", kind_names[k],
			       x->access_rate, x->load_rate, x->miss_ns,
			       x->ok ? "" : "FAILED OR WRONG DATA");
			snprintf(name, sizeof(name), "%d threads, %s", threads, kind_names[k]);
			record("bufferpool", name, "accesses_per_s", x->access_rate);
			record("bufferpool", name, "pageins_per_s", x->load_rate);
			record("bufferpool", name, "ns_per_evict_load", x->miss_ns);
		}
	}
	close(fd);
	/* The goal is a share of what the kernel allows on this machine. */
	have_raw = !strcmp(backend, "uffd") && raw_evict_load_ns(&raw_move, &raw_plain);
	if (have_raw)
		printf("  %-8s %-24s %11s %11s %9.0f   (one UFFDIO_MOVE a page)\n", "raw", "kernel, uffd",
		       "", "", raw_move);
	if (have_raw)
		printf("  %-8s %-24s %11s %11s %9.0f   (MADV_DONTNEED + a fault)\n", "raw",
		       "kernel, plain", "", "", raw_plain);
	record("bufferpool", "raw UFFDIO_MOVE", "ns_per_page", have_raw ? raw_move : 0);
	record("bufferpool", "raw MADV_DONTNEED + fault", "ns_per_page", have_raw ? raw_plain : 0);
	/* the kernel's own edge, which the manager's is held to */
	edge = have_raw ? raw_plain / raw_move : 0;
	printf("  goals\n");
	for (int s = 0; s < 2; s++) {
		const struct figures *r = &f[s][REWIRE], *p = &f[s][PLAIN];
		char what[96];
		double x = r->ok && p->ok && r->miss_ns ? p->miss_ns / r->miss_ns : 0;

		snprintf(what, sizeof(what), "%s: evict+load, plain (MADV_DONTNEED+fault) / rewire",
			 pattern_names[s]);
		figure(what, x);
		snprintf(what, sizeof(what), "%s: that edge / the raw one's (%.2f)", pattern_names[s],
			 edge);
		goal(what, edge ? x / edge : 0, ">= 0.9", edge && x / edge >= 0.9);
	}
	/* The hash pool's load is the pread alone, into a frame mapped
	 * already: less that, what is left is memory management. */
	for (int s = 0; s < 2; s++) {
		const struct figures *r = &f[s][REWIRE], *p = &f[s][PLAIN], *h = &f[s][HASHED];
		char what[96];

		if (!r->ok || !p->ok || !h->ok || r->miss_ns <= h->miss_ns)
			continue;
		snprintf(what, sizeof(what), "%s: the same less the pread (hash pool's load)",
			 pattern_names[s]);
		figure(what, (p->miss_ns - h->miss_ns) / (r->miss_ns - h->miss_ns));
	}
	if (threads > 1) {
		const struct figures *r = &tf[REWIRE], *p = &tf[PLAIN];
		double one = f[0][PLAIN].ok && f[0][REWIRE].ok && f[0][REWIRE].miss_ns ?
			     f[0][PLAIN].miss_ns / f[0][REWIRE].miss_ns : 0;
		double x = r->ok && p->ok && r->miss_ns ? p->miss_ns / r->miss_ns : 0;
		char what[96];

		/* against the kernel's own edge, as with one thread */
		snprintf(what, sizeof(what), "%d threads: evict+load, plain / rewire", threads);
		figure(what, x);
		snprintf(what, sizeof(what), "%d threads: that edge / the raw one's (%.2f)", threads,
			 edge);
		goal(what, edge ? x / edge : 0, ">= 0.9", edge && x / edge >= 0.9);
		/* Only where the edge is the kernel's to give: on mremap each
		 * move takes the mmap lock for writing, where a fault takes it
		 * (or its VMA's lock) for reading, so threads widen plain
		 * memory's lead whatever the library does. */
		snprintf(what, sizeof(what), "that gap, %d threads / 1 thread (uniform)", threads);
		goal(what, edge && one ? x / one : 0, ">= 1", edge && one && x >= one);
	}
	for (int c = 0; c < 2; c++) {
		const struct figures *r = &f[0][REWIRE], *h = &f[0][HASHED];
		char what[96];
		double x = r->ok ? r->vs_direct[c] : 0;

		snprintf(what, sizeof(what), "%s hits: rewire / plain memory access",
			 c ? "chained" : "independent");
		goal(what, x, "<= 1.1", x > 0 && x <= 1.1);
		x = r->ok && h->ok ? r->hashed_vs[c] : 0;
		snprintf(what, sizeof(what), "%s hits: hash-table pool / rewire",
			 c ? "chained" : "independent");
		/* a chained read waits for memory either way: plain access
		 * itself is only about 1.5x the hash pool there */
		if (c)
			figure(what, x);
		else
			goal(what, x, ">= 1.5", x >= 1.5);
	}
}
