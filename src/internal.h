/* What the files of src/ share: the arena, the internal page operation and
 * the backend interface. Nothing here is part of the public API. */
#ifndef REWIRE_INTERNAL_H
#define REWIRE_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rewire.h"

/* A validated page operation; addresses are page aligned and inside the arena. */
struct page_op {
	enum rewire_op_type type;
	char *dst;
	char *src;		/* NULL for permutations */
	size_t npages;
	const size_t *perm;	/* REWIRE_OP_PERMUTE only */
	uint32_t flags;		/* REWIRE_OP_REPLACE, REWIRE_OP_RECYCLE, RW_OP_FROM_SPARE */
	uint64_t *was;		/* the backed bits before, while a batch is checked */
};

/* A move whose source is a spare frame (an evicted page's), not data; and
 * one the calling batch itself evicted, which it holds claimed. */
#define RW_OP_FROM_SPARE (1u << 31)
#define RW_OP_OWN_SPARE (1u << 30)

#define SIZE_CLASSES 32

/* What a backend reports back from one call. */
struct apply_result {
	size_t done;		/* operations fully applied */
	uint64_t remapped;	/* pages moved by page-table change */
	uint64_t copied;	/* pages moved by copying */
};

/* Measured costs in nanoseconds, for choosing between remapping and copying. */
struct costs {
	double copy_page;	/* memcpy of one page in place (swap, permute) */
	double copy_call;	/* a copying move into holes: fixed part */
	double copy_per_page;	/* and per page (populate, copy, discard) */
	double remap_call;	/* a page-table move: fixed part */
	double remap_per_page;	/* and per page */
};

/*
 * One mechanism that moves pages. A batch goes to the backend in one call
 * (rw_backend_apply): to apply() if it has one, else to the planner, which
 * uses remap(). Either way ops[0, done) end fully applied and every later
 * operation not applied at all, whatever happens; that is the invariant of
 * rewire(7). apply() starts at ops[res->done] and returns 0 when all are
 * done, -errno, or RW_APPLY_PLAN: ops[res->done] is one for the planner
 * (too large, or refused), after which apply() is called again.
 */
#define RW_APPLY_PLAN 1

struct backend {
	const char *name;
	/* Called once the arena is mapped; -EOPNOTSUPP when unusable here. */
	int (*init)(struct rewire_arena *a);
	void (*fini)(struct rewire_arena *a);
	/* Move n pages from src to the holes at dst by changing page tables;
	 * *moved counts the pages moved before an error. NULL: copy only. */
	int (*remap)(struct rewire_arena *a, char *dst, char *src, size_t n,
		     size_t *moved);
	int (*apply)(struct rewire_arena *a, const struct page_op *ops,
		     size_t nops, struct apply_result *res);
	/* One TLB flush per call, whatever it moves (the module): a batch's
	 * discards join the call as moves of their pages to the cache. */
	bool flush_per_call;
	/*
	 * For backends with a limited resource (mremap: vm.max_map_count).
	 * remap_calls: how many calls of remap() moving [src, src + n) takes.
	 * room_for: whether that many calls fit, keeping the backend's
	 * headroom; the planner asks before an operation starts and copies
	 * instead when the answer is no. tidy: the free holes [p, p + n) that
	 * staged pages passed through may be made one mapping again. Each may
	 * be NULL: one call, always room, nothing to tidy.
	 */
	size_t (*remap_calls)(const struct rewire_arena *a, const char *src, size_t n);
	bool (*room_for)(struct rewire_arena *a, size_t calls);
	void (*tidy)(struct rewire_arena *a, char *p, size_t n);
};

extern const struct backend rw_backend_kmod;
extern const struct backend rw_backend_copy;
extern const struct backend rw_backend_uffd;
extern const struct backend rw_backend_mremap;

/*
 * Threads are given slots 0 to SLOTS - 1 in turn (pages.c, rw_slot()). What
 * a slot writes sits on cache lines of its own, so threads in different
 * slots never write a common line for it: its share of the counters, which
 * the statistics sum, where it last staged pages, and its cache of runs.
 *
 * The cache (alloc.c, doc/threads.md): runs freed by the slot's threads,
 * kept for their next allocations, still live runs and claimed in the
 * arena's bitmaps so nothing else takes or operates on them; oldest first.
 * Only once an arena is shared by threads.
 */
#define SLOTS 16
#define TCACHE_RUNS 8
#define TCACHE_PAGES 1024	/* at most; see tcache_pages() */

struct slot {
	pthread_mutex_t lock;	/* the cache's */
	size_t nruns;
	size_t pages;		/* read without the lock by statistics */
	struct {
		size_t start, n;
	} run[TCACHE_RUNS];
	/* Written with relaxed atomics: threads may share a slot. */
	uint64_t batches, ops, pages_remapped, pages_copied;
	long live;		/* pages made live less pages made free */
	size_t stage;		/* where its last stage began, or SIZE_MAX */
} __attribute__((aligned(64)));

#define ON_OWN_LINE __attribute__((aligned(64)))

/*
 * The busy map's words, which threads claiming and releasing disjoint
 * pages write, each on a cache line of its own: a word apart from the next
 * by a line (bitmap.h, *_s). Its 64 pages are the most that two threads'
 * claims share; the map takes a byte a page.
 */
#define BUSY_STRIDE 8

/*
 * An arena. Pages change state only under a claim (busy bits, pages.c);
 * lock serializes only realloc and the dropping of cached pages, and is
 * never held across a system call (doc/threads.md). The fields every call
 * reads come first and are written only at creation; each field that many
 * threads write has a cache line of its own.
 */
struct rewire_arena {
	char *base;
	size_t npages;
	size_t page_size;
	unsigned int page_shift;
	bool huge;		/* pages of rw_huge_page_size(), as THPs */
	size_t budget_pages;
	unsigned int flags;
	int numa_node;
	unsigned long fork_gen;	/* rw_fork_generation when created */

	/* One bit per page. */
	uint64_t *live;		/* in a live run */
	uint64_t *head;		/* first page of a live run */
	uint64_t *backed;	/* holds data (committed against the budget) */
	uint64_t *busy;		/* claimed by a call in progress, a word a line */
	/* A hole of a live run whose frame is still mapped, evicted for
	 * recycling: counted against the budget, never backed too. */
	uint64_t *spare;
	/* One per bitmap word: changes of its live and head bits, for
	 * readers that must see them whole (pages.c). */
	uint64_t *seq;

	const struct backend *backend;
	void *backend_data;
	bool plan;		/* choose per operation between remap and copy */
	bool lower;		/* batches run_lowered(): backend->flush_per_call */
	struct costs costs;

	/* Measured over modelled cost, copying [0] and remapping [1], by
	 * log2 of the operation's pages; the planner learns these as it goes
	 * (read and written atomically, rarely written). */
	double correction[2][SIZE_CLASSES] ON_OWN_LINE;

	size_t nbacked ON_OWN_LINE;	/* backed pages, and those being backed */
	size_t copying;		/* of them, taken by copies for a moment */
	size_t first_free ON_OWN_LINE;	/* no free page below this index */
	size_t cache_top ON_OWN_LINE;	/* no cached page at or above this index */

	/* The arena's first user, until another thread calls: caches on. */
	unsigned long first_user ON_OWN_LINE;
	bool shared;
	/* Searches waiting for free pages that other calls hold: while there
	 * are any, stages and a kmod batch's holes are not taken from free
	 * pages (pages.c). Rarely written. */
	unsigned int waiters;

	pthread_mutex_t lock ON_OWN_LINE;
	size_t dropping;	/* cached pages being discarded now; lock held */

	/* Spare frames, newest last, for recycling populates to take; an
	 * entry whose page is no longer spare is passed over (pages.c). */
	struct {
		pthread_mutex_t lock;
		size_t *page;
		size_t n, cap;
		size_t count;	/* pages spare now */
	} spares ON_OWN_LINE;

	struct slot slot[SLOTS];
};

extern unsigned long rw_fork_generation;

static inline bool arena_forked(const struct rewire_arena *a)
{
	return a->fork_gen != __atomic_load_n(&rw_fork_generation, __ATOMIC_RELAXED);
}

static inline size_t page_index(const struct rewire_arena *a, const void *p)
{
	return (size_t)((const char *)p - a->base) >> a->page_shift;
}

/*
 * Where a search for free pages to use (cached pages to recycle, holes to
 * cache discarded pages in) starts: below it there is none, unless another
 * thread freed one a moment ago, which such a search may pass over. In a
 * buffer manager's arena the pages below are one huge live run.
 */
static inline size_t rw_free_floor(const struct rewire_arena *a)
{
	return __atomic_load_n(&a->first_free, __ATOMIC_RELAXED);
}

/* Whether a search waits for free pages that other calls hold. */
static inline bool rw_searches_waiting(const struct rewire_arena *a)
{
	return __atomic_load_n(&a->waiters, __ATOMIC_RELAXED) != 0;
}

/* Where a search for cached pages to recycle may stop. */
static inline size_t rw_cache_top(const struct rewire_arena *a)
{
	size_t top = __atomic_load_n(&a->cache_top, __ATOMIC_RELAXED);

	return top < a->npages ? top : a->npages;
}

/* Free pages up to end may be backed now: raise cache_top to it. */
static inline void rw_cache_grew(struct rewire_arena *a, size_t end)
{
	size_t top = __atomic_load_n(&a->cache_top, __ATOMIC_RELAXED);

	while (top < end && !__atomic_compare_exchange_n(&a->cache_top, &top, end, true,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static inline char *page_addr(const struct rewire_arena *a, size_t i)
{
	return a->base + (i << a->page_shift);
}

/* The first page of [p, p + len): -EINVAL unless page aligned and not
 * empty, -EFAULT unless inside the arena. */
static inline int rw_page_range(const struct rewire_arena *a, const void *p, size_t len,
				size_t *first)
{
	uintptr_t addr = (uintptr_t)p, base = (uintptr_t)a->base;
	size_t size = a->npages << a->page_shift;

	if ((addr | len) & (a->page_size - 1) || !len)
		return -EINVAL;
	if (addr < base || addr - base >= size || len > size - (addr - base))
		return -EFAULT;
	*first = (addr - base) >> a->page_shift;
	return 0;
}

/*
 * The layers of src/, bottom first. Each file calls only the layers below
 * it; the backends are driven by the plan and call only layers 0 and 1.
 */

/* Layer 0, sys.c: system calls on the arena's memory, and the clock. */
size_t rw_base_page_size(void);
/* The number a file such as /proc/sys/vm/max_map_count holds, or -1. */
long rw_read_long(const char *path);
size_t rw_huge_page_size(void);
int rw_map_arena(size_t len, size_t align, int node, bool unlocked, char **out);
size_t rw_huge_mapped(const struct rewire_arena *a);
int rw_pages_collapse(struct rewire_arena *a, size_t start, size_t n);
int rw_map_holes(struct rewire_arena *a, size_t start, size_t n);
int rw_pages_populate(struct rewire_arena *a, size_t start, size_t n);
int rw_pages_discard(struct rewire_arena *a, size_t start, size_t n);
double rw_now_ns(void);
void rw_note_bookkeeping(double ns);
double rw_work_ns(void);
void rw_copy_costs(struct costs *c);

/* Layer 1, pages.c: the page states, the claims and the searches, the lock
 * budget and the counters. */
extern __thread bool rw_undoing;	/* moving pages back after a failure */
unsigned long rw_thread_id(void);
unsigned int rw_slot(void);
bool rw_claim(struct rewire_arena *a, size_t start, size_t n);
/* Waiting, yielding, for what another call holds for a bounded time:
 * rw_wait_more is false once it has waited long enough. */
struct rw_wait {
	struct rewire_arena *a;
	unsigned int rounds;
	double since;
};
bool rw_wait_more(struct rw_wait *w);
void rw_wait_done(struct rw_wait *w);
void rw_release(struct rewire_arena *a, const char *p, size_t n);
size_t rw_claim_run(struct rewire_arena *a, size_t n);
bool rw_claim_at(struct rewire_arena *a, size_t i, size_t n);
char *rw_claim_stage(struct rewire_arena *a, size_t n);
void rw_release_stage(struct rewire_arena *a, char *stage, size_t n);
size_t rw_claim_free(struct rewire_arena *a, size_t *i, size_t end, size_t want, bool backed);
size_t rw_cached_pages(const struct rewire_arena *a);
int rw_run_at(const struct rewire_arena *a, const void *p, size_t *start, size_t *n);
void rw_mark_live(struct rewire_arena *a, size_t start, size_t n, bool head);
void rw_mark_free(struct rewire_arena *a, size_t start, size_t n, bool head);
void rw_split_run(struct rewire_arena *a, size_t i);
void rw_page_states(const struct rewire_arena *a, size_t start, size_t n, unsigned char *vec);
void rw_discard_hole_pages(struct rewire_arena *a, size_t start, size_t n);
void rw_spare_push(struct rewire_arena *a, size_t start, size_t n);
size_t rw_spare_claim(struct rewire_arena *a, size_t want, size_t *out, size_t *mine);
void rw_spare_keep(struct rewire_arena *a, size_t start, size_t n);
void rw_spare_keep_end(void);
void rw_spare_return(struct rewire_arena *a, const struct page_op *op);
size_t rw_spare_count(const struct rewire_arena *a);
void rw_spare_counted(struct rewire_arena *a, long n);
bool rw_budget_take(struct rewire_arena *a, size_t n);
size_t rw_budget_take_upto(struct rewire_arena *a, size_t want);
void rw_budget_give(struct rewire_arena *a, size_t n);
void rw_count(struct rewire_arena *a, uint64_t batches, uint64_t ops, uint64_t remapped,
	      uint64_t copied);
size_t rw_live_pages(const struct rewire_arena *a);

/* Layer 2, plan.c: applying checked operations through the backend. */
void rw_apply_state(struct rewire_arena *a, const struct page_op *op, bool undo);
int rw_backend_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
		     struct apply_result *res);
void rw_record(struct rewire_arena *a, const struct page_op *ops, size_t nops,
	       const struct apply_result *res, int ret);

/* Layer 3, alloc.c: runs, thread caches, the budget's policy, the cache. */
size_t rw_flush_tcaches(struct rewire_arena *a);
size_t rw_tcache_pages(struct rewire_arena *a);
int rw_drop_cache(struct rewire_arena *a);
int rw_populate_claimed(struct rewire_arena *a, size_t start, size_t n, bool recycle);
int rw_discard_claimed(struct rewire_arena *a, size_t start, size_t n);
void rw_evict_claimed(struct rewire_arena *a, size_t start, size_t n, bool kept);
int rw_drop_spares(struct rewire_arena *a, size_t start, size_t n);
size_t rw_drop_all_spares(struct rewire_arena *a);

/* Layer 4, ops.c and arena.c: the public calls. */

#endif
