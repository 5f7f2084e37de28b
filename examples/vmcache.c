/*
 * A buffer manager in the style of vmcache (Leis et al., "Virtual-Memory
 * Assisted Buffer Management", SIGMOD 2023). Database page p lives at
 * db + p * pagesize, in one run of holes as large as the data file, so a hit
 * costs no translation. The arena's lock budget is the pool: the library
 * itself refuses to back more. Clock picks the victims, and one rewire_batch
 * per request evicts them and backs the pages it loads: a victim's page is
 * moved straight into a page being loaded (recycled, never zeroed) or out to
 * a run of free frames, or, in the other mode, discarded, and loads are
 * populated. The loaded pages are then pread(2) from the file, and every
 * page read is checked against what the file holds.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rewire.h>

enum {
	NPAGES = 4096,		/* pages in the data file */
	POOL = 512,		/* pages that may be backed at once: the lock budget */
	GROUP = 8,		/* pages one request fixes together */
	EVICT_MIN = 32,		/* fewest pages one eviction round frees */
	MAX_OPS = EVICT_MIN + 2 * GROUP,
};

/* The page-state table: one byte per database page. */
enum { RESIDENT = 1, REF = 2, DIRTY = 4, PINNED = 8 };

enum mode { BY_MOVE, BY_DISCARD };
static const char *const mode_names[] = { "moving victims", "discarding victims" };

struct bm {
	struct rewire_arena *arena;
	enum mode mode;
	int fd;
	size_t ps;
	char *db;			/* NPAGES pages, page p at db + p * ps */
	char *frames;			/* POOL frames: free backed pages, or holes */
	uint8_t state[NPAGES];
	size_t hand, resident;
	uint32_t spare[POOL], holes[POOL];	/* frames backed and unused; frames that are holes */
	size_t nspare, nholes;
	struct rewire_op ops[MAX_OPS];
	size_t nops;
	unsigned long loads, evictions, batches, populated, reads, hits;
};

/* How many times each page was written: the file's word 1 of that page. */
static uint64_t version[NPAGES];

/* Word i (from 2 on) of page p, as the file was first written. */
static uint64_t word(uint64_t p, uint64_t i)
{
	uint64_t x = p * 0x9e3779b97f4a7c15ull + i;

	x ^= x >> 31;
	x *= 0xbf58476d1ce4e5b9ull;
	return x ^ (x >> 29);
}

static int check(const struct bm *bm, uint32_t p)
{
	const uint64_t *w = (const uint64_t *)(bm->db + p * bm->ps);

	if (w[0] != p || w[1] != version[p])
		return -1;
	for (size_t i = 2; i < bm->ps / 8; i++)
		if (w[i] != word(p, i))
			return -1;
	return 0;
}

static void add_op(struct bm *bm, uint32_t type, uint32_t flags, char *dst, char *src)
{
	bm->ops[bm->nops++] = (struct rewire_op){ type, flags, dst, src, bm->ps, NULL };
}

/* Clock: the next resident page, not pinned, not used since the hand passed. */
static uint32_t victim(struct bm *bm)
{
	for (;;) {
		uint32_t p = (uint32_t)bm->hand;

		bm->hand = (bm->hand + 1) % NPAGES;
		if (!(bm->state[p] & RESIDENT) || bm->state[p] & PINNED)
			continue;
		if (!(bm->state[p] & REF))
			return p;
		bm->state[p] &= (uint8_t)~REF;
	}
}

static int write_back(struct bm *bm, uint32_t p)
{
	return pwrite(bm->fd, bm->db + p * bm->ps, bm->ps, (off_t)p * (off_t)bm->ps) ==
	       (ssize_t)bm->ps ? 0 : -1;
}

/* Make the n pages of pids resident and pin them: one rewire_batch evicts
 * what room takes and backs every missing page; then each is read in. */
static int fix(struct bm *bm, const uint32_t *pids, size_t n)
{
	uint32_t miss[GROUP], victims[MAX_OPS];
	size_t m = 0, nv = 0, k = 0, done;
	int ret;

	for (size_t i = 0; i < n; i++) {
		uint8_t *s = &bm->state[pids[i]];

		if (!(*s & (RESIDENT | PINNED)))
			miss[m++] = pids[i];
		*s |= PINNED | REF;
	}
	bm->reads += n;
	bm->hits += n - m;
	if (m == 0)
		return 0;

	/* Evict when the budget is short, at least EVICT_MIN pages at once. */
	if (bm->resident + m > POOL) {
		size_t want = bm->resident + m - POOL;

		for (want = want < EVICT_MIN ? EVICT_MIN : want; nv < want; nv++) {
			uint32_t q = victim(bm);

			if (bm->state[q] & DIRTY && write_back(bm, q))
				return -1;
			bm->state[q] = 0;
			bm->resident--;
			victims[nv] = q;
		}
		bm->evictions += nv;
	}

	bm->nops = 0;
	if (bm->mode == BY_MOVE) {
		/* A victim's page goes straight to a page being loaded... */
		for (; k < m && k < nv; k++)
			add_op(bm, REWIRE_OP_MOVE, 0, bm->db + miss[k] * bm->ps,
			       bm->db + victims[k] * bm->ps);
		/* ...the other victims out to free frames... */
		for (size_t v = k; v < nv; v++) {
			uint32_t f = bm->holes[--bm->nholes];

			add_op(bm, REWIRE_OP_MOVE, 0, bm->frames + f * bm->ps,
			       bm->db + victims[v] * bm->ps);
			bm->spare[bm->nspare++] = f;
		}
		/* ...and the other loads take free frames while there are some. */
		for (; k < m && bm->nspare; k++) {
			uint32_t f = bm->spare[--bm->nspare];

			add_op(bm, REWIRE_OP_MOVE, 0, bm->db + miss[k] * bm->ps,
			       bm->frames + f * bm->ps);
			bm->holes[bm->nholes++] = f;
		}
	} else {
		for (size_t v = 0; v < nv; v++)
			add_op(bm, REWIRE_OP_DISCARD, 0, bm->db + victims[v] * bm->ps, NULL);
	}
	/* What is left is backed in place, from the arena's cache if it has
	 * any; pread overwrites it, so it need not be zeroed. */
	for (; k < m; k++, bm->populated++)
		add_op(bm, REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, bm->db + miss[k] * bm->ps, NULL);

	ret = rewire_batch(bm->arena, bm->ops, bm->nops, &done);
	if (ret) {
		fprintf(stderr, "vmcache: rewire_batch of %zu ops: %s (done %zu)\n", bm->nops,
			strerror(-ret), done);
		return -1;
	}
	bm->batches++;
	for (size_t i = 0; i < m; i++) {
		uint32_t p = miss[i];

		if (pread(bm->fd, bm->db + p * bm->ps, bm->ps, (off_t)p * (off_t)bm->ps) !=
		    (ssize_t)bm->ps)
			return -1;
		bm->state[p] = RESIDENT | PINNED | REF;
	}
	bm->resident += m;
	bm->loads += m;
	return 0;
}

static void unfix(struct bm *bm, const uint32_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bm->state[pids[i]] &= (uint8_t)~PINNED;
}

static int bm_open(struct bm *bm, enum mode mode, int fd)
{
	struct rewire_options opts;
	int ret;

	memset(bm, 0, sizeof(*bm));
	bm->mode = mode;
	bm->fd = fd;
	bm->ps = (size_t)sysconf(_SC_PAGESIZE);
	rewire_options_init(&opts);
	opts.reserve = (NPAGES + POOL) * bm->ps;
	opts.lock_budget = POOL * bm->ps;
	ret = rewire_arena_create(&opts, &bm->arena);
	if (ret == -ENOMEM || ret == -EPERM) {
		/* RLIMIT_MEMLOCK is below the reserve: lock nothing, and let
		 * the budget alone bound the pool. */
		opts.flags |= REWIRE_UNLOCKED;
		ret = rewire_arena_create(&opts, &bm->arena);
	}
	if (ret)
		return -1;
	bm->db = rewire_alloc(bm->arena, NPAGES * bm->ps, REWIRE_ALLOC_HOLES);
	bm->frames = rewire_alloc(bm->arena, POOL * bm->ps, REWIRE_ALLOC_HOLES);
	if (!bm->db || !bm->frames)
		return -1;
	for (uint32_t f = 0; f < POOL; f++)
		bm->holes[bm->nholes++] = POOL - 1 - f;
	return 0;
}

/* Our page-state table against the arena's records; write dirty pages back. */
static int bm_close(struct bm *bm)
{
	static unsigned char vec[NPAGES];
	size_t backed = 0;
	int bad = rewire_page_state(bm->arena, bm->db, NPAGES * bm->ps, vec) != 0;

	for (uint32_t p = 0; p < NPAGES && !bad; p++) {
		bad |= !(vec[p] & REWIRE_PAGE_BACKED) != !(bm->state[p] & RESIDENT);
		if (bm->state[p] & DIRTY)
			bad |= write_back(bm, p) != 0;
	}
	bad |= rewire_page_state(bm->arena, bm->frames, POOL * bm->ps, vec) != 0;
	for (size_t f = 0; f < POOL && !bad; f++)
		backed += !!(vec[f] & REWIRE_PAGE_BACKED);
	bad |= backed != bm->nspare;
	rewire_arena_destroy(bm->arena);
	return bad ? -1 : 0;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Uniform, or skewed: u^4 puts half the reads on the first 6% of the pages,
 * which a multiplication by an odd number scatters over the file. */
static uint32_t pick(int skewed)
{
	double u = (double)(rnd() >> 11) / (double)(1ull << 53);

	if (!skewed)
		return (uint32_t)(rnd() % NPAGES);
	return (uint32_t)((size_t)(NPAGES * u * u * u * u) * 2654435761u % NPAGES);
}

/* Requests of GROUP pages: each page is checked, and one in eight written. */
static int run(struct bm *bm, int skewed, long requests)
{
	uint32_t pids[GROUP];

	for (long r = 0; r < requests; r++) {
		for (int i = 0; i < GROUP; i++)
			pids[i] = pick(skewed);
		if (fix(bm, pids, GROUP))
			return -1;
		for (int i = 0; i < GROUP; i++) {
			uint64_t *w = (uint64_t *)(bm->db + pids[i] * bm->ps);

			if (check(bm, pids[i])) {
				fprintf(stderr, "vmcache: page %u holds wrong data (%s, request %ld)\n",
					pids[i], skewed ? "skewed" : "uniform", r);
				return -1;
			}
			if (rnd() % 8 == 0) {
				w[1] = ++version[pids[i]];
				bm->state[pids[i]] |= DIRTY;
			}
		}
		unfix(bm, pids, GROUP);
	}
	return 0;
}

int main(int argc, char **argv)
{
	long requests = argc > 1 ? atol(argv[1]) : 4000;
	const char *tmp = getenv("TMPDIR");
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char path[4096];
	uint64_t *page = malloc(ps);
	int fd;

	/* The data file: page p holds p, its version, then word(p, i). */
	snprintf(path, sizeof(path), "%s/vmcache-XXXXXX", tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	if (fd < 0 || !page || requests < 1) {
		perror("vmcache: data file");
		return 1;
	}
	unlink(path);
	for (uint64_t p = 0; p < NPAGES; p++) {
		page[0] = p;
		page[1] = 0;
		for (size_t i = 2; i < ps / 8; i++)
			page[i] = word(p, i);
		if (pwrite(fd, page, ps, (off_t)(p * ps)) != (ssize_t)ps) {
			perror("vmcache: writing the data file");
			return 1;
		}
	}
	free(page);

	for (int mode = BY_MOVE; mode <= BY_DISCARD; mode++) {
		static struct bm bm;

		if (bm_open(&bm, (enum mode)mode, fd)) {
			fprintf(stderr, "vmcache: cannot set up the arena\n");
			return 1;
		}
		printf("vmcache on %s, %s: %d-page file, %d-page pool, ",
		       rewire_backend_name(bm.arena), mode_names[mode], NPAGES, POOL);
		if (run(&bm, 0, requests) || run(&bm, 1, requests)) {
			printf("FAILED\n");
			return 1;
		}
		printf("%lu reads checked (%.0f%% hits): %lu loads (%lu zero-filled), "
		       "%lu evictions, %lu batches\n", bm.reads, 100.0 * bm.hits / bm.reads,
		       bm.loads, bm.populated, bm.evictions, bm.batches);
		if (bm_close(&bm)) {
			fprintf(stderr, "vmcache: the arena's page states disagree with the table, "
					"or a write-back failed\n");
			return 1;
		}
	}
	close(fd);
	return 0;
}
