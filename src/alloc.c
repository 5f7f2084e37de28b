/* Page runs: first-fit allocation over the arena's page bitmaps, free, and
 * realloc that grows in place or moves pages through the backend. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "bitmap.h"
#include "internal.h"

#define ALLOC_FLAGS (REWIRE_ALLOC_ZERO | REWIRE_ALLOC_HOLES)

/* Lowest index of n free pages at or after from, or npages. */
size_t rw_find_free(const struct rewire_arena *a, size_t n)
{
	size_t i = a->first_free, end = a->npages;

	while (n <= end && (i = bits_find(a->live, i, end - n + 1, false)) <= end - n) {
		size_t j = bits_find(a->live, i, i + n, true);

		if (j == i + n)
			return i;
		i = bits_find(a->live, j, end, false);
	}
	return end;
}

/* Lowest index of n free pages that are all holes, or npages. */
size_t rw_find_free_holes(const struct rewire_arena *a, size_t n)
{
	size_t i = a->first_free, end = a->npages;

	while (i < end) {
		size_t live, backed;

		i = bits_find(a->live, i, end, false);
		i = bits_find(a->backed, i, end, false);
		if (i >= end || bit_test(a->live, i))
			continue;
		live = bits_find(a->live, i, end, true);
		backed = bits_find(a->backed, i, end, true);
		if ((live < backed ? live : backed) - i >= n)
			return i;
		i = live < backed ? live : backed;
	}
	return end;
}

/* Index of the run starting at p, or -EINVAL in *err. */
static int run_at(const struct rewire_arena *a, const void *p, size_t *start, size_t *n)
{
	uintptr_t addr = (uintptr_t)p, base = (uintptr_t)a->base;

	if (addr < base || addr - base >= a->npages << a->page_shift ||
	    addr & (a->page_size - 1))
		return -EINVAL;
	*start = page_index(a, p);
	if (!bit_test(a->head, *start))
		return -EINVAL;
	/* A run ends at the first free page or at the next run's head. */
	*n = bits_find(a->live, *start + 1, a->npages, false);
	*n = bits_find(a->head, *start + 1, *n, true) - *start;
	return 0;
}

static void mark_live(struct rewire_arena *a, size_t start, size_t n)
{
	bits_set(a->live, start, n);
	a->nlive += n;
	if (start <= a->first_free)
		a->first_free = bits_find(a->live, start, a->npages, false);
}

static void mark_free(struct rewire_arena *a, size_t start, size_t n)
{
	rw_discard_hole_pages(a, start, n);
	bits_clear(a->live, start, n);
	a->nlive -= n;
	if (start < a->first_free)
		a->first_free = start;
}

/*
 * Back the pages of [start, start + n) that are holes: within the budget,
 * populated now unless the arena faults them in. zero clears the others.
 */
static int back_pages(struct rewire_arena *a, size_t start, size_t n, bool zero)
{
	size_t end = start + n, holes;
	int ret = rw_make_room(a, start, n);

	if (ret)
		return ret;
	holes = n - bits_count(a->backed, start, n);
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
					rw_discard_hole_pages(a, start, i - start);
					rw_pages_discard(a, i, j - i);
					return ret;
				}
			}
		}
		i = j;
	}
	a->nbacked += holes;
	bits_set(a->backed, start, n);
	return 0;
}

/* Turn every page of the range into a hole, dropping cached data. */
void rw_make_holes(struct rewire_arena *a, size_t start, size_t n)
{
	size_t backed = bits_count(a->backed, start, n);

	if (backed) {
		rw_pages_discard(a, start, n);
		bits_clear(a->backed, start, n);
		a->nbacked -= backed;
	}
}

void *rewire_alloc(struct rewire_arena *a, size_t len, unsigned int flags)
{
	size_t n, start;
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

	pthread_mutex_lock(&a->lock);
	start = rw_find_free(a, n);
	if (start == a->npages) {
		ret = -ENOMEM;
	} else if (flags & REWIRE_ALLOC_HOLES) {
		rw_make_holes(a, start, n);
		ret = 0;
	} else {
		ret = back_pages(a, start, n, flags & REWIRE_ALLOC_ZERO);
	}
	if (!ret) {
		mark_live(a, start, n);
		bits_set(a->head, start, 1);
	}
	pthread_mutex_unlock(&a->lock);

	if (ret) {
		errno = -ret;
		return NULL;
	}
	return page_addr(a, start);
}

void *rewire_zalloc(struct rewire_arena *a, size_t len)
{
	return rewire_alloc(a, len, REWIRE_ALLOC_ZERO);
}

int rewire_free(struct rewire_arena *a, void *p)
{
	size_t start, n;
	int ret;

	if (!a)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	if (!p)
		return 0;
	pthread_mutex_lock(&a->lock);
	ret = run_at(a, p, &start, &n);
	if (!ret) {
		bits_clear(a->head, start, 1);
		mark_free(a, start, n);
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
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
	pthread_mutex_lock(&a->lock);
	ret = run_at(a, p, &start, &n);
	pthread_mutex_unlock(&a->lock);
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

		back = (struct page_op){ REWIRE_OP_MOVE, page_addr(a, from + (k - to)),
					 page_addr(a, k), m - k, NULL };
		bits_set(a->backed, from + (k - to), m - k);
		bits_clear(a->backed, k, m - k);
		if (rw_ops_apply(a, &back, 1, &done))
			return -EIO;
		k = m;
	}
	return 0;
}

/*
 * Move the run [from, from + n) to the free pages at to, one operation per
 * stretch of backed pages (holes travel as holes), in batches. Either every
 * page moves or, after moving the moved ones back, none has.
 */
static int move_run(struct rewire_arena *a, size_t from, size_t to, size_t n)
{
	struct page_op ops[64];
	size_t nops = 0, done, i = from, end = from + n;
	int ret;

	rw_make_holes(a, to, n);
	/*
	 * A copying backend needs new pages: take them all before anything
	 * moves, so the move cannot fail halfway and need undoing (which would
	 * need pages too).
	 */
	for (size_t k = from; !a->backend->remap && (k = bits_find(a->backed, k, end, true)) < end;) {
		size_t m = bits_find(a->backed, k, end, false);

		ret = rw_pages_populate(a, to + (k - from), m - k);
		if (ret) {
			rw_pages_discard(a, to, n);
			return ret;
		}
		k = m;
	}
	mark_live(a, to, n);
	while ((i = bits_find(a->backed, i, end, true)) < end) {
		size_t j = bits_find(a->backed, i, end, false);

		ops[nops++] = (struct page_op){ REWIRE_OP_MOVE, page_addr(a, to + (i - from)),
						page_addr(a, i), j - i, NULL };
		bits_set(a->backed, to + (i - from), j - i);
		bits_clear(a->backed, i, j - i);
		i = j;
		if (nops < sizeof(ops) / sizeof(ops[0]) &&
		    bits_find(a->backed, i, end, true) < end)
			continue;
		ret = rw_ops_apply(a, ops, nops, &done);
		if (ret) {
			/*
			 * The page states now say exactly what moved. If a page
			 * cannot go back, keep both ranges, the new one a run of
			 * its own (not part of the run before it): nothing is
			 * dropped, nothing reused.
			 */
			if (ret == -EIO || move_back(a, from, to, n)) {
				bits_set(a->head, to, 1);
				return -EIO;
			}
			mark_free(a, to, n);
			return ret;
		}
		nops = 0;
	}
	return 0;
}

static int resize(struct rewire_arena *a, size_t start, size_t old_n, size_t new_n,
		  size_t *new_start)
{
	size_t to, grow = new_n - old_n;
	int ret;

	*new_start = start;
	if (new_n <= old_n) {
		if (new_n < old_n)
			mark_free(a, start + new_n, old_n - new_n);
		return 0;
	}
	if (grow <= a->npages - start - old_n &&
	    bits_all(a->live, start + old_n, grow, false)) {
		ret = back_pages(a, start + old_n, grow, false);
		if (!ret)
			mark_live(a, start + old_n, grow);
		return ret;
	}
	to = rw_find_free(a, new_n);
	if (to == a->npages)
		return -ENOMEM;
	/* The new tail is the only part that needs budget: back it before
	 * anything moves. If the move fails it stays behind as cached pages. */
	ret = back_pages(a, to + old_n, grow, false);
	if (ret)
		return ret;
	ret = move_run(a, start, to, old_n);
	if (ret)
		return ret;
	mark_live(a, to + old_n, grow);
	bits_clear(a->head, start, 1);
	mark_free(a, start, old_n);
	bits_set(a->head, to, 1);
	*new_start = to;
	return 0;
}

void *rewire_realloc(struct rewire_arena *a, void *p, size_t len)
{
	size_t start, old_n, new_n, new_start;
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
	new_n = (len + a->page_size - 1) >> a->page_shift;
	pthread_mutex_lock(&a->lock);
	ret = run_at(a, p, &start, &old_n);
	if (!ret)
		ret = resize(a, start, old_n, new_n, &new_start);
	pthread_mutex_unlock(&a->lock);
	if (ret) {
		errno = -ret;
		return NULL;
	}
	return page_addr(a, new_start);
}
