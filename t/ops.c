/* move, swap, permute and batch against a model: every page carries a unique
 * tag and the whole region is checked after the operations. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../src/fault.h"
#include "testlib.h"

#define NP 96			/* backed pages, followed by NP holes */
#define REGION (2 * NP)

static struct rewire_arena *arena;
static char *base;
static uint64_t model[REGION];
static uint64_t want_ops, want_moved;

static char *at(size_t i)
{
	return base + i * page_size;
}

static bool all_state(const uint64_t *m, size_t i, size_t n, bool backed)
{
	for (size_t k = 0; k < n; k++)
		if ((m[i + k] != HOLE) != backed)
			return false;
	return true;
}

static bool overlapping(size_t x, size_t y, size_t n)
{
	return x < y ? y - x < n : x - y < n;
}

/* The model's answer to one operation; applies it to m when it succeeds. */
static int model_op(uint64_t *m, const struct rewire_op *op, uint64_t *moved)
{
	size_t d = (size_t)((char *)op->dst - base) / page_size;
	size_t s = op->src ? (size_t)((char *)op->src - base) / page_size : 0;
	size_t n = op->len / page_size;
	uint64_t tmp[REGION];

	switch (op->type) {
	case REWIRE_OP_MOVE:
		if (overlapping(d, s, n))
			return -EINVAL;
		if (!all_state(m, d, n, false))
			return -EEXIST;
		if (!all_state(m, s, n, true))
			return -ENOENT;
		for (size_t k = 0; k < n; k++) {
			m[d + k] = m[s + k];
			m[s + k] = HOLE;
		}
		*moved += n;
		return 0;
	case REWIRE_OP_SWAP:
		if (overlapping(d, s, n))
			return -EINVAL;
		if (!all_state(m, d, n, true) || !all_state(m, s, n, true))
			return -ENOENT;
		for (size_t k = 0; k < n; k++) {
			uint64_t t = m[d + k];

			m[d + k] = m[s + k];
			m[s + k] = t;
		}
		*moved += 2 * n;
		return 0;
	case REWIRE_OP_PERMUTE:
		if (!all_state(m, d, n, true))
			return -ENOENT;
		for (size_t k = 0; k < n; k++) {
			tmp[op->perm[k]] = m[d + k];
			*moved += op->perm[k] != k;
		}
		memcpy(&m[d], tmp, n * sizeof(*m));
		return 0;
	}
	return -EINVAL;
}

static size_t perms[8][REGION];

/* Index of a random page in state backed (or any, one time in four). */
static size_t pick(const uint64_t *m, size_t n, bool backed)
{
	size_t i = rnd_below(REGION - n + 1);

	for (int tries = 0; tries < 3 * REGION && rnd_below(4); tries++, i = rnd_below(REGION - n + 1))
		if (all_state(m, i, n, backed))
			break;
	return i;
}

/* A random operation, mostly one the model m allows. */
static void random_op(const uint64_t *m, struct rewire_op *op, int slot)
{
	size_t n = 1 + rnd_below(rnd_below(8) + 1);
	uint32_t type = REWIRE_OP_MOVE + (uint32_t)rnd_below(3);
	size_t d = pick(m, n, type != REWIRE_OP_MOVE), s = pick(m, n, true);

	memset(op, 0, sizeof(*op));
	op->type = type;
	op->dst = at(d);
	op->len = n * page_size;
	if (op->type == REWIRE_OP_PERMUTE) {
		if (rnd_below(2))
			n = op->len / page_size + rnd_below(REGION - d - op->len / page_size + 1);
		op->len = n * page_size;
		for (size_t k = 0; k < n; k++)
			perms[slot][k] = k;
		shuffle(perms[slot], n);
		op->perm = perms[slot];
	} else {
		op->src = at(s);
	}
}

static void check_stats(const char *what)
{
	struct rewire_stats st;

	is_int(0, rewire_arena_stats(arena, &st), "stats after %s", what);
	is_int((long long)want_ops, (long long)st.ops, "ops counted after %s", what);
	is_int((long long)want_moved, (long long)(st.pages_copied + st.pages_remapped),
	       "pages moved counted after %s", what);
}

static void fixed_cases(void)
{
	size_t perm3[3] = { 1, 2, 0 }, done = 99;
	uint64_t t0 = model[20], t1 = model[21], t2 = model[22];
	struct rewire_op batch[3];

	is_int(0, rewire_move(arena, at(NP), at(0), 4 * page_size), "move 4 pages into holes");
	model_op(model, &(struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP), at(0), 4 * page_size, NULL },
		 &want_moved);
	want_ops++;
	ok(check_pages(base, model, REGION), "data moved, sources are holes");

	is_int(0, rewire_swap(arena, at(4), at(10), 4 * page_size), "swap two 4-page ranges");
	model_op(model, &(struct rewire_op){ REWIRE_OP_SWAP, 0, at(4), at(10), 4 * page_size, NULL },
		 &want_moved);
	want_ops++;
	ok(check_pages(base, model, REGION), "ranges exchanged");

	is_int(0, rewire_permute(arena, at(20), perm3, 3), "permute 3 pages by {1, 2, 0}");
	ok(model[20] == t0 && page_has_tag(at(21), t0) && page_has_tag(at(22), t1) &&
	   page_has_tag(at(20), t2), "page i went to perm[i]");
	model[20] = t2;
	model[21] = t0;
	model[22] = t1;
	want_ops++;
	want_moved += 3;
	ok(check_pages(base, model, REGION), "the rest is untouched");

	/* A page moved, then moved again, then swapped: order matters. */
	batch[0] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP + 10), at(30), page_size, NULL };
	batch[1] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP + 11), at(NP + 10), page_size, NULL };
	batch[2] = (struct rewire_op){ REWIRE_OP_SWAP, 0, at(NP + 11), at(31), page_size, NULL };
	is_int(0, rewire_batch(arena, batch, 3, &done), "batch of dependent operations");
	is_int(3, (long long)done, "batch reports all 3 done");
	for (int i = 0; i < 3; i++)
		model_op(model, &batch[i], &want_moved);
	want_ops += 3;
	ok(check_pages(base, model, REGION), "batch applied in order");
	check_stats("the fixed cases");
}

static void random_cases(int rounds)
{
	struct rewire_op ops[6];
	uint64_t m[REGION], moved;
	int mismatches = 0, applied = 0;

	for (int r = 0; r < rounds && !mismatches; r++) {
		size_t n = rnd_below(4) ? 1 : 2 + rnd_below(5), done = 99;
		int want = 0, got;

		memcpy(m, model, sizeof(m));
		moved = 0;
		for (size_t i = 0; i < n; i++) {
			random_op(m, &ops[i], (int)i);
			if (!want)
				want = model_op(m, &ops[i], &moved);
		}
		got = rewire_batch(arena, ops, n, &done);
		if (got != want || done != (want ? 0 : n)) {
			diag("round %d: batch of %zu returned %d (done %zu), model says %d",
			     r, n, got, done, want);
			mismatches++;
		}
		if (!want) {
			memcpy(model, m, sizeof(m));
			want_ops += n;
			want_moved += moved;
			applied++;
		}
		if ((r % 64 == 0 || r == rounds - 1) && !check_pages(base, model, REGION)) {
			diag("after round %d", r);
			mismatches++;
		}
	}
	ok(!mismatches, "%d random batches (%d applied) match the model", rounds, applied);
	check_stats("the random batches");
}

/*
 * A buffer manager's batch: drop pages, move pages in, recycle cached pages
 * into holes, replace pages. On kmod the discards become moves to the cache
 * and the whole batch is one call of the module, so one TLB flush.
 */
static void mixed_batch(void)
{
	struct rewire_arena *b = test_arena(32, 0, 0);
	uint64_t m[12] = { 1, 2, 3, 4, 5, 6, 7, 8, HOLE, HOLE, HOLE, HOLE };
	char *r = rewire_alloc(b, 8 * page_size, 0), *h, *c;
	struct rewire_stats s1, s2;
	bool kmod = !strcmp(rewire_backend_name(b), "kmod");
	size_t done = 0;
	int ret;

	h = rewire_alloc(b, 4 * page_size, REWIRE_ALLOC_HOLES);
	c = rewire_alloc(b, 2 * page_size, 0);
	if (!r || h != r + 8 * page_size || !c || rewire_free(b, c))
		bail("no memory for the mixed batch");
	for (size_t i = 0; i < 8; i++)
		tag_page(r + i * page_size, m[i]);
	{
		struct rewire_op ops[4] = {
			{ REWIRE_OP_DISCARD, 0, r, NULL, 2 * page_size, NULL },
			{ REWIRE_OP_MOVE, 0, h, r + 2 * page_size, 2 * page_size, NULL },
			{ REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, h + 2 * page_size, NULL,
			  2 * page_size, NULL },
			{ REWIRE_OP_MOVE, REWIRE_OP_REPLACE, r + 6 * page_size, r + 4 * page_size,
			  2 * page_size, NULL },
		};

		rewire_arena_stats(b, &s1);
		ret = rewire_batch(b, ops, 4, &done);
		rewire_arena_stats(b, &s2);
	}
	ok(!ret && done == 4, "a batch that discards, moves, recycles and replaces (%d, %zu done)",
	   ret, done);
	m[0] = m[1] = m[2] = m[3] = m[4] = m[5] = HOLE;
	m[6] = 5;
	m[7] = 6;
	m[8] = 3;
	m[9] = 4;
	ok(check_pages(r, m, 10) && page_resident(h + 2 * page_size) &&
	   page_resident(h + 3 * page_size), "every page where the batch put it");
	if (kmod) {
		is_int(1, (long long)(s2.batches - s1.batches), "kmod: the whole batch is one call");
		is_int(4 * (long long)page_size, (long long)s2.cached,
		       "kmod: the dropped pages are cached, the recycled ones left the cache");
	} else {
		ok(s2.batches > s1.batches, "%s: the batch took %llu backend calls",
		   rewire_backend_name(b), (unsigned long long)(s2.batches - s1.batches));
		is_int(0, (long long)s2.cached, "%s: the dropped pages are gone, the cache recycled",
		       rewire_backend_name(b));
	}
	is_int(6 * (long long)page_size, (long long)(s2.backed - s2.cached),
	       "six pages of the runs backed");
	rewire_arena_destroy(b);
}

/*
 * Pages a lowered discard caches, in an arena that never freed a page, are
 * what the next recycling populate takes (the search for cached pages stops
 * at the highest place one may be, which that discard must raise).
 */
static void recycled_after_discard(void)
{
	struct rewire_arena *b = test_arena(32, 0, 0);
	char *r = rewire_alloc(b, 4 * page_size, 0), *h = rewire_alloc(b, 4 * page_size,
									 REWIRE_ALLOC_HOLES);
	struct rewire_op drop = { REWIRE_OP_DISCARD, 0, r, NULL, 2 * page_size, NULL };
	struct rewire_op fill = { REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, h, NULL, 2 * page_size,
				  NULL };
	struct rewire_stats s1, s2;

	if (!r || h != r + 4 * page_size)
		bail("no memory for the recycling test");
	rw_test_lower_batches(b, true);
	ok(!rewire_batch(b, &drop, 1, NULL) && !rewire_arena_stats(b, &s1) &&
	   s1.cached == 2 * page_size, "batches lowered: a discard caches its 2 pages");
	ok(!rewire_batch(b, &fill, 1, NULL) && !rewire_arena_stats(b, &s2) && s2.cached == 0 &&
	   s2.pages_remapped + s2.pages_copied - s1.pages_remapped - s1.pages_copied == 2,
	   "and a recycling populate moves both in");
	rewire_arena_destroy(b);
}

int main(void)
{
	struct rewire_stats st;

	arena = test_arena(4 * NP, 0, 0);
	test_seed();
	plan(31);
	base = rewire_alloc(arena, NP * page_size, 0);
	ok(base && rewire_alloc(arena, NP * page_size, REWIRE_ALLOC_HOLES) == at(NP),
	   "a run of %d backed pages followed by one of %d holes", NP, NP);
	if (!base)
		bail("no memory");
	for (size_t i = 0; i < NP; i++) {
		model[i] = i + 1;
		tag_page(at(i), model[i]);
	}
	ok(check_pages(base, model, REGION), "tags written, holes empty");
	fixed_cases();
	random_cases(1500);
	{
		/* Regression: staging a swap or permutation on a remapping
		 * backend once discarded free cached pages. */
		struct rewire_stats s1, s2;
		size_t perm4[4] = { 3, 2, 1, 0 };
		char *c = rewire_alloc(arena, 8 * page_size, 0);

		rewire_free(arena, c);
		rewire_arena_stats(arena, &s1);
		rewire_swap(arena, at(NP - 2), at(NP - 4), 2 * page_size);
		rewire_permute(arena, at(NP - 4), perm4, 4);
		want_ops += 2;
		rewire_arena_stats(arena, &s2);
		ok(s1.cached == 8 * page_size && s2.cached == s1.cached && s2.backed == s1.backed,
		   "swap and permute leave cached pages alone");
	}
	{
		/* Regression: a permutation array in arena pages that an earlier
		 * operation of the batch moves away was read again after the
		 * move; it is now copied when the batch is checked. */
		struct rewire_arena *b = test_arena(16, 0, 0);
		char *x = rewire_alloc(b, page_size, 0), *y = rewire_alloc(b, page_size, 0);
		char *z = rewire_alloc(b, 2 * page_size, 0);
		size_t done = 0;
		struct rewire_op batch[2] = {
			{ REWIRE_OP_SWAP, 0, x, y, page_size, NULL },
			{ REWIRE_OP_PERMUTE, 0, z, NULL, 2 * page_size, (size_t *)x },
		};

		((size_t *)x)[0] = 1;
		((size_t *)x)[1] = 0;
		((size_t *)y)[0] = (size_t)1 << 40;	/* what x holds after the swap */
		((size_t *)y)[1] = (size_t)1 << 41;
		tag_page(z, 7);
		tag_page(z + page_size, 8);
		ok(!rewire_batch(b, batch, 2, &done) && done == 2 && page_has_tag(z, 8) &&
		   page_has_tag(z + page_size, 7), "a batch uses the permutation it checked");
		rewire_arena_destroy(b);
	}
	mixed_batch();
	recycled_after_discard();
	is_int(0, rewire_arena_stats(arena, &st), "stats");
	is_int((NP + 8) * (long long)page_size, (long long)st.backed,
	       "backed bytes: the tags and the 8 cached pages");
	diag("backend %s: %llu pages remapped, %llu copied", rewire_backend_name(arena),
	     (unsigned long long)st.pages_remapped, (unsigned long long)st.pages_copied);
	/* A backend named explicitly always uses its own mechanism. */
	if (getenv("REWIRE_BACKEND") && strcmp(getenv("REWIRE_BACKEND"), "copy") &&
	    strcmp(getenv("REWIRE_BACKEND"), "auto"))
		ok(st.pages_remapped > st.pages_copied, "%s moved most pages by remapping",
		   rewire_backend_name(arena));
	else
		ok(!strcmp(rewire_backend_name(arena), "copy") || st.pages_remapped + st.pages_copied > 0,
		   "pages were moved");
	rewire_arena_destroy(arena);
	return done_testing();
}
