/* Layer 4: the page operations. Validate every operation once against the
 * arena's page states, then hand the whole batch to the backend in one
 * call (plan.c); discards and populates go through the allocation layer,
 * which keeps the budget. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "fault.h"
#include "internal.h"

/* Resolve [p, p + len) to pages of live runs. */
static int check_range(const struct rewire_arena *a, const void *p, size_t len,
		       size_t *first)
{
	int ret = rw_page_range(a, p, len, first);

	if (!ret && !bits_all(a->live, *first, len >> a->page_shift, true))
		ret = -EFAULT;
	return ret;
}

/* Pages [start, start + n) of the arena. */
struct span {
	size_t start, n;
};

/* The span of [p, p + len), if it is page aligned, not empty and inside the
 * arena; check_range reports what is wrong with the others. */
static bool span_of(const struct rewire_arena *a, const void *p, size_t len, struct span *s)
{
	if (rw_page_range(a, p, len, &s->start))
		return false;
	s->n = len >> a->page_shift;
	return true;
}

static int by_start(const void *x, const void *y)
{
	const struct span *a = x, *b = y;

	return (a->start > b->start) - (a->start < b->start);
}

/* Insertion sort: a batch of a few operations needs no call of qsort. */
static void sort_few(struct span *sp, size_t k)
{
	for (size_t i = 1; i < k; i++) {
		struct span x = sp[i];
		size_t j = i;

		for (; j && sp[j - 1].start > x.start; j--)
			sp[j] = sp[j - 1];
		sp[j] = x;
	}
}

/*
 * Merge many spans through a bitmap of the arena's pages, in time linear in
 * the pages named: a batch of 65,536 single-page moves would spend more in
 * sorting than in moving. Returns how many spans are left, in address
 * order, or 0 if there was no memory for the bitmap.
 */
static size_t merge_in_bitmap(const struct rewire_arena *a, struct span *sp, size_t k)
{
	uint64_t *mine = calloc(bitmap_words(a->npages), sizeof(*mine));
	size_t m = 0;

	if (!mine)
		return 0;
	for (size_t i = 0; i < k; i++)
		for (size_t p = sp[i].start; p < sp[i].start + sp[i].n; p++)
			mine[p / BITS_PER_WORD] |= 1ULL << (p % BITS_PER_WORD);
	for (size_t i = 0; (i = bits_find(mine, i, a->npages, true)) < a->npages;) {
		size_t j = bits_find(mine, i, a->npages, false);

		sp[m++] = (struct span){ i, j - i };
		i = j;
	}
	free(mine);
	return m;
}

/*
 * Claim every page a batch names before checking anything: pages change
 * state only under a claim, so what is checked then stays true until the
 * batch is done, and no lock is needed. The ranges of one batch may overlap
 * each other: they are merged first, then claimed in address order.
 * -EBUSY, with nothing claimed, if another call holds one of the pages.
 */
static int claim_batch(struct rewire_arena *a, const struct rewire_op *uops, size_t nops,
		       struct span *sp, size_t *nsp)
{
	size_t k = 0, m = 0;

	for (size_t i = 0; i < nops; i++) {
		if (span_of(a, uops[i].dst, uops[i].len, &sp[k]))
			k++;
		if (uops[i].type != REWIRE_OP_PERMUTE && span_of(a, uops[i].src, uops[i].len, &sp[k]))
			k++;
	}
	/* A bitmap of the arena only where it is small beside the spans. */
	m = k > 64 && bitmap_words(a->npages) <= 4 * k ? merge_in_bitmap(a, sp, k) : 0;
	if (!m) {
		if (k > 16)
			qsort(sp, k, sizeof(*sp), by_start);
		else
			sort_few(sp, k);
		for (size_t i = 0; i < k; i++) {
			if (m && sp[i].start <= sp[m - 1].start + sp[m - 1].n) {
				size_t end = sp[i].start + sp[i].n;

				if (end > sp[m - 1].start + sp[m - 1].n)
					sp[m - 1].n = end - sp[m - 1].start;
			} else {
				sp[m++] = sp[i];
			}
		}
	}
	for (size_t i = 0; i < m; i++) {
		if (!rw_claim(a, sp[i].start, sp[i].n)) {
			while (i-- > 0)
				bits_release_s(a->busy, BUSY_STRIDE, sp[i].start, sp[i].n);
			return -EBUSY;
		}
	}
	*nsp = m;
	return 0;
}

static void release_batch(struct rewire_arena *a, const struct span *sp, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bits_release_s(a->busy, BUSY_STRIDE, sp[i].start, sp[i].n);
}

static bool overlap(const void *x, const void *y, size_t len)
{
	uintptr_t a = (uintptr_t)x, b = (uintptr_t)y;

	return a < b ? b - a < len : a - b < len;
}

/* Keep the backed bits an operation may overwrite, to undo it. */
static int save_bits(const struct rewire_arena *a, struct page_op *op)
{
	size_t d = page_index(a, op->dst);

	op->was = calloc(bitmap_words(op->npages), sizeof(uint64_t));
	if (!op->was)
		return -ENOMEM;
	for (size_t i = 0; i < op->npages; i++)
		if (bit_test(a->backed, d + i))
			op->was[i / BITS_PER_WORD] |= 1ULL << (i % BITS_PER_WORD);
	return 0;
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

	uint32_t allowed = uop->type == REWIRE_OP_MOVE ? REWIRE_OP_REPLACE :
			   uop->type == REWIRE_OP_POPULATE ? REWIRE_OP_RECYCLE : 0;

	op->was = NULL;
	if (uop->flags & ~allowed)
		return -EINVAL;
	op->type = uop->type;
	op->flags = uop->flags;
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
			if (!(uop->flags & REWIRE_OP_REPLACE) && !bits_all(a->backed, d, n, false))
				return -EEXIST;
		} else if (!bits_all(a->backed, d, n, true)) {
			return -ENOENT;
		}
		if (!bits_all(a->backed, s, n, true))
			return -ENOENT;
		op->npages = n;
		return (uop->flags & REWIRE_OP_REPLACE) ? save_bits(a, op) : 0;
	case REWIRE_OP_DISCARD:
	case REWIRE_OP_POPULATE:
	case REWIRE_OP_EVICT:
		if (uop->src || uop->perm)
			return -EINVAL;
		ret = check_range(a, uop->dst, uop->len, &d);
		if (ret)
			return ret;
		op->npages = uop->len >> a->page_shift;
		return save_bits(a, op);
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

/*
 * Spare frames where moves put pages must go first: the backends move
 * only into empty page-table entries. The pages are holes to the program
 * either way.
 */
static int drop_spares_moved_onto(struct rewire_arena *a, const struct page_op *ops, size_t nops)
{
	int ret = 0;

	for (size_t i = 0; i < nops && !ret && rw_spare_count(a); i++)
		if (ops[i].type == REWIRE_OP_MOVE)
			ret = rw_drop_spares(a, page_index(a, ops[i].dst), ops[i].npages);
	return ret;
}

/* Whether a batch holds operations that the library, not the backend, runs. */
static bool needs_library(const struct page_op *ops, size_t nops)
{
	for (size_t i = 0; i < nops; i++)
		if (ops[i].was)
			return true;
	return false;
}

/*
 * Run a checked batch (its state changes undone again) that discards,
 * populates or replaces: those the library does itself, in order, and each
 * stretch of moves, swaps and permutations between them goes to the
 * backend as one call. A replacing move first discards its destination;
 * if the move then fails, the destination stays discarded.
 */
static int run_mixed(struct rewire_arena *a, struct page_op *ops, size_t nops,
		     struct apply_result *res)
{
	size_t k = 0, j;
	int ret = 0;

	while (k < nops && !ret) {
		size_t d = page_index(a, ops[k].dst);
		struct apply_result part = { 0, 0, 0 };

		if (ops[k].type == REWIRE_OP_EVICT) {
			rw_evict_claimed(a, d, ops[k].npages, true);
			ret = 0;
		} else if (ops[k].type == REWIRE_OP_DISCARD) {
			ret = rw_discard_claimed(a, d, ops[k].npages);
		} else if (ops[k].type == REWIRE_OP_POPULATE) {
			ret = rw_populate_claimed(a, d, ops[k].npages, ops[k].flags & REWIRE_OP_RECYCLE);
		}
		if (ops[k].type == REWIRE_OP_DISCARD || ops[k].type == REWIRE_OP_POPULATE ||
		    ops[k].type == REWIRE_OP_EVICT) {
			if (!ret) {
				rw_count(a, 0, 1, 0, 0);
				res->done++;
				k++;
			}
			continue;
		}
		if (ops[k].flags & REWIRE_OP_REPLACE) {
			ret = rw_discard_claimed(a, d, ops[k].npages);
			if (ret)
				break;
			/* A plain move now, undone as one. */
			free(ops[k].was);
			ops[k].was = NULL;
		}
		for (j = k; j < nops && (ops[j].type == REWIRE_OP_SWAP ||
		     ops[j].type == REWIRE_OP_PERMUTE ||
		     (ops[j].type == REWIRE_OP_MOVE && (j == k || !ops[j].was))); j++)
			rw_apply_state(a, &ops[j], false);
		/* Pages an evict before them left spare frames in. */
		ret = drop_spares_moved_onto(a, ops + k, j - k);
		if (ret) {
			for (size_t u = j; u-- > k;)
				rw_apply_state(a, &ops[u], true);
			break;
		}
		ret = rw_backend_apply(a, ops + k, j - k, &part);
		rw_record(a, ops + k, j - k, &part, ret);
		res->done += part.done;
		res->remapped += part.remapped;
		res->copied += part.copied;
		k = j;
	}
	return ret;
}

/*
 * A batch lowered for a backend that flushes once per call: its moves,
 * swaps and permutations, and the moves that its discards and recycling
 * populates become, each with the index of the user's operation it comes
 * from. The pages those moves take outside the batch (free holes to put
 * discarded pages in, cached pages to recycle) stay claimed until the call
 * has run.
 */
struct lowered {
	struct page_op *ops;
	size_t *from;
	size_t n, cap;
	struct span *claims;
	size_t nclaims, capclaims;
};

static int lowered_add(struct lowered *l, struct page_op op, size_t from)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct page_op *ops = realloc(l->ops, cap * sizeof(*ops));
		size_t *f = ops ? realloc(l->from, cap * sizeof(*f)) : NULL;

		if (ops)
			l->ops = ops;
		if (!f)
			return -ENOMEM;
		l->from = f;
		l->cap = cap;
	}
	op.was = NULL;
	l->ops[l->n] = op;
	l->from[l->n++] = from;
	return 0;
}

static int lowered_claim(struct lowered *l, size_t start, size_t n)
{
	if (l->nclaims == l->capclaims) {
		size_t cap = l->capclaims ? 2 * l->capclaims : 16;
		struct span *c = realloc(l->claims, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		l->claims = c;
		l->capclaims = cap;
	}
	l->claims[l->nclaims++] = (struct span){ start, n };
	return 0;
}

/* Take back the moves added since mark (and their claims since cmark). */
static void unlower(struct rewire_arena *a, struct lowered *l, size_t mark, size_t cmark)
{
	while (l->n > mark) {
		const struct page_op *op = &l->ops[--l->n];

		rw_apply_state(a, op, true);
		rw_spare_return(a, op);
	}
	release_batch(a, l->claims + cmark, l->nclaims - cmark);
	l->nclaims = cmark;
}

/*
 * Lower a discard (to_holes: the backed pages of [d, d + n) move out to free
 * holes, where they are cached pages) or a recycling populate (cached pages
 * move into the holes of [d, d + n)), claiming the free pages it uses.
 * False, with nothing added, when there are too few of those or no memory.
 */
static bool lower_moves(struct rewire_arena *a, struct lowered *l, size_t d, size_t n,
			bool to_holes, size_t user)
{
	size_t mark = l->n, cmark = l->nclaims, from = rw_free_floor(a), end = d + n, i = d;

	/* A search waits for free pages: hold none across the call. */
	if (rw_searches_waiting(a))
		return false;

	while ((i = bits_find(a->backed, i, end, to_holes)) < end) {
		size_t j = bits_find(a->backed, i, end, !to_holes);

		while (i < j) {
			size_t got, p, mine;
			struct page_op mv = { .type = REWIRE_OP_MOVE };

			/* Spare frames first, each its own move. */
			if (!to_holes && rw_spare_count(a) && rw_spare_claim(a, 1, &p, &mine)) {
				mv = (struct page_op){ .type = REWIRE_OP_MOVE, .dst = page_addr(a, i),
						       .src = page_addr(a, p), .npages = 1,
						       .flags = RW_OP_FROM_SPARE |
								(mine ? RW_OP_OWN_SPARE : 0) };
				/* The batch's own it keeps claimed. */
				if (!mine && lowered_claim(l, p, 1))
					bits_release_s(a->busy, BUSY_STRIDE, p, 1);
				else if (!lowered_add(l, mv, user))
					p = SIZE_MAX;
				if (p != SIZE_MAX) {
					/* No memory: as it was. */
					rw_spare_return(a, &mv);
					unlower(a, l, mark, cmark);
					return false;
				}
				rw_apply_state(a, &l->ops[l->n - 1], false);
				i++;
				continue;
			}
			got = rw_claim_free(a, &from, to_holes ? a->npages : rw_cache_top(a),
					    j - i, !to_holes);
			mv.npages = got;

			if (!got || lowered_claim(l, from, got)) {
				if (got)
					bits_release_s(a->busy, BUSY_STRIDE, from, got);
				unlower(a, l, mark, cmark);
				return false;
			}
			mv.dst = page_addr(a, to_holes ? from : i);
			mv.src = page_addr(a, to_holes ? i : from);
			if (lowered_add(l, mv, user)) {
				unlower(a, l, mark, cmark);
				return false;
			}
			rw_apply_state(a, &l->ops[l->n - 1], false);
			/* The only move that fills free pages: they are cached now. */
			if (to_holes)
				rw_cache_grew(a, from + got);
			i += got;
			from += got;
		}
	}
	return true;
}

/*
 * Hand the lowered operations to the backend as one call and give back the
 * pages they claimed. user_from is the first user operation since the last
 * call; *done becomes the first not fully applied. Discards and populates,
 * which the backend does not see, count as operations here.
 */
static int lowered_run(struct rewire_arena *a, struct lowered *l, const struct page_op *uops,
		       size_t user_from, size_t user_to, struct apply_result *res)
{
	struct apply_result part = { 0, 0, 0 };
	int ret = l->n ? rw_backend_apply(a, l->ops, l->n, &part) : 0;

	if (l->n)
		rw_record(a, l->ops, l->n, &part, ret);
	if (ret && part.done < l->n)
		user_to = l->from[part.done];
	for (size_t u = user_from; u < user_to; u++)
		if (uops[u].type == REWIRE_OP_DISCARD || uops[u].type == REWIRE_OP_POPULATE)
			rw_count(a, 0, 1, 0, 0);
	/* Spare frames a move not applied would have taken are spare again. */
	for (size_t i = part.done; ret != -EIO && i < l->n; i++)
		rw_spare_return(a, &l->ops[i]);
	res->done = user_to;
	res->remapped += part.remapped;
	res->copied += part.copied;
	/* After EIO the pages may be anywhere among them: keep them claimed,
	 * as a stage is, so nothing reuses them. */
	if (ret != -EIO)
		release_batch(a, l->claims, l->nclaims);
	l->n = 0;
	l->nclaims = 0;
	return ret;
}

/*
 * run_mixed() for a backend that flushes once per call. A discard of
 * backed pages moves them to free holes of the arena, where they are
 * cached pages as a freed run's are, and a recycling populate moves cached
 * pages in; both join the batch's call, so one flush serves them all. The
 * call ends, to run as run_mixed() does, at a populate that zero-fills,
 * at a recycling one once the cache runs out, and at a discard of a range
 * with holes or with too few free holes to take it.
 */
static int run_lowered(struct rewire_arena *a, struct page_op *ops, size_t nops,
		       struct apply_result *res)
{
	struct lowered l = { NULL, NULL, 0, 0, NULL, 0, 0 };
	size_t k, first = 0;
	int ret = 0;

	for (k = 0; k < nops && !ret; k++) {
		struct page_op *op = &ops[k];
		size_t d = page_index(a, op->dst), n = op->npages;

		switch (op->type) {
		case REWIRE_OP_DISCARD:
			if (bits_all(a->backed, d, n, true) && lower_moves(a, &l, d, n, true, k))
				continue;
			break;
		case REWIRE_OP_EVICT:
			/* No system call: it runs between calls, in order. */
			break;
		case REWIRE_OP_POPULATE:
			/* Its own spare frames it takes back without a move. */
			if (rw_spare_count(a) && bits_find(a->spare, d, d + n, true) < d + n)
				break;
			if (bits_all(a->backed, d, n, true) ||
			    ((op->flags & REWIRE_OP_RECYCLE) && lower_moves(a, &l, d, n, false, k)))
				continue;
			break;
		case REWIRE_OP_MOVE:
			/* Pages an evict before it left spare frames in: those
			 * go first, as a replacing move's data does. */
			if (rw_spare_count(a) && bits_find(a->spare, d, d + n, true) < d + n)
				break;
			if (op->flags & REWIRE_OP_REPLACE && !bits_all(a->backed, d, n, false) &&
			    !(bits_all(a->backed, d, n, true) && lower_moves(a, &l, d, n, true, k)))
				break;
			/* fall through */
		default:
			if (lowered_add(&l, *op, k)) {
				ret = -ENOMEM;
				continue;
			}
			rw_apply_state(a, &l.ops[l.n - 1], false);
			continue;
		}
		/* As run_mixed() would: the call so far first. */
		ret = lowered_run(a, &l, ops, first, k, res);
		first = k + 1;
		if (ret)
			break;
		if (op->type == REWIRE_OP_EVICT) {
			rw_evict_claimed(a, d, n, true);
		} else if (op->type == REWIRE_OP_POPULATE) {
			ret = rw_populate_claimed(a, d, n, op->flags & REWIRE_OP_RECYCLE);
		} else {
			ret = rw_discard_claimed(a, d, n);
			if (!ret && op->type == REWIRE_OP_MOVE) {
				first = k;
				if (lowered_add(&l, *op, k))
					ret = -ENOMEM;
				else
					rw_apply_state(a, &l.ops[l.n - 1], false);
				continue;
			}
		}
		if (!ret) {
			rw_count(a, 0, 1, 0, 0);
			res->done = k + 1;
		}
	}
	if (!ret) {
		ret = lowered_run(a, &l, ops, first, nops, res);
	} else if (l.n) {
		/* Out of memory while lowering: nothing of this call ran. */
		unlower(a, &l, 0, 0);
		res->done = first;
	}
	free(l.ops);
	free(l.from);
	free(l.claims);
	return ret;
}

void rw_test_lower_batches(struct rewire_arena *a, bool on)
{
	a->lower = on;
}

/* Batches up to this long are checked on the stack: no allocation. */
#define FEW_OPS 64

/*
 * Claim every page of the batch, validate every operation against the page
 * states the ones before it leave, and hand the batch to the backend. No
 * lock: batches on disjoint pages run in parallel.
 */
int rewire_batch(struct rewire_arena *a, const struct rewire_op *uops,
		 size_t nops, size_t *donep)
{
	struct apply_result res = { 0, 0, 0 };
	struct page_op few[FEW_OPS], *ops;
	struct span few_spans[2 * FEW_OPS], *sp;
	size_t i = 0, nsp = 0;
	int ret;

	if (donep)
		*donep = 0;
	if (!a || (!uops && nops))
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	if (!nops)
		return 0;
	ops = nops <= FEW_OPS ? few : calloc(nops, sizeof(*ops));
	sp = nops <= FEW_OPS ? few_spans : calloc(2 * nops, sizeof(*sp));
	if (!ops || !sp) {
		ret = -ENOMEM;
		goto out;
	}
	ret = claim_batch(a, uops, nops, sp, &nsp);
	if (ret)
		goto out;
	for (i = 0; i < nops; i++) {
		ret = check_op(a, &uops[i], &ops[i]);
		if (ret)
			break;
		rw_apply_state(a, &ops[i], false);
	}
	if (ret) {
		/* The failed one may have saved bits; it changed no state. */
		free(ops[i].was);
		for (size_t k = i; k-- > 0;)
			rw_apply_state(a, &ops[k], true);
	} else if ((ret = drop_spares_moved_onto(a, ops, nops))) {
		for (size_t k = nops; k-- > 0;)
			rw_apply_state(a, &ops[k], true);
	} else if (!needs_library(ops, nops)) {
		ret = rw_backend_apply(a, ops, nops, &res);
		rw_record(a, ops, nops, &res, ret);
	} else {
		for (size_t k = nops; k-- > 0;)
			rw_apply_state(a, &ops[k], true);
		ret = a->lower ? run_lowered(a, ops, nops, &res) : run_mixed(a, ops, nops, &res);
	}
	/* Pages it evicted and did not recycle go to the stack. */
	rw_spare_keep_end();
	release_batch(a, sp, nsp);

	/* i is the number of operations checked, and so lowered. */
	while (i-- > 0) {
		if (ops[i].type == REWIRE_OP_PERMUTE)
			free((size_t *)ops[i].perm);
		free(ops[i].was);
	}
out:
	if (ops != few)
		free(ops);
	if (sp != few_spans)
		free(sp);
	if (donep)
		*donep = res.done;
	return ret;
}

/*
 * Claim [addr, addr + len), which must be pages of live runs: claimed
 * first, as a batch is, then checked. Its first page, or an error.
 */
static int claim_live(struct rewire_arena *a, const void *addr, size_t len, size_t *first)
{
	size_t n = len >> a->page_shift;
	int ret = rw_page_range(a, addr, len, first);

	if (ret)
		return ret;
	if (!rw_claim(a, *first, n))
		return -EBUSY;
	if (!bits_all(a->live, *first, n, true)) {
		bits_release_s(a->busy, BUSY_STRIDE, *first, n);
		return -EFAULT;
	}
	return 0;
}

/*
 * Discard, evict or populate pages of live runs, claimed for the call: no
 * lock, but while the cache is dropped or moved.
 */
static int on_live_pages(struct rewire_arena *a, void *addr, size_t len,
			 enum rewire_op_type type, bool recycle)
{
	size_t first, n;
	int ret;

	if (!a)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	ret = claim_live(a, addr, len, &first);
	if (ret)
		return ret;
	n = len >> a->page_shift;
	if (type == REWIRE_OP_DISCARD)
		ret = rw_discard_claimed(a, first, n);
	else if (type == REWIRE_OP_POPULATE)
		ret = rw_populate_claimed(a, first, n, recycle);
	else
		rw_evict_claimed(a, first, n, false);
	bits_release_s(a->busy, BUSY_STRIDE, first, n);
	return ret;
}

/* Turn pages of live runs into holes; their data is dropped. */
int rewire_discard(struct rewire_arena *a, void *addr, size_t len)
{
	return on_live_pages(a, addr, len, REWIRE_OP_DISCARD, false);
}

/* Evict pages of live runs: holes to the program, their frames kept for
 * recycling populates; no system call. */
int rewire_evict(struct rewire_arena *a, void *addr, size_t len)
{
	return on_live_pages(a, addr, len, REWIRE_OP_EVICT, false);
}

int rewire_populate(struct rewire_arena *a, void *addr, size_t len, unsigned int flags)
{
	if (!a || flags & ~REWIRE_POPULATE_RECYCLE)
		return -EINVAL;
	return on_live_pages(a, addr, len, REWIRE_OP_POPULATE, flags & REWIRE_POPULATE_RECYCLE);
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
