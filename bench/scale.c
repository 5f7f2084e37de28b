/* Scale: what a buffer manager's frequent calls cost in an arena of 64 MiB
 * and in one of 64 GiB, each mostly one live run of holes (its database
 * range) with a few pages backed at scattered places. A call must cost
 * about the same in both: its searches for pages start where free pages
 * may be and stop once they have what they need. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rewire.h"

enum { CALLS = 256, USABLE_CALLS = 4096 };
enum call { USABLE, SWAP, RECYCLE, DRY, DISCARD, NCALLS };
static const char *const call_names[NCALLS] = {
	"usable_size of a run beside it",
	"swap of two pages",
	"populate a page, recycled from the cache",
	"populate a page, recycling, cache empty",
	"discard a page",
};

static char *page_of(char *db, size_t dbpages, int i)
{
	return db + (size_t)((uint64_t)i * 7919 % dbpages) * ps;
}

/* One run of every call on a fresh arena, ns per call into ns[]: 0, or -1
 * when a call failed or left wrong data, or an errno when the arena or its
 * runs cannot be had here. */
static int run_once(size_t reserve, size_t run, double ns[NCALLS], const char **backend)
{
	struct rewire_options o;
	struct rewire_arena *a;
	size_t dbpages = run / ps, sum = 0;
	char *small, *db, *cache;
	int ret = -1;
	double t;

	rewire_options_init(&o);
	o.reserve = reserve;
	o.lock_budget = 64 << 20;
	o.flags = REWIRE_UNLOCKED;
	ret = -rewire_arena_create(&o, &a);
	if (ret)
		return ret;
	*backend = rewire_backend_name(a);
	small = rewire_alloc(a, ps, 0);
	db = rewire_alloc(a, run, REWIRE_ALLOC_HOLES);
	ret = -1;
	if (!small || !db) {
		ret = ENOMEM;
		goto out;
	}
	/* The kernel's page tables for the pages used, which the first touch
	 * of scattered pages in a huge range allocates, are not measured. */
	for (int i = 0; i < CALLS; i++)
		if (rewire_populate(a, page_of(db, dbpages, i), ps, 0) ||
		    rewire_discard(a, page_of(db, dbpages, i), ps))
			goto out;
	cache = rewire_alloc(a, CALLS * ps, 0);
	if (!cache || rewire_free(a, cache))
		goto out;

	t = now_ns();
	for (int i = 0; i < CALLS; i++)
		if (rewire_populate(a, page_of(db, dbpages, i), ps, REWIRE_POPULATE_RECYCLE))
			goto out;
	ns[RECYCLE] = (now_ns() - t) / CALLS;
	for (int i = 0; i < CALLS; i++)
		*(int *)page_of(db, dbpages, i) = i;
	t = now_ns();
	for (int i = 0; i + 1 < CALLS; i += 2)
		if (rewire_swap(a, page_of(db, dbpages, i), page_of(db, dbpages, i + 1), ps))
			goto out;
	ns[SWAP] = (now_ns() - t) / (CALLS / 2);
	for (int i = 0; i < CALLS; i++)
		if (*(int *)page_of(db, dbpages, i) != (i ^ 1))
			goto out;
	t = now_ns();
	for (int i = 0; i < USABLE_CALLS; i++)
		sum += rewire_usable_size(a, small);
	ns[USABLE] = (now_ns() - t) / USABLE_CALLS;
	if (sum != USABLE_CALLS * ps)
		goto out;
	t = now_ns();
	for (int i = 0; i < CALLS; i++)
		if (rewire_discard(a, page_of(db, dbpages, i), ps))
			goto out;
	ns[DISCARD] = (now_ns() - t) / CALLS;
	/* The cache went into the pages above; these are zero-filled. */
	t = now_ns();
	for (int i = 0; i < CALLS; i++)
		if (rewire_populate(a, page_of(db, dbpages, i), ps, REWIRE_POPULATE_RECYCLE))
			goto out;
	ns[DRY] = (now_ns() - t) / CALLS;
	ret = 0;
out:
	rewire_arena_destroy(a);
	return ret;
}

/*
 * The two arenas side by side in each round, taking turns at going first;
 * a call's ratio is the median of its ratios within a round (these
 * machines are shared and noisy, and one run of a call lasts a millisecond).
 */
void bench_scale(void)
{
	static const size_t reserve[2] = { (size_t)64 << 20, (size_t)64 << 30 };
	double ns[2][NCALLS][32], ratio[NCALLS][32];
	const char *backend = "?";
	char what[96];
	int rounds = reps < 9 ? 9 : reps;

	for (int r = 0; r < rounds; r++) {
		for (int k = 0; k < 2; k++) {
			int s = (k + r) % 2;
			double one[NCALLS];
			int ret;

			progress("scale: round %d of %d, %s arena", r + 1, rounds,
				 s ? "64 GiB" : "64 MiB");
			ret = run_once(reserve[s], reserve[s] / 16 * 15, one, &backend);
			if (ret) {
				progress_done();
				if (ret < 0)
					printf("\nscale: FAILED OR WRONG DATA in a %s arena\n",
					       s ? "64 GiB" : "64 MiB");
				else
					printf("\nscale: a %s arena with its run cannot be had here "
					       "(%s; vm.overcommit_memory 2?): not measured\n",
					       s ? "64 GiB" : "64 MiB", strerror(ret));
				bench_failed |= ret < 0;
				return;
			}
			for (int c = 0; c < NCALLS; c++)
				ns[s][c][r] = one[c];
		}
		for (int c = 0; c < NCALLS; c++)
			ratio[c][r] = ns[1][c][r] / ns[0][c][r];
	}
	progress_done();
	printf("\nscale: one call in an arena of 64 MiB and of 64 GiB, 15/16 of each one live run\n"
	       "of holes (a buffer manager's database range); unlocked arenas, rewire on %s;\n"
	       "medians of %d rounds (ns)\n", backend, rounds);
	printf("  %-48s %10s %10s %8s\n", "call, on or beside the run", "64 MiB", "64 GiB", "ratio");
	for (int c = 0; c < NCALLS; c++) {
		double small = median(ns[0][c], rounds), huge = median(ns[1][c], rounds);

		printf("  %-48s %10.0f %10.0f %8.2f\n", call_names[c], small, huge,
		       median(ratio[c], rounds));
		record("scale", call_names[c], "ns_64MiB", small);
		record("scale", call_names[c], "ns_64GiB", huge);
	}
	printf("  goals\n");
	for (int c = 0; c < NCALLS; c++) {
		double m = median(ratio[c], rounds);

		snprintf(what, sizeof(what), "%s, 64 GiB / 64 MiB", call_names[c]);
		goal(what, m, "<= 2", m <= 2);
	}
}
