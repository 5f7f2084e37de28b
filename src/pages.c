/* Layer 1: the arena's page states (live, head, backed), the claims that
 * guard them, the searches for free pages, the lock budget's counter and
 * the counters of statistics. Every other file changes page states through
 * here or under a claim taken here (doc/threads.md). */
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>

#include "bitmap.h"
#include "internal.h"

__thread bool rw_undoing;

/*
 * Threads are numbered from 1 as they first call, and numbers are never
 * reused; slots go round those numbers.
 */
static unsigned long last_thread_id;
static __thread unsigned long my_id;

unsigned long rw_thread_id(void)
{
	if (!my_id)
		my_id = __atomic_add_fetch(&last_thread_id, 1, __ATOMIC_RELAXED);
	return my_id;
}

unsigned int rw_slot(void)
{
	return (unsigned int)((rw_thread_id() - 1) % SLOTS);
}

/*
 * The live and head bits of a bitmap word change inside state_begin() and
 * state_end() of its seq word: the low half counts writers in progress,
 * the high half changes done. A reader that saw no writer and the same
 * seq before and after read the bits whole (rw_page_states()). Backed bits
 * change alone, one page's at a time, so they need no such care.
 */
#define SEQ_WRITERS 0xffffffffull
#define SEQ_DONE ((1ull << 32) - 1)	/* one more done, one writer fewer */

static void state_begin(struct rewire_arena *a, size_t start, size_t n)
{
	for (size_t w = start / BITS_PER_WORD; w <= (start + n - 1) / BITS_PER_WORD; w++)
		__atomic_fetch_add(&a->seq[w], 1, __ATOMIC_SEQ_CST);
}

static void state_end(struct rewire_arena *a, size_t start, size_t n)
{
	for (size_t w = start / BITS_PER_WORD; w <= (start + n - 1) / BITS_PER_WORD; w++)
		__atomic_fetch_add(&a->seq[w], SEQ_DONE, __ATOMIC_RELEASE);
}

/* Lower the first-free hint to i, unless it is lower already. */
static void lower_hint(struct rewire_arena *a, size_t i)
{
	size_t hint = __atomic_load_n(&a->first_free, __ATOMIC_SEQ_CST);

	while (i < hint && !__atomic_compare_exchange_n(&a->first_free, &hint, i, false,
							__ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		;
}

/*
 * Claimed pages become a run (its first page the head, if head), or free.
 * The head is set before the pages are live, and cleared after they are
 * not, so that no run before them seems to grow into them.
 */
void rw_mark_live(struct rewire_arena *a, size_t start, size_t n, bool head)
{
	size_t hint = start, next;

	state_begin(a, start, n);
	if (head)
		bits_set(a->head, start, 1);
	bits_set(a->live, start, n);
	state_end(a, start, n);
	__atomic_add_fetch(&a->slot[rw_slot()].live, (long)n, __ATOMIC_RELAXED);
	/* Move the hint past these pages only if it is here and nothing lowered
	 * it meanwhile. It stops at free pages that are only claimed: they are
	 * free. */
	if (__atomic_load_n(&a->first_free, __ATOMIC_RELAXED) != start)
		return;
	next = bits_find(a->live, start, a->npages, false);
	if (!__atomic_compare_exchange_n(&a->first_free, &hint, next, false, __ATOMIC_SEQ_CST,
					 __ATOMIC_RELAXED))
		return;
	/* A page freed below next while it was searched for may have seen
	 * the hint still low and left it: look again (rw_mark_free looks at
	 * the hint after freeing, so one of the two sees the other). */
	lower_hint(a, bits_find(a->live, start, next, false));
}

void rw_mark_free(struct rewire_arena *a, size_t start, size_t n, bool head)
{
	state_begin(a, start, n);
	bits_clear(a->live, start, n);
	if (head)
		bits_clear(a->head, start, 1);
	state_end(a, start, n);
	if (bits_find(a->backed, start, start + n, true) < start + n)
		rw_cache_grew(a, start + n);
	__atomic_sub_fetch(&a->slot[rw_slot()].live, (long)n, __ATOMIC_RELAXED);
	/*
	 * A read-modify-write of the hint, not a fence (which ThreadSanitizer
	 * cannot follow): it comes before or after rw_mark_live's
	 * compare-and-swap of the hint, so either that sees these pages free,
	 * or lower_hint() below sees the hint it set.
	 */
	__atomic_fetch_add(&a->first_free, 0, __ATOMIC_SEQ_CST);
	lower_hint(a, start);
}

/* Page i of a claimed run becomes the head of a run of its own. */
void rw_split_run(struct rewire_arena *a, size_t i)
{
	state_begin(a, i, 1);
	bits_set(a->head, i, 1);
	state_end(a, i, 1);
}

/* Each page's state as one byte, as rewire_page_state() reports it: every
 * byte a state its page had, never its live bit from one moment and its
 * head bit from another. */
void rw_page_states(const struct rewire_arena *a, size_t start, size_t n, unsigned char *vec)
{
	size_t end = start + n;

	for (size_t w = start / BITS_PER_WORD; w <= (end - 1) / BITS_PER_WORD; w++) {
		size_t lo = w * BITS_PER_WORD > start ? w * BITS_PER_WORD : start;
		size_t hi = (w + 1) * BITS_PER_WORD < end ? (w + 1) * BITS_PER_WORD : end;
		uint64_t live, head, backed;

		for (unsigned int tries = 1;; tries++) {
			uint64_t seq = __atomic_load_n(&a->seq[w], __ATOMIC_ACQUIRE);
			if (!(seq & SEQ_WRITERS)) {
				live = word_at(a->live, w);
				head = word_at(a->head, w);
				backed = word_at(a->backed, w);
				if (__atomic_load_n(&a->seq[w], __ATOMIC_ACQUIRE) == seq)
					break;
			}
			/* A writer holds it for a few bit operations. */
			if (tries % 64 == 0)
				sched_yield();
		}
		for (size_t i = lo; i < hi; i++) {
			unsigned int b = i % BITS_PER_WORD;

			vec[i - start] = (live >> b & 1 ? REWIRE_PAGE_LIVE : 0) |
					 (backed >> b & 1 ? REWIRE_PAGE_BACKED : 0) |
					 (head >> b & 1 ? REWIRE_PAGE_HEAD : 0);
		}
	}
}

/* How long a call waits for pages of its own runs that another holds: a
 * recycling populate holds up to 16 spare frames over one backend call. */
#define CLAIM_WAIT_NS 20e6

/*
 * Claim pages of live runs for a call of their owner. Another call holds
 * them (EBUSY, false), or holds them for an instant: a search for free
 * pages that touched them, or another thread's recycling populate moving
 * the spare frame of one of them. Tries for up to CLAIM_WAIT_NS tell which.
 */
bool rw_claim(struct rewire_arena *a, size_t start, size_t n)
{
	double since = 0;

	for (unsigned int tries = 0;; tries++) {
		if (bits_claim_unless_s(a->busy, BUSY_STRIDE, NULL, start, n))
			return true;
		if (tries >= 32 && tries % 16 == 0) {
			double now = rw_now_ns();

			if (!since)
				since = now;
			else if (now - since > CLAIM_WAIT_NS)
				return false;
		}
		if (tries % 8 == 7 || tries >= 32)
			sched_yield();
	}
}

void rw_release(struct rewire_arena *a, const char *p, size_t n)
{
	bits_release_s(a->busy, BUSY_STRIDE, page_index(a, p), n);
}

/*
 * Free pages another call has claimed are given back within a bounded
 * time: every holder works a bounded stretch (a cache drop a chunk at a
 * time, a stage over a few moves) and takes no lock while it holds them.
 * A search that found nothing but such pages waits for them, up to
 * WAIT_NS, so that ENOMEM and ENOSPC mean there is no room.
 */
#define WAIT_NS 200e6

void rw_wait_done(struct rw_wait *w)
{
	if (w->rounds)
		__atomic_sub_fetch(&w->a->waiters, 1, __ATOMIC_RELAXED);
	w->rounds = 0;
}

/* Wait a little more, or give up; the arena counts its waiters, so that
 * holders of free pages that could let go (stages) do not take more. */
bool rw_wait_more(struct rw_wait *w)
{
	if (!w->rounds)
		__atomic_add_fetch(&w->a->waiters, 1, __ATOMIC_RELAXED);
	if (w->rounds++ % 16 == 0) {
		double now = rw_now_ns();

		if (!w->since) {
			w->since = now;
		} else if (now - w->since > WAIT_NS) {
			rw_wait_done(w);
			return false;
		}
	}
	sched_yield();
	return true;
}

/*
 * Claim the lowest n free pages from i on: their index, or npages. A
 * stretch another call holds a page of is passed over, and *blocked set.
 */
static size_t claim_run_from(struct rewire_arena *a, size_t n, size_t i, bool *blocked)
{
	size_t end = a->npages;

	while (n <= end && (i = bits_find(a->live, i, end - n + 1, false)) <= end - n) {
		size_t j = bits_find(a->live, i, i + n, true);

		if (j < i + n) {
			i = j;
			continue;
		}
		/* Only free pages: a claim of a live page, however short, could
		 * make its owner's call fail. Claimed first, then checked: pages
		 * change state only under a claim. */
		if (bits_claim_unless_s(a->busy, BUSY_STRIDE, a->live, i, n)) {
			if (bits_all(a->live, i, n, false))
				return i;
			bits_release_s(a->busy, BUSY_STRIDE, i, n);
			i++;
			continue;
		}
		j = bits_find_s(a->busy, BUSY_STRIDE, i, i + n, true);
		if (j == i + n)
			continue;	/* became live meanwhile: found again */
		if (!bit_test(a->live, j))
			*blocked = true;
		i = j + 1;
	}
	return end;
}

/*
 * Claim the lowest n free pages: first from the first-free hint, which
 * threads may leave too high for a moment, then from the start.
 */
size_t rw_claim_run(struct rewire_arena *a, size_t n)
{
	struct rw_wait w = { a, 0, 0 };

	for (;;) {
		size_t from = rw_free_floor(a), i;
		bool blocked = false;

		i = claim_run_from(a, n, from, &blocked);
		if (i == a->npages && from)
			i = claim_run_from(a, n, 0, &blocked);
		if (i < a->npages || !blocked) {
			rw_wait_done(&w);
			return i;
		}
		if (!rw_wait_more(&w))
			return i;
	}
}

/* Claim the n free pages at i: false if one is live, or stays claimed by
 * another call. */
bool rw_claim_at(struct rewire_arena *a, size_t i, size_t n)
{
	struct rw_wait w = { a, 0, 0 };
	bool got = false;

	if (n > a->npages - i)
		return false;
	while (bits_all(a->live, i, n, false)) {
		if (bits_claim_unless_s(a->busy, BUSY_STRIDE, a->live, i, n)) {
			got = bits_all(a->live, i, n, false);
			if (!got)
				bits_release_s(a->busy, BUSY_STRIDE, i, n);
			break;
		}
		if (!rw_wait_more(&w))
			return false;
	}
	rw_wait_done(&w);
	return got;
}

/* Claim [i, i + n) if every page is a free hole no call holds. */
static bool claim_holes_at(struct rewire_arena *a, size_t i, size_t n)
{
	if (!bits_claim_unless_s(a->busy, BUSY_STRIDE, a->live, i, n))
		return false;
	if (bits_all(a->live, i, n, false) && bits_all(a->backed, i, n, false))
		return true;
	bits_release_s(a->busy, BUSY_STRIDE, i, n);
	return false;
}

/* Pages a slot's stages keep apart from the next slot's: a cache line of
 * each bitmap. */
#define STAGE_APART 512

/* Claim the highest n free holes in [lo, hi), or NULL. */
static char *stage_below(struct rewire_arena *a, size_t n, size_t lo, size_t hi)
{
	while (hi > lo && hi - lo >= n) {
		size_t e = bits_rfind3_s(a->live, a->busy, BUSY_STRIDE, a->backed, lo, hi, false), b;

		if (e == SIZE_MAX)
			break;
		b = bits_rfind3_s(a->live, a->busy, BUSY_STRIDE, a->backed, e + 1 >= n ? e + 1 - n : 0, e, true);
		if (b == SIZE_MAX && e + 1 >= n) {
			if (claim_holes_at(a, e + 1 - n, n))
				return page_addr(a, e + 1 - n);
			hi = e;		/* changed meanwhile: one page lower */
		} else {
			hi = b == SIZE_MAX ? 0 : b;
		}
	}
	return NULL;
}

/*
 * Claim n free pages that are all holes, to stage pages in, or NULL. Cached
 * pages are left alone: staging never changes what the arena holds. The
 * slot's last stage first, then the highest such pages: the free end of
 * the arena, away from where first fit allocates, each slot's below the
 * one before's where the arena has room for that.
 */
char *rw_claim_stage(struct rewire_arena *a, size_t n)
{
	unsigned int k = rw_slot();
	size_t last = __atomic_load_n(&a->slot[k].stage, __ATOMIC_RELAXED);
	size_t lo = rw_free_floor(a), hi = a->npages, apart = (size_t)k * STAGE_APART;
	char *p = NULL;

	/* A search waits for free pages: take none now (the planner copies). */
	if (rw_searches_waiting(a))
		return NULL;
	if (last <= a->npages - n && claim_holes_at(a, last, n))
		return page_addr(a, last);
	if (lo < hi && apart < hi - lo && n <= hi - lo - apart)
		p = stage_below(a, n, lo, hi - apart);
	return p ? p : stage_below(a, n, lo, hi);
}

/* The stage is free again; the slot tries the same pages next time. */
void rw_release_stage(struct rewire_arena *a, char *stage, size_t n)
{
	__atomic_store_n(&a->slot[rw_slot()].stage, page_index(a, stage), __ATOMIC_RELAXED);
	rw_release(a, stage, n);
}

/*
 * Claim the next stretch of free, unclaimed pages that are all backed (the
 * cache) or all holes, in [*i, end), at most want long: its length, its
 * start at *i; 0 if there is none. No lock: claimed, then checked again, as
 * an allocation may take the pages meanwhile; a stretch that changed is
 * passed over.
 */
size_t rw_claim_free(struct rewire_arena *a, size_t *i, size_t end, size_t want, bool backed)
{
	size_t k = *i;

	while ((k = bits_find2_s(a->live, a->busy, BUSY_STRIDE, k, end, false)) < end) {
		/* A window at a time: the free stretch may be most of the arena,
		 * and the pages wanted at its start. */
		size_t lim = end - k > 4096 ? k + 4096 : end, j;
		size_t stop = bits_find2_s(a->live, a->busy, BUSY_STRIDE, k, lim, true);

		k = bits_find(a->backed, k, stop, backed);
		if (k == stop)
			continue;
		j = bits_find2_s(a->live, a->busy, BUSY_STRIDE, k, want < end - k ? k + want : end, true);
		j = bits_find(a->backed, k, j, !backed);
		if (j == k) {
			/* Page k was taken or changed since it was found. */
			k++;
			continue;
		}
		/* One of its pages taken meanwhile: look again from k, for the
		 * rest of the stretch may still be there. */
		if (!bits_claim_unless_s(a->busy, BUSY_STRIDE, a->live, k, j - k))
			continue;
		if (bits_all(a->live, k, j - k, false) && bits_all(a->backed, k, j - k, backed)) {
			*i = k;
			return j - k;
		}
		bits_release_s(a->busy, BUSY_STRIDE, k, j - k);
		k = j;
	}
	*i = end;
	return 0;
}

/* Pages free, backed and not claimed: the cache. */
size_t rw_cached_pages(const struct rewire_arena *a)
{
	size_t n = 0;

	for (size_t i = 0; (i = bits_find2_s(a->live, a->busy, BUSY_STRIDE, i, a->npages, false)) < a->npages;) {
		size_t j = bits_find(a->live, i, a->npages, true), k = bits_find_s(a->busy, BUSY_STRIDE, i, j, true);

		n += bits_count(a->backed, i, k - i);
		i = k;
	}
	return n;
}

/* The run starting at p, or -EINVAL. */
int rw_run_at(const struct rewire_arena *a, const void *p, size_t *start, size_t *n)
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

/* Pages counted as holes may have been touched; drop whatever is there. */
void rw_discard_hole_pages(struct rewire_arena *a, size_t start, size_t n)
{
	size_t end = start + n, i = start;

	while ((i = bits_find(a->backed, i, end, false)) < end) {
		size_t j = bits_find(a->backed, i, end, true);

		rw_pages_discard(a, i, j - i);
		i = j;
	}
}

/*
 * The lock budget: nbacked counts the pages backed and those about to be,
 * taken with compare-and-swap before anything is populated, so it is never
 * exceeded, even for a moment.
 */
bool rw_budget_take(struct rewire_arena *a, size_t n)
{
	size_t used;

	/* Nothing to take (a run over cached pages): leave the line alone. */
	if (!n)
		return true;
	used = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED);

	while (used <= a->budget_pages && n <= a->budget_pages - used)
		if (__atomic_compare_exchange_n(&a->nbacked, &used, used + n, true,
						__ATOMIC_RELAXED, __ATOMIC_RELAXED))
			return true;
	return false;
}

/* Take as much of want as the budget has room for: how much, maybe 0. */
size_t rw_budget_take_upto(struct rewire_arena *a, size_t want)
{
	size_t used = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED), n;

	do {
		n = used < a->budget_pages ? a->budget_pages - used : 0;
		if (n > want)
			n = want;
		if (!n)
			return 0;
	} while (!__atomic_compare_exchange_n(&a->nbacked, &used, used + n, true,
					      __ATOMIC_RELAXED, __ATOMIC_RELAXED));
	return n;
}

void rw_budget_give(struct rewire_arena *a, size_t n)
{
	__atomic_sub_fetch(&a->nbacked, n, __ATOMIC_RELAXED);
}

/* Counted in the calling thread's slot: no line shared with other slots. */
void rw_count(struct rewire_arena *a, uint64_t batches, uint64_t ops, uint64_t remapped,
	      uint64_t copied)
{
	struct slot *s = &a->slot[rw_slot()];

	if (batches)
		__atomic_add_fetch(&s->batches, batches, __ATOMIC_RELAXED);
	if (ops)
		__atomic_add_fetch(&s->ops, ops, __ATOMIC_RELAXED);
	if (remapped)
		__atomic_add_fetch(&s->pages_remapped, remapped, __ATOMIC_RELAXED);
	if (copied)
		__atomic_add_fetch(&s->pages_copied, copied, __ATOMIC_RELAXED);
}

/* Pages in live runs: the slots' shares, summed while threads work, so
 * never below zero. */
size_t rw_live_pages(const struct rewire_arena *a)
{
	long n = 0;

	for (int k = 0; k < SLOTS; k++)
		n += __atomic_load_n(&a->slot[k].live, __ATOMIC_RELAXED);
	return n > 0 ? (size_t)n : 0;
}

/*
 * Spare frames: an evicted page keeps its frame, counted against the
 * budget, until a recycling populate moves it into a hole, or a populate,
 * discard, free or drop of its page ends it. The stack of their pages lets
 * a populate find some without searching the arena; it may hold pages
 * that are no longer spare, or twice, which are passed over or dropped
 * when it must grow.
 */
static int by_index(const void *x, const void *y)
{
	size_t a = *(const size_t *)x, b = *(const size_t *)y;

	return (a > b) - (a < b);
}

/* Room for n more entries: stale ones dropped first, then the stack
 * grows. Its lock held. */
static void spares_room(struct rewire_arena *a, size_t n)
{
	size_t *v = a->spares.page, k = 0, cap;

	for (size_t i = 0; i < a->spares.n; i++)
		if (bit_test(a->spare, v[i]))
			v[k++] = v[i];
	if (k > 2 * rw_spare_count(a) + 64) {
		/* Pages evicted, populated and evicted again: once each. */
		size_t j = 0;

		qsort(v, k, sizeof(*v), by_index);
		for (size_t i = 0; i < k; i++)
			if (!j || v[i] != v[j - 1])
				v[j++] = v[i];
		k = j;
	}
	a->spares.n = k;
	if (k + n <= a->spares.cap)
		return;
	cap = 2 * (k + n) > 64 ? 2 * (k + n) : 64;
	v = realloc(a->spares.page, cap * sizeof(*v));
	if (!v)
		return;
	a->spares.page = v;
	a->spares.cap = cap;
}

/* Pages [start, start + n) just became spare. One the stack has no room
 * for stays spare, for a drop to find. */
void rw_spare_push(struct rewire_arena *a, size_t start, size_t n)
{
	pthread_mutex_lock(&a->spares.lock);
	if (a->spares.n + n > a->spares.cap)
		spares_room(a, n);
	for (size_t i = 0; i < n && a->spares.n < a->spares.cap; i++)
		a->spares.page[a->spares.n++] = start + i;
	pthread_mutex_unlock(&a->spares.lock);
}

/*
 * Pages the calling thread's batch evicted and still holds claimed, for
 * the batch's own recycling populates: they could not be claimed again.
 * Given to the stack when the batch ends.
 */
static __thread struct {
	const struct rewire_arena *a;
	size_t n;
	size_t page[64];
} own;

void rw_spare_keep(struct rewire_arena *a, size_t start, size_t n)
{
	if (own.a != a)
		rw_spare_keep_end();
	own.a = a;
	for (size_t i = 0; i < n; i++) {
		if (own.n < sizeof(own.page) / sizeof(own.page[0]))
			own.page[own.n++] = start + i;
		else
			rw_spare_push(a, start + i, 1);
	}
}

void rw_spare_keep_end(void)
{
	struct rewire_arena *a = (struct rewire_arena *)own.a;

	while (a && own.n) {
		size_t p = own.page[--own.n];

		if (bit_test(a->spare, p))
			rw_spare_push(a, p, 1);
	}
	own.n = 0;
	own.a = NULL;
}

/* The spare frame a move not applied would have taken is spare again,
 * where it came from. */
void rw_spare_return(struct rewire_arena *a, const struct page_op *op)
{
	if (op->flags & RW_OP_OWN_SPARE)
		rw_spare_keep(a, page_index(a, op->src), op->npages);
	else if (op->flags & RW_OP_FROM_SPARE)
		rw_spare_push(a, page_index(a, op->src), op->npages);
}

/*
 * Claim up to want spare pages into out: how many. The calling batch's
 * own come first, already claimed (*mine of them), then the newest on the
 * stack. A page whose owner is working on it is left where it is.
 */
size_t rw_spare_claim(struct rewire_arena *a, size_t want, size_t *out, size_t *mine)
{
	size_t got = 0, aside[16], naside = 0;

	while (got < want && own.a == a && own.n) {
		size_t p = own.page[--own.n];

		if (bit_test(a->spare, p))
			out[got++] = p;
	}
	*mine = got;
	if (got == want)
		return got;
	pthread_mutex_lock(&a->spares.lock);
	while (got < want && a->spares.n) {
		size_t p = a->spares.page[--a->spares.n];

		if (!bit_test(a->spare, p))
			continue;
		if (!bits_claim_unless_s(a->busy, BUSY_STRIDE, NULL, p, 1)) {
			if (naside < sizeof(aside) / sizeof(aside[0]))
				aside[naside++] = p;
			continue;
		}
		/* Claimed, then checked: it may have stopped being spare. */
		if (bit_test(a->spare, p))
			out[got++] = p;
		else
			bits_release_s(a->busy, BUSY_STRIDE, p, 1);
	}
	while (naside)
		a->spares.page[a->spares.n++] = aside[--naside];
	pthread_mutex_unlock(&a->spares.lock);
	return got;
}

size_t rw_spare_count(const struct rewire_arena *a)
{
	return __atomic_load_n(&a->spares.count, __ATOMIC_RELAXED);
}

void rw_spare_counted(struct rewire_arena *a, long n)
{
	__atomic_add_fetch(&a->spares.count, (size_t)n, __ATOMIC_RELAXED);
}
