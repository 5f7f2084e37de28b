/*
 * A buffer manager in the style of vmcache (Leis et al., "Virtual-Memory
 * Assisted Buffer Management", SIGMOD 2023). Database page p lives at
 * db + p * pagesize, in one run of holes as large as the data file, so a hit
 * costs no translation. The arena's lock budget is the pool: the library
 * itself refuses to back more. Clock picks the victims, and one rewire_batch
 * per request evicts them and backs the pages it loads with a recycling
 * populate: an evicted page keeps its frame, which the populate moves into
 * a page being loaded (one page-table move, never zeroed); in the other
 * mode victims are discarded, and loads zero-filled but on kmod. The loaded pages are then pread(2) from the file, and every
 * page read is checked against what the file holds. A third run puts the
 * same manager on plain memory, as vmcache runs without exmap: a
 * madvise(MADV_DONTNEED) per victim, and a zeroed page faulted in by pread.
 *
 * The manager itself is vmcache-core.[ch], which rewire-bench's bufferpool
 * section measures; this file is its data file, its requests and checks.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rewire.h>

#include "vmcache-core.h"

enum {
	NPAGES = 4096,		/* pages in the data file */
	POOL = 512,		/* pages that may be backed at once: the lock budget */
	GROUP = 8,		/* pages one request fixes together */
	EVICT_MIN = 32,		/* fewest pages one eviction round frees */
};

static const char *const mode_names[] = {
	[BM_EVICT] = "evicting victims",
	[BM_DISCARD] = "discarding victims",
	[BM_PLAIN] = "MADV_DONTNEED and faults",
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
		if (bm_fix(bm, pids, GROUP))
			return -1;
		for (int i = 0; i < GROUP; i++) {
			/* A fixed page is resident: the hit path finds it. */
			uint64_t *w = (uint64_t *)bm_get(bm, pids[i]);

			if (!w || check(bm, pids[i])) {
				fprintf(stderr, "vmcache: page %u holds wrong data (%s, request %ld)\n",
					pids[i], skewed ? "skewed" : "uniform", r);
				return -1;
			}
			if (rnd() % 8 == 0) {
				w[1] = ++version[pids[i]];
				bm->state[pids[i]] |= BM_DIRTY;
			}
		}
		bm_unfix(bm, pids, GROUP);
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

	for (int mode = BM_EVICT; mode <= BM_PLAIN; mode++) {
		struct bm_config cfg = {
			.mode = (enum bm_mode)mode, .fd = fd, .npages = NPAGES, .pool = POOL,
			.group = GROUP, .evict_min = EVICT_MIN,
		};
		struct bm bm;
		struct rewire_stats st;
		unsigned long long moves;
		int ret = 0;

		if (mode == BM_PLAIN) {
			cfg.map = bm_map(NPAGES);
		} else {
			ret = bm_arena(NPAGES, POOL, 0, &cfg.arena);
			/* RLIMIT_MEMLOCK is below the reserve: lock nothing,
			 * and let the budget alone bound the pool. */
			if (ret == -ENOMEM || ret == -EPERM)
				ret = bm_arena(NPAGES, POOL, REWIRE_UNLOCKED, &cfg.arena);
		}
		if (ret || bm_open(&bm, &cfg)) {
			fprintf(stderr, "vmcache: cannot set up the %s\n",
				mode == BM_PLAIN ? "mapping" : "arena");
			return 1;
		}
		printf("vmcache on %s, %s: %d-page file, %d-page pool, ",
		       cfg.arena ? rewire_backend_name(cfg.arena) : "plain memory",
		       mode_names[mode], NPAGES, POOL);
		if (run(&bm, 0, requests) || run(&bm, 1, requests)) {
			printf("FAILED\n");
			return 1;
		}
		/* On plain memory, every load faults in a zeroed page; on an
		 * arena, the pages moved are frames recycled (and, on kmod,
		 * discarded pages moved to the cache). */
		moves = 0;
		if (cfg.arena && !rewire_arena_stats(cfg.arena, &st))
			moves = st.pages_remapped + st.pages_copied;
		printf("%lu reads checked (%.0f%% hits): %lu loads, %llu page moves, "
		       "%lu evictions, %lu batches\n", bm.reads, 100.0 * bm.hits / bm.reads,
		       bm.loads, moves, bm.evictions, bm.batches);
		if (bm_close(&bm)) {
			fprintf(stderr, "vmcache: the arena's page states disagree with the table, "
					"or a write-back failed\n");
			return 1;
		}
		if (cfg.arena)
			rewire_arena_destroy(cfg.arena);
		else
			munmap(cfg.map, NPAGES * ps);
	}
	close(fd);
	return 0;
}
