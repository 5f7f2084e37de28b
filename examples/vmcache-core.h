/*
 * The core of the vmcache-style buffer manager of examples/vmcache.c, which
 * rewire-bench's bufferpool section measures as it is: the page-state table,
 * clock eviction, and the fix whose misses are one rewire_batch.
 */
#ifndef REWIRE_EXAMPLES_VMCACHE_CORE_H
#define REWIRE_EXAMPLES_VMCACHE_CORE_H

#include <stddef.h>
#include <stdint.h>

#include <rewire.h>

/* The page-state table: one byte per database page. Only a resident page
 * has REF set (a fix sets it as it pins a page it is about to load). */
enum { BM_RESIDENT = 1, BM_REF = 2, BM_DIRTY = 4, BM_PINNED = 8 };

/* How victims leave and loads arrive. */
enum bm_mode {
	BM_EVICT,	/* victims evicted, their frames recycled by the loads */
	BM_DISCARD,	/* victims discarded, loads populated */
	BM_PLAIN,	/* no rewire: madvise(MADV_DONTNEED) per victim, a fault in pread */
};

struct bm_config {
	enum bm_mode mode;
	struct rewire_arena *arena;	/* BM_EVICT, BM_DISCARD: holds db */
	char *map;			/* BM_PLAIN: npages pages of anonymous memory */
	int fd;				/* the data file */
	size_t first;			/* the file's page that is database page 0 */
	size_t npages;			/* database pages */
	size_t pool;			/* pages backed at once, at most */
	size_t group;			/* most pages one fix takes */
	size_t evict_min;		/* fewest pages one eviction round frees */
};

struct bm {
	struct bm_config cfg;
	size_t ps;
	char *db;			/* page p at db + p * ps */
	uint8_t *state;
	size_t hand, resident;
	uint32_t *miss, *victims;	/* the fix under way's */
	struct rewire_op *ops;
	unsigned long loads, evictions, batches, populated, reads, hits;
};

/* An arena for managers of npages pages and a pool of pool pages in all:
 * the pool is its lock budget, so the library itself refuses to back more
 * (evicted frames waiting to be recycled count in it). */
int bm_arena(size_t npages, size_t pool, unsigned int flags, struct rewire_arena **arena);
/* Plain memory for BM_PLAIN; munmap(2) it after bm_close(). */
char *bm_map(size_t npages);

int bm_open(struct bm *bm, const struct bm_config *cfg);
/* Checks the page-state table against the arena's records and writes dirty
 * pages back; the arena or mapping stays the caller's. */
int bm_close(struct bm *bm);

/* Pin the n pages of pids, n at most cfg.group; returns how many of them
 * are missing (listed in bm->miss), which bm_load() then makes resident. */
size_t bm_pin(struct bm *bm, const uint32_t *pids, size_t n);
int bm_load(struct bm *bm, size_t m);
void bm_unfix(struct bm *bm, const uint32_t *pids, size_t n);

/* Make the n pages of pids resident, and pin them. */
static inline int bm_fix(struct bm *bm, const uint32_t *pids, size_t n)
{
	size_t m = bm_pin(bm, pids, n);

	return m ? bm_load(bm, m) : 0;
}

/* The hit path, for a read that needs no pin: page p's address, or NULL when
 * it is not resident. One test when the page was used since the clock hand
 * passed. Its inputs are values, so that a loop that keeps them in registers
 * need not reload them after the store through state. */
static inline __attribute__((always_inline)) char *
bm_hit(uint8_t *state, char *db, size_t pagesize, uint32_t p)
{
	uint8_t s = state[p];

	if (__builtin_expect(!(s & BM_REF), 0)) {
		if (!(s & BM_RESIDENT))
			return NULL;
		state[p] = s | BM_REF;
	}
	return db + p * pagesize;
}

static inline char *bm_get(struct bm *bm, uint32_t p)
{
	return bm_hit(bm->state, bm->db, bm->ps, p);
}

#endif
