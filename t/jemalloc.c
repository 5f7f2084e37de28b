/*
 * librewire-jemalloc, as jemalloc's own extent-hook tests do it: every hook
 * interposed and counted, then mallocx and dallocx of random sizes from
 * several threads, each pointer inside the rewire arena, every byte of a
 * live allocation backed, never more backed than the lock budget, the
 * budget's end a clean NULL, and the arena's destruction leaving holes only.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jemalloc/jemalloc.h>

#include "rewire-jemalloc.h"
#include "testlib.h"

#define PAGES 8192		/* the rewire arena: 32 MiB of base pages */
#define BUDGET 6144
#define THREADS 4
#define LIVE 48			/* allocations each thread keeps */
#define ROUNDS 1500

static struct rewire_arena *arena;
static char *lo, *hi;
static unsigned ind;
static int flags;

/* Interposed on the library's hooks: counted, then passed on. */
static extent_hooks_t *orig;
static atomic_long calls[9];
enum { ALLOC, DALLOC, DESTROY, COMMIT, DECOMMIT, PURGE_LAZY, PURGE_FORCED, SPLIT, MERGE };

static void *c_alloc(extent_hooks_t *h, void *a, size_t s, size_t al, bool *z, bool *c,
		     unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[ALLOC], 1);
	return orig->alloc(orig, a, s, al, z, c, i);
}

static bool c_dalloc(extent_hooks_t *h, void *a, size_t s, bool c, unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[DALLOC], 1);
	return orig->dalloc ? orig->dalloc(orig, a, s, c, i) : true;
}

static void c_destroy(extent_hooks_t *h, void *a, size_t s, bool c, unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[DESTROY], 1);
	if (orig->destroy)
		orig->destroy(orig, a, s, c, i);
}

static bool c_commit(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l, unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[COMMIT], 1);
	return orig->commit ? orig->commit(orig, a, s, o, l, i) : true;
}

static bool c_decommit(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l, unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[DECOMMIT], 1);
	return orig->decommit ? orig->decommit(orig, a, s, o, l, i) : true;
}

static bool c_purge_lazy(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l, unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[PURGE_LAZY], 1);
	return orig->purge_lazy ? orig->purge_lazy(orig, a, s, o, l, i) : true;
}

static bool c_purge_forced(extent_hooks_t *h, void *a, size_t s, size_t o, size_t l, unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[PURGE_FORCED], 1);
	return orig->purge_forced ? orig->purge_forced(orig, a, s, o, l, i) : true;
}

static bool c_split(extent_hooks_t *h, void *a, size_t s, size_t sa, size_t sb, bool c,
		    unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[SPLIT], 1);
	return orig->split ? orig->split(orig, a, s, sa, sb, c, i) : true;
}

static bool c_merge(extent_hooks_t *h, void *a, size_t sa, void *b, size_t sb, bool c,
		    unsigned i)
{
	(void)h;
	atomic_fetch_add(&calls[MERGE], 1);
	return orig->merge ? orig->merge(orig, a, sa, b, sb, c, i) : true;
}

static extent_hooks_t counting = {
	c_alloc, c_dalloc, c_destroy, c_commit, c_decommit, c_purge_lazy, c_purge_forced,
	c_split, c_merge,
};

static atomic_long outside, unbacked, overbudget, wrong, allocated, failed;

/* Every page of [p, p + n) live and backed in the rewire arena. */
static bool backed(const char *p, size_t n)
{
	const char *first = lo + (size_t)(p - lo) / page_size * page_size;
	size_t pages = (size_t)(p + n - first + page_size - 1) / page_size;
	unsigned char vec[1024];

	if (pages > sizeof(vec) || rewire_page_state(arena, first, pages * page_size, vec))
		return false;
	for (size_t i = 0; i < pages; i++)
		if ((vec[i] & (REWIRE_PAGE_LIVE | REWIRE_PAGE_BACKED)) !=
		    (REWIRE_PAGE_LIVE | REWIRE_PAGE_BACKED))
			return false;
	return true;
}

static void *worker(void *arg)
{
	uint64_t state = (uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
	struct {
		unsigned char *p;
		size_t n;
		unsigned char tag;
	} live[LIVE] = { { NULL, 0, 0 } };

	for (int r = 0; r < ROUNDS; r++) {
		size_t k = rnd_next(&state) % LIVE;
		uint64_t x = rnd_next(&state);
		/* mostly small, some pages, a few up to 1 MiB */
		size_t n = x % 8 ? 1 + x % 4000 : x % 64 ? 1 + x % 65536 : 1 + x % (1 << 20);
		struct rewire_stats st;

		if (live[k].p) {
			for (size_t i = 0; i < live[k].n; i += 509)
				if (live[k].p[i] != live[k].tag)
					atomic_fetch_add(&wrong, 1);
			dallocx(live[k].p, flags);
			atomic_fetch_sub(&allocated, 1);
			live[k].p = NULL;
		}
		live[k].p = mallocx(n, flags);
		if (!live[k].p) {
			atomic_fetch_add(&failed, 1);
			continue;
		}
		atomic_fetch_add(&allocated, 1);
		live[k].n = n;
		live[k].tag = (unsigned char)x;
		if ((char *)live[k].p < lo || (char *)live[k].p + n > hi)
			atomic_fetch_add(&outside, 1);
		else if (!backed((char *)live[k].p, n))
			atomic_fetch_add(&unbacked, 1);
		memset(live[k].p, live[k].tag, n);
		if (r % 64 == 0 && !rewire_arena_stats(arena, &st) && st.backed > st.lock_budget)
			atomic_fetch_add(&overbudget, 1);
	}
	for (size_t k = 0; k < LIVE; k++)
		if (live[k].p) {
			dallocx(live[k].p, flags);
			atomic_fetch_sub(&allocated, 1);
		}
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	extent_hooks_t *hooks = &counting, *old;
	size_t len = sizeof(old);
	char name[64];
	struct rewire_stats st;
	size_t before;
	void *big;

	test_init();
	plan(17);
	arena = test_arena(PAGES, BUDGET, 0);
	lo = rewire_arena_base(arena);
	hi = lo + PAGES * page_size;
	is_int(-EINVAL, rewire_jemalloc_create(NULL, PAGES * page_size, &ind), "create: NULL arena");
	is_int(0, rewire_jemalloc_create(arena, PAGES * page_size, &ind),
	       "a jemalloc arena on all of the rewire arena");
	flags = rewire_jemalloc_flags(ind);
	ok(flags == (MALLOCX_ARENA(ind) | MALLOCX_TCACHE_NONE), "its flags: MALLOCX_ARENA(%u), no thread cache", ind);

	/* the library's hooks, with every one counted in front */
	snprintf(name, sizeof(name), "arena.%u.extent_hooks", ind);
	if (mallctl(name, &old, &len, &hooks, sizeof(hooks)))
		bail("mallctl %s: %s", name, strerror(errno));
	orig = old;

	for (long t = 0; t < THREADS; t++)
		pthread_create(&th[t], NULL, worker, (void *)t);
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	diag("hooks: %ld alloc, %ld dalloc, %ld destroy, %ld commit, %ld decommit, %ld purge_lazy, "
	     "%ld purge_forced, %ld split, %ld merge", calls[ALLOC], calls[DALLOC], calls[DESTROY],
	     calls[COMMIT], calls[DECOMMIT], calls[PURGE_LAZY], calls[PURGE_FORCED], calls[SPLIT],
	     calls[MERGE]);
	ok(atomic_load(&calls[ALLOC]) > 0, "jemalloc took its extents through the hooks");
	is_int(0, atomic_load(&outside), "every pointer inside the rewire arena (%d threads, %d rounds)",
	       THREADS, ROUNDS);
	is_int(0, atomic_load(&unbacked), "every page of every live allocation backed");
	is_int(0, atomic_load(&wrong), "every allocation kept its bytes");
	is_int(0, atomic_load(&overbudget), "never more backed than the lock budget");
	is_int(0, atomic_load(&failed), "no allocation failed");
	is_int(0, atomic_load(&allocated), "all freed");

	/* What jemalloc no longer needs goes back as holes. */
	rewire_arena_stats(arena, &st);
	before = st.backed;
	snprintf(name, sizeof(name), "arena.%u.purge", ind);
	if (mallctl(name, NULL, NULL, NULL, 0) || rewire_arena_stats(arena, &st))
		bail("%s: %s", name, strerror(errno));
	ok(atomic_load(&calls[DECOMMIT]) > 0 && st.backed < before,
	   "arena.%u.purge decommits (%ld calls): %zu bytes backed before, %zu after", ind,
	   atomic_load(&calls[DECOMMIT]), before, st.backed);

	/* past the budget: NULL, cleanly */
	big = mallocx((size_t)(BUDGET + 1) * page_size, flags);
	ok(!big, "an allocation larger than the lock budget: NULL");
	big = mallocx(100, flags);
	ok(big != NULL, "and the next small one is served");
	if (big)
		dallocx(big, flags);

	is_int(0, rewire_jemalloc_destroy(ind), "arena destroyed");
	is_int(-ENOENT, rewire_jemalloc_destroy(ind), "destroyed once only");

	rewire_arena_stats(arena, &st);
	ok(!st.allocated && !st.backed, "the rewire arena holds only holes now (%zu bytes live, %zu backed)",
	   st.allocated, st.backed);
	ok(atomic_load(&calls[DALLOC]) + atomic_load(&calls[DESTROY]) > 0,
	   "jemalloc gave its extents back through the hooks");
	rewire_arena_destroy(arena);
	return done_testing();
}
