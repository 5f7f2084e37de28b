/* Page operations: validate every operation once against the arena's page
 * states, then hand the whole batch to the backend in one call. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "internal.h"

/* Resolve [p, p + len) to pages of live runs. */
static int check_range(const struct rewire_arena *a, const void *p, size_t len,
		       size_t *first)
{
	uintptr_t addr = (uintptr_t)p, base = (uintptr_t)a->base;
	size_t size = a->npages << a->page_shift;

	if ((addr | len) & (a->page_size - 1) || !len)
		return -EINVAL;
	if (addr < base || addr - base >= size || len > size - (addr - base))
		return -EFAULT;
	*first = page_index(a, p);
	if (!bits_all(a->live, *first, len >> a->page_shift, true))
		return -EFAULT;
	/* Another thread's call is working on these pages. */
	if (!bits_all(a->busy, *first, len >> a->page_shift, false))
		return -EBUSY;
	return 0;
}

static bool overlap(const void *x, const void *y, size_t len)
{
	uintptr_t a = (uintptr_t)x, b = (uintptr_t)y;

	return a < b ? b - a < len : a - b < len;
}

/* The backed/hole state an operation changes; only moves change it. */
void rw_apply_state(struct rewire_arena *a, const struct page_op *op, bool undo)
{
	size_t d, s;

	if (op->type != REWIRE_OP_MOVE)
		return;
	d = page_index(a, op->dst);
	s = page_index(a, op->src);
	bits_assign(a->backed, d, op->npages, !undo);
	bits_assign(a->backed, s, op->npages, undo);
}

static int check_permutation(const size_t *perm, size_t n)
{
	uint64_t *seen = calloc(bitmap_words(n), sizeof(uint64_t));
	int ret = 0;

	if (!seen)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (perm[i] >= n || bit_test(seen, perm[i])) {
			ret = -EINVAL;
			break;
		}
		bits_set(seen, perm[i], 1);
	}
	free(seen);
	return ret;
}

/* Check one user operation against the current page states and lower it. */
static int check_op(const struct rewire_arena *a, const struct rewire_op *uop,
		    struct page_op *op)
{
	size_t d, s, n, *copy;
	int ret;

	if (uop->flags)
		return -EINVAL;
	op->type = uop->type;
	op->dst = uop->dst;
	op->src = uop->src;
	op->perm = NULL;
	switch (uop->type) {
	case REWIRE_OP_MOVE:
	case REWIRE_OP_SWAP:
		ret = check_range(a, uop->dst, uop->len, &d);
		if (!ret)
			ret = check_range(a, uop->src, uop->len, &s);
		if (ret)
			return ret;
		if (overlap(uop->dst, uop->src, uop->len))
			return -EINVAL;
		n = uop->len >> a->page_shift;
		if (uop->type == REWIRE_OP_MOVE) {
			if (!bits_all(a->backed, d, n, false))
				return -EEXIST;
		} else if (!bits_all(a->backed, d, n, true)) {
			return -ENOENT;
		}
		if (!bits_all(a->backed, s, n, true))
			return -ENOENT;
		op->npages = n;
		return 0;
	case REWIRE_OP_PERMUTE:
		if (!uop->perm || uop->src)
			return -EINVAL;
		ret = check_range(a, uop->dst, uop->len, &d);
		if (ret)
			return ret;
		n = uop->len >> a->page_shift;
		if (!bits_all(a->backed, d, n, true))
			return -ENOENT;
		/*
		 * Keep a copy, checked once: the array may live in pages an
		 * earlier operation of the batch moves away.
		 */
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, uop->perm, n * sizeof(*copy));
		ret = check_permutation(copy, n);
		if (ret) {
			free(copy);
			return ret;
		}
		op->src = NULL;
		op->perm = copy;
		op->npages = n;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Claim (or release) the pages an operation works on. Lock held. */
static void claim_op(struct rewire_arena *a, const struct page_op *op, bool claim)
{
	bits_assign(a->busy, page_index(a, op->dst), op->npages, claim);
	if (op->src)
		bits_assign(a->busy, page_index(a, op->src), op->npages, claim);
}

/* The counters, updated without the lock. */
static void count(struct rewire_arena *a, const struct apply_result *res)
{
	__atomic_add_fetch(&a->batches, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a->ops, res->done, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a->pages_remapped, res->remapped, __ATOMIC_RELAXED);
	__atomic_add_fetch(&a->pages_copied, res->copied, __ATOMIC_RELAXED);
}

/* The outcome of a backend call: operations not applied get their state
 * back, and the counters count. Lock held. */
static void record(struct rewire_arena *a, const struct page_op *ops, size_t nops,
		   const struct apply_result *res, int ret)
{
	if (ret)
		for (size_t i = nops; i-- > res->done;)
			rw_apply_state(a, &ops[i], true);
	count(a, res);
}

static int backend_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
			 struct apply_result *res)
{
	return a->backend->apply ? a->backend->apply(a, ops, nops, res) :
	       rw_plan_apply(a, ops, nops, res);
}

/*
 * Run already validated operations on claimed pages, whose state change is
 * already recorded (realloc's moves). Called with the lock held; the backend
 * runs without it. On failure the state of the operations not applied is
 * rolled back.
 */
int rw_ops_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
	      size_t *done)
{
	struct apply_result res = { 0, 0, 0 };
	int ret;

	pthread_mutex_unlock(&a->lock);
	ret = backend_apply(a, ops, nops, &res);
	pthread_mutex_lock(&a->lock);

	record(a, ops, nops, &res, ret);
	*done = res.done;
	return ret;
}

/*
 * Validate every operation against the page states the ones before it
 * leave, claim all their pages, and hand the batch to the backend without
 * the lock: batches on disjoint pages run in parallel.
 */
int rewire_batch(struct rewire_arena *a, const struct rewire_op *uops,
		 size_t nops, size_t *donep)
{
	struct apply_result res = { 0, 0, 0 };
	struct page_op one, *ops;
	size_t i;
	int ret = 0;

	if (donep)
		*donep = 0;
	if (!a || (!uops && nops))
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	if (!nops)
		return 0;
	ops = nops == 1 ? &one : calloc(nops, sizeof(*ops));
	if (!ops)
		return -ENOMEM;

	pthread_mutex_lock(&a->lock);
	for (i = 0; i < nops; i++) {
		ret = check_op(a, &uops[i], &ops[i]);
		if (ret)
			break;
		rw_apply_state(a, &ops[i], false);
	}
	if (ret) {
		for (size_t k = i; k-- > 0;)
			rw_apply_state(a, &ops[k], true);
		pthread_mutex_unlock(&a->lock);
	} else {
		for (size_t k = 0; k < nops; k++)
			claim_op(a, &ops[k], true);
		pthread_mutex_unlock(&a->lock);
		ret = backend_apply(a, ops, nops, &res);
		/*
		 * Success needs no lock: the states were recorded before, and
		 * releasing a claim is clearing bits no other call changes.
		 */
		if (ret) {
			pthread_mutex_lock(&a->lock);
			record(a, ops, nops, &res, ret);
		} else {
			count(a, &res);
		}
		for (size_t k = 0; k < nops; k++)
			claim_op(a, &ops[k], false);
		if (ret)
			pthread_mutex_unlock(&a->lock);
	}

	/* i is the number of operations checked, and so lowered. */
	while (i-- > 0)
		if (ops[i].type == REWIRE_OP_PERMUTE)
			free((size_t *)ops[i].perm);
	if (ops != &one)
		free(ops);
	if (donep)
		*donep = res.done;
	return ret;
}

/* Turn pages of live runs into holes; their data is dropped. */
int rewire_discard(struct rewire_arena *a, void *addr, size_t len)
{
	size_t first, n;
	int ret;

	if (!a)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	n = len >> a->page_shift;
	pthread_mutex_lock(&a->lock);
	ret = check_range(a, addr, len, &first);
	if (!ret) {
		size_t backed = bits_count(a->backed, first, n);

		bits_set(a->busy, first, n);
		pthread_mutex_unlock(&a->lock);
		ret = rw_pages_discard(a, first, n);
		pthread_mutex_lock(&a->lock);
		if (!ret) {
			bits_clear(a->backed, first, n);
			a->nbacked -= backed;
		}
		bits_clear(a->busy, first, n);
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}

int rewire_move(struct rewire_arena *a, void *dst, void *src, size_t len)
{
	struct rewire_op op = { REWIRE_OP_MOVE, 0, dst, src, len, NULL };

	return rewire_batch(a, &op, 1, NULL);
}

int rewire_swap(struct rewire_arena *arena, void *a, void *b, size_t len)
{
	struct rewire_op op = { REWIRE_OP_SWAP, 0, a, b, len, NULL };

	return rewire_batch(arena, &op, 1, NULL);
}

int rewire_permute(struct rewire_arena *a, void *base, const size_t *perm,
		   size_t npages)
{
	struct rewire_op op = { REWIRE_OP_PERMUTE, 0, base, NULL, 0, perm };

	if (!a || !perm || !npages)
		return -EINVAL;
	if (npages > SIZE_MAX >> a->page_shift)
		return -EFAULT;
	op.len = npages << a->page_shift;
	return rewire_batch(a, &op, 1, NULL);
}
