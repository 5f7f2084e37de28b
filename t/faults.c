/* Fault injection: a batch whose Nth page attempt fails (EAGAIN, EBUSY,
 * ENOMEM, EFAULT; once or several times running), for every N: the result
 * is either complete or exactly the operations reported done, and each
 * page's data is at exactly one known address. Then the same for realloc. */
#include <errno.h>
#include <string.h>

#include "../src/fault.h"
#include "testlib.h"

#define NP 12
#define REGION (2 * NP)

static char *base;

static char *at(size_t i)
{
	return base + i * page_size;
}

static const size_t perm[3] = { 2, 0, 1 };

/* The batch, and what it does to a model of the region. */
static size_t make_batch(struct rewire_op *ops)
{
	ops[0] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP), at(0), 3 * page_size, NULL };
	ops[1] = (struct rewire_op){ REWIRE_OP_SWAP, 0, at(3), at(6), 2 * page_size, NULL };
	ops[2] = (struct rewire_op){ REWIRE_OP_PERMUTE, 0, at(NP), NULL, 3 * page_size, perm };
	ops[3] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP + 6), at(8), 4 * page_size, NULL };
	ops[4] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(0), at(NP + 6), page_size, NULL };
	return 5;
}

static void model_apply(uint64_t *m, const struct rewire_op *op)
{
	size_t d = (size_t)((char *)op->dst - base) / page_size, n = op->len / page_size;
	size_t s = op->src ? (size_t)((char *)op->src - base) / page_size : 0;
	uint64_t t[REGION];

	switch (op->type) {
	case REWIRE_OP_MOVE:
		for (size_t k = 0; k < n; k++) {
			m[d + k] = m[s + k];
			m[s + k] = HOLE;
		}
		break;
	case REWIRE_OP_SWAP:
		for (size_t k = 0; k < n; k++) {
			t[0] = m[d + k];
			m[d + k] = m[s + k];
			m[s + k] = t[0];
		}
		break;
	default:
		for (size_t k = 0; k < n; k++)
			t[op->perm[k]] = m[d + k];
		memcpy(m + d, t, n * sizeof(*m));
	}
}

struct tally {
	long runs, fired, failed, wrong, eio;
};

static void one_batch(int err, long nth, long count, struct tally *t)
{
	struct rewire_arena *a = test_arena(4 * NP, 0, 0);
	struct rewire_op ops[5];
	struct rewire_stats st;
	uint64_t m[REGION];
	size_t n, done = 99;
	int ret;

	base = rewire_alloc(a, NP * page_size, 0);
	if (!base || rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES) != at(NP))
		bail("setup");
	for (size_t i = 0; i < REGION; i++) {
		m[i] = i < NP ? 100 + i : HOLE;
		if (i < NP)
			tag_page(at(i), m[i]);
	}
	n = make_batch(ops);
	rw_fault_inject(err, nth, count);
	ret = rewire_batch(a, ops, n, &done);
	t->fired += rw_fault_fired();
	rw_fault_inject(0, 0, 0);
	t->runs++;
	t->failed += ret != 0;
	if ((ret == 0) != (done == n) || done > n) {
		diag("%s at %ld x%ld: returned %d with %zu done", strerror(err), nth, count, ret, done);
		t->wrong++;
	}
	if (ret == -EIO) {
		/* Undoing failed too: then no page's data may be lost. */
		t->eio++;
		for (size_t k = 0; k < NP; k++) {
			size_t i = 0;

			while (i < 4 * NP && !(page_resident(at(i)) && page_has_tag(at(i), 100 + k)))
				i++;
			if (i == 4 * NP) {
				diag("%s at %ld x%ld: the data of page %zu is lost", strerror(err), nth,
				     count, k);
				t->wrong++;
			}
		}
		rewire_arena_destroy(a);
		return;
	}
	for (size_t i = 0; i < done && i < n; i++)
		model_apply(m, &ops[i]);
	rewire_arena_stats(a, &st);
	if (!check_pages(base, m, REGION) || st.ops != done) {
		diag("%s at page %ld x%ld: %zu done, %llu ops counted, pages wrong above?",
		     strerror(err), nth, count, done, (unsigned long long)st.ops);
		t->wrong++;
	}
	rewire_arena_destroy(a);
}

/*
 * A buffer manager's batch (drop, move, recycle, replace, swap), lowered to
 * moves as on kmod or not. Operations before the reported one are done,
 * those after it not; the one that failed may have dropped or filled some
 * of its pages, never moved half of a page run. No kept page is lost.
 */
enum { DROPPED = 1, FILLED = 2 };	/* may-states of the failed operation's pages */

static void one_mixed(int err, long nth, long count, bool lowered, struct tally *t)
{
	struct rewire_arena *a = test_arena(6 * NP, 0, 0);
	struct rewire_op ops[5];
	uint64_t m[REGION], before[REGION];
	int may[REGION] = { 0 };
	size_t done = 99;
	char *cache;
	int ret;

	base = rewire_alloc(a, NP * page_size, 0);
	if (!base || rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES) != at(NP) ||
	    !(cache = rewire_alloc(a, 4 * page_size, 0)) || rewire_free(a, cache))
		bail("setup");
	rw_test_lower_batches(a, lowered);
	for (size_t i = 0; i < REGION; i++) {
		m[i] = i < NP ? 200 + i : HOLE;
		if (i < NP)
			tag_page(at(i), m[i]);
	}
	ops[0] = (struct rewire_op){ REWIRE_OP_DISCARD, 0, at(0), NULL, 2 * page_size, NULL };
	ops[1] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP), at(2), 2 * page_size, NULL };
	ops[2] = (struct rewire_op){ REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, at(NP + 2), NULL,
				     2 * page_size, NULL };
	ops[3] = (struct rewire_op){ REWIRE_OP_MOVE, REWIRE_OP_REPLACE, at(6), at(4),
				     2 * page_size, NULL };
	ops[4] = (struct rewire_op){ REWIRE_OP_SWAP, 0, at(8), at(10), page_size, NULL };
	rw_fault_inject(err, nth, count);
	ret = rewire_batch(a, ops, 5, &done);
	t->fired += rw_fault_fired();
	rw_fault_inject(0, 0, 0);
	t->runs++;
	t->failed += ret != 0;
	if ((ret == 0) != (done == 5) || done > 5) {
		diag("mixed, %s at %ld x%ld: returned %d with %zu done", strerror(err), nth, count,
		     ret, done);
		t->wrong++;
		done = ret ? 0 : 5;
	}
	memcpy(before, m, sizeof(m));
	for (size_t i = 0; i < 5; i++) {
		bool whole = i < done;

		if (i > done || (i == done && !ret))
			break;
		switch (i) {
		case 0:
			for (int k = 0; k < 2; k++)
				whole ? (void)(m[k] = HOLE) : (void)(may[k] = DROPPED);
			break;
		case 1:
			if (whole)
				model_apply(m, &ops[1]);
			break;
		case 2:
			for (int k = NP + 2; k < NP + 4; k++)
				may[k] = FILLED;
			break;
		case 3:
			if (whole) {
				model_apply(m, &ops[3]);
			} else {
				may[6] = may[7] = DROPPED;
			}
			break;
		default:
			if (whole)
				model_apply(m, &ops[4]);
		}
	}
	for (size_t i = 0; i < REGION && ret != -EIO; i++) {
		bool here = page_resident(at(i)), good;

		if (may[i] == FILLED)
			good = true;
		else if (may[i] == DROPPED)
			good = !here || page_has_tag(at(i), before[i]);
		else
			good = m[i] == HOLE ? !here : here && page_has_tag(at(i), m[i]);
		if (!good) {
			diag("mixed%s, %s at %ld x%ld: %zu done (returned %d), page %zu wrong",
			     lowered ? ", lowered" : "", strerror(err), nth, count, done, ret, i);
			t->wrong++;
			break;
		}
	}
	if (ret == -EIO) {
		/* Undoing failed too: no page kept may be lost. */
		t->eio++;
		for (size_t k = 2; k < NP; k++) {
			size_t i = 0;

			while (i < 6 * NP && !(page_resident(base + i * page_size) &&
					       page_has_tag(base + i * page_size, 200 + k)))
				i++;
			if (i == 6 * NP && k != 6 && k != 7) {
				diag("mixed, %s at %ld x%ld: page %zu is lost", strerror(err), nth,
				     count, k);
				t->wrong++;
			}
		}
	}
	rewire_arena_destroy(a);
}

static void one_realloc(int err, long nth, long count, struct tally *t)
{
	struct rewire_arena *a = test_arena(64, 0, 0);
	uint64_t m[NP];
	char *p, *q;

	p = rewire_alloc(a, NP * page_size, 0);
	if (!p || !rewire_alloc(a, page_size, 0))
		bail("setup");
	base = p;
	for (size_t i = 0; i < NP; i++) {
		m[i] = 500 + i;
		if (i == 4 || i == 9)
			m[i] = HOLE;	/* holes split the run into several moves */
		else
			tag_page(at(i), m[i]);
	}
	rewire_move(a, rewire_alloc(a, page_size, REWIRE_ALLOC_HOLES), at(4), page_size);
	rewire_move(a, rewire_alloc(a, page_size, REWIRE_ALLOC_HOLES), at(9), page_size);
	rw_fault_inject(err, nth, count);
	q = rewire_realloc(a, p, 3 * NP * page_size);
	t->fired += rw_fault_fired();
	rw_fault_inject(0, 0, 0);
	t->runs++;
	t->failed += !q;
	if (!check_pages(q ? q : p, m, NP) || (q && rewire_usable_size(a, p)) ||
	    (!q && rewire_usable_size(a, p) != NP * page_size)) {
		diag("realloc, %s at page %ld x%ld: %s, data or runs wrong", strerror(err), nth,
		     count, q ? "moved" : "failed");
		t->wrong++;
	}
	rewire_arena_destroy(a);
}

int main(void)
{
	static const int errs[] = { EAGAIN, EBUSY, ENOMEM, EFAULT };
	struct tally batch = { 0 }, re = { 0 }, mixed = { 0 };

	test_init();
	plan(6);
	for (int e = 0; e < 4; e++)
		for (long count = 1; count <= 3; count += 2)
			for (long nth = 0; nth < 40; nth++) {
				one_batch(errs[e], nth, count, &batch);
				one_realloc(errs[e], nth, count, &re);
				one_mixed(errs[e], nth, count, false, &mixed);
				one_mixed(errs[e], nth, count, true, &mixed);
			}
	/* Every attempt from the Nth on fails: undoing fails as well. */
	for (long nth = 0; nth < 40; nth++) {
		one_batch(ENOMEM, nth, 1000, &batch);
		one_mixed(ENOMEM, nth, 1000, false, &mixed);
		one_mixed(ENOMEM, nth, 1000, true, &mixed);
	}
	diag("batches: %ld runs, %ld faults injected, %ld failed cleanly, %ld could not be undone",
	     batch.runs, batch.fired, batch.failed - batch.eio, batch.eio);
	diag("reallocs: %ld runs, %ld faults injected, %ld failed cleanly", re.runs, re.fired,
	     re.failed);
	ok(batch.fired > 0, "faults were injected into batches");
	is_int(0, batch.wrong, "every batch left exactly the reported operations done, "
	       "or lost nothing when it could not undo");
	diag("mixed batches: %ld runs, %ld faults injected, %ld failed cleanly, %ld could not be "
	     "undone", mixed.runs, mixed.fired, mixed.failed - mixed.eio, mixed.eio);
	ok(mixed.fired > 0, "faults were injected into mixed batches");
	is_int(0, mixed.wrong, "every mixed batch, lowered or not, left the reported operations "
	       "done and the failed one's pages dropped, filled or as they were");
	ok(re.fired > 0, "faults were injected into reallocs");
	is_int(0, re.wrong, "every realloc either moved everything or nothing");
	return done_testing();
}
