/* Pages a PTE backend cannot move are copied instead, with the reference
 * result: a page shared copy-on-write with a child (UFFDIO_MOVE says EBUSY
 * partway through a run, so the move is also resumed), and a process out of
 * mappings (mremap would exceed vm.max_map_count). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define NP 16

static void busy_page(void)
{
	struct rewire_arena *a = test_arena(4 * NP, 0, 0);
	struct rewire_stats before, after;
	uint64_t model[2 * NP];
	int pipefd[2];
	char *p, *h, c;
	pid_t pid;

	p = rewire_alloc(a, NP * page_size, 0);
	h = rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES);
	if (!p || h != p + NP * page_size || pipe(pipefd))
		bail("setup");
	for (size_t i = 0; i < 2 * NP; i++) {
		model[i] = i < NP ? 7000 + i : HOLE;
		if (i < NP)
			tag_page(p + i * page_size, model[i]);
	}
	/* Page 5 is inherited by a child, so it is shared copy-on-write. */
	madvise(p + 5 * page_size, page_size, MADV_DOFORK);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(pipefd[1]);
		_exit(read(pipefd[0], &c, 1) == 1 && p[5 * page_size] == ((char *)&model[5])[0] ? 0 : 1);
	}
	close(pipefd[0]);
	rewire_arena_stats(a, &before);
	is_int(0, rewire_move(a, h, p, NP * page_size), "moving a run with a shared page succeeds");
	rewire_arena_stats(a, &after);
	memmove(model + NP, model, NP * sizeof(*model));
	for (size_t i = 0; i < NP; i++)
		model[i] = HOLE;
	ok(check_pages(p, model, 2 * NP), "every page arrived, the shared one too");
	is_int(NP, (long long)(after.pages_remapped + after.pages_copied - before.pages_remapped -
			       before.pages_copied), "%d pages moved", NP);
	diag("%s: %llu pages remapped, %llu copied", rewire_backend_name(a),
	     (unsigned long long)(after.pages_remapped - before.pages_remapped),
	     (unsigned long long)(after.pages_copied - before.pages_copied));
	/* Only a backend named explicitly is sure to remap (auto may copy). */
	if (getenv("REWIRE_BACKEND") && !strcmp(getenv("REWIRE_BACKEND"), "uffd"))
		ok(after.pages_copied - before.pages_copied >= 1 &&
		   after.pages_remapped - before.pages_remapped >= 5,
		   "uffd: the pages before the shared one were remapped, the shared one copied");
	else if (getenv("REWIRE_BACKEND") && !strcmp(getenv("REWIRE_BACKEND"), "kmod"))
		ok(after.pages_copied - before.pages_copied >= 1,
		   "kmod: the module refused the shared page, which was copied");
	else
		ok(1, "%s: no page is refused", rewire_backend_name(a));
	c = 1;
	if (write(pipefd[1], &c, 1) != 1)
		bail("write");
	waitpid(pid, NULL, 0);
	close(pipefd[1]);
	rewire_arena_destroy(a);
}

/* Split a region into single-page mappings until the process is close to
 * vm.max_map_count. */
static char *fill_map_count(long leave, size_t *len)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	long max = 65530, need;
	char *p;

	if (f) {
		if (fscanf(f, "%ld", &max) != 1)
			max = 65530;
		fclose(f);
	}
	need = max - leave - map_count();
	if (need < 2)
		return NULL;
	*len = (size_t)need * page_size;
	p = mmap(NULL, *len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	for (long i = 1; i < need; i += 2)
		mprotect(p + i * page_size, page_size, PROT_READ);
	return p;
}

static void out_of_mappings(void)
{
	struct rewire_arena *a = test_arena(4 * NP, 0, 0);
	struct rewire_stats before, after;
	uint64_t model[2 * NP];
	size_t len = 0, order[NP];
	char *p, *h, *filler;
	int fails = 0;

	p = rewire_alloc(a, NP * page_size, 0);
	h = rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES);
	if (!p || h != p + NP * page_size)
		bail("setup");
	for (size_t i = 0; i < 2 * NP; i++) {
		model[i] = i < NP ? 9000 + i : HOLE;
		if (i < NP)
			tag_page(p + i * page_size, model[i]);
		if (i < NP)
			order[i] = i;
	}
	shuffle(order, NP);
	filler = fill_map_count(400, &len);
	ok(filler != NULL, "the process is within 400 mappings of vm.max_map_count (%ld now)",
	   map_count());
	rewire_arena_stats(a, &before);
	/* Scatter the pages one by one: each mremap would split the arena. */
	for (size_t i = 0; i < NP; i++) {
		size_t from = order[i], to = NP + i;

		fails += rewire_move(a, p + to * page_size, p + from * page_size, page_size) != 0;
		model[to] = model[from];
		model[from] = HOLE;
	}
	rewire_arena_stats(a, &after);
	is_int(0, fails, "%d single-page moves all succeed", NP);
	ok(check_pages(p, model, 2 * NP), "with every page where it should be");
	if (!strcmp(rewire_backend_name(a), "mremap"))
		ok(after.pages_copied - before.pages_copied == NP || (diag("copied %llu remapped %llu", (unsigned long long)(after.pages_copied - before.pages_copied), (unsigned long long)(after.pages_remapped - before.pages_remapped)), 0),
		   "mremap: copied every page rather than exceed the limit");
	else
		ok(1, "%s needs no mappings to move pages", rewire_backend_name(a));
	if (filler)
		munmap(filler, len);
	rewire_arena_destroy(a);
}

static volatile int stop;
static uintptr_t arena_lo, arena_hi;
static long landed;

static void *mapper(void *arg)
{
	(void)arg;
	while (!stop) {
		char *p = mmap(NULL, page_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (p == MAP_FAILED)
			continue;
		landed += (uintptr_t)p >= arena_lo && (uintptr_t)p < arena_hi;
		munmap(p, page_size);
	}
	return NULL;
}

/*
 * Regression: the mremap backend once left a run's old place unmapped for a
 * moment, and another thread's mmap could land inside the arena there.
 */
static void no_foreign_mappings(void)
{
	struct rewire_arena *a = test_arena(2 * NP, 0, 0);
	char *p = rewire_alloc(a, NP * page_size, 0);
	char *h = rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES);
	pthread_t t;
	int fails = 0;

	if (!p || h != p + NP * page_size)
		bail("setup");
	arena_lo = (uintptr_t)p;
	arena_hi = arena_lo + 2 * NP * page_size;
	stop = 0;
	landed = 0;
	if (pthread_create(&t, NULL, mapper, NULL))
		bail("pthread_create");
	for (int r = 0; r < 400; r++)
		for (size_t i = 0; i < NP; i++)
			fails += rewire_move(a, (r & 1 ? p : h) + i * page_size,
					     (r & 1 ? h : p) + i * page_size, page_size) != 0;
	stop = 1;
	pthread_join(t, NULL);
	ok(!fails && !landed, "%s: no other thread's mapping landed in the arena during %d moves",
	   rewire_backend_name(a), 400 * NP);
	rewire_arena_destroy(a);
}

int main(void)
{
	bool valgrind;

	test_seed();
	valgrind = test_init();
	plan(valgrind ? 5 : 9);
	busy_page();
	/* valgrind runs one thread at a time, and the mapping thread starves
	 * the moving one for minutes; nor can valgrind run the mremap backend
	 * this test is about. */
	if (valgrind)
		ok(1, "# SKIP under valgrind: threads are serialized, and mremap is unusable");
	else
		no_foreign_mappings();
	/* valgrind cannot track tens of thousands of mappings. */
	if (!valgrind)
		out_of_mappings();
	return done_testing();
}
