/*
 * The vmcache-style buffer manager of examples/vmcache.c (see there for the
 * design); rewire-bench links this file too, so that it measures this code.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmcache-core.h"

int bm_arena(size_t npages, size_t pool, unsigned int flags, struct rewire_arena **arena)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct rewire_options opts;

	rewire_options_init(&opts);
	opts.reserve = (npages + pool) * ps;
	opts.lock_budget = pool * ps;
	opts.flags = flags;
	return rewire_arena_create(&opts, arena);
}

char *bm_map(size_t npages)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Page by page, as the arena's pages are. */
	madvise(p, npages * ps, MADV_NOHUGEPAGE);
	return p;
}

static void add_op(struct bm *bm, size_t *n, uint32_t type, uint32_t flags, char *dst, char *src)
{
	bm->ops[(*n)++] = (struct rewire_op){ type, flags, dst, src, bm->ps, NULL };
}

/* Clock: the next resident page, not pinned, not used since the hand passed. */
static uint32_t victim(struct bm *bm)
{
	for (;;) {
		uint32_t p = (uint32_t)bm->hand;

		bm->hand = (bm->hand + 1) % bm->cfg.npages;
		if (!(bm->state[p] & BM_RESIDENT) || bm->state[p] & BM_PINNED)
			continue;
		if (!(bm->state[p] & BM_REF))
			return p;
		bm->state[p] &= (uint8_t)~BM_REF;
	}
}

static off_t file_offset(const struct bm *bm, uint32_t p)
{
	return (off_t)(bm->cfg.first + p) * (off_t)bm->ps;
}

static int write_back(struct bm *bm, uint32_t p)
{
	return pwrite(bm->cfg.fd, bm->db + p * bm->ps, bm->ps, file_offset(bm, p)) ==
	       (ssize_t)bm->ps ? 0 : -1;
}

size_t bm_pin(struct bm *bm, const uint32_t *pids, size_t n)
{
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t *s = &bm->state[pids[i]];

		/* A page pinned and not resident is listed already. */
		if (!(*s & (BM_RESIDENT | BM_PINNED)))
			bm->miss[m++] = pids[i];
		*s |= BM_PINNED | BM_REF;
	}
	bm->reads += n;
	bm->hits += n - m;
	return m;
}

/*
 * The batch of one fix: victims out, the missing pages backed, from the
 * victims' frames where they were evicted (rewire(7), "Using rewire under
 * a buffer manager"): an evicted page keeps its frame, and the recycling
 * populate moves it into a page being loaded, one move a page. pread
 * overwrites what it held, so it need not be zeroed.
 */
static int batch(struct bm *bm, size_t nv, size_t m)
{
	uint32_t type = bm->cfg.mode == BM_EVICT ? REWIRE_OP_EVICT : REWIRE_OP_DISCARD;
	size_t nops = 0, done;
	int ret;

	for (size_t v = 0; v < nv; v++)
		add_op(bm, &nops, type, 0, bm->db + bm->victims[v] * bm->ps, NULL);
	for (size_t k = 0; k < m; k++)
		add_op(bm, &nops, REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE,
		       bm->db + bm->miss[k] * bm->ps, NULL);
	bm->populated += m;
	ret = rewire_batch(bm->cfg.arena, bm->ops, nops, &done);
	/*
	 * Managers of other threads share the arena's budget and may have
	 * taken this one's evicted frames: short of budget, evict some more
	 * and go on from the operation that failed.
	 */
	for (int tries = 0; ret == -ENOMEM && tries < 8; tries++) {
		struct rewire_op more[64];
		size_t k = 0, ok;

		while (k < bm->cfg.evict_min && k < 64) {
			uint32_t q = victim(bm);

			if (bm->state[q] & BM_DIRTY && write_back(bm, q))
				return -1;
			bm->state[q] = 0;
			bm->resident--;
			bm->evictions++;
			more[k++] = (struct rewire_op){ REWIRE_OP_EVICT, 0, bm->db + q * bm->ps,
							NULL, bm->ps, NULL };
		}
		ret = rewire_batch(bm->cfg.arena, more, k, &ok);
		if (!ret) {
			nops -= done;
			memmove(bm->ops, bm->ops + done, nops * sizeof(*bm->ops));
			ret = rewire_batch(bm->cfg.arena, bm->ops, nops, &done);
		}
	}
	if (ret) {
		fprintf(stderr, "vmcache: rewire_batch of %zu ops: %s (done %zu)\n", nops,
			strerror(-ret), done);
		return -1;
	}
	bm->batches++;
	return 0;
}

/* Evict what room takes, in one rewire_batch with the backing of every
 * missing page; then read each in. */
int bm_load(struct bm *bm, size_t m)
{
	size_t nv = 0;

	/* Evict when the budget is short, at least evict_min pages at once. */
	if (bm->resident + m > bm->cfg.pool) {
		size_t want = bm->resident + m - bm->cfg.pool;

		if (want < bm->cfg.evict_min)
			want = bm->cfg.evict_min;
		for (; nv < want; nv++) {
			uint32_t q = victim(bm);

			if (bm->state[q] & BM_DIRTY && write_back(bm, q))
				return -1;
			bm->state[q] = 0;
			bm->resident--;
			bm->victims[nv] = q;
		}
		bm->evictions += nv;
	}
	if (bm->cfg.mode == BM_PLAIN) {
		/* The kernel backs each hole with a zeroed page at pread's fault. */
		for (size_t v = 0; v < nv; v++)
			if (madvise(bm->db + bm->victims[v] * bm->ps, bm->ps, MADV_DONTNEED))
				return -1;
	} else if (batch(bm, nv, m)) {
		return -1;
	}
	for (size_t i = 0; i < m; i++) {
		uint32_t p = bm->miss[i];

		if (pread(bm->cfg.fd, bm->db + p * bm->ps, bm->ps, file_offset(bm, p)) !=
		    (ssize_t)bm->ps)
			return -1;
		bm->state[p] = BM_RESIDENT | BM_PINNED | BM_REF;
	}
	bm->resident += m;
	bm->loads += m;
	return 0;
}

void bm_unfix(struct bm *bm, const uint32_t *pids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bm->state[pids[i]] &= (uint8_t)~BM_PINNED;
}

static void bm_free(struct bm *bm)
{
	if (bm->cfg.arena) {
		if (bm->db)
			rewire_free(bm->cfg.arena, bm->db);
	}
	free(bm->state);
	free(bm->miss);
	free(bm->victims);
	free(bm->ops);
	memset(bm, 0, sizeof(*bm));
}

int bm_open(struct bm *bm, const struct bm_config *cfg)
{
	/* A round evicts at most evict_min pages, or room for one fix. */
	size_t nvictims = cfg->evict_min > cfg->group ? cfg->evict_min : cfg->group;

	memset(bm, 0, sizeof(*bm));
	bm->cfg = *cfg;
	bm->ps = (size_t)sysconf(_SC_PAGESIZE);
	bm->state = calloc(cfg->npages, 1);
	bm->miss = malloc(cfg->group * sizeof(*bm->miss));
	bm->victims = malloc(nvictims * sizeof(*bm->victims));
	if (!bm->state || !bm->miss || !bm->victims)
		goto fail;
	if (cfg->mode == BM_PLAIN) {
		bm->cfg.arena = NULL;
		bm->db = cfg->map;
		if (!bm->db)
			goto fail;
		return 0;
	}
	bm->ops = malloc((nvictims + cfg->group) * sizeof(*bm->ops));
	if (!bm->ops || !cfg->arena)
		goto fail;
	bm->db = rewire_alloc(cfg->arena, cfg->npages * bm->ps, REWIRE_ALLOC_HOLES);
	if (!bm->db)
		goto fail;
	return 0;
fail:
	bm_free(bm);
	return -1;
}

int bm_close(struct bm *bm)
{
	unsigned char *vec = malloc(bm->cfg.npages);
	int bad = !vec;

	for (uint32_t p = 0; p < bm->cfg.npages && !bad; p++)
		if (bm->state[p] & BM_DIRTY)
			bad |= write_back(bm, p) != 0;
	/* Plain memory has no record of its own to compare with. */
	/* Evicted pages are holes to the arena, their frames apart. */
	if (bm->cfg.mode != BM_PLAIN && !bad) {
		bad |= rewire_page_state(bm->cfg.arena, bm->db, bm->cfg.npages * bm->ps, vec) != 0;
		for (uint32_t p = 0; p < bm->cfg.npages && !bad; p++)
			bad |= !(vec[p] & REWIRE_PAGE_BACKED) != !(bm->state[p] & BM_RESIDENT);
	}
	free(vec);
	bm_free(bm);
	return bad ? -1 : 0;
}
