/*
 * How long a page operation holds up the rest of the process. One thread
 * permutes a large run of an arena, the largest batch a database would
 * send, again and again; another thread of the same process meanwhile
 * writes to fresh pages of a mapping of its own, each a page fault, then
 * drops them with madvise(2), and records how long each write and each
 * madvise took. A backend that holds the mmap lock for writing across the
 * whole batch (the module, mremap) stalls the madvise, and the faults of
 * kernels before 6.4 (which lack per-VMA locks), until the batch ends; one
 * that takes it for reading (UFFDIO_MOVE) need not. The worst stall is reported, not asserted: timings belong in
 * benchmarks, and under QEMU they are what they are. What is checked is
 * that both threads' data came through: the arena against its model after
 * every permutation, the other mapping after every round of writes.
 * REWIRE_STALL_PAGES sets the run's size (default 16,384 pages).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "testlib.h"

#define FRESH_PAGES 256		/* the other thread's mapping */

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

struct toucher {
	int stop;
	long writes, rounds, bad;
	double worst_us, total_us, worst_madvise_us;
};

/* Write a fresh page at a time, drop them all, again, until told to stop. */
static void *touch_fresh_pages(void *arg)
{
	struct toucher *t = arg;
	size_t len = FRESH_PAGES * page_size;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED) {
		t->bad = -1;
		return NULL;
	}
	while (!__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE)) {
		double t0;

		for (size_t i = 0; i < FRESH_PAGES; i++) {
			double took;

			t0 = now_us();
			tag_page(m + i * page_size, (uint64_t)t->rounds << 16 | (i + 1));
			took = now_us() - t0;
			t->total_us += took;
			t->worst_us = took > t->worst_us ? took : t->worst_us;
			t->writes++;
		}
		for (size_t i = 0; i < FRESH_PAGES; i++)
			t->bad += !page_has_tag(m + i * page_size, (uint64_t)t->rounds << 16 | (i + 1));
		/* Fresh again: the next round faults on every page. The call
		 * takes the mmap lock, where a fault may take only the VMA's. */
		t0 = now_us();
		madvise(m, len, MADV_DONTNEED);
		t0 = now_us() - t0;
		t->worst_madvise_us = t0 > t->worst_madvise_us ? t0 : t->worst_madvise_us;
		t->rounds++;
	}
	munmap(m, len);
	return NULL;
}

int main(void)
{
	const char *env = getenv("REWIRE_STALL_PAGES");
	size_t n = env ? strtoul(env, NULL, 0) : 16384, rounds = 0, *perm;
	struct rewire_arena *a;
	struct toucher t = { 0 };
	uint64_t *model, *old;
	double worst_op = 0, total_op = 0, t_end;
	bool data_ok = true;
	pthread_t tid;
	char *run;

	if (test_init())
		n = 1024;
	test_seed();
	a = test_arena(n + 64, 0, 0);
	run = rewire_alloc(a, n * page_size, 0);
	perm = malloc(n * sizeof(*perm));
	model = malloc(n * sizeof(*model));
	old = malloc(n * sizeof(*old));
	if (!run || !perm || !model || !old)
		bail("cannot set up a run of %zu pages", n);
	for (size_t i = 0; i < n; i++) {
		model[i] = i + 1;
		tag_page(run + i * page_size, model[i]);
		perm[i] = i;
	}
	if (pthread_create(&tid, NULL, touch_fresh_pages, &t))
		bail("pthread_create");
	/* At least 4 permutations, and at least a second of them. */
	for (t_end = now_us() + 1e6; rounds < 4 || now_us() < t_end; rounds++) {
		double t0, took;
		int ret;

		shuffle(perm, n);
		t0 = now_us();
		ret = rewire_permute(a, run, perm, n);
		took = now_us() - t0;
		if (ret) {
			diag("permutation %zu: %s", rounds, strerror(-ret));
			data_ok = false;
			break;
		}
		total_op += took;
		worst_op = took > worst_op ? took : worst_op;
		memcpy(old, model, n * sizeof(*old));
		for (size_t i = 0; i < n; i++)
			model[perm[i]] = old[i];
		if (!check_pages(run, model, n)) {
			data_ok = false;
			break;
		}
	}
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);

	ok(data_ok, "%zu permutations of %zu pages on %s, each page where the model says", rounds,
	   n, rewire_backend_name(a));
	ok(t.bad == 0 && t.writes > 0, "meanwhile another thread wrote %ld fresh pages, each read "
	   "back right (%ld not)", t.writes, t.bad);
	diag("stall: the other thread's worst page fault took %.0f us (mean %.1f us), its "
	     "worst madvise of %d pages %.0f us; a permutation of %zu pages took %.0f us on "
	     "average, %.0f at worst", t.worst_us, t.writes ? t.total_us / t.writes : 0,
	     FRESH_PAGES, t.worst_madvise_us, n, rounds ? total_op / rounds : 0, worst_op);
	rewire_free(a, run);
	rewire_arena_destroy(a);
	free(perm);
	free(model);
	free(old);
	return done_testing();
}
