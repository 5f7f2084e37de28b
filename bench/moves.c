/* Page moves per backend: a random permutation, a permutation of 64-page
 * blocks, and contiguous moves (one call, a call per page, one batch), in
 * ns per page, with the ratios the project's goals name. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rewire.h"

/* kmod is measured only where its module is loaded (rewire(4)). */
static const char *const backends[] = { "copy", "kmod", "uffd", "mremap", "auto" };
#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

/* The arenas' page size: the base page size, or a huge page for the huge
 * pages' row. */
static size_t unit;
#define HUGE_PAGES 64

/* A fresh arena on backend with n backed pages (each stamped with its index)
 * followed by n holes, and room after them to stage n pages. */
static struct rewire_arena *setup(const char *backend, size_t n, char **base)
{
	struct rewire_options o;
	struct rewire_arena *a;
	int ret;

	rewire_options_init(&o);
	o.page_size = unit;
	o.reserve = 3 * n * unit;
	o.backend = backend;
	ret = rewire_arena_create(&o, &a);
	if (ret) {
		if (ret != -EOPNOTSUPP)
			fprintf(stderr, "rewire-bench: %s arena: %s\n", backend, strerror(-ret));
		return NULL;
	}
	*base = rewire_alloc(a, n * unit, 0);
	if (!*base || rewire_alloc(a, n * unit, REWIRE_ALLOC_HOLES) != *base + n * unit) {
		fprintf(stderr, "rewire-bench: cannot allocate %zu pages\n", 2 * n);
		rewire_arena_destroy(a);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		*(size_t *)(*base + i * unit) = i;
	return a;
}

struct result {
	const char *what, *backend;
	double ns;		/* the median of t */
	double t[32];		/* ns per page, run by run: run r of each backend of a row
				 * ran in the same round */
};

static struct result results[64];
static int nresults;

static void report(const char *what, const char *backend, const double *t,
		   struct rewire_arena *a, bool ok)
{
	struct result *res = &results[nresults++];
	struct rewire_stats st;
	double moved, sorted[32], ns;

	*res = (struct result){ what, backend, 0, { 0 } };
	memcpy(res->t, t, (size_t)reps * sizeof(*t));
	memcpy(sorted, t, (size_t)reps * sizeof(*t));
	ns = res->ns = median(sorted, reps);
	rewire_arena_stats(a, &st);
	bench_failed |= !ok;
	moved = (double)(st.pages_copied + st.pages_remapped);
	printf("  %-34s %-8s %10.1f %9.0f%% %s\n", what, backend, ns,
	       moved ? 100 * st.pages_copied / moved : 0, ok ? "" : "WRONG DATA");
	{
		char name[96];

		snprintf(name, sizeof(name), "%s (%s)", what, backend);
		record("moves", name, "ns_per_page", ns);
	}
}

static double find(const char *what, const char *backend)
{
	for (int i = 0; i < nresults; i++)
		if (!strcmp(results[i].what, what) && !strcmp(results[i].backend, backend))
			return results[i].ns;
	return 0;
}

/* page i goes to perm[i]; blocks of block pages stay together */
static void make_perm(size_t *perm, size_t n, size_t block)
{
	size_t nb = n / block, *b = malloc(nb * sizeof(*b));

	for (size_t i = 0; i < nb; i++)
		b[i] = i;
	shuffle(b, nb);
	for (size_t i = 0; i < n; i++)
		perm[i] = b[i / block] * block + i % block;
	free(b);
}

/*
 * Apply perm as single-page swaps (a cycle c0 -> c1 -> ... takes swaps of c0
 * with c1, c2, ...), sent in batches of 64: what a program sends that does
 * not build one big permutation.
 */
static bool permute_in_swaps(struct rewire_arena *a, char *base, const size_t *perm, size_t n)
{
	struct rewire_op ops[64];
	bool *seen = calloc(n, 1), ok = seen != NULL;
	size_t k = 0, done;

	for (size_t c = 0; ok && c < n; c++) {
		seen[c] = true;
		for (size_t j = perm[c]; !seen[j]; j = perm[j]) {
			seen[j] = true;
			ops[k++] = (struct rewire_op){ REWIRE_OP_SWAP, 0, base + c * unit,
						       base + j * unit, unit, NULL };
			if (k == 64) {
				ok &= !rewire_batch(a, ops, k, &done);
				k = 0;
			}
		}
	}
	if (k)
		ok &= !rewire_batch(a, ops, k, &done);
	free(seen);
	return ok;
}

/* One arena of a row: its backend, its pages, where they went, its runs. */
struct lane {
	const char *backend;
	struct rewire_arena *a;
	char *base;
	size_t *where;		/* page i's data is at page where[i] */
	double t[32];
	bool ok;
};

/* An arena of setup() for each backend of names that has one. */
static size_t lanes_setup(struct lane *lanes, const char *const *names, size_t nb, size_t n)
{
	size_t nl = 0;

	for (size_t i = 0; i < nb; i++) {
		struct lane *l = &lanes[nl];

		memset(l, 0, sizeof(*l));
		l->backend = names[i];
		l->ok = true;
		l->a = setup(names[i], n, &l->base);
		if (!l->a)
			continue;
		l->where = malloc(n * sizeof(*l->where));
		if (!l->where) {
			rewire_arena_destroy(l->a);
			continue;
		}
		for (size_t p = 0; p < n; p++)
			l->where[p] = p;
		nl++;
	}
	return nl;
}

/* Check each lane's pages against where[], report it, and free it. */
static void lanes_report(struct lane *lanes, size_t nl, const char *what, size_t n)
{
	for (size_t k = 0; k < nl; k++) {
		struct lane *l = &lanes[k];

		for (size_t i = 0; i < n; i++)
			l->ok &= *(size_t *)(l->base + l->where[i] * unit) == i;
		report(what, l->backend, l->t, l->a, l->ok);
		rewire_arena_destroy(l->a);
		free(l->where);
	}
}

/*
 * A random permutation of n pages in blocks of block pages, in one call or
 * as batches of swaps, on each backend of names. Run r of every backend
 * runs in round r, each round starting with the next backend, so that what
 * the shared machine does meanwhile falls on all of them alike; ratios are
 * then taken within a round. Every backend gets the same permutations: how
 * long a page-table move of blocks takes depends on the permutation itself
 * (about 100 or 175 ns a page on one machine), so different ones would make
 * the ratios between backends a lottery.
 */
static void permute_row(const char *what, const char *const *names, size_t nb, size_t n,
			size_t block, bool swaps)
{
	size_t *perm = malloc(n * sizeof(*perm));
	struct lane lanes[NBACKENDS];
	size_t nl = perm ? lanes_setup(lanes, names, nb, n) : 0;

	rnd_seed(n * 64 + block);
	for (int r = 0; r < reps && nl; r++) {
		make_perm(perm, n, block);
		for (size_t k = 0; k < nl; k++) {
			struct lane *l = &lanes[(r + k) % nl];
			double t0;

			progress("moves: %s on %s, run %d of %d", what, l->backend, r + 1, reps);
			t0 = now_ns();
			l->ok &= swaps ? permute_in_swaps(l->a, l->base, perm, n) :
					 !rewire_permute(l->a, l->base, perm, n);
			l->t[r] = (now_ns() - t0) / n;
			for (size_t i = 0; i < n; i++)
				l->where[i] = perm[l->where[i]];
		}
	}
	progress_done();
	lanes_report(lanes, nl, what, n);
	free(perm);
}

static void permute(const char *what, const char *backend, size_t n, size_t block, bool swaps)
{
	permute_row(what, &backend, 1, n, block, swaps);
}

enum how { WHOLE, PER_PAGE, BATCHED };

/* Move all pages to the holes and back again: in one call, a call per page,
 * or one batch of single-page moves (which coalesce); in rounds over the
 * backends of names, as permute_row() does. */
static void move_row(const char *what, const char *const *names, size_t nb, size_t n,
		     enum how how)
{
	struct rewire_op *ops = how == BATCHED ? malloc(n * sizeof(*ops)) : NULL;
	struct lane lanes[NBACKENDS];
	size_t nl = how != BATCHED || ops ? lanes_setup(lanes, names, nb, n) : 0;

	for (int r = 0; r < reps && nl; r++) {
		for (size_t k = 0; k < nl; k++) {
			struct lane *l = &lanes[(r + k) % nl];
			char *dst = l->base + (r & 1 ? 0 : n * unit);
			char *src = l->base + (r & 1 ? n * unit : 0);
			double t0;
			size_t done;

			progress("moves: %s on %s, run %d of %d", what, l->backend, r + 1, reps);
			t0 = now_ns();
			if (how == WHOLE) {
				l->ok &= !rewire_move(l->a, dst, src, n * unit);
			} else if (how == PER_PAGE) {
				for (size_t i = 0; i < n; i++)
					l->ok &= !rewire_move(l->a, dst + i * unit, src + i * unit, unit);
			} else {
				for (size_t i = 0; i < n; i++)
					ops[i] = (struct rewire_op){ REWIRE_OP_MOVE, 0, dst + i * unit,
								     src + i * unit, unit, NULL };
				l->ok &= !rewire_batch(l->a, ops, n, &done);
			}
			l->t[r] = (now_ns() - t0) / n;
		}
	}
	progress_done();
	/* After an odd number of runs the pages are in the holes' half. */
	for (size_t k = 0; k < nl; k++)
		for (size_t i = 0; i < n; i++)
			lanes[k].where[i] = (reps & 1 ? n : 0) + i;
	lanes_report(lanes, nl, what, n);
	free(ops);
}

static void move(const char *what, const char *backend, size_t n, enum how how)
{
	move_row(what, &backend, 1, n, how);
}

/*
 * auto against the best backend named on a row, round by round: the median
 * over the rounds of auto's time over the fastest named backend's in that
 * round. *best gets the backend fastest by its median, and its median.
 */
static double auto_ratio(const char *row, const char **name, double *best)
{
	const struct result *au = NULL, *named[NBACKENDS];
	double ratio[32];
	int nn = 0;

	*best = 0;
	for (int i = 0; i < nresults; i++) {
		const struct result *x = &results[i];

		if (strcmp(x->what, row))
			continue;
		if (!strcmp(x->backend, "auto")) {
			au = x;
			continue;
		}
		named[nn++] = x;
		if (!*best || x->ns < *best) {
			*best = x->ns;
			*name = x->backend;
		}
	}
	if (!au || !nn)
		return 0;
	for (int r = 0; r < reps; r++) {
		double b = named[0]->t[r];

		for (int i = 1; i < nn; i++)
			b = named[i]->t[r] < b ? named[i]->t[r] : b;
		ratio[r] = au->t[r] / b;
	}
	return median(ratio, reps);
}

void bench_moves(size_t n)
{
	const char *perm = "random permutation";
	const char *blocks = "permutation of 64-page blocks";
	const char *whole = "contiguous move, one call";
	const char *per_page = "contiguous move, a call per page";
	const char *batched = "contiguous move, a batch of pages";
	const char *huge = "random permutation, 64 huge pages";
	const char *rows[] = { perm, blocks, whole, batched, huge };
	const char *uffd_auto[] = { "uffd", "auto" };
	double best, x, worst;
	int saved = reps;

	/* Page-table moves vary much from run to run on a shared machine:
	 * nine runs at least, so that slow runs do not make a median. */
	reps = reps < 9 ? 9 : reps;
	unit = ps;
	printf("\npage moves: %zu pages per operation (ns per page, medians of %d runs, the backends "
	       "of a row taking turns; share copied)\n", n, reps);
	printf("  %-34s %-8s %10s %10s\n", "operation", "backend", "ns/page", "copied");
	permute_row(perm, backends, NBACKENDS, n, 1, false);
	for (size_t b = 0; b < NBACKENDS; b++)
		if (!find(perm, backends[b]))
			printf("  %-34s %-8s not available here (see rewire-info)\n", perm,
			       backends[b]);
	permute_row(blocks, backends, NBACKENDS, n, 64, false);
	move_row(whole, backends, NBACKENDS, n, WHOLE);
	move(per_page, "uffd", n, PER_PAGE);
	move_row(batched, uffd_auto, 2, n, BATCHED);
	/* 2 MiB pages (ns per huge page): one entry moved, or 2 MiB copied;
	 * kmod refuses huge arenas */
	unit = REWIRE_HUGE_PAGE_SIZE;
	permute_row(huge, backends, NBACKENDS, HUGE_PAGES, 1, false);
	unit = ps;

	printf("  auto against the best backend named on each row (ratio: the median of the "
	       "rounds' ratios)\n");
	worst = 0;
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		const char *name = NULL;
		double ratio = auto_ratio(rows[r], &name, &best);

		x = find(rows[r], "auto");
		if (!ratio || !x)
			continue;
		printf("  %-34s auto %8.1f  %-6s %8.1f  ratio %5.2f\n", rows[r], x, name, best, ratio);
		worst = ratio > worst ? ratio : worst;
	}
	printf("  goals\n");
	goal("auto / best named backend, worst row", worst, "<= 1.1", worst <= 1.1);
	best = find(perm, "copy");
	x = find(perm, "uffd");
	if (x > 0 && x < best)
		best = x;
	x = find(perm, "auto");
	goal("random permutation: auto / best of copy and uffd per page", best ? x / best : 0,
	     "<= 1.1", x <= 1.1 * best);
	x = find(whole, "auto");
	goal("contiguous move: copy / auto", x ? find(whole, "copy") / x : 0, ">= 5",
	     find(whole, "copy") >= 5 * x);
	/* remapping scattered 64-page runs costs about 100 ns a page, a
	 * copy 360: no code can make that 5 */
	x = find(blocks, "auto");
	figure("64-page blocks permuted: copy / auto", x ? find(blocks, "copy") / x : 0);
	x = find(huge, "auto");
	figure("huge pages permuted: copy / auto", x ? find(huge, "copy") / x : 0);
	x = find(batched, "uffd");
	goal("contiguous move: uffd a call per page / uffd batched",
	     x ? find(per_page, "uffd") / x : 0, "> 1", find(per_page, "uffd") > x);
	reps = saved;
}

/*
 * The kernel's paths against each other, for the module's VM benchmark
 * (make bench-vm): under emulation only ratios between kernel paths mean
 * anything.
 */
void bench_kernel(size_t n)
{
	const char *perm = "random permutation";
	const char *swaps = "random permutation, 64 swaps a batch";
	const char *whole = "contiguous move, one call";
	double k, x;

	printf("\nkernel paths: %zu pages (ns per page; share copied)\n", n);
	printf("  %-34s %-8s %10s %10s\n", "operation", "backend", "ns/page", "copied");
	permute(perm, "kmod", n, 1, false);
	permute(swaps, "kmod", n, 1, true);
	permute(perm, "copy", n, 1, false);
	move(whole, "uffd", n, WHOLE);
	permute(perm, "uffd", n, 1, false);
	k = find(perm, "kmod");
	if (!k) {
		printf("  kmod: not available here (rewire.ko not loaded)\n");
		return;
	}
	printf("  goals\n");
	x = find(whole, "uffd");
	if (x) {
		goal("kmod random permutation / uffd contiguous move", k / x, "<= 1.5", k <= 1.5 * x);
		x = find(perm, "uffd");
		goal("uffd per-page permutation / kmod random permutation", x / k, ">= 3",
		     x >= 3 * k);
	} else {
		printf("  uffd: not available here (UFFDIO_MOVE needs Linux 6.8)\n");
	}
	goal("copy random permutation / kmod random permutation", find(perm, "copy") / k, "> 1",
	     find(perm, "copy") > k);
}

/* For --plot: ns per page of moving n pages in runs of each length. */
void bench_run_lengths(size_t n)
{
	struct rewire_op *ops = malloc(n * sizeof(*ops));

	nrun_curves = 0;
	for (int b = 0; b < 4 && ops; b++) {
		struct curve *c = &run_curves[nrun_curves];
		struct rewire_arena *a;
		char *base;

		a = setup(backends[b], n, &base);
		if (!a)
			continue;
		c->name = backends[b];
		c->n = 0;
		for (size_t len = 1; len <= 1024 && len <= n; len *= 2) {
			size_t runs = n / len, done;
			double t0;

			progress("run lengths: %s, %zu pages", backends[b], len);
			/* Runs in reverse order, so no two coalesce. */
			for (size_t i = 0; i < runs; i++)
				ops[i] = (struct rewire_op){ REWIRE_OP_MOVE, 0,
							     base + (c->n & 1 ? 0 : n * ps) + (runs - 1 - i) * len * ps,
							     base + (c->n & 1 ? n * ps : 0) + i * len * ps,
							     len * ps, NULL };
			t0 = now_ns();
			rewire_batch(a, ops, runs, &done);
			c->x[c->n] = (double)len;
			c->y[c->n++] = (now_ns() - t0) / (double)(runs * len);
		}
		progress_done();
		nrun_curves++;
		rewire_arena_destroy(a);
	}
	free(ops);
}
