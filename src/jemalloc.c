/*
 * librewire-jemalloc: a jemalloc arena whose memory is one run of a rewire
 * arena, through jemalloc 5's extent hooks (rewire_jemalloc_create(3)).
 *
 * The run starts as holes. jemalloc takes address space from it in order
 * (it never gives any back: its extents stay its own until the arena is
 * destroyed, and it splits and merges them at will, all inside the run);
 * committing pages backs them (rewire_populate(3), zeroed, locked, within
 * the lock budget), and decommitting makes them holes again
 * (rewire_discard(3)). jemalloc may touch committed memory at any time and
 * reuses purged memory without asking, so purging is refused (no hook):
 * then it decommits what it no longer needs, and commits again before it
 * touches it. Nothing here allocates: a hook may run with jemalloc's locks
 * held.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "rewire.h"
#include "rewire-jemalloc.h"

struct rj_arena {
	extent_hooks_t hooks;	/* first: the hooks are handed its address */
	struct rewire_arena *arena;
	char *run, *end;	/* the run jemalloc's memory comes from */
	pthread_mutex_t lock;	/* next's */
	char *next;		/* address space not given to jemalloc yet */
	unsigned index;
	struct rj_arena *next_arena;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rj_arena *registry;

static struct rj_arena *of(extent_hooks_t *hooks)
{
	return (struct rj_arena *)hooks;
}

/* Address space, committed (backed, zeroed) if jemalloc asks. The types
 * are jemalloc's extent_alloc_t. */
// cppcheck-suppress constParameter
static void *rj_alloc(extent_hooks_t *hooks, void *new_addr, size_t size, size_t alignment,
		      // cppcheck-suppress constParameter
		      bool *zero, bool *commit, unsigned index)
{
	struct rj_arena *r = of(hooks);
	char *p = NULL;

	(void)index;
	pthread_mutex_lock(&r->lock);
	if (!new_addr && alignment && !(alignment & (alignment - 1))) {
		size_t pad = (alignment - (uintptr_t)r->next % alignment) % alignment;

		if (pad <= (size_t)(r->end - r->next) && size <= (size_t)(r->end - r->next) - pad) {
			p = r->next + pad;
			r->next = p + size;
		}
	}
	/* Backed under the lock: a failure gives the space back at once. */
	if (p && *commit && rewire_populate(r->arena, p, size, 0)) {
		r->next = p;
		p = NULL;
	}
	pthread_mutex_unlock(&r->lock);
	/* Committed now or later, holes are backed zeroed (rewire_populate
	 * without REWIRE_POPULATE_RECYCLE): zero either way. */
	if (p)
		*zero = true;
	return p;
}

static void rj_destroy(extent_hooks_t *hooks, void *addr, size_t size, bool committed,
		       unsigned index)
{
	(void)index;
	if (committed)
		rewire_discard(of(hooks)->arena, addr, size);
}

static bool rj_commit(extent_hooks_t *hooks, void *addr, size_t size, size_t offset,
		      size_t length, unsigned index)
{
	(void)size;
	(void)index;
	return rewire_populate(of(hooks)->arena, (char *)addr + offset, length, 0) != 0;
}

static bool rj_decommit(extent_hooks_t *hooks, void *addr, size_t size, size_t offset,
			size_t length, unsigned index)
{
	(void)size;
	(void)index;
	return rewire_discard(of(hooks)->arena, (char *)addr + offset, length) != 0;
}

/* Extents are parts of one run: any may be split or merged. */
static bool rj_split(extent_hooks_t *hooks, void *addr, size_t size, size_t size_a,
		     size_t size_b, bool committed, unsigned index)
{
	(void)hooks;
	(void)addr;
	(void)size;
	(void)size_a;
	(void)size_b;
	(void)committed;
	(void)index;
	return false;
}

static bool rj_merge(extent_hooks_t *hooks, void *addr_a, size_t size_a, void *addr_b,
		     size_t size_b, bool committed, unsigned index)
{
	(void)hooks;
	(void)addr_a;
	(void)size_a;
	(void)addr_b;
	(void)size_b;
	(void)committed;
	(void)index;
	return false;
}

int rewire_jemalloc_create(struct rewire_arena *arena, size_t size, unsigned *arena_index)
{
	struct rewire_stats st;
	struct rj_arena *r;
	extent_hooks_t *hooks;
	size_t len = sizeof(r->index);
	int ret;

	if (!arena || !size || !arena_index)
		return -EINVAL;
	ret = rewire_arena_stats(arena, &st);
	if (ret)
		return ret;
	/* jemalloc commits and decommits base pages */
	if (st.page_size != (size_t)sysconf(_SC_PAGESIZE))
		return -EINVAL;
	/* From jemalloc's automatic arenas, as the caller's own state is. */
	r = mallocx(sizeof(*r), MALLOCX_ZERO);
	if (!r)
		return -ENOMEM;
	r->run = rewire_alloc(arena, size, REWIRE_ALLOC_HOLES);
	if (!r->run) {
		ret = -errno;
		dallocx(r, 0);
		return ret;
	}
	r->hooks = (extent_hooks_t){
		.alloc = rj_alloc,
		.destroy = rj_destroy,
		.commit = rj_commit,
		.decommit = rj_decommit,
		.split = rj_split,
		.merge = rj_merge,
	};
	r->arena = arena;
	r->next = r->run;
	r->end = r->run + rewire_usable_size(arena, r->run);
	pthread_mutex_init(&r->lock, NULL);
	hooks = &r->hooks;
	ret = mallctl("arenas.create", &r->index, &len, &hooks, sizeof(extent_hooks_t *));
	if (ret) {
		rewire_free(arena, r->run);
		pthread_mutex_destroy(&r->lock);
		dallocx(r, 0);
		return -ret;
	}
	pthread_mutex_lock(&registry_lock);
	r->next_arena = registry;
	registry = r;
	pthread_mutex_unlock(&registry_lock);
	*arena_index = r->index;
	return 0;
}

int rewire_jemalloc_flags(unsigned arena_index)
{
	return MALLOCX_ARENA(arena_index) | MALLOCX_TCACHE_NONE;
}

int rewire_jemalloc_destroy(unsigned arena_index)
{
	struct rj_arena **p, *r;
	char name[64];
	int ret;

	pthread_mutex_lock(&registry_lock);
	for (p = &registry; *p && (*p)->index != arena_index; p = &(*p)->next_arena)
		;
	r = *p;
	if (!r) {
		pthread_mutex_unlock(&registry_lock);
		return -ENOENT;
	}
	/* jemalloc destroys every extent through the hooks meanwhile. */
	snprintf(name, sizeof(name), "arena.%u.destroy", arena_index);
	ret = mallctl(name, NULL, NULL, NULL, 0);
	if (!ret)
		*p = r->next_arena;
	pthread_mutex_unlock(&registry_lock);
	if (ret)
		return -ret;
	rewire_free(r->arena, r->run);
	pthread_mutex_destroy(&r->lock);
	dallocx(r, 0);
	return 0;
}
