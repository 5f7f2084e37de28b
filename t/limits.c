/* The lock budget and RLIMIT_MEMLOCK: exhaustion fails cleanly, changes
 * nothing, and leaves no mapping or locked memory behind; an unlocked arena
 * lets an unprivileged process reserve far more than its limit. */
#include <errno.h>
#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static bool stats_equal(struct rewire_arena *a, const struct rewire_stats *want)
{
	struct rewire_stats now;

	rewire_arena_stats(a, &now);
	return !memcmp(&now, want, sizeof(now));
}

static void budget(void)
{
	struct rewire_arena *a = test_arena(64, 16, 0);
	struct rewire_stats st;
	size_t ps = page_size;
	char *x, *y, *z;

	x = rewire_alloc(a, 8 * ps, 0);
	y = rewire_alloc(a, 8 * ps, 0);
	ok(x && y, "budget 16 pages: two runs of 8");
	tag_page(y, 77);
	rewire_arena_stats(a, &st);
	errno = 0;
	ok(!rewire_alloc(a, ps, 0) && errno == ENOMEM, "a 17th page is refused with ENOMEM");
	ok(stats_equal(a, &st), "and changes nothing");
	z = rewire_alloc(a, ps, REWIRE_ALLOC_HOLES);
	ok(z != NULL, "a run of holes costs no budget");
	rewire_free(a, z);
	rewire_free(a, x);
	rewire_arena_stats(a, &st);
	is_int(8 * (long long)ps, (long long)st.cached, "freed pages are cached");
	errno = 0;
	ok(!rewire_alloc(a, 9 * ps, 0) && errno == ENOMEM, "9 new pages do not fit even after a purge");
	ok(stats_equal(a, &st), "the failed call did not purge the cache");
	z = rewire_realloc(a, y, 16 * ps);
	ok(z == y && page_has_tag(z, 77), "growing by 8 pages purges the cache to make room");
	rewire_arena_stats(a, &st);
	ok(!st.cached && st.backed == 16 * ps, "cache gone, 16 pages backed");
	errno = 0;
	ok(!rewire_realloc(a, z, 17 * ps) && errno == ENOMEM, "growing past the budget: ENOMEM");
	ok(stats_equal(a, &st) && page_has_tag(z, 77), "the run is untouched");
	rewire_arena_destroy(a);

	a = test_arena(64, 4, REWIRE_ONFAULT);
	x = rewire_alloc(a, 4 * ps, 0);
	errno = 0;
	ok(x && !rewire_alloc(a, ps, 0) && errno == ENOMEM,
	   "ONFAULT: untouched allocations count against the budget too");
	rewire_arena_destroy(a);
}

static int drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	d[0].effective &= ~(1u << CAP_IPC_LOCK);
	d[0].permitted &= ~(1u << CAP_IPC_LOCK);
	d[0].inheritable &= ~(1u << CAP_IPC_LOCK);
	return (int)syscall(SYS_capset, &h, d);
}

static const char *const rlimit_checks[] = {
	"rlimit: CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK set to 256 KiB",
	"rlimit: a 1 MiB arena is refused with ENOMEM",
	"rlimit: the refusal leaves no mapping and no locked memory",
	"rlimit: an arena as large as the limit fits and all of it can be allocated",
	"rlimit: destroying it leaves nothing locked",
	"rlimit: with RLIMIT_MEMLOCK 0 creation fails with EPERM",
};

static int rlimit_child(void)
{
	struct rlimit rl = { 256 << 10, 256 << 10 };
	struct rewire_options o;
	struct rewire_arena *a;
	long lck, maps;
	int failed = 0, ret;

	if (drop_ipc_lock() || setrlimit(RLIMIT_MEMLOCK, &rl))
		return 0xff;
	lck = vm_locked_kb();
	maps = map_count();
	rewire_options_init(&o);
	o.reserve = 1 << 20;
	ret = rewire_arena_create(&o, &a);
	if (ret != -ENOMEM)
		failed |= 1 << 1;
	if (vm_locked_kb() != lck || (map_count() != maps && maps_are_ours()))
		failed |= 1 << 2;
	/* Only the reserve is locked: it may use all of what is left. */
	o.reserve = (256 << 10) - (size_t)lck * 1024;
	if (rewire_arena_create(&o, &a) || !rewire_alloc(a, o.reserve, REWIRE_ALLOC_ZERO))
		failed |= 1 << 3;
	else
		rewire_arena_destroy(a);
	if (vm_locked_kb() != lck || (map_count() != maps && maps_are_ours()))
		failed |= 1 << 4;
	rl.rlim_cur = rl.rlim_max = 0;
	if (setrlimit(RLIMIT_MEMLOCK, &rl) || rewire_arena_create(&o, &a) != -EPERM)
		failed |= 1 << 5;
	return failed;
}

static const char *const unlocked_checks[] = {
	"unlocked: CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK 8 MiB (the default)",
	"unlocked: a 64 GiB arena with an 8 MiB budget, locked, is refused with ENOMEM",
	"unlocked: with REWIRE_UNLOCKED it is created",
	"unlocked: the whole budget allocates; a page more fails with ENOMEM",
	"unlocked: a permutation and swaps of the 8 MiB leave every page where it belongs",
	"unlocked: 8 MiB backed, nothing locked, VmLck unchanged; destroyed, nothing left",
};

/* An unprivileged process reserves far more than RLIMIT_MEMLOCK. */
static int unlocked_child(void)
{
	struct rlimit rl = { 8 << 20, 8 << 20 };
	const char *env = getenv("REWIRE_BACKEND");
	size_t n = (8 << 20) / page_size, *perm;
	struct rewire_options o;
	struct rewire_stats st;
	struct rewire_arena *a;
	int failed = 0;
	long lck;
	char *p;

	if (drop_ipc_lock() || setrlimit(RLIMIT_MEMLOCK, &rl))
		return 0xff;
	lck = vm_locked_kb();
	rewire_options_init(&o);
	o.reserve = (size_t)64 << 30;
	o.lock_budget = 8 << 20;
	/* The module moves mlocked memory only; auto sets it aside. */
	o.backend = env && strcmp(env, "kmod") ? env : "auto";
	if (rewire_arena_create(&o, &a) != -ENOMEM)
		failed |= 1 << 1;
	o.flags = REWIRE_UNLOCKED;
	if (rewire_arena_create(&o, &a))
		return failed | 0xfc;
	p = rewire_alloc(a, n * page_size, 0);
	errno = 0;
	if (!p || rewire_alloc(a, page_size, 0) || errno != ENOMEM)
		failed |= 1 << 3;
	perm = malloc(n * sizeof(*perm));
	if (!p || !perm)
		return failed | 1 << 4;
	for (size_t i = 0; i < n; i++) {
		tag_page(p + i * page_size, i + 1);
		perm[i] = n - 1 - i;
	}
	if (rewire_permute(a, p, perm, n) ||
	    rewire_swap(a, p, p + (n / 2) * page_size, 16 * page_size))
		failed |= 1 << 4;
	for (size_t i = 0; i < n; i++) {
		/* Reversed, then the first 16 swapped with the 16 at n / 2. */
		size_t at = n - 1 - i;

		if (at < 16)
			at += n / 2;
		else if (at >= n / 2 && at < n / 2 + 16)
			at -= n / 2;
		if (!page_has_tag(p + at * page_size, i + 1)) {
			failed |= 1 << 4;
			break;
		}
	}
	rewire_arena_stats(a, &st);
	if (st.backed != n * page_size || st.locked || vm_locked_kb() != lck)
		failed |= 1 << 5;
	rewire_arena_destroy(a);
	if (vm_locked_kb() != lck)
		failed |= 1 << 5;
	free(perm);
	return failed;
}

static long vm_size_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmSize:", 7))
			v = strtol(line + 7, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

static const char *const as_checks[] = {
	"RLIMIT_AS: set to 16 MiB above what the process uses",
	"RLIMIT_AS: a 64 MiB arena is refused with ENOMEM",
	"RLIMIT_AS: the refusal leaves no mapping and no locked memory",
	"RLIMIT_AS: a 1 MiB arena fits, and growing a run past it fails cleanly",
	"max_map_count: with no mapping left, creation fails with ENOMEM",
	"max_map_count: and leaves nothing behind",
};

/* Address space and mapping count exhausted: clean failures, no leaks. */
static int as_child(void)
{
	struct rlimit rl;
	struct rewire_options o;
	struct rewire_arena *a;
	long lck, maps, max;
	int failed = 0;
	char *p;

	/* Only the soft limit, so it can be lifted again below. */
	if (getrlimit(RLIMIT_AS, &rl))
		return 0xff;
	rl.rlim_cur = (rlim_t)(vm_size_kb() + 16 * 1024) * 1024;
	if (vm_size_kb() < 0 || setrlimit(RLIMIT_AS, &rl))
		return 0xff;
	lck = vm_locked_kb();
	maps = map_count();
	rewire_options_init(&o);
	o.reserve = 64 << 20;
	if (rewire_arena_create(&o, &a) != -ENOMEM)
		failed |= 1 << 1;
	if (vm_locked_kb() != lck || map_count() != maps)
		failed |= 1 << 2;
	o.reserve = 1 << 20;
	if (rewire_arena_create(&o, &a)) {
		failed |= 1 << 3;
	} else {
		p = rewire_alloc(a, 16 * page_size, 0);
		errno = 0;
		if (!p || rewire_realloc(a, p, 2 << 20) || errno != ENOMEM ||
		    rewire_usable_size(a, p) != 16 * page_size)
			failed |= 1 << 3;
		rewire_arena_destroy(a);
	}

	/* Use up the mappings: a region split page by page. */
	max = read_long("/proc/sys/vm/max_map_count");
	if (max < 0)
		max = 65530;
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_AS, &rl);
	{
		long need = max - map_count() + 2;
		char *r = mmap(NULL, (size_t)need * page_size, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (r == MAP_FAILED)
			return failed | 3 << 4;
		for (long i = 1; i < need; i += 2)
			if (mprotect(r + i * page_size, page_size, PROT_READ))
				break;
		/* Splitting stops at the limit, but mmap(2) may still add one. */
		mmap(NULL, page_size, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		lck = vm_locked_kb();
		maps = map_count();
		if (rewire_arena_create(&o, &a) != -ENOMEM)
			failed |= 1 << 4;
		if (vm_locked_kb() != lck || map_count() != maps)
			failed |= 1 << 5;
	}
	return failed;
}

static void run_child(int (*fn)(void), const char *const *checks, unsigned n, bool skip_maps)
{
	int status = -1;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(fn());
	waitpid(pid, &status, 0);
	for (unsigned i = 0; i < n; i++) {
		/* valgrind maps memory of its own as the program runs. */
		if (skip_maps && strstr(checks[i], "leaves") && test_init())
			ok(1, "# SKIP %s: not under valgrind", checks[i]);
		else
			ok(WIFEXITED(status) && !(WEXITSTATUS(status) & 1 << i), "%s", checks[i]);
	}
}

int main(void)
{
	bool valgrind = test_init();

	plan(valgrind ? 18 : 30);
	budget();
	run_child(rlimit_child, rlimit_checks, 6, true);
	/* valgrind keeps its own address space and mapping table. */
	if (!valgrind) {
		run_child(as_child, as_checks, 6, false);
		run_child(unlocked_child, unlocked_checks, 6, false);
	}
	return done_testing();
}
