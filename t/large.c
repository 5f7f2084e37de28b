/*
 * Large operations and the mapping limit: permutations, swaps and batches of
 * 32,768 and 65,536 pages at the default vm.max_map_count, then smaller ones
 * in a child that has used up nearly all its mappings. Whatever the backend
 * does, every page's data must end at exactly one known address, no page of
 * the arena may be left unmapped, locked memory must be exactly accounted,
 * and the process must keep the mappings rewire(7) promises to leave.
 * REWIRE_LARGE_MAX raises the largest size (make check-long: 262,144).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/fault.h"
#include "testlib.h"

#define HEADROOM 1024	/* mappings rewire(7) leaves to the rest of the process */

struct arena {
	struct rewire_arena *a;
	char *base;		/* n tagged pages, then n holes, then n free pages */
	size_t n;
	uint64_t *model;	/* 2n pages: the tags the pages must hold */
	long locked_kb;		/* VmLck before the arena existed */
};

static long max_maps;
static uint64_t next_tag = 1;

static long spare_maps(void)
{
	return max_maps - map_count();
}

/* Room for a reserve of 3n pages, n of them backed plus n staged? */
static bool fits_in_memory(size_t n)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	long avail_kb = -1;

	if (!f)
		return true;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &avail_kb) == 1)
			break;
	fclose(f);
	return avail_kb < 0 || 3 * n * (page_size / 1024) < (size_t)avail_kb / 2;
}

static bool setup(struct arena *t, size_t n)
{
	t->n = n;
	t->locked_kb = vm_locked_kb();
	t->a = test_arena(3 * n, 0, 0);
	t->base = rewire_alloc(t->a, n * page_size, 0);
	t->model = calloc(2 * n, sizeof(*t->model));
	if (!t->base || !t->model ||
	    rewire_alloc(t->a, n * page_size, REWIRE_ALLOC_HOLES) != t->base + n * page_size)
		bail("cannot set up an arena of %zu pages: %s", 3 * n, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		t->model[i] = next_tag++;
		tag_page(t->base + i * page_size, t->model[i]);
	}
	return true;
}

static void teardown(struct arena *t)
{
	rewire_arena_destroy(t->a);
	free(t->model);
}

/*
 * The whole arena is mapped (msync says ENOMEM where part of a range is
 * not), and the locked bytes are exactly the backed ones: by the arena's
 * measurement and by the process's count.
 */
static bool intact(const struct arena *t)
{
	struct rewire_stats st;
	long kb;

	if (msync(t->base, 3 * t->n * page_size, MS_ASYNC)) {
		diag("part of the arena is unmapped");
		return false;
	}
	rewire_arena_stats(t->a, &st);
	if (st.locked != st.backed) {
		diag("%zu bytes locked, %zu backed", st.locked, st.backed);
		return false;
	}
	/* The whole reserve counts as locked (it is locked on fault). */
	kb = vm_locked_kb() - t->locked_kb;
	if (maps_are_ours() && kb != (long)(3 * t->n * page_size / 1024)) {
		diag("VmLck grew by %ld kB for a reserve of %zu pages", kb, 3 * t->n);
		return false;
	}
	return true;
}

/* In a child, failures are counted and told in diagnostics: its TAP lines
 * would mix with the parent's. */
static bool in_child;
static int child_failures;

static void expect(bool pass, const char *what, size_t n, const char *claim)
{
	if (!in_child)
		ok(pass, "%zu pages, %s: %s", n, what, claim);
	else if (!pass && ++child_failures)
		diag("not ok: %zu pages, %s: %s", n, what, claim);
}

/* One operation's outcome: 0, every page where the model says, arena intact,
 * and the mappings to spare kept (or, if fewer were left, none taken by the
 * library: a few may go to the test's own allocations). */
static void check(const struct arena *t, const char *what, int ret, long spare_before)
{
	long spare = spare_maps(), want = spare_before < HEADROOM ? spare_before - 8 : HEADROOM;
	char claim[128];

	snprintf(claim, sizeof(claim), "returns 0 (%s)", strerror(-ret));
	expect(ret == 0, what, t->n, claim);
	expect(check_pages(t->base, t->model, 2 * t->n), what, t->n,
	       "every page's data where it belongs");
	expect(intact(t), what, t->n, "arena mapped, locked memory exactly accounted");
	snprintf(claim, sizeof(claim), "%ld mappings to spare (at least %ld)", spare, want);
	if (maps_are_ours())
		expect(spare >= want, what, t->n, claim);
}

/* Page i goes to perm[i]; on success the model follows. */
static int permute(struct arena *t, const size_t *perm)
{
	int ret = rewire_permute(t->a, t->base, perm, t->n);

	if (!ret) {
		uint64_t *old = malloc(t->n * sizeof(*old));

		if (!old)
			bail("out of memory");
		memcpy(old, t->model, t->n * sizeof(*old));
		for (size_t i = 0; i < t->n; i++)
			t->model[perm[i]] = old[i];
		free(old);
	}
	return ret;
}

/* The reproduction: the reverse order, but the first two pages stay
 * together, so no run lines up with another and the permutation is staged. */
static void reversed_but_two(size_t *perm, size_t n)
{
	perm[0] = n - 2;
	perm[1] = n - 1;
	for (size_t i = 2; i < n; i++)
		perm[i] = n - 1 - i;
}

static void blocks(size_t *perm, size_t n, size_t block)
{
	size_t nb = n / block, *b = malloc(nb * sizeof(*b));

	if (!b)
		bail("out of memory");
	for (size_t i = 0; i < nb; i++)
		b[i] = i;
	shuffle(b, nb);
	for (size_t i = 0; i < n; i++)
		perm[i] = b[i / block] * block + i % block;
	free(b);
}

/* n / 2 single-page swaps of random disjoint pairs, in one batch. */
static int swap_batch(struct arena *t)
{
	size_t n = t->n, *p = malloc(n * sizeof(*p)), done = 0;
	struct rewire_op *ops = calloc(n / 2, sizeof(*ops));
	int ret;

	if (!p || !ops)
		bail("out of memory");
	for (size_t i = 0; i < n; i++)
		p[i] = i;
	shuffle(p, n);
	for (size_t k = 0; k < n / 2; k++)
		ops[k] = (struct rewire_op){ REWIRE_OP_SWAP, 0, t->base + p[2 * k] * page_size,
					     t->base + p[2 * k + 1] * page_size, page_size, NULL };
	ret = rewire_batch(t->a, ops, n / 2, &done);
	for (size_t k = 0; k < done; k++) {
		uint64_t x = t->model[p[2 * k]];

		t->model[p[2 * k]] = t->model[p[2 * k + 1]];
		t->model[p[2 * k + 1]] = x;
	}
	free(p);
	free(ops);
	return ret;
}

/* Every page to the holes after them, in reverse order, one op per page; and
 * back the same way. */
static int move_batch(struct arena *t)
{
	size_t n = t->n, done = 0;
	struct rewire_op *ops = calloc(n, sizeof(*ops));
	bool out = t->model[0] != HOLE;
	char *from = t->base + (out ? 0 : n * page_size), *to = t->base + (out ? n * page_size : 0);
	uint64_t *mfrom = t->model + (out ? 0 : n), *mto = t->model + (out ? n : 0);
	int ret;

	if (!ops)
		bail("out of memory");
	for (size_t i = 0; i < n; i++)
		ops[i] = (struct rewire_op){ REWIRE_OP_MOVE, 0, to + (n - 1 - i) * page_size,
					     from + i * page_size, page_size, NULL };
	ret = rewire_batch(t->a, ops, n, &done);
	for (size_t i = 0; i < done; i++) {
		mto[n - 1 - i] = mfrom[i];
		mfrom[i] = HOLE;
	}
	free(ops);
	return ret;
}

/* Each kind of large operation on n pages, at the default limit. */
static void large(size_t n)
{
	size_t *perm = malloc(n * sizeof(*perm));
	long maps = map_count(), spare;
	struct arena t;

	if (!perm)
		bail("out of memory");
	setup(&t, n);

	spare = spare_maps();
	reversed_but_two(perm, n);
	check(&t, "reversed but the first two", permute(&t, perm), spare);
	spare = spare_maps();
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	shuffle(perm, n);
	check(&t, "a random permutation", permute(&t, perm), spare);
	spare = spare_maps();
	blocks(perm, n, 64);
	check(&t, "64-page blocks permuted", permute(&t, perm), spare);
	spare = spare_maps();
	check(&t, "a batch of single-page swaps", swap_batch(&t), spare);
	spare = spare_maps();
	check(&t, "a batch of single-page moves", move_batch(&t), spare);
	spare = spare_maps();
	check(&t, "and back", move_batch(&t), spare);

	teardown(&t);
	if (maps_are_ours()) {
		is_int(maps, map_count(), "%zu pages: destroying the arena leaves no mapping", n);
		is_int(t.locked_kb, vm_locked_kb(), "%zu pages: nor locked memory", n);
	}
	free(perm);
}

/* Split fresh memory into mappings until the process has only spare left. */
static bool fill_maps(long spare)
{
	long need = spare_maps() - spare, n;
	char *p;

	if (need <= 0)
		return need == 0;
	/* Every other page read-only: 2k + 1 mappings from k + 1 calls. */
	n = need % 2 ? need : need - 1;
	p = mmap(NULL, (size_t)n * page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return false;
	for (long i = 1; i < n; i += 2)
		if (mprotect(p + i * page_size, page_size, PROT_READ))
			return false;
	/* The first mapping may have merged with a neighbour. */
	return spare_maps() <= spare + 2 && spare_maps() >= spare - 2;
}

/*
 * In a child that leaves the arena only spare mappings (before the library's
 * own headroom, inside it, and with the headroom turned off, so the kernel
 * refuses moves halfway): the reproduction, a random permutation and a batch
 * of swaps, all checked as above. The child's TAP lines are its own; its
 * exit status says whether they all passed.
 */
static void near_limit(long spare, bool no_headroom)
{
	size_t n = 4096, *perm = malloc(n * sizeof(*perm));
	pid_t pid;
	int status;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		bail("fork: %s", strerror(errno));
	if (pid == 0) {
		struct arena t;
		long before;

		in_child = true;
		setup(&t, n);
		if (!fill_maps(spare)) {
			diag("cannot fill the process up to %ld spare mappings", spare);
			_exit(1);
		}
		if (no_headroom)
			rw_mremap_set_headroom(-(1L << 30));
		before = no_headroom ? 0 : spare_maps();
		reversed_but_two(perm, n);
		check(&t, "reversed but two, near the limit", permute(&t, perm), before);
		for (size_t i = 0; i < n; i++)
			perm[i] = i;
		shuffle(perm, n);
		check(&t, "random, near the limit", permute(&t, perm), before);
		check(&t, "swaps, near the limit", swap_batch(&t), before);
		check(&t, "moves, near the limit", move_batch(&t), before);
		_exit(child_failures ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	   "%s %ld mappings to spare: every check passed", no_headroom ?
	   "past the library's headroom, so that the kernel refuses moves, with" : "with", spare);
	free(perm);
}

int main(void)
{
	const char *env = getenv("REWIRE_LARGE_MAX");
	size_t largest = env ? strtoull(env, NULL, 0) : 65536;
	bool valgrind = test_init();

	test_seed();
	max_maps = read_long("/proc/sys/vm/max_map_count");
	if (max_maps < 0)
		bail("cannot read vm.max_map_count");
	diag("vm.max_map_count %ld, %ld mappings now", max_maps, map_count());
	/* valgrind runs every page copy a hundred times slower. */
	if (valgrind)
		largest = 2048;
	for (size_t n = valgrind ? 2048 : 32768; n <= largest; n *= 2) {
		if (!fits_in_memory(n)) {
			diag("%zu pages: skipped, not enough memory here", n);
			continue;
		}
		large(n);
	}
	if (maps_are_ours()) {
		near_limit(4 * HEADROOM, false);
		near_limit(HEADROOM + 40, false);
		near_limit(HEADROOM / 2, false);
		near_limit(20, true);
	}
	return done_testing();
}
