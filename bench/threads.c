/* Threads: page-run churn and page swaps from 1, 2, 4, ... threads up to the
 * CPUs, on one shared arena, on an arena per thread, and (churn) on glibc and
 * jemalloc; ops/s per point, the scaling against one thread, and the ratio
 * to jemalloc. Each point runs for a fixed time. */
#include "config.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "common.h"
#include "rewire.h"

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *ptr);

enum { SLOTS = 64, MAX_RUN = 256, SWAP_RUN = 64, MAX_THREADS = 256 };

enum way { SHARED, PER_THREAD, GLIBC, JEMALLOC, NWAYS };
static const char *const way_names[NWAYS] = { "shared arena", "arena per thread", "glibc",
					      "jemalloc" };

struct worker {
	pthread_t tid;
	enum way way;
	bool swaps;
	struct rewire_arena *arena;
	uint64_t rng;
	long ops;
	bool failed;
};

static int running;	/* the workers go while this is 1 */

static uint64_t next(struct worker *w)
{
	w->rng ^= w->rng << 13;
	w->rng ^= w->rng >> 7;
	w->rng ^= w->rng << 17;
	return w->rng;
}

static void *get(struct worker *w, size_t len)
{
	switch (w->way) {
	case GLIBC:
		return __libc_malloc(len);
#ifdef HAVE_JEMALLOC
	case JEMALLOC:
		return mallocx(len, 0);
#endif
	default:
		return rewire_alloc(w->arena, len, 0);
	}
}

static void put(struct worker *w, void *p)
{
	switch (w->way) {
	case GLIBC:
		__libc_free(p);
		break;
#ifdef HAVE_JEMALLOC
	case JEMALLOC:
		dallocx(p, 0);
		break;
#endif
	default:
		if (rewire_free(w->arena, p))
			w->failed = true;
	}
}

/* Random runs of 1 to 256 pages in 64 slots: a free where a slot is taken,
 * else an allocation with every page written. */
static void churn(struct worker *w)
{
	char *slot[SLOTS] = { NULL };

	while (__atomic_load_n(&running, __ATOMIC_RELAXED)) {
		size_t s = next(w) % SLOTS, pages = 1 + next(w) % MAX_RUN;

		if (slot[s]) {
			put(w, slot[s]);
			slot[s] = NULL;
		} else {
			slot[s] = get(w, pages * ps);
			if (!slot[s]) {
				w->failed = true;
				break;
			}
			for (size_t i = 0; i < pages; i++)
				slot[s][i * ps] = (char)i;
		}
		w->ops++;
	}
	for (size_t s = 0; s < SLOTS; s++)
		if (slot[s])
			put(w, slot[s]);
}

/* Random single-page swaps inside a 64-page run of the thread's own, with
 * the data checked at the end. */
static void swaps(struct worker *w)
{
	char *run = rewire_alloc(w->arena, SWAP_RUN * ps, 0);
	size_t at[SWAP_RUN];

	if (!run) {
		w->failed = true;
		return;
	}
	for (size_t i = 0; i < SWAP_RUN; i++) {
		at[i] = i;
		*(size_t *)(run + i * ps) = i;
	}
	while (__atomic_load_n(&running, __ATOMIC_RELAXED)) {
		size_t i = next(w) % SWAP_RUN, j = next(w) % (SWAP_RUN - 1), t;

		j += j >= i;
		if (rewire_swap(w->arena, run + i * ps, run + j * ps, ps)) {
			w->failed = true;
			break;
		}
		t = at[i];
		at[i] = at[j];
		at[j] = t;
		w->ops++;
	}
	for (size_t i = 0; i < SWAP_RUN; i++)
		w->failed |= *(size_t *)(run + i * ps) != at[i];
	rewire_free(w->arena, run);
}

static void *work(void *arg)
{
	struct worker *w = arg;

	if (w->swaps)
		swaps(w);
	else
		churn(w);
	return NULL;
}

static struct rewire_arena *new_arena(size_t pages)
{
	struct rewire_options o;
	struct rewire_arena *a;

	rewire_options_init(&o);
	o.reserve = pages * ps;
	return rewire_arena_create(&o, &a) ? NULL : a;
}

/* Pages an arena needs for t threads: every slot at its largest, twice
 * over for fragmentation; for swaps, each run and room to stage. */
static size_t arena_pages(int t, bool swap)
{
	return (size_t)t * (swap ? 4 * SWAP_RUN : 2 * SLOTS * MAX_RUN);
}

/* ops/s of t threads doing one workload one way for seconds; 0: not here. */
static double point(enum way way, bool swap, int t, double seconds)
{
	struct worker w[MAX_THREADS];
	struct rewire_arena *shared = NULL;
	long total = 0;
	double t0, el;
	bool failed = false;

#ifndef HAVE_JEMALLOC
	if (way == JEMALLOC)
		return 0;
#endif
	if (swap && (way == GLIBC || way == JEMALLOC))
		return 0;
	if (way == SHARED && !(shared = new_arena(arena_pages(t, swap))))
		failed = true;
	memset(w, 0, sizeof(w));
	for (int i = 0; i < t; i++) {
		w[i] = (struct worker){ .way = way, .swaps = swap, .rng = rnd() | 1 };
		w[i].arena = way == SHARED ? shared : way == PER_THREAD ?
			     new_arena(arena_pages(1, swap)) : NULL;
		/* An arena that cannot be made (RLIMIT_MEMLOCK, say) fails the point. */
		if ((way == SHARED || way == PER_THREAD) && !w[i].arena)
			failed = true;
	}
	__atomic_store_n(&running, 1, __ATOMIC_RELAXED);
	t0 = now_ns();
	for (int i = 0; i < t && !failed; i++)
		if (pthread_create(&w[i].tid, NULL, work, &w[i]))
			failed = true, t = i;
	usleep((useconds_t)(seconds * 1e6));
	__atomic_store_n(&running, 0, __ATOMIC_RELAXED);
	for (int i = 0; i < t; i++) {
		if (w[i].tid)
			pthread_join(w[i].tid, NULL);
		total += w[i].ops;
		failed |= w[i].failed;
	}
	el = (now_ns() - t0) / 1e9;
	for (int i = 0; i < t; i++)
		if (way == PER_THREAD && w[i].arena)
			rewire_arena_destroy(w[i].arena);
	if (shared)
		rewire_arena_destroy(shared);
	if (failed) {
		printf("  %s with %d threads: an operation FAILED or left wrong data\n",
		       way_names[way], t);
		bench_failed = true;
	}
	return total / el;
}

/*
 * The shared arena with t threads against itself with one, measured side by
 * side three times, taking turns at going first: the machine is shared, and
 * a neighbour's load seconds apart would otherwise decide the ratio. The
 * median of the three ratios.
 */
static double scaling(bool swap, int t, double seconds)
{
	double ratio[3];

	for (int i = 0; i < 3; i++) {
		double one, many;

		progress("threads: %s, shared arena, %d threads against 1, %d of 3",
			 swap ? "swaps" : "churn", t, i + 1);
		if (i % 2) {
			many = point(SHARED, swap, t, seconds);
			one = point(SHARED, swap, 1, seconds);
		} else {
			one = point(SHARED, swap, 1, seconds);
			many = point(SHARED, swap, t, seconds);
		}
		ratio[i] = one > 0 ? many / one : 0;
	}
	return median(ratio, 3);
}

void bench_threads(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	double seconds = quick ? 0.5 : 2, r[2][NWAYS][16] = { { { 0 } } }, scale[2][16] = { { 0 } };
	int counts[16], npoints = 0;
	struct rewire_arena *a = new_arena(16);

	if (cpus > MAX_THREADS)
		cpus = MAX_THREADS;
	for (int t = 1; t <= cpus && npoints < 16; t *= 2)
		counts[npoints++] = t;
	if (npoints < 16 && counts[npoints - 1] < cpus)
		counts[npoints++] = (int)cpus;
	printf("\nthreads: churn (runs of 1 to 256 pages, every page written, %d slots a thread)"
	       " and single-page swaps\nin a %d-page run of each thread's own; rewire on %s; "
	       "%.1f s a point (ops/s)\n", SLOTS, SWAP_RUN, a ? rewire_backend_name(a) : "?",
	       seconds);
	if (a)
		rewire_arena_destroy(a);
	printf("  %-6s %7s %13s %13s %13s %13s %9s %9s\n", "", "threads", way_names[0],
	       way_names[1], way_names[2], way_names[3], "scaling", "/jemalloc");
	for (int s = 0; s < 2; s++) {
		for (int k = 0; k < npoints; k++) {
			char name[64];

			for (int way = 0; way < NWAYS; way++) {
				progress("threads: %s, %s, %d threads", s ? "swaps" : "churn",
					 way_names[way], counts[k]);
				r[s][way][k] = point((enum way)way, s, counts[k], seconds);
			}
			scale[s][k] = k ? scaling(s, counts[k], seconds) : 1;
			progress_done();
			printf("  %-6s %7d %13.0f %13.0f %13.0f %13.0f %9.2f %9.2f\n",
			       s ? "swaps" : "churn", counts[k], r[s][SHARED][k], r[s][PER_THREAD][k],
			       r[s][GLIBC][k], r[s][JEMALLOC][k],
			       scale[s][k],
			       r[s][JEMALLOC][k] ? r[s][SHARED][k] / r[s][JEMALLOC][k] : 0);
			snprintf(name, sizeof(name), "%s, %d threads, shared arena",
				 s ? "swaps" : "churn", counts[k]);
			record("threads", name, "ops_per_s", r[s][SHARED][k]);
		}
	}
	printf("  goals (shared arena)\n");
	if (npoints > 1 && counts[1] == 2) {
		goal("2 threads / 1 thread, churn", scale[0][1], ">= 1.6", scale[0][1] >= 1.6);
		goal("2 threads / 1 thread, swaps", scale[1][1], ">= 1.6", scale[1][1] >= 1.6);
	}
	for (int k = 0; k < npoints; k++) {
		if (counts[k] != 16)
			continue;
		goal("16 threads / 1 thread, churn", scale[0][k], ">= 8", scale[0][k] >= 8);
		goal("16 threads: churn / jemalloc's", r[0][JEMALLOC][k] ?
		     r[0][SHARED][k] / r[0][JEMALLOC][k] : 0, ">= 1",
		     r[0][SHARED][k] >= r[0][JEMALLOC][k]);
		goal("16 threads / 1 thread, swaps", scale[1][k], ">= 8", scale[1][k] >= 8);
	}
	if (counts[npoints - 1] < 16)
		printf("  16-thread goals: not measured here (%ld CPUs)\n", cpus);
}
