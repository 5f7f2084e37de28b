/* Evicting: a page's data goes, its frame stays, counted against the
 * budget, for a recycling populate to take with one move; every other call
 * sees a hole. On every backend, batches lowered as on kmod and not. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "../src/fault.h"
#include "testlib.h"

enum { PAGES = 256, BUDGET = 64, DB = 128 };

static struct rewire_arena *a;
static char *db;

static char *pg(size_t i)
{
	return db + i * page_size;
}

static struct rewire_stats stats(void)
{
	struct rewire_stats st;

	if (rewire_arena_stats(a, &st))
		bail("rewire_arena_stats failed");
	return st;
}

static size_t pages(size_t bytes)
{
	return bytes / page_size;
}

static unsigned char state(size_t i)
{
	unsigned char v = 0xff;

	rewire_page_state(a, pg(i), page_size, &v);
	return v;
}

/* Whether page i holds one of the tags [lo, hi]. */
static bool holds_tag_in(size_t i, uint64_t lo, uint64_t hi)
{
	for (uint64_t t = lo; t <= hi; t++)
		if (page_has_tag(pg(i), t))
			return true;
	return false;
}

static void run(bool lowered)
{
	const char *how = lowered ? "lowered" : "as is";
	struct rewire_stats st0, st;
	uint64_t moved;
	bool all;

	a = test_arena(PAGES, BUDGET, 0);
	rw_test_lower_batches(a, lowered);
	db = rewire_alloc(a, DB * page_size, REWIRE_ALLOC_HOLES);
	if (!db || rewire_populate(a, db, 32 * page_size, 0))
		bail("no database range");
	for (size_t i = 0; i < 32; i++)
		tag_page(pg(i), 1 + i);
	st0 = stats();

	is_int(0, rewire_evict(a, db, 8 * page_size), "%s: evicting 8 pages", how);
	st = stats();
	all = true;
	for (size_t i = 0; i < 8; i++)
		all &= state(i) == (REWIRE_PAGE_LIVE | (i ? 0 : REWIRE_PAGE_HEAD)) &&
		       page_resident(pg(i));
	ok(all, "%s: they read as holes to rewire_page_state, their frames still mapped", how);
	ok(st.backed == st0.backed && pages(st.cached) == 8,
	   "%s: still counted against the budget (%zu backed pages), as cache (%zu)", how,
	   pages(st.backed), pages(st.cached));

	moved = st.pages_remapped + st.pages_copied;
	is_int(0, rewire_populate(a, pg(64), 8 * page_size, REWIRE_POPULATE_RECYCLE),
	       "%s: a recycling populate of 8 holes", how);
	st = stats();
	all = true;
	for (size_t i = 0; i < 8; i++)
		all &= !page_resident(pg(i)) && page_resident(pg(64 + i)) &&
		       holds_tag_in(64 + i, 1, 8);
	ok(all, "%s: takes the evicted frames, one move each, data and all", how);
	ok(st.backed == st0.backed && !st.cached && st.pages_remapped + st.pages_copied == moved + 8,
	   "%s: no new budget, no cache left, 8 pages moved (%llu)", how,
	   (unsigned long long)(st.pages_remapped + st.pages_copied - moved));

	/* An evicted page populated again takes back its own frame. */
	rewire_evict(a, pg(8), 2 * page_size);
	moved = st.pages_remapped + st.pages_copied;
	is_int(0, rewire_populate(a, pg(8), page_size, 0), "%s: populating an evicted page", how);
	is_int(0, rewire_populate(a, pg(9), page_size, REWIRE_POPULATE_RECYCLE),
	       "%s: and another, recycling", how);
	st = stats();
	ok(st.backed == st0.backed && st.pages_remapped + st.pages_copied == moved &&
	   !memcmp(pg(8), (char[64]){ 0 }, 64) && state(9) == (REWIRE_PAGE_LIVE | REWIRE_PAGE_BACKED),
	   "%s: its own frame, zeroed unless recycling, with no move and no new budget", how);

	rewire_evict(a, pg(10), 3 * page_size);
	is_int(-ENOENT, rewire_swap(a, pg(10), pg(20), page_size),
	       "%s: an evicted page holds no data to swap", how);
	is_int(-ENOENT, rewire_move(a, pg(100), pg(10), page_size),
	       "%s: nor to move", how);
	is_int(0, rewire_discard(a, pg(10), page_size), "%s: discarding one", how);
	is_int(0, rewire_move(a, pg(11), pg(20), page_size), "%s: moving data onto one", how);
	st = stats();
	ok(st.backed == st0.backed - 2 * page_size && !page_resident(pg(10)) &&
	   page_has_tag(pg(11), 21) && !page_resident(pg(20)) && pages(st.cached) == 1,
	   "%s: both give its frame back to the budget (%zu backed)", how, pages(st.backed));

	/* One batch evicts what a buffer manager drops and loads what it
	 * needs: on kmod, one call. */
	{
		struct rewire_op ops[2] = {
			{ REWIRE_OP_EVICT, 0, pg(21), NULL, 4 * page_size, NULL },
			{ REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, pg(80), NULL, 5 * page_size, NULL },
		};
		size_t done = 0;

		st0 = stats();
		is_int(0, rewire_batch(a, ops, 2, &done), "%s: a batch of evict and populate", how);
		st = stats();
		all = done == 2;
		for (size_t i = 0; i < 4; i++)
			all &= !page_resident(pg(21 + i));
		for (size_t i = 0; i < 5; i++)
			all &= page_resident(pg(80 + i));
		ok(all && st.backed == st0.backed && !st.cached,
		   "%s: the loads took the evicted frames and the spare one, no new budget (%zu done, %zu backed of %zu, %zu cached)",
		   how, done, pages(st.backed), pages(st0.backed), pages(st.cached));
	}

	/* A freed run's evicted pages are cache, as its backed ones are. */
	{
		char *r = rewire_alloc(a, 4 * page_size, 0);

		st0 = stats();
		rewire_evict(a, r, 2 * page_size);
		is_int(0, rewire_free(a, r), "%s: freeing a run with evicted pages", how);
		st = stats();
		ok(st.backed == st0.backed && pages(st.cached) == 4,
		   "%s: its 4 pages are cache (%zu)", how, pages(st.cached));
		rewire_purge(a);
	}

	/* With the budget all taken, evicted frames make room. */
	st0 = stats();
	{
		size_t room = BUDGET - pages(st0.backed), n = 0;

		/* Pages 85 on are holes still. */
		while (n < room && !rewire_populate(a, pg(85 + n), page_size, 0))
			n++;
		rewire_evict(a, pg(85), 6 * page_size);
		is_int(0, rewire_populate(a, pg(DB - 6), 6 * page_size, 0),
		       "%s: a zero-filling populate with the budget full of evicted frames", how);
		st = stats();
		ok(n == room && pages(st.backed) == BUDGET && !page_resident(pg(85)),
		   "%s: drops them to stay within the budget (%zu backed)", how, pages(st.backed));
	}
	rewire_evict(a, pg(DB - 6), 6 * page_size);
	is_int(0, rewire_purge(a), "%s: a purge", how);
	st = stats();
	ok(!st.cached && !page_resident(pg(DB - 6)), "%s: drops evicted frames too", how);

	/* What was never evicted kept its data. */
	all = true;
	for (size_t i = 25; i < 32; i++)
		all &= page_has_tag(pg(i), 1 + i);
	ok(all, "%s: the pages never evicted keep their data", how);
	is_int(-EINVAL, rewire_evict(a, pg(1) + 1, page_size), "%s: unaligned: EINVAL", how);
	is_int(-EFAULT, rewire_evict(a, pg(DB), page_size), "%s: not in a run: EFAULT", how);
	rewire_arena_destroy(a);
}

/*
 * A batch that evicts and then loads more pages than it evicted, with the
 * budget all but full: the loads take the batch's own evicted frames, and
 * the rest of the budget; and one that evicts a page and moves data onto
 * it leaks no budget.
 */
static void same_batch(bool lowered)
{
	const char *how = lowered ? "lowered" : "as is";
	struct rewire_op ops[2] = {
		{ REWIRE_OP_EVICT, 0, NULL, NULL, 0, NULL },
		{ REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, NULL, NULL, 0, NULL },
	};
	struct rewire_stats st;
	size_t done = 0;

	a = test_arena(PAGES, BUDGET, 0);
	rw_test_lower_batches(a, lowered);
	db = rewire_alloc(a, DB * page_size, REWIRE_ALLOC_HOLES);
	if (!db || rewire_populate(a, db, (BUDGET - 1) * page_size, 0))
		bail("no database range");
	tag_page(pg(0), 7);
	ops[0].dst = pg(0);
	ops[0].len = page_size;
	ops[1].dst = pg(BUDGET);
	ops[1].len = 2 * page_size;
	is_int(0, rewire_batch(a, ops, 2, &done), "%s: evicting 1 page and loading 2, 1 page of budget left", how);
	st = stats();
	ok(done == 2 && pages(st.backed) == BUDGET && !st.cached && !page_resident(pg(0)) &&
	   holds_tag_in(BUDGET, 7, 7) + holds_tag_in(BUDGET + 1, 7, 7) == 1,
	   "%s: one load took the evicted frame, the other the last page of budget (%zu done, %zu backed)",
	   how, done, pages(st.backed));

	ops[0] = (struct rewire_op){ REWIRE_OP_EVICT, 0, pg(1), NULL, page_size, NULL };
	ops[1] = (struct rewire_op){ REWIRE_OP_MOVE, 0, pg(1), pg(2), page_size, NULL };
	tag_page(pg(2), 9);
	is_int(0, rewire_batch(a, ops, 2, &done), "%s: evicting a page and moving data onto it", how);
	st = stats();
	ok(page_has_tag(pg(1), 9) && !page_resident(pg(2)) && pages(st.backed) == BUDGET - 1 &&
	   !st.cached, "%s: its frame given back (%zu backed, %zu cached)", how, pages(st.backed),
	   pages(st.cached));
	rewire_free(a, db);
	rewire_purge(a);
	st = stats();
	ok(!st.backed && !st.cached, "%s: freed and purged, nothing left (%zu backed)", how,
	   pages(st.backed));
	rewire_arena_destroy(a);
}

/*
 * Two buffer managers in one arena, a thread each, each with its own
 * range and a pool of its own: victims evicted and pages loaded with
 * recycling populates in one batch a miss, so that each takes the other's
 * evicted frames too. No call may fail, and every page loaded holds what
 * was written into it.
 */
enum { MGR_PAGES = 256, MGR_POOL = 32, MGR_STEPS = 600, MGR_ROUNDS = 8 };

struct mgr {
	char *range;
	uint64_t seed;
	long failed, wrong, steps;
};

static void *manage(void *arg)
{
	struct mgr *m = arg;
	uint32_t res[MGR_POOL];
	size_t nres = 0;

	for (long s = 0; s < MGR_STEPS; s++) {
		uint32_t p = (uint32_t)(rnd_next(&m->seed) % MGR_PAGES);
		struct rewire_op ops[2];
		size_t nops = 0, k, v = 0;
		int ret;

		for (k = 0; k < nres && res[k] != p; k++)
			;
		if (k < nres) {
			m->wrong += !page_has_tag(m->range + p * page_size, (uint64_t)p + 1);
			continue;
		}
		if (nres == MGR_POOL) {
			v = rnd_next(&m->seed) % nres;
			ops[nops++] = (struct rewire_op){ REWIRE_OP_EVICT, 0,
							  m->range + res[v] * page_size, NULL,
							  page_size, NULL };
		}
		ops[nops++] = (struct rewire_op){ REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE,
						  m->range + p * page_size, NULL, page_size, NULL };
		ret = rewire_batch(a, ops, nops, NULL);
		if (ret) {
			if (!m->failed)
				diag("manager step %ld: rewire_batch: %s", s, strerror(-ret));
			m->failed++;
			continue;
		}
		tag_page(m->range + p * page_size, (uint64_t)p + 1);
		if (nres == MGR_POOL)
			res[v] = p;
		else
			res[nres++] = p;
		m->steps++;
	}
	return NULL;
}

/*
 * Each round in a new arena: the moment both pools fill the budget, when
 * one manager's loads begin to recycle while the other's still take new
 * pages, is where a call failed with ENOMEM for budget a copy had only
 * lent itself (one round in ten or so, on mremap).
 */
static void two_managers(void)
{
	long steps[2] = { 0, 0 }, failed[2] = { 0, 0 }, wrong[2] = { 0, 0 };
	size_t most = 0;

	for (int round = 0; round < MGR_ROUNDS; round++) {
		struct mgr m[2];
		pthread_t t[2];
		struct rewire_stats st;

		a = test_arena(4 * MGR_PAGES, 2 * MGR_POOL, 0);
		for (int i = 0; i < 2; i++) {
			m[i] = (struct mgr){ rewire_alloc(a, MGR_PAGES * page_size,
							  REWIRE_ALLOC_HOLES),
					     test_seed() + (uint64_t)(2 * round + i) + 1, 0, 0, 0 };
			if (!m[i].range)
				bail("no range for a manager");
		}
		for (int i = 0; i < 2; i++)
			if (pthread_create(&t[i], NULL, manage, &m[i]))
				bail("no thread");
		for (int i = 0; i < 2; i++) {
			pthread_join(t[i], NULL);
			steps[i] += m[i].steps;
			failed[i] += m[i].failed;
			wrong[i] += m[i].wrong;
		}
		st = stats();
		if (pages(st.backed) > most)
			most = pages(st.backed);
		rewire_arena_destroy(a);
	}
	ok(!failed[0] && !failed[1] && !wrong[0] && !wrong[1],
	   "two managers in one arena, evicting and recycling, %d rounds: %ld and %ld loads, "
	   "%ld and %ld calls failed, %ld and %ld hits wrong", MGR_ROUNDS, steps[0], steps[1],
	   failed[0], failed[1], wrong[0], wrong[1]);
	ok(most <= 2 * MGR_POOL, "and the budget held (at most %zu backed)", most);
}

int main(void)
{
	test_init();
	plan(2 * 25 + 2 * 5 + 2);
	run(false);
	run(true);
	same_batch(false);
	same_batch(true);
	two_managers();
	return done_testing();
}
