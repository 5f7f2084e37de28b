/* Compaction: a segment of runs loses a random half of them, then the
 * survivors close ranks at its start: by moving pages (rewire_discard, then
 * one rewire_batch of moves) against copying them down with memmove. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "rewire.h"

struct piece {
	size_t start, n;
	bool alive;
};

/* Cut n pages into runs of 16 to 128 pages; mark a random half dead. */
static size_t cut(struct piece *p, size_t n)
{
	size_t k = 0, at = 0;

	while (at < n) {
		size_t len = 16 + rnd() % 113;

		if (len > n - at)
			len = n - at;
		p[k++] = (struct piece){ at, len, rnd() & 1 };
		at += len;
	}
	return k;
}

static void stamp(char *base, size_t n)
{
	for (size_t i = 0; i < n; i++)
		*(size_t *)(base + i * ps) = i;
}

/* The survivors, in order, must start the segment. */
static bool compacted(const char *base, const struct piece *p, size_t k)
{
	size_t to = 0;

	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; p[i].alive && j < p[i].n; j++, to++)
			if (*(const size_t *)(base + to * ps) != p[i].start + j)
				return false;
	return true;
}

/* Moves that slide each survivor down; a run that moves by less than its
 * length goes in pieces of that distance, each into the holes just left. */
static size_t plan_moves(char *base, const struct piece *p, size_t k, struct rewire_op *ops)
{
	size_t to = 0, nops = 0;

	for (size_t i = 0; i < k; i++) {
		size_t gap, done = 0;

		if (!p[i].alive)
			continue;
		gap = p[i].start - to;
		while (gap && done < p[i].n) {
			size_t len = p[i].n - done < gap ? p[i].n - done : gap;

			ops[nops++] = (struct rewire_op){ REWIRE_OP_MOVE, 0, base + (to + done) * ps,
							  base + (p[i].start + done) * ps, len * ps,
							  NULL };
			done += len;
		}
		to += p[i].n;
	}
	return nops;
}

static double compact_rewire(const char *backend, size_t n, bool *ok)
{
	struct piece *p = malloc(n * sizeof(*p));
	struct rewire_op *ops = malloc(n * sizeof(*ops));
	struct rewire_options o;
	struct rewire_arena *a;
	size_t k, nops, done;
	double t = 0;
	char *base;

	rewire_options_init(&o);
	o.reserve = 2 * n * ps;
	o.backend = backend;
	*ok = false;
	if (!p || !ops || rewire_arena_create(&o, &a))
		goto out;
	base = rewire_alloc(a, n * ps, 0);
	if (base) {
		stamp(base, n);
		k = cut(p, n);
		for (size_t i = 0; i < k; i++)
			if (!p[i].alive)
				rewire_discard(a, base + p[i].start * ps, p[i].n * ps);
		t = now_ns();
		nops = plan_moves(base, p, k, ops);
		*ok = !rewire_batch(a, ops, nops, &done);
		t = now_ns() - t;
		*ok = *ok && compacted(base, p, k);
	}
	rewire_arena_destroy(a);
out:
	free(p);
	free(ops);
	return t / n;
}

static double compact_memmove(size_t n, bool *ok)
{
	struct piece *p = malloc(n * sizeof(*p));
	struct rewire_options o;
	struct rewire_arena *a;
	size_t k, to = 0;
	double t = 0;
	char *base;

	rewire_options_init(&o);
	o.reserve = n * ps;
	o.backend = "copy";
	*ok = false;
	if (!p || rewire_arena_create(&o, &a))
		goto out;
	base = rewire_alloc(a, n * ps, 0);
	if (base) {
		stamp(base, n);
		k = cut(p, n);
		t = now_ns();
		for (size_t i = 0; i < k; i++) {
			if (!p[i].alive)
				continue;
			memmove(base + to * ps, base + p[i].start * ps, p[i].n * ps);
			to += p[i].n;
		}
		t = now_ns() - t;
		*ok = compacted(base, p, k);
	}
	rewire_arena_destroy(a);
out:
	free(p);
	return t / n;
}

void bench_compaction(size_t n)
{
	static const char *const backends[] = { "auto", "uffd", "mremap", "copy" };
	double t[32], copy;
	bool ok, all_ok = true;
	double best = 0;

	printf("\ncompaction: %zu pages in runs of 16 to 128 pages, a random half freed, "
	       "survivors moved to the start\n", n);
	printf("  %-22s %12s %12s %s\n", "method", "ns/page", "vs memmove", "");
	for (int r = 0; r < reps; r++) {
		progress("compaction: memmove, run %d of %d", r + 1, reps);
		t[r] = compact_memmove(n, &ok);
		all_ok &= ok;
	}
	progress_done();
	copy = median(t, reps);
	bench_failed |= !all_ok;
	printf("  %-22s %12.1f %12.2f %s\n", "memmove", copy, 1.0, all_ok ? "" : "WRONG DATA");
	record("compaction", "memmove", "ns_per_page", copy);
	for (int b = 0; b < 4; b++) {
		char name[40];
		double x;

		all_ok = true;
		for (int r = 0; r < reps; r++) {
			progress("compaction: rewire on %s, run %d of %d", backends[b], r + 1, reps);
			t[r] = compact_rewire(backends[b], n, &ok);
			all_ok &= ok;
		}
		progress_done();
		if (t[0] == 0) {
			printf("  rewire (%s): not available here\n", backends[b]);
			continue;
		}
		x = median(t, reps);
		bench_failed |= !all_ok;
		snprintf(name, sizeof(name), "rewire (%s)", backends[b]);
		printf("  %-22s %12.1f %12.2f %s\n", name, x, copy / x, all_ok ? "" : "WRONG DATA");
		record("compaction", name, "ns_per_page", x);
		if (b == 0)
			best = x;
	}
	printf("  goals\n");
	goal("memmove time / rewire (auto) time", best ? copy / best : 0, ">= 5", copy >= 5 * best);
}
