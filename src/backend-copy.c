/* The copy backend: memcpy through one locked scratch page. Always available,
 * and the executable specification every other backend must match. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int copy_init(struct rewire_arena *a)
{
	(void)a;
	return 0;
}

static int copy_move(struct rewire_arena *a, const struct page_op *op)
{
	size_t d = page_index(a, op->dst), s = page_index(a, op->src);
	int ret;

	/* Back the destination first so running out of memory is an error,
	 * not a fault halfway through the copy. */
	ret = pages_populate(a, d, op->npages);
	if (ret) {
		pages_discard(a, d, op->npages);
		return ret;
	}
	memcpy(op->dst, op->src, op->npages << a->page_shift);
	pages_discard(a, s, op->npages);
	return 0;
}

static void swap_page(struct rewire_arena *a, char *x, char *y)
{
	memcpy(a->scratch, x, a->page_size);
	memcpy(x, y, a->page_size);
	memcpy(y, a->scratch, a->page_size);
}

static void copy_swap(struct rewire_arena *a, const struct page_op *op)
{
	for (size_t i = 0; i < op->npages; i++)
		swap_page(a, op->dst + (i << a->page_shift), op->src + (i << a->page_shift));
}

/* Walk each cycle backwards: position p receives the page that goes to p,
 * so every page is copied once plus one scratch copy per cycle. */
static int copy_permute(struct rewire_arena *a, const struct page_op *op,
			uint64_t *moved)
{
	size_t n = op->npages, *from = malloc(n * sizeof(*from));
	char *base = op->dst;
	size_t ps = a->page_size;

	if (!from)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		from[op->perm[i]] = i;
	for (size_t start = 0; start < n; start++) {
		size_t pos = start;

		if (from[start] == start || from[start] == SIZE_MAX)
			continue;
		memcpy(a->scratch, base + start * ps, ps);
		while (from[pos] != start) {
			size_t src = from[pos];

			memcpy(base + pos * ps, base + src * ps, ps);
			from[pos] = SIZE_MAX;
			pos = src;
			++*moved;
		}
		memcpy(base + pos * ps, a->scratch, ps);
		from[pos] = SIZE_MAX;
		++*moved;
	}
	free(from);
	return 0;
}

static int copy_apply(struct rewire_arena *a, const struct page_op *ops,
		      size_t nops, struct apply_result *res)
{
	int ret = 0;

	for (size_t i = 0; i < nops && !ret; i++) {
		const struct page_op *op = &ops[i];

		switch (op->type) {
		case REWIRE_OP_MOVE:
			ret = copy_move(a, op);
			if (!ret)
				res->copied += op->npages;
			break;
		case REWIRE_OP_SWAP:
			copy_swap(a, op);
			res->copied += 2 * op->npages;
			break;
		case REWIRE_OP_PERMUTE:
			ret = copy_permute(a, op, &res->copied);
			break;
		}
		if (!ret)
			res->done++;
	}
	return ret;
}

const struct backend backend_copy = {
	.name = "copy",
	.init = copy_init,
	.fini = NULL,
	.apply = copy_apply,
};
