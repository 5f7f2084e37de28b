/* Page runs: first-fit allocation over the arena's page bitmaps, free, and
 * realloc that grows in place or moves pages through the backend. */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include "bitmap.h"
#include "internal.h"

#define ALLOC_FLAGS (REWIRE_ALLOC_ZERO | REWIRE_ALLOC_HOLES)

/*
 * Threads (doc/threads.md): every call claims the pages it works on (busy
 * bits, set with compare-and-swap), then changes their state and makes its
 * system calls, then releases them. Allocation and free take no lock;
 * a->lock serializes realloc and the dropping of cached pages among
 * themselves, and is dropped while the kernel works.
 */
static void lock(struct rewire_arena *a)
{
	pthread_mutex_lock(&a->lock);
}

static void unlock(struct rewire_arena *a)
{
	pthread_mutex_unlock(&a->lock);
}

/*
 * Claim the lowest n pages that are free and unclaimed from from on, and
 * return their index, or npages. No lock: a claim that fails (another call
 * took a page first) moves the search on, and one that succeeds is checked
 * again, as pages change state only under a claim.
 */
static size_t claim_free_from(struct rewire_arena *a, size_t n, size_t i)
{
	size_t end = a->npages;

	while (n <= end && (i = bits_find2(a->live, a->busy, i, end - n + 1, false)) <= end - n) {
		size_t j = bits_find2(a->live, a->busy, i, i + n, true);

		if (j < i + n) {
			i = j;
			continue;
		}
		/* Only free pages: a claim of a live page, however short, could
		 * make its owner's call fail. */
		if (bits_claim_unless(a->busy, a->live, i, n)) {
			if (bits_all(a->live, i, n, false))
				return i;
			bits_release(a->busy, i, n);
		}
		i++;
	}
	return end;
}

/*
 * first_free is a hint: no free page below it, as far as this thread saw.
 * Threads may leave it too high for a moment, so a search that finds
 * nothing from it looks again from the start.
 */
static size_t claim_free(struct rewire_arena *a, size_t n)
{
	size_t from = __atomic_load_n(&a->first_free, __ATOMIC_RELAXED);
	size_t i = claim_free_from(a, n, from);

	return i == a->npages && from ? claim_free_from(a, n, 0) : i;
}

/*
 * Claim n free pages that are all holes, to stage pages in, or NULL. Cached
 * pages are left alone: staging never changes what the arena holds. No
 * lock: pages change state only under a claim, so once the claim is taken
 * they are checked again.
 */
char *rw_claim_stage(struct rewire_arena *a, size_t n)
{
	size_t i, end = a->npages;

	for (i = __atomic_load_n(&a->first_free, __ATOMIC_RELAXED); i < end;) {
		size_t stop;

		i = bits_find2(a->live, a->busy, i, end, false);
		i = bits_find(a->backed, i, end, false);
		if (i >= end || bit_test(a->live, i) || bit_test(a->busy, i))
			continue;
		/* No further than n: the free stretch may be most of the arena. */
		stop = bits_find2(a->live, a->busy, i, n < end - i ? i + n : end, true);
		stop = bits_find(a->backed, i, stop, true);
		if (stop - i < n) {
			i = stop;
			continue;
		}
		if (bits_claim_unless(a->busy, a->live, i, n)) {
			if (bits_all(a->live, i, n, false) && bits_all(a->backed, i, n, false))
				return page_addr(a, i);
			bits_release(a->busy, i, n);
		}
		i++;
	}
	return NULL;
}

/*
 * Claim pages of live runs for a call of their owner. Another call holds
 * them (EBUSY, false), or a search for free pages touched them for an
 * instant: a few tries tell which.
 */
bool rw_claim(struct rewire_arena *a, size_t start, size_t n)
{
	for (int tries = 0; tries < 32; tries++) {
		if (bits_claim(a->busy, start, n))
			return true;
		if (tries % 8 == 7)
			sched_yield();
	}
	return false;
}

void rw_release(struct rewire_arena *a, const char *p, size_t n)
{
	bits_release(a->busy, page_index(a, p), n);
}

/* The run starting at p, or -EINVAL. */
static int run_at(const struct rewire_arena *a, const void *p, size_t *start, size_t *n)
{
	uintptr_t addr = (uintptr_t)p, base = (uintptr_t)a->base;

	if (addr < base || addr - base >= a->npages << a->page_shift ||
	    addr & (a->page_size - 1))
		return -EINVAL;
	*start = page_index(a, p);
	if (!bit_test(a->head, *start))
		return -EINVAL;
	/*
	 * A run ends at the first free page or at the next run's head. A
	 * neighbour being allocated or freed changes both without a lock: read
	 * until two readings agree.
	 */
	for (size_t prev = 0, tries = 0; tries < 16; tries++) {
		*n = bits_find_end(a->live, a->head, *start + 1, a->npages) - *start;
		if (*n == prev)
			break;
		prev = *n;
	}
	return 0;
}

/*
 * Claimed pages become a run, or free. The counters and the hint are kept
 * with atomics: no lock. The head is set before the pages are live, so that
 * no run before them seems to grow into them.
 */
static void mark_live(struct rewire_arena *a, size_t start, size_t n, bool head)
{
	size_t hint = start;

	if (head)
		bits_set(a->head, start, 1);
	bits_set(a->live, start, n);
	__atomic_add_fetch(&a->nlive, n, __ATOMIC_RELAXED);
	/* Move the hint past these pages only if it is here and nothing lowered
	 * it meanwhile; only then is the scan for the next free page needed. It
	 * stops at free pages that are only claimed: they are free. */
	if (__atomic_load_n(&a->first_free, __ATOMIC_RELAXED) == start)
		__atomic_compare_exchange_n(&a->first_free, &hint,
					    bits_find(a->live, start, a->npages, false),
					    false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

static void mark_free(struct rewire_arena *a, size_t start, size_t n)
{
	size_t hint = __atomic_load_n(&a->first_free, __ATOMIC_RELAXED);

	bits_clear(a->live, start, n);
	if (bits_find(a->backed, start, start + n, true) < start + n)
		rw_cache_grew(a, start + n);
	__atomic_sub_fetch(&a->nlive, n, __ATOMIC_RELAXED);
	while (start < hint && !__atomic_compare_exchange_n(&a->first_free, &hint, start, false,
							    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/*
 * Free claimed pages and release them: holes the program touched are
 * discarded first, without the lock (dropped if the caller holds it), so
 * the pages go back holding only what the arena counts (backed pages stay,
 * as the cache).
 */
static void free_claimed(struct rewire_arena *a, size_t start, size_t n, bool head,
			 bool locked)
{
	if (bits_count(a->backed, start, n) < n) {
		if (locked)
			unlock(a);
		rw_discard_hole_pages(a, start, n);
		if (locked)
			lock(a);
	}
	/* Not live first, then no head: no run before it seems to grow into
	 * it; and both before the claim goes, so no new run loses its head. */
	mark_free(a, start, n);
	if (head)
		bits_clear(a->head, start, 1);
	bits_release(a->busy, start, n);
}

/* Back the holes of claimed pages, zeroing the others if asked; no lock. */
static int populate_claimed(struct rewire_arena *a, size_t start, size_t n, bool zero)
{
	size_t end = start + n;
	int ret;

	for (size_t i = start; i < end;) {
		size_t j;

		if (bit_test(a->backed, i)) {
			j = bits_find(a->backed, i, end, false);
			if (zero)
				memset(page_addr(a, i), 0, (j - i) << a->page_shift);
		} else {
			j = bits_find(a->backed, i, end, true);
			/* Holes may have been touched: start them from zero. */
			rw_pages_discard(a, i, j - i);
			if (!(a->flags & REWIRE_ONFAULT)) {
				ret = rw_pages_populate(a, i, j - i);
				if (ret) {
					rw_discard_hole_pages(a, start, j - start);
					return ret;
				}
			}
		}
		i = j;
	}
	return 0;
}

/*
 * Take the lock budget for the holes of claimed pages, before anything is
 * populated, so it is never exceeded, even for a moment: with a
 * compare-and-swap, no lock. If it is short, the cache is given back first
 * (with the lock), but only when that makes room, so a failing call drops
 * nothing. The lock is held on entry and exit if locked.
 */
static int reserve(struct rewire_arena *a, size_t start, size_t n, size_t *holes, bool locked)
{
	size_t used = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED);
	int ret = 0;

	*holes = n - bits_count(a->backed, start, n);
	while (used + *holes <= a->budget_pages)
		if (__atomic_compare_exchange_n(&a->nbacked, &used, used + *holes, true,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED))
			return 0;
	/* Pages kept in threads' caches go back first, as cache. */
	rw_flush_tcaches(a);
	if (!locked)
		lock(a);
	if (__atomic_load_n(&a->nbacked, __ATOMIC_RELAXED) - rw_cached_pages(a) + *holes >
	    a->budget_pages)
		ret = -ENOMEM;
	else
		rw_drop_cache(a);
	/* Another thread may have taken the room meanwhile, or kept the
	 * pages the drop would have given back. */
	used = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED);
	while (!ret) {
		if (used + *holes > a->budget_pages)
			ret = -ENOMEM;
		else if (__atomic_compare_exchange_n(&a->nbacked, &used, used + *holes, true,
						     __ATOMIC_RELAXED, __ATOMIC_RELAXED))
			break;
	}
	if (!locked)
		unlock(a);
	return ret;
}

/* Back claimed pages within the lock budget. Lock held on entry and exit;
 * dropped while the kernel works. */
static int back_claimed(struct rewire_arena *a, size_t start, size_t n, bool zero)
{
	size_t holes;
	int ret = reserve(a, start, n, &holes, true);

	if (ret)
		return ret;
	unlock(a);
	ret = populate_claimed(a, start, n, zero);
	lock(a);
	if (ret) {
		__atomic_sub_fetch(&a->nbacked, holes, __ATOMIC_RELAXED);
		return ret;
	}
	bits_set(a->backed, start, n);
	return 0;
}

/* Turn every claimed page into a hole, dropping cached data; the lock, if
 * held, is dropped while the kernel works. */
static void make_holes(struct rewire_arena *a, size_t start, size_t n, bool locked)
{
	size_t backed = bits_count(a->backed, start, n);

	if (!backed)
		return;
	if (locked)
		unlock(a);
	rw_pages_discard(a, start, n);
	if (locked)
		lock(a);
	bits_clear(a->backed, start, n);
	__atomic_sub_fetch(&a->nbacked, backed, __ATOMIC_RELAXED);
}

/*
 * Thread caches (doc/threads.md). A thread's slot is fixed when it first
 * calls; an arena keeps no cache until a second slot calls it, so that a
 * program with one thread gets exact first fit.
 */
static __thread int my_slot = -1;
static int next_slot;

static struct tcache *my_tcache(struct rewire_arena *a)
{
	int first = -1;

	if (my_slot < 0)
		my_slot = __atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED) % TCACHE_SLOTS;
	if (!__atomic_load_n(&a->shared, __ATOMIC_RELAXED)) {
		if (__atomic_compare_exchange_n(&a->first_slot, &first, my_slot, false,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED) ||
		    first == my_slot)
			return NULL;
		__atomic_store_n(&a->shared, true, __ATOMIC_RELAXED);
	}
	return &a->tcache[my_slot];
}

/*
 * Pages a slot may keep: 1,024, but never more than a 64th of the arena,
 * so that all the slots together keep at most a quarter of a small arena
 * from the threads that need it.
 */
static size_t tcache_pages(const struct rewire_arena *a)
{
	size_t share = a->npages / (4 * (size_t)TCACHE_SLOTS);

	return share < TCACHE_PAGES ? share : TCACHE_PAGES;
}

/* Free a claimed run that a cache gave up. */
static void uncache(struct rewire_arena *a, size_t start, size_t n)
{
	mark_free(a, start, n);
	bits_clear(a->head, start, 1);
	bits_release(a->busy, start, n);
}

/* The smallest cached run of n pages or more: its first n pages, still
 * claimed, live and a run, or npages. */
static size_t tcache_take(struct rewire_arena *a, struct tcache *tc, size_t n)
{
	size_t best = TCACHE_RUNS, start = a->npages;

	pthread_mutex_lock(&tc->lock);
	for (size_t k = 0; k < tc->nruns; k++)
		if (tc->run[k].n >= n && (best == TCACHE_RUNS || tc->run[k].n < tc->run[best].n))
			best = k;
	if (best < TCACHE_RUNS) {
		start = tc->run[best].start;
		tc->run[best].start += n;
		tc->run[best].n -= n;
		/* What is left stays a run of its own, so the one taken ends. */
		if (tc->run[best].n)
			bits_set(a->head, start + n, 1);
		else
			memmove(&tc->run[best], &tc->run[best + 1],
				(--tc->nruns - best) * sizeof(tc->run[0]));
		__atomic_store_n(&tc->pages, tc->pages - n, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&tc->lock);
	return start;
}

/* Keep a claimed run, giving up the oldest ones to make room. */
static void tcache_put(struct rewire_arena *a, struct tcache *tc, size_t start, size_t n)
{
	size_t out[TCACHE_RUNS][2], nout = 0;

	pthread_mutex_lock(&tc->lock);
	while (tc->nruns && (tc->nruns == TCACHE_RUNS || tc->pages + n > tcache_pages(a))) {
		out[nout][0] = tc->run[0].start;
		out[nout++][1] = tc->run[0].n;
		__atomic_store_n(&tc->pages, tc->pages - tc->run[0].n, __ATOMIC_RELAXED);
		memmove(&tc->run[0], &tc->run[1], --tc->nruns * sizeof(tc->run[0]));
	}
	tc->run[tc->nruns].start = start;
	tc->run[tc->nruns++].n = n;
	__atomic_store_n(&tc->pages, tc->pages + n, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&tc->lock);
	for (size_t k = 0; k < nout; k++)
		uncache(a, out[k][0], out[k][1]);
}

/* Every thread's cached runs become free pages; how many there were. */
size_t rw_flush_tcaches(struct rewire_arena *a)
{
	size_t total = 0;

	for (int k = 0; k < TCACHE_SLOTS; k++) {
		struct tcache *tc = &a->tcache[k];
		size_t out[TCACHE_RUNS][2], nout;

		pthread_mutex_lock(&tc->lock);
		nout = tc->nruns;
		for (size_t i = 0; i < nout; i++) {
			out[i][0] = tc->run[i].start;
			out[i][1] = tc->run[i].n;
		}
		tc->nruns = 0;
		__atomic_store_n(&tc->pages, 0, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&tc->lock);
		for (size_t i = 0; i < nout; i++) {
			uncache(a, out[i][0], out[i][1]);
			total += out[i][1];
		}
	}
	return total;
}

size_t rw_tcache_pages(struct rewire_arena *a)
{
	size_t n = 0;

	for (int k = 0; k < TCACHE_SLOTS; k++)
		n += __atomic_load_n(&a->tcache[k].pages, __ATOMIC_RELAXED);
	return n;
}

/* No lock, but to give the cache back when the budget is short. */
void *rewire_alloc(struct rewire_arena *a, size_t len, unsigned int flags)
{
	struct tcache *tc;
	size_t n, start, holes;
	int ret;

	if (!a || !len || flags & ~ALLOC_FLAGS) {
		errno = EINVAL;
		return NULL;
	}
	if (arena_forked(a)) {
		errno = EFAULT;
		return NULL;
	}
	if (len > a->npages << a->page_shift) {
		errno = ENOMEM;
		return NULL;
	}
	n = (len + a->page_size - 1) >> a->page_shift;

	tc = (flags & REWIRE_ALLOC_HOLES) ? NULL : my_tcache(a);
	if (tc && (start = tcache_take(a, tc, n)) < a->npages) {
		/* Backed, live, claimed and with its head already. */
		if (flags & REWIRE_ALLOC_ZERO)
			memset(page_addr(a, start), 0, n << a->page_shift);
		bits_release(a->busy, start, n);
		return page_addr(a, start);
	}
	start = claim_free(a, n);
	/* Threads' caches may hold what is missing. */
	if (start == a->npages && rw_flush_tcaches(a))
		start = claim_free(a, n);
	if (start == a->npages) {
		errno = ENOMEM;
		return NULL;
	}
	mark_live(a, start, n, true);
	if (flags & REWIRE_ALLOC_HOLES) {
		make_holes(a, start, n, false);
		bits_release(a->busy, start, n);
		return page_addr(a, start);
	}
	ret = reserve(a, start, n, &holes, false);
	if (!ret) {
		ret = populate_claimed(a, start, n, flags & REWIRE_ALLOC_ZERO);
		if (!ret) {
			bits_set(a->backed, start, n);
			bits_release(a->busy, start, n);
			return page_addr(a, start);
		}
		/* The budget taken goes back. */
		__atomic_sub_fetch(&a->nbacked, holes, __ATOMIC_RELAXED);
	}
	mark_free(a, start, n);
	bits_clear(a->head, start, 1);
	bits_release(a->busy, start, n);
	errno = -ret;
	return NULL;
}

void *rewire_zalloc(struct rewire_arena *a, size_t len)
{
	return rewire_alloc(a, len, REWIRE_ALLOC_ZERO);
}

/* No lock: the run is claimed, then freed. */
int rewire_free(struct rewire_arena *a, void *p)
{
	struct tcache *tc;
	size_t start, n, again;

	if (!a)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	if (!p)
		return 0;
	for (int tries = 0;; tries++) {
		int ret = run_at(a, p, &start, &n);

		if (ret)
			return ret;
		/* Another thread operates on the run, or frees it too. */
		if (!rw_claim(a, start, n))
			return -EBUSY;
		/* Claimed: it cannot change now. Is it the run it seemed? A
		 * neighbour that was being freed may have made it seem longer. */
		if (!run_at(a, p, &start, &again) && again == n)
			break;
		bits_release(a->busy, start, n);
		if (tries == 8)
			return -EBUSY;
	}
	/* All backed, it needs no system call: keep it for this thread. */
	if (n <= tcache_pages(a) && (tc = my_tcache(a)) && bits_all(a->backed, start, n, true)) {
		tcache_put(a, tc, start, n);
		return 0;
	}
	free_claimed(a, start, n, true, false);
	return 0;
}

size_t rewire_usable_size(struct rewire_arena *a, const void *p)
{
	size_t start, n = 0;
	int ret;

	if (!a || !p) {
		errno = EINVAL;
		return 0;
	}
	if (arena_forked(a)) {
		errno = EFAULT;
		return 0;
	}
	ret = run_at(a, p, &start, &n);
	if (ret) {
		errno = -ret;
		return 0;
	}
	return n << a->page_shift;
}

/* Move every backed page of [to, to + n) back to [from, from + n). */
static int move_back(struct rewire_arena *a, size_t from, size_t to, size_t n)
{
	struct page_op back;
	size_t done;

	for (size_t k = to; (k = bits_find(a->backed, k, to + n, true)) < to + n;) {
		size_t m = bits_find(a->backed, k, to + n, false);

		back = (struct page_op){ .type = REWIRE_OP_MOVE, .dst = page_addr(a, from + (k - to)),
					 .src = page_addr(a, k), .npages = m - k };
		bits_set(a->backed, from + (k - to), m - k);
		bits_clear(a->backed, k, m - k);
		if (rw_ops_apply(a, &back, 1, &done))
			return -EIO;
		k = m;
	}
	return 0;
}

/*
 * Move the claimed run [from, from + n) to the claimed pages at to, one
 * operation per stretch of backed pages (holes travel as holes), in
 * batches, each applied without the lock. Either every page moves or, after
 * moving the moved ones back, none has. Lock held on entry and exit.
 */
static int move_run(struct rewire_arena *a, size_t from, size_t to, size_t n)
{
	struct page_op ops[64];
	size_t nops = 0, done, i = from, end = from + n;
	int ret = 0;

	make_holes(a, to, n, true);
	/*
	 * A copying backend needs new pages: take them all before anything
	 * moves, so the move cannot fail halfway and need undoing (which would
	 * need pages too).
	 */
	unlock(a);
	for (size_t k = from; !a->backend->remap && (k = bits_find(a->backed, k, end, true)) < end;) {
		size_t m = bits_find(a->backed, k, end, false);

		ret = rw_pages_populate(a, to + (k - from), m - k);
		if (ret) {
			rw_pages_discard(a, to, n);
			break;
		}
		k = m;
	}
	lock(a);
	if (ret)
		return ret;
	while ((i = bits_find(a->backed, i, end, true)) < end) {
		size_t j = bits_find(a->backed, i, end, false);

		ops[nops++] = (struct page_op){ .type = REWIRE_OP_MOVE,
						.dst = page_addr(a, to + (i - from)),
						.src = page_addr(a, i), .npages = j - i };
		bits_set(a->backed, to + (i - from), j - i);
		bits_clear(a->backed, i, j - i);
		i = j;
		if (nops < sizeof(ops) / sizeof(ops[0]) &&
		    bits_find(a->backed, i, end, true) < end)
			continue;
		ret = rw_ops_apply(a, ops, nops, &done);
		if (ret) {
			/* The page states now say exactly what moved. */
			if (ret == -EIO || move_back(a, from, to, n))
				return -EIO;
			return ret;
		}
		nops = 0;
	}
	return 0;
}

/* Claim the n free pages at i, unless one of them is live or claimed. */
static bool claim_free_at(struct rewire_arena *a, size_t i, size_t n)
{
	if (n > a->npages - i || !bits_claim_unless(a->busy, a->live, i, n))
		return false;
	/* Claimed first, then checked: pages change state only under a claim. */
	if (bits_all(a->live, i, n, false))
		return true;
	bits_release(a->busy, i, n);
	return false;
}

/*
 * Lock held; the run [start, start + old_n) is claimed by the caller. If
 * in_place, fail with -ENOSPC rather than move it.
 */
static int resize(struct rewire_arena *a, size_t start, size_t old_n, size_t new_n,
		  size_t *new_start, bool in_place)
{
	size_t to, grow = new_n - old_n, tail = start + old_n, used;
	bool short_of_budget, got_tail;
	int ret;

	*new_start = start;
	if (new_n <= old_n) {
		/* The tail is claimed with the run: free it. */
		if (new_n < old_n)
			free_claimed(a, start + new_n, old_n - new_n, false, true);
		return 0;
	}
	got_tail = claim_free_at(a, tail, grow);
	/* Threads' caches may hold the pages after the run. */
	if (!got_tail && in_place && rw_flush_tcaches(a))
		got_tail = claim_free_at(a, tail, grow);
	if (got_tail) {
		mark_live(a, tail, grow, false);
		ret = back_claimed(a, tail, grow, false);
		if (ret)
			mark_free(a, tail, grow);
		bits_release(a->busy, tail, grow);
		return ret;
	}
	if (in_place)
		return -ENOSPC;
	to = claim_free(a, new_n);
	/* Threads' caches may hold what is missing. */
	if (to == a->npages && rw_flush_tcaches(a))
		to = claim_free(a, new_n);
	if (to == a->npages)
		return -ENOMEM;
	/*
	 * The new tail is the only part that needs budget. If there is not
	 * enough, the whole cache goes (the new place's included), as for an
	 * allocation; if even that would not make room, fail before changing
	 * anything.
	 */
	used = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED);
	short_of_budget = used + grow - bits_count(a->backed, to + old_n, grow) > a->budget_pages;
	/* What threads keep for reuse counts as cache, to be dropped first. */
	if (short_of_budget)
		rw_flush_tcaches(a);
	/* The new place is claimed, so its cached pages count apart. */
	if (short_of_budget && used - rw_cached_pages(a) - bits_count(a->backed, to, new_n) +
	    grow > a->budget_pages) {
		bits_release(a->busy, to, new_n);
		return -ENOMEM;
	}
	/* A run already, so no other run grows into it. */
	mark_live(a, to, new_n, true);
	if (short_of_budget) {
		make_holes(a, to, new_n, true);
		rw_drop_cache(a);
	}
	/* Back the tail before anything moves. If the move fails, it stays
	 * behind as cached pages. */
	ret = back_claimed(a, to + old_n, grow, false);
	if (!ret)
		ret = move_run(a, start, to, old_n);
	if (ret == -EIO) {
		/* Keep both ranges, the new one a run of its own: nothing is
		 * dropped, nothing reused. */
		bits_release(a->busy, to, new_n);
		return ret;
	}
	if (ret) {
		free_claimed(a, to, new_n, true, true);
		return ret;
	}
	/* The old place is free (its claim released) once it holds nothing. */
	free_claimed(a, start, old_n, true, true);
	bits_release(a->busy, to, new_n);
	*new_start = to;
	return 0;
}

/* Resize the run at p to len bytes (checked by the caller); the lock is
 * taken here. The run's new place, or an error. */
static int resize_run(struct rewire_arena *a, void *p, size_t len, bool in_place,
		      size_t *new_start)
{
	size_t start, old_n, new_n = (len + a->page_size - 1) >> a->page_shift;
	int ret;

	lock(a);
	for (int tries = 0;; tries++) {
		size_t again;

		ret = run_at(a, p, &start, &old_n);
		/* Another thread operates on the run, frees or resizes it. */
		if (!ret && !rw_claim(a, start, old_n))
			ret = -EBUSY;
		if (ret)
			break;
		/* As in rewire_free: the run it seemed? */
		if (!run_at(a, p, &start, &again) && again == old_n)
			break;
		bits_release(a->busy, start, old_n);
		if (tries == 8) {
			ret = -EBUSY;
			break;
		}
	}
	if (!ret) {
		ret = resize(a, start, old_n, new_n, new_start, in_place);
		if (*new_start == start)
			bits_release(a->busy, start, new_n < old_n ? new_n : old_n);
	}
	unlock(a);
	return ret;
}

void *rewire_realloc(struct rewire_arena *a, void *p, size_t len)
{
	size_t new_start;
	int ret;

	if (!p)
		return rewire_alloc(a, len, 0);
	if (!a || !len) {
		errno = EINVAL;
		return NULL;
	}
	if (arena_forked(a)) {
		errno = EFAULT;
		return NULL;
	}
	if (len > a->npages << a->page_shift) {
		errno = ENOMEM;
		return NULL;
	}
	ret = resize_run(a, p, len, false, &new_start);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	return page_addr(a, new_start);
}

int rewire_resize(struct rewire_arena *a, void *p, size_t len)
{
	size_t new_start;

	if (!a || !p || !len)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	if (len > a->npages << a->page_shift)
		return -ENOSPC;
	return resize_run(a, p, len, true, &new_start);
}

/*
 * Fill the holes of claimed live pages with cached pages, moved in by the
 * backend: they hold whatever they held. Stops when the cache runs out or
 * the backend refuses; the holes left stay holes. -EIO if a move could not
 * be undone (the page states may be wrong), else 0.
 */
static int recycle_into(struct rewire_arena *a, size_t start, size_t n)
{
	size_t end = start + n, i = start;

	while ((i = bits_find(a->backed, i, end, false)) < end) {
		size_t j = bits_find(a->backed, i, end, true), from, got, done;
		struct page_op op;
		int ret;

		from = rw_free_floor(a);
		got = rw_claim_free(a, &from, rw_cache_top(a), j - i, true);
		if (!got)
			return 0;
		op = (struct page_op){ .type = REWIRE_OP_MOVE, .dst = page_addr(a, i),
				       .src = page_addr(a, from), .npages = got };
		bits_set(a->backed, i, got);
		bits_clear(a->backed, from, got);
		lock(a);
		/* On failure the page states say again where the pages are. */
		ret = rw_ops_apply(a, &op, 1, &done);
		unlock(a);
		bits_release(a->busy, from, got);
		if (ret)
			return ret == -EIO ? ret : 0;
		i += got;
	}
	return 0;
}

/* Back the holes of claimed live pages, from the cache first if asked. */
int rw_populate_claimed(struct rewire_arena *a, size_t start, size_t n, bool recycle)
{
	size_t holes;
	int ret;

	if (recycle && (ret = recycle_into(a, start, n)))
		return ret;
	/* What the cache did not fill is backed with zeroed pages. */
	ret = reserve(a, start, n, &holes, false);
	if (!ret && holes) {
		ret = populate_claimed(a, start, n, false);
		if (ret)
			__atomic_sub_fetch(&a->nbacked, holes, __ATOMIC_RELAXED);
		else
			bits_set(a->backed, start, n);
	}
	return ret;
}

/* Make claimed live pages holes; their data is dropped. */
int rw_discard_claimed(struct rewire_arena *a, size_t start, size_t n)
{
	size_t backed = bits_count(a->backed, start, n);
	/* Holes too: the program may have touched them. */
	int ret = rw_pages_discard(a, start, n);

	if (!ret) {
		bits_clear(a->backed, start, n);
		__atomic_sub_fetch(&a->nbacked, backed, __ATOMIC_RELAXED);
	}
	return ret;
}
