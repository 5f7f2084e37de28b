/* Layer 3: allocation. Page runs (first fit over the arena's pages, free,
 * realloc that grows in place or moves pages through the plan), the
 * threads' caches of runs, the lock budget's policy (what is dropped when
 * it is short), the cache of freed pages, and populate and discard of
 * claimed pages. */
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
 * Spare frames in claimed pages become the pages' own: backed again, zeroed
 * if asked, their budget already taken. A freed run's become cache.
 */
static void unspare(struct rewire_arena *a, size_t start, size_t n, bool zero)
{
	size_t end = start + n;

	if (!rw_spare_count(a))
		return;
	for (size_t i = start; (i = bits_find(a->spare, i, end, true)) < end;) {
		size_t j = bits_find(a->spare, i, end, false);

		if (zero)
			memset(page_addr(a, i), 0, (j - i) << a->page_shift);
		bits_set(a->backed, i, j - i);
		bits_clear(a->spare, i, j - i);
		rw_spare_counted(a, -(long)(j - i));
		i = j;
	}
}

/* Spare frames in claimed pages are discarded, their budget given back. */
int rw_drop_spares(struct rewire_arena *a, size_t start, size_t n)
{
	size_t end = start + n;

	if (!rw_spare_count(a))
		return 0;
	for (size_t i = start; (i = bits_find(a->spare, i, end, true)) < end;) {
		size_t j = bits_find(a->spare, i, end, false);
		int ret = rw_pages_discard(a, i, j - i);

		if (ret)
			return ret;
		bits_clear(a->spare, i, j - i);
		rw_spare_counted(a, -(long)(j - i));
		rw_budget_give(a, j - i);
		i = j;
	}
	return 0;
}

/* Every spare frame on the stack is discarded (a purge, a short budget):
 * how many. */
size_t rw_drop_all_spares(struct rewire_arena *a)
{
	size_t p[64], got, mine, total = 0;

	while ((got = rw_spare_claim(a, sizeof(p) / sizeof(p[0]), p, &mine))) {
		for (size_t k = 0; k < got; k++) {
			if (!rw_drop_spares(a, p[k], 1))
				total++;
			if (k >= mine)
				bits_release_s(a->busy, BUSY_STRIDE, p[k], 1);
		}
	}
	/* Pages the stack had no room for are found in the bitmap. */
	for (size_t i = 0; rw_spare_count(a) && (i = bits_find(a->spare, i, a->npages, true)) <
	     a->npages; i++) {
		if (!bits_claim_unless_s(a->busy, BUSY_STRIDE, NULL, i, 1))
			continue;
		if (!rw_drop_spares(a, i, 1))
			total++;
		bits_release_s(a->busy, BUSY_STRIDE, i, 1);
	}
	return total;
}

/*
 * Evict claimed live pages: the backed ones become spare, keeping their
 * frames and budget for a recycling populate to take (one move each); no
 * system call. Their data is gone for the program. kept: the caller holds
 * the pages claimed until its batch ends, and its own populates may take
 * them first.
 */
void rw_evict_claimed(struct rewire_arena *a, size_t start, size_t n, bool kept)
{
	size_t end = start + n;

	for (size_t i = start; (i = bits_find(a->backed, i, end, true)) < end;) {
		size_t j = bits_find(a->backed, i, end, false);

		bits_set(a->spare, i, j - i);
		bits_clear(a->backed, i, j - i);
		rw_spare_counted(a, (long)(j - i));
		if (kept)
			rw_spare_keep(a, i, j - i);
		else
			rw_spare_push(a, i, j - i);
		i = j;
	}
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
	unspare(a, start, n, false);
	if (bits_count(a->backed, start, n) < n) {
		if (locked)
			unlock(a);
		rw_discard_hole_pages(a, start, n);
		if (locked)
			lock(a);
	}
	/* Before the claim goes, so no new run loses its head. */
	rw_mark_free(a, start, n, head);
	bits_release_s(a->busy, BUSY_STRIDE, start, n);
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
 * The budget used (*used), and how much of it would come back: spare
 * frames, drops in progress, and what copies lend themselves (their old
 * pages' budget). A copy does so without the lock, counted in copying
 * before it takes the budget and until after it gives it back: read on
 * both sides of the budget used, the two readings count every page lent in
 * it, where one alone could miss a copy that began or ended meanwhile and
 * fail a call with ENOMEM for budget that was only lent (t/evict.t's two
 * managers, about one run in ten).
 */
static size_t budget_coming_back(struct rewire_arena *a, size_t *used)
{
	size_t lent = __atomic_load_n(&a->copying, __ATOMIC_SEQ_CST);

	*used = __atomic_load_n(&a->nbacked, __ATOMIC_SEQ_CST);
	lent += __atomic_load_n(&a->copying, __ATOMIC_SEQ_CST);
	return lent + rw_spare_count(a) + __atomic_load_n(&a->dropping, __ATOMIC_RELAXED);
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
	struct rw_wait w = { a, 0, 0 };
	int ret = 0;

	*holes = n - bits_count(a->backed, start, n);
	if (rw_budget_take(a, *holes))
		return 0;
	if (!locked)
		lock(a);
	for (;;) {
		/* What the cache and the threads' caches would give back too. */
		size_t used, spare = budget_coming_back(a, &used) + rw_cached_pages(a) +
				     rw_tcache_pages(a);
		bool more;

		if (*holes > a->budget_pages ||
		    (used > spare ? used - spare : 0) > a->budget_pages - *holes) {
			ret = -ENOMEM;
			break;
		}
		/* Pages kept in threads' caches go back first, as cache. */
		rw_flush_tcaches(a);
		rw_drop_cache(a);
		if (rw_spare_count(a)) {
			unlock(a);
			rw_drop_all_spares(a);
			lock(a);
		}
		if (rw_budget_take(a, *holes))
			break;
		/* Another thread took the room meanwhile, or is still dropping
		 * pages, copying or recycling its own spare frames: look again,
		 * for as long as a search waits for free pages. */
		unlock(a);
		more = rw_wait_more(&w);
		lock(a);
		if (!more) {
			ret = -ENOMEM;
			break;
		}
	}
	rw_wait_done(&w);
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
		rw_budget_give(a, holes);
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
	rw_budget_give(a, backed);
}

/*
 * Thread caches (doc/threads.md). An arena keeps no cache until a second
 * thread calls it, so that a program with one thread gets exact first fit.
 * Slots go round the threads; a thread that would share the first user's
 * slot takes the next one instead.
 */
static struct slot *my_tcache(struct rewire_arena *a)
{
	unsigned long me = rw_thread_id(), first = 0;
	unsigned int k = rw_slot();

	if (!__atomic_load_n(&a->shared, __ATOMIC_RELAXED)) {
		if (__atomic_compare_exchange_n(&a->first_user, &first, me, false,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED) ||
		    first == me)
			return NULL;
		__atomic_store_n(&a->shared, true, __ATOMIC_RELAXED);
	}
	first = __atomic_load_n(&a->first_user, __ATOMIC_RELAXED);
	if (me != first && k == (first - 1) % SLOTS)
		k = (k + 1) % SLOTS;
	return &a->slot[k];
}

/*
 * Pages a slot may keep: 1,024, but never more than a 64th of the arena,
 * so that all the slots together keep at most a quarter of a small arena
 * from the threads that need it.
 */
static size_t tcache_pages(const struct rewire_arena *a)
{
	size_t share = a->npages / (4 * (size_t)SLOTS);

	return share < TCACHE_PAGES ? share : TCACHE_PAGES;
}

/* Free a claimed run that a cache gave up. */
static void uncache(struct rewire_arena *a, size_t start, size_t n)
{
	rw_mark_free(a, start, n, true);
	bits_release_s(a->busy, BUSY_STRIDE, start, n);
}

/* The smallest cached run of n pages or more: its first n pages, still
 * claimed, live and a run, or npages. */
static size_t tcache_take(struct rewire_arena *a, struct slot *tc, size_t n)
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
			rw_split_run(a, start + n);
		else
			memmove(&tc->run[best], &tc->run[best + 1],
				(--tc->nruns - best) * sizeof(tc->run[0]));
		__atomic_store_n(&tc->pages, tc->pages - n, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&tc->lock);
	return start;
}

/* Keep a claimed run, giving up the oldest ones to make room. */
static void tcache_put(struct rewire_arena *a, struct slot *tc, size_t start, size_t n)
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

	for (int k = 0; k < SLOTS; k++) {
		struct slot *tc = &a->slot[k];
		size_t out[TCACHE_RUNS][2], nout;

		if (!__atomic_load_n(&tc->pages, __ATOMIC_RELAXED))
			continue;
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

/* Pages of [start, start + n) in threads' cached runs. */
static size_t tcache_pages_in(struct rewire_arena *a, size_t start, size_t n)
{
	size_t total = 0;

	for (int k = 0; k < SLOTS; k++) {
		struct slot *tc = &a->slot[k];

		if (!__atomic_load_n(&tc->pages, __ATOMIC_RELAXED))
			continue;
		pthread_mutex_lock(&tc->lock);
		for (size_t i = 0; i < tc->nruns; i++) {
			size_t lo = tc->run[i].start > start ? tc->run[i].start : start;
			size_t hi = tc->run[i].start + tc->run[i].n;

			hi = hi < start + n ? hi : start + n;
			total += hi > lo ? hi - lo : 0;
		}
		pthread_mutex_unlock(&tc->lock);
	}
	return total;
}

/*
 * The cached runs that overlap [start, start + n) become free pages, but
 * only when they are all that is live there, so that a call that cannot
 * have those pages gives back nothing; how many pages there were.
 */
static size_t flush_tcache_range(struct rewire_arena *a, size_t start, size_t n)
{
	size_t total = 0, live;

	/* A growth may ask for pages past the arena's end. */
	if (start > a->npages || n > a->npages - start)
		return 0;
	live = bits_count(a->live, start, n);
	if (!live || tcache_pages_in(a, start, n) != live)
		return 0;
	for (int k = 0; k < SLOTS; k++) {
		struct slot *tc = &a->slot[k];
		size_t out[TCACHE_RUNS][2], nout = 0;

		if (!__atomic_load_n(&tc->pages, __ATOMIC_RELAXED))
			continue;
		pthread_mutex_lock(&tc->lock);
		for (size_t i = 0; i < tc->nruns;) {
			if (tc->run[i].start < start + n && start < tc->run[i].start + tc->run[i].n) {
				out[nout][0] = tc->run[i].start;
				out[nout++][1] = tc->run[i].n;
				__atomic_store_n(&tc->pages, tc->pages - tc->run[i].n, __ATOMIC_RELAXED);
				memmove(&tc->run[i], &tc->run[i + 1], (--tc->nruns - i) * sizeof(tc->run[0]));
			} else {
				i++;
			}
		}
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

	for (int k = 0; k < SLOTS; k++)
		n += __atomic_load_n(&a->slot[k].pages, __ATOMIC_RELAXED);
	return n;
}

/* Cached pages a drop claims at a time: others wait for them at most this
 * long a discard. */
#define DROP_CHUNK 512

/*
 * Free pages that still hold data become holes again, a chunk at a time.
 * Called with the lock held and returns with it held, but drops it while
 * the kernel discards a chunk, which is claimed meanwhile: no allocation
 * takes those pages, and they count against the budget until they are
 * gone (reserve() counts them in dropping).
 */
int rw_drop_cache(struct rewire_arena *a)
{
	int ret = 0;
	size_t n;

	for (size_t i = 0; (n = rw_claim_free(a, &i, a->npages, DROP_CHUNK, true)); i += n) {
		int err;

		__atomic_add_fetch(&a->dropping, n, __ATOMIC_RELAXED);
		unlock(a);
		err = rw_pages_discard(a, i, n);
		/* Recorded before the claim goes: an allocation that claims the
		 * pages next must see holes, or it would count them as backed
		 * and take no budget for them. */
		if (!err) {
			bits_clear(a->backed, i, n);
			rw_budget_give(a, n);
		} else if (!ret) {
			ret = err;
		}
		bits_release_s(a->busy, BUSY_STRIDE, i, n);
		__atomic_sub_fetch(&a->dropping, n, __ATOMIC_RELAXED);
		lock(a);
	}
	return ret;
}

/* No lock, but to give the cache back when the budget is short. */
void *rewire_alloc(struct rewire_arena *a, size_t len, unsigned int flags)
{
	struct slot *tc;
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
		bits_release_s(a->busy, BUSY_STRIDE, start, n);
		return page_addr(a, start);
	}
	start = rw_claim_run(a, n);
	/* Threads' caches may hold what is missing. */
	if (start == a->npages && rw_flush_tcaches(a))
		start = rw_claim_run(a, n);
	if (start == a->npages) {
		errno = ENOMEM;
		return NULL;
	}
	rw_mark_live(a, start, n, true);
	if (flags & REWIRE_ALLOC_HOLES) {
		make_holes(a, start, n, false);
		bits_release_s(a->busy, BUSY_STRIDE, start, n);
		return page_addr(a, start);
	}
	ret = reserve(a, start, n, &holes, false);
	if (!ret) {
		ret = populate_claimed(a, start, n, flags & REWIRE_ALLOC_ZERO);
		if (!ret) {
			bits_set(a->backed, start, n);
			bits_release_s(a->busy, BUSY_STRIDE, start, n);
			return page_addr(a, start);
		}
		/* The budget taken goes back. */
		rw_budget_give(a, holes);
	}
	rw_mark_free(a, start, n, true);
	bits_release_s(a->busy, BUSY_STRIDE, start, n);
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
	struct slot *tc;
	size_t start, n, again;

	if (!a)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	if (!p)
		return 0;
	for (int tries = 0;; tries++) {
		int ret = rw_run_at(a, p, &start, &n);

		if (ret)
			return ret;
		/* Another thread operates on the run, or frees it too. */
		if (!rw_claim(a, start, n))
			return -EBUSY;
		/* Claimed: it cannot change now. Is it the run it seemed? A
		 * neighbour that was being freed may have made it seem longer. */
		if (!rw_run_at(a, p, &start, &again) && again == n)
			break;
		bits_release_s(a->busy, BUSY_STRIDE, start, n);
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
	ret = rw_run_at(a, p, &start, &n);
	if (ret) {
		errno = -ret;
		return 0;
	}
	return n << a->page_shift;
}

/* Apply checked operations on claimed pages, whose state change is already
 * recorded, through the plan. The lock, held on entry and exit, is dropped
 * while the backend works; on failure the state of the operations not
 * applied is rolled back. */
static int apply_unlocked(struct rewire_arena *a, const struct page_op *ops, size_t nops,
			  size_t *done)
{
	struct apply_result res = { 0, 0, 0 };
	int ret;

	unlock(a);
	ret = rw_backend_apply(a, ops, nops, &res);
	lock(a);
	rw_record(a, ops, nops, &res, ret);
	*done = res.done;
	return ret;
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
		if (apply_unlocked(a, &back, 1, &done))
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

	/* Where copying moves the pages, it goes a stretch at a time within
	 * the lock budget (plan.c). */
	make_holes(a, to, n, true);
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
		ret = apply_unlocked(a, ops, nops, &done);
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

/*
 * Lock held; the run [start, start + old_n) is claimed by the caller, and
 * the lock is dropped while free pages are searched for (a search may wait
 * for pages another call holds). If in_place, fail with -ENOSPC rather
 * than move it.
 */
static int resize(struct rewire_arena *a, size_t start, size_t old_n, size_t new_n,
		  size_t *new_start, bool in_place)
{
	size_t to, grow = new_n - old_n, tail = start + old_n, used, spare;
	bool short_of_budget, got_tail;
	int ret;

	*new_start = start;
	if (new_n <= old_n) {
		/* The tail is claimed with the run: free it. */
		if (new_n < old_n)
			free_claimed(a, start + new_n, old_n - new_n, false, true);
		return 0;
	}
	unlock(a);
	got_tail = rw_claim_at(a, tail, grow);
	/* A thread's cache may hold the pages after the run: that run alone
	 * goes back, so a call that fails gives back nothing. */
	if (!got_tail && flush_tcache_range(a, tail, grow))
		got_tail = rw_claim_at(a, tail, grow);
	lock(a);
	if (got_tail) {
		rw_mark_live(a, tail, grow, false);
		ret = back_claimed(a, tail, grow, false);
		if (ret)
			rw_mark_free(a, tail, grow, false);
		bits_release_s(a->busy, BUSY_STRIDE, tail, grow);
		return ret;
	}
	if (in_place)
		return -ENOSPC;
	unlock(a);
	to = rw_claim_run(a, new_n);
	/* Threads' caches may hold what is missing. */
	if (to == a->npages && rw_flush_tcaches(a))
		to = rw_claim_run(a, new_n);
	lock(a);
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
	spare = budget_coming_back(a, &used) + rw_cached_pages(a) +
		bits_count(a->backed, to, new_n);
	if (short_of_budget && (used > spare ? used - spare : 0) + grow > a->budget_pages) {
		bits_release_s(a->busy, BUSY_STRIDE, to, new_n);
		return -ENOMEM;
	}
	/* A run already, so no other run grows into it. */
	rw_mark_live(a, to, new_n, true);
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
		bits_release_s(a->busy, BUSY_STRIDE, to, new_n);
		return ret;
	}
	if (ret) {
		free_claimed(a, to, new_n, true, true);
		return ret;
	}
	/* The old place is free (its claim released) once it holds nothing. */
	free_claimed(a, start, old_n, true, true);
	bits_release_s(a->busy, BUSY_STRIDE, to, new_n);
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

		ret = rw_run_at(a, p, &start, &old_n);
		/* Another thread operates on the run, frees or resizes it. */
		if (!ret && !rw_claim(a, start, old_n))
			ret = -EBUSY;
		if (ret)
			break;
		/* As in rewire_free: the run it seemed? */
		if (!rw_run_at(a, p, &start, &again) && again == old_n)
			break;
		bits_release_s(a->busy, BUSY_STRIDE, start, old_n);
		if (tries == 8) {
			ret = -EBUSY;
			break;
		}
	}
	if (!ret) {
		ret = resize(a, start, old_n, new_n, new_start, in_place);
		if (*new_start == start)
			bits_release_s(a->busy, BUSY_STRIDE, start, new_n < old_n ? new_n : old_n);
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
		size_t j = bits_find(a->backed, i, end, true), from, got;
		struct apply_result res = { 0, 0, 0 };
		struct page_op op;
		int ret;

		from = rw_free_floor(a);
		got = rw_claim_free(a, &from, rw_cache_top(a), j - i, true);
		if (!got)
			return 0;
		op = (struct page_op){ .type = REWIRE_OP_MOVE, .dst = page_addr(a, i),
				       .src = page_addr(a, from), .npages = got };
		rw_apply_state(a, &op, false);
		/* On failure the page states say again where the pages are. */
		ret = rw_backend_apply(a, &op, 1, &res);
		rw_record(a, &op, 1, &res, ret);
		/* After EIO the pages may be in either place: keep the cached
		 * ones claimed, as a stage is, so nothing reuses them. */
		if (ret != -EIO)
			bits_release_s(a->busy, BUSY_STRIDE, from, got);
		if (ret)
			return ret == -EIO ? ret : 0;
		i += got;
	}
	return 0;
}

/*
 * Fill the holes of claimed live pages with spare frames, evicted pages'
 * frames, one move each, up to 16 in one backend call: they hold whatever
 * they held. Stops when there are none; -EIO as recycle_into().
 */
static int recycle_spares(struct rewire_arena *a, size_t start, size_t n)
{
	size_t end = start + n, i = start;

	while (rw_spare_count(a) && (i = bits_find(a->backed, i, end, false)) < end) {
		struct apply_result res = { 0, 0, 0 };
		struct page_op ops[64];
		size_t from[64], holes[64], m = 0, got, mine;
		int ret;

		/* At most 16 at a time: the spare frames' owners wait for them. */
		for (; m < 16 && (i = bits_find(a->backed, i, end, false)) < end; i++)
			holes[m++] = i;
		got = rw_spare_claim(a, m, from, &mine);
		if (!got || got > m)
			return 0;
		for (size_t k = 0; k < got; k++) {
			ops[k] = (struct page_op){ .type = REWIRE_OP_MOVE, .dst = page_addr(a, holes[k]),
						   .src = page_addr(a, from[k]), .npages = 1,
						   .flags = RW_OP_FROM_SPARE |
							    (k < mine ? RW_OP_OWN_SPARE : 0) };
			rw_apply_state(a, &ops[k], false);
		}
		ret = rw_backend_apply(a, ops, got, &res);
		rw_record(a, ops, got, &res, ret);
		for (size_t k = 0; k < got; k++) {
			/* After EIO the frame may be in either place: keep it
			 * claimed, as a stage is. */
			if (ret == -EIO && k >= res.done)
				continue;
			if (k >= res.done)
				rw_spare_return(a, &ops[k]);
			if (k >= mine)
				bits_release_s(a->busy, BUSY_STRIDE, from[k], 1);
		}
		if (ret)
			return ret == -EIO ? ret : 0;
		i = holes[got - 1] + 1;
	}
	return 0;
}

/* Back the holes of claimed live pages, from the cache first if asked:
 * spare frames, then cached pages, then new zeroed pages. */
int rw_populate_claimed(struct rewire_arena *a, size_t start, size_t n, bool recycle)
{
	size_t holes;
	int ret;

	unspare(a, start, n, !recycle);
	if (recycle && (ret = recycle_spares(a, start, n)))
		return ret;
	if (recycle && (ret = recycle_into(a, start, n)))
		return ret;
	/* What the cache did not fill is backed with zeroed pages. */
	ret = reserve(a, start, n, &holes, false);
	if (!ret && holes) {
		ret = populate_claimed(a, start, n, false);
		if (ret)
			rw_budget_give(a, holes);
		else
			bits_set(a->backed, start, n);
	}
	return ret;
}

/* Make claimed live pages holes; their data is dropped, and their spare
 * frames. */
int rw_discard_claimed(struct rewire_arena *a, size_t start, size_t n)
{
	size_t backed = bits_count(a->backed, start, n);
	size_t spare = rw_spare_count(a) ? bits_count(a->spare, start, n) : 0;
	/* Holes too: the program may have touched them. */
	int ret = rw_pages_discard(a, start, n);

	if (!ret) {
		bits_clear(a->backed, start, n);
		if (spare) {
			bits_clear(a->spare, start, n);
			rw_spare_counted(a, -(long)spare);
		}
		rw_budget_give(a, backed + spare);
	}
	return ret;
}
