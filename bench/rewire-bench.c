/* rewire-bench: what page moves cost here, per backend, in one run.
 * Prints ns per page (medians of repeated runs) and the ratios the
 * project's goals name. */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rewire.h"

static size_t ps, npages = 65536;
static int reps = 5;
static FILE *csv;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* A fresh arena on backend with n backed pages (each stamped with its index)
 * followed by n holes, enough free room after them to stage n pages. */
static struct rewire_arena *setup(const char *backend, size_t n, char **base)
{
	struct rewire_options o;
	struct rewire_arena *a;
	int ret;

	rewire_options_init(&o);
	o.reserve = 3 * n * ps;
	o.backend = backend;
	ret = rewire_arena_create(&o, &a);
	if (ret) {
		if (ret != -EOPNOTSUPP)
			fprintf(stderr, "rewire-bench: %s arena: %s\n", backend, strerror(-ret));
		return NULL;
	}
	*base = rewire_alloc(a, n * ps, 0);
	if (!*base || rewire_alloc(a, n * ps, REWIRE_ALLOC_HOLES) != *base + n * ps) {
		fprintf(stderr, "rewire-bench: cannot allocate %zu pages\n", 2 * n);
		rewire_arena_destroy(a);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		*(size_t *)(*base + i * ps) = i;
	return a;
}

struct result {
	const char *what, *backend;
	double ns_per_page;
	double copied_share;	/* of the pages moved, the share copied */
	int ok;
};

static struct result results[64];
static int nresults;

static void report(const char *what, const char *backend, double ns, struct rewire_arena *a,
		   int ok)
{
	struct rewire_stats st;
	struct result *r = &results[nresults++];
	double moved;

	rewire_arena_stats(a, &st);
	moved = (double)(st.pages_copied + st.pages_remapped);
	*r = (struct result){ what, backend, ns, moved ? st.pages_copied / moved : 0, ok };
	printf("  %-34s %-14s %10.1f %9.0f%% %s\n", what, backend, ns, 100 * r->copied_share,
	       ok ? "" : "WRONG DATA");
	if (csv)
		fprintf(csv, "%s,%s,%.1f,%.3f,%d\n", what, backend, ns, r->copied_share, ok);
	fflush(stdout);
}

static double find(const char *what, const char *backend)
{
	for (int i = 0; i < nresults; i++)
		if (!strcmp(results[i].what, what) && !strcmp(results[i].backend, backend))
			return results[i].ns_per_page;
	return 0;
}

/* page i goes to perm[i]; blocks of block pages stay together */
static void make_perm(size_t *perm, size_t n, size_t block)
{
	size_t nb = n / block, *b = malloc(nb * sizeof(*b));

	for (size_t i = 0; i < nb; i++)
		b[i] = i;
	for (size_t i = nb; i > 1; i--) {
		size_t j = rnd() % i, t = b[i - 1];

		b[i - 1] = b[j];
		b[j] = t;
	}
	for (size_t i = 0; i < n; i++)
		perm[i] = b[i / block] * block + i % block;
	free(b);
}

static void bench_permute(const char *what, const char *backend, size_t block)
{
	size_t *perm = malloc(npages * sizeof(*perm)), *where = malloc(npages * sizeof(*where));
	double t[32];
	struct rewire_arena *a;
	char *base;
	int ok = 1;

	a = setup(backend, npages, &base);
	if (!a)
		goto out;
	for (size_t i = 0; i < npages; i++)
		where[i] = i;
	for (int r = 0; r < reps; r++) {
		double t0;

		make_perm(perm, npages, block);
		t0 = now_ns();
		if (rewire_permute(a, base, perm, npages))
			ok = 0;
		t[r] = (now_ns() - t0) / npages;
		for (size_t i = 0; i < npages; i++)
			where[i] = perm[where[i]];
	}
	for (size_t i = 0; i < npages; i++)
		if (*(size_t *)(base + where[i] * ps) != i)
			ok = 0;
	report(what, backend, median(t, reps), a, ok);
	rewire_arena_destroy(a);
out:
	free(perm);
	free(where);
}

/* Move all pages to the holes and back; per_page issues one call per page,
 * batched one batch of single-page moves (which coalesce). */
enum how { WHOLE, PER_PAGE, BATCHED };

static void bench_move(const char *what, const char *backend, enum how how)
{
	struct rewire_op *ops = how == BATCHED ? malloc(npages * sizeof(*ops)) : NULL;
	double t[32];
	struct rewire_arena *a;
	char *base;
	int ok = 1;

	a = setup(backend, npages, &base);
	if (!a)
		goto out;
	for (int r = 0; r < reps; r++) {
		char *dst = base + (r & 1 ? 0 : npages * ps), *src = base + (r & 1 ? npages * ps : 0);
		double t0 = now_ns();
		size_t done;

		if (how == WHOLE) {
			ok &= !rewire_move(a, dst, src, npages * ps);
		} else if (how == PER_PAGE) {
			for (size_t i = 0; i < npages; i++)
				ok &= !rewire_move(a, dst + i * ps, src + i * ps, ps);
		} else {
			for (size_t i = 0; i < npages; i++)
				ops[i] = (struct rewire_op){ REWIRE_OP_MOVE, 0, dst + i * ps,
							     src + i * ps, ps, NULL };
			ok &= !rewire_batch(a, ops, npages, &done);
		}
		t[r] = (now_ns() - t0) / npages;
	}
	{
		char *at = base + (reps & 1 ? npages * ps : 0);

		for (size_t i = 0; i < npages; i++)
			if (*(size_t *)(at + i * ps) != i)
				ok = 0;
	}
	report(what, backend, median(t, reps), a, ok);
	rewire_arena_destroy(a);
out:
	free(ops);
}

static void ratio(const char *what, double x, double y, const char *goal, int met)
{
	if (x <= 0 || y <= 0)
		printf("  %-60s n/a (a backend is missing)\n", what);
	else
		printf("  %-60s %6.2f   goal %s: %s\n", what, x / y, goal, met ? "met" : "MISSED");
}

static void usage(FILE *f)
{
	fprintf(f, "usage: rewire-bench [--pages N] [--reps R] [--csv FILE]\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "pages", required_argument, NULL, 'n' },
		{ "reps", required_argument, NULL, 'r' },
		{ "csv", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const backends[] = { "copy", "uffd", "mremap", "auto" };
	const char *perm = "random permutation";
	const char *blocks = "permutation of 64-page blocks";
	const char *whole = "contiguous move, one call";
	const char *per_page = "contiguous move, a call per page";
	const char *batched = "contiguous move, a batch of pages";
	double best, x;
	int c;

	ps = (size_t)sysconf(_SC_PAGESIZE);
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			npages = strtoul(optarg, NULL, 0);
			break;
		case 'r':
			reps = atoi(optarg);
			break;
		case 'c':
			csv = fopen(optarg, "w");
			if (!csv) {
				perror(optarg);
				return 1;
			}
			fprintf(csv, "operation,backend,ns_per_page,copied_share,correct\n");
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (npages < 128 || reps < 1 || reps > 32) {
		usage(stderr);
		return 2;
	}
	npages -= npages % 64;
	printf("rewire %s: page moves, %zu pages of %zu bytes, median of %d runs\n\n",
	       rewire_version(), npages, ps, reps);
	printf("  %-34s %-14s %10s %10s\n", "operation", "backend", "ns/page", "copied");
	for (int i = 0; i < 4; i++)
		bench_permute(perm, backends[i], 1);
	for (int i = 0; i < 4; i++)
		bench_permute(blocks, backends[i], 64);
	for (int i = 0; i < 4; i++)
		bench_move(whole, backends[i], WHOLE);
	bench_move(per_page, "uffd", PER_PAGE);
	bench_move(batched, "uffd", BATCHED);
	bench_move(batched, "auto", BATCHED);

	printf("\nratios\n");
	best = find(perm, "copy");
	x = find(perm, "uffd");
	if (x > 0 && x < best)
		best = x;
	x = find(perm, "auto");
	ratio("random permutation: auto / best of copy and uffd per page", x, best, "<= 1.1",
	      x > 0 && x <= 1.1 * best);
	x = find(whole, "auto");
	ratio("contiguous move: copy / auto", find(whole, "copy"), x, ">= 5",
	      x > 0 && find(whole, "copy") >= 5 * x);
	x = find(blocks, "auto");
	ratio("64-page blocks permuted: copy / auto", find(blocks, "copy"), x, ">= 5",
	      x > 0 && find(blocks, "copy") >= 5 * x);
	ratio("contiguous move: uffd a call per page / uffd batched", find(per_page, "uffd"),
	      find(batched, "uffd"), "coalescing pays", find(per_page, "uffd") > find(batched, "uffd"));
	if (csv)
		fclose(csv);
	for (int i = 0; i < nresults; i++)
		if (!results[i].ok)
			return 1;
	return 0;
}
