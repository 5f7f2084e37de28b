/*
 * How long a page operation holds up the rest of the process. One thread
 * permutes a large run of an arena in one operation, the largest a database
 * would send, again and again, then swaps its pages in pairs, half as many
 * operations in one batch; another thread of the same process meanwhile
 * writes to fresh pages of a mapping of its own, each a page fault, then
 * drops them with madvise(2) and maps and unmaps a page, and records how
 * long each took. A backend that holds the mmap lock for writing across the
 * whole batch (the module, mremap) stalls the madvise, mmap and munmap, and
 * the faults of kernels before 6.4 (which lack per-VMA locks), until the
 * batch ends or yields the lock; one that takes it for reading (UFFDIO_MOVE)
 * stalls only mmap and munmap. The worst stall is reported, not asserted: timings belong in
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

/* What the other thread saw while the main thread ran one kind of batch. */
struct seen {
	long writes, maps, slow_maps;	/* mmap and munmap pairs; over 2 ms */
	double worst_fault_us, total_fault_us, worst_madvise_us, worst_mmap_us;
};

struct toucher {
	int stop, kind;		/* kind: the batch the main thread runs now */
	long rounds, bad;
	struct seen seen[2];
};

static void worst(double *w, double t)
{
	*w = t > *w ? t : *w;
}

/*
 * Write a fresh page at a time, drop them all, map and unmap a page
 * elsewhere, again, until told to stop. Faults may take the VMA's lock
 * only (6.4 on); madvise takes the mmap lock for reading, mmap and munmap
 * for writing.
 */
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
		struct seen *s = &t->seen[__atomic_load_n(&t->kind, __ATOMIC_RELAXED)];
		double t0;
		void *other;

		for (size_t i = 0; i < FRESH_PAGES; i++) {
			t0 = now_us();
			tag_page(m + i * page_size, (uint64_t)t->rounds << 16 | (i + 1));
			t0 = now_us() - t0;
			s->total_fault_us += t0;
			worst(&s->worst_fault_us, t0);
			s->writes++;
		}
		for (size_t i = 0; i < FRESH_PAGES; i++)
			t->bad += !page_has_tag(m + i * page_size, (uint64_t)t->rounds << 16 | (i + 1));
		/* Fresh again: the next round faults on every page. */
		t0 = now_us();
		madvise(m, len, MADV_DONTNEED);
		worst(&s->worst_madvise_us, now_us() - t0);
		t0 = now_us();
		other = mmap(NULL, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (other != MAP_FAILED)
			munmap(other, page_size);
		t0 = now_us() - t0;
		worst(&s->worst_mmap_us, t0);
		s->maps++;
		s->slow_maps += t0 > 2000;
		t->rounds++;
	}
	munmap(m, len);
	return NULL;
}

/* Run one batch of the given kind on the run; update the model. */
static int one_batch(struct rewire_arena *a, char *run, size_t n, int kind, size_t *perm,
		     struct rewire_op *ops, uint64_t *model)
{
	size_t half = n / 2;
	int ret;

	shuffle(perm, n);
	if (kind == 0)
		return rewire_permute(a, run, perm, n);
	/* n / 2 operations: page perm[2k] swaps with page perm[2k + 1]. */
	for (size_t k = 0; k < half; k++)
		ops[k] = (struct rewire_op){ REWIRE_OP_SWAP, 0, run + perm[2 * k] * page_size,
					     run + perm[2 * k + 1] * page_size, page_size, NULL };
	ret = rewire_batch(a, ops, half, NULL);
	if (!ret)
		for (size_t k = 0; k < half; k++) {
			uint64_t x = model[perm[2 * k]];

			model[perm[2 * k]] = model[perm[2 * k + 1]];
			model[perm[2 * k + 1]] = x;
		}
	return ret;
}

int main(void)
{
	static const char *const kinds[2] = { "one permutation", "swaps in one batch" };
	const char *env = getenv("REWIRE_STALL_PAGES");
	size_t n = env ? strtoul(env, NULL, 0) : 16384, rounds[2] = { 0, 0 }, *perm;
	double worst_op[2] = { 0, 0 }, total_op[2] = { 0, 0 }, t_end;
	struct rewire_arena *a;
	struct toucher t = { 0 };
	struct rewire_op *ops;
	uint64_t *model, *old;
	bool data_ok = true;
	pthread_t tid;
	long writes;
	char *run;

	if (test_init())
		n = 1024;
	test_seed();
	a = test_arena(n + 64, 0, 0);
	run = rewire_alloc(a, n * page_size, 0);
	perm = malloc(n * sizeof(*perm));
	model = malloc(n * sizeof(*model));
	old = malloc(n * sizeof(*old));
	ops = malloc(n / 2 * sizeof(*ops));
	if (!run || !perm || !model || !old || !ops)
		bail("cannot set up a run of %zu pages", n);
	for (size_t i = 0; i < n; i++) {
		model[i] = i + 1;
		tag_page(run + i * page_size, model[i]);
		perm[i] = i;
	}
	if (pthread_create(&tid, NULL, touch_fresh_pages, &t))
		bail("pthread_create");
	/* Each kind at least 4 times, and each for at least half a second. */
	for (int kind = 0; kind < 2 && data_ok; kind++) {
		__atomic_store_n(&t.kind, kind, __ATOMIC_RELAXED);
		for (t_end = now_us() + 5e5; rounds[kind] < 4 || now_us() < t_end; rounds[kind]++) {
			double t0 = now_us(), took;
			int ret;

			memcpy(old, model, n * sizeof(*old));
			ret = one_batch(a, run, n, kind, perm, ops, model);
			took = now_us() - t0;
			if (ret) {
				diag("%s, round %zu: %s", kinds[kind], rounds[kind], strerror(-ret));
				data_ok = false;
				break;
			}
			total_op[kind] += took;
			worst(&worst_op[kind], took);
			if (kind == 0)
				for (size_t i = 0; i < n; i++)
					model[perm[i]] = old[i];
			if (!check_pages(run, model, n)) {
				data_ok = false;
				break;
			}
		}
	}
	__atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
	pthread_join(tid, NULL);

	writes = t.seen[0].writes + t.seen[1].writes;
	ok(data_ok, "%zu permutations of %zu pages and %zu batches of %zu swaps on %s, each page "
	   "where the model says", rounds[0], n, rounds[1], n / 2, rewire_backend_name(a));
	ok(t.bad == 0 && writes > 0, "meanwhile another thread wrote %ld fresh pages, each read "
	   "back right (%ld not)", writes, t.bad);
	for (int kind = 0; kind < 2; kind++) {
		const struct seen *s = &t.seen[kind];

		diag("stall, %s of %zu pages: %.0f us a batch on average, %.0f at worst; the "
		     "other thread's worst page fault %.0f us (mean %.1f), madvise %.0f us, "
		     "mmap and munmap %.0f us (%ld of %ld over 2 ms)", kinds[kind], n,
		     rounds[kind] ? total_op[kind] / rounds[kind] : 0, worst_op[kind],
		     s->worst_fault_us, s->writes ? s->total_fault_us / s->writes : 0,
		     s->worst_madvise_us, s->worst_mmap_us, s->slow_maps, s->maps);
	}
	rewire_free(a, run);
	rewire_arena_destroy(a);
	free(ops);
	free(perm);
	free(model);
	free(old);
	return done_testing();
}
