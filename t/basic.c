/* Version, options, arena creation on the backend under test, statistics. */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

int main(void)
{
	struct rewire_options o;
	struct rewire_stats st;
	struct rewire_arena *a;
	const char *want = getenv("REWIRE_BACKEND");
	long lck = vm_locked_kb(), maps = map_count();
	char *p;

	plan(19);
	ok(!strcmp(rewire_version(), "0.1.0"), "version is 0.1.0");
	rewire_options_init(&o);
	ok(o.struct_size == sizeof(o) && o.numa_node == -1 && !o.reserve && !o.flags &&
	   !o.backend && !o.lock_budget, "options_init fills the defaults");
	rewire_options_init(NULL);

	a = test_arena(100, 0, 0);
	if (want && strcmp(want, "auto"))
		ok(!strcmp(rewire_backend_name(a), want), "backend is %s as asked", want);
	else if (getenv("REWIRE_AUTO_EXPECTS"))	/* set where the VM loads rewire.ko */
		ok(!strcmp(rewire_backend_name(a), getenv("REWIRE_AUTO_EXPECTS")),
		   "auto chose %s: %s", getenv("REWIRE_AUTO_EXPECTS"), rewire_backend_name(a));
	else
		ok(rewire_backend_name(a) && strcmp(rewire_backend_name(a), "auto"),
		   "auto chose a real backend: %s", rewire_backend_name(a));
	diag("backend %s", rewire_backend_name(a));
	is_int(0, rewire_arena_stats(a, &st), "stats of a new arena");
	is_int(100 * (long long)page_size, (long long)st.reserved, "reserve");
	is_int(100 * (long long)page_size, (long long)st.lock_budget, "budget 0 means the reserve");
	ok(!st.allocated && !st.backed && !st.locked && !st.cached && !st.ops && !st.batches,
	   "nothing allocated, backed, locked or done yet");
	is_int(100 * (long long)page_size, (long long)st.free, "all free");

	p = rewire_alloc(a, 10 * page_size + 1, 0);
	ok(p && ((uintptr_t)p & (page_size - 1)) == 0, "alloc returns a page-aligned run");
	is_int(11 * (long long)page_size, (long long)rewire_usable_size(a, p), "length rounded up to pages");
	rewire_arena_stats(a, &st);
	ok(st.allocated == 11 * page_size && st.backed == 11 * page_size &&
	   st.locked == 11 * page_size, "allocated, backed and locked: 11 pages");
	memset(p, 0xab, 11 * page_size);
	is_int(0, rewire_free(a, p), "free");
	rewire_arena_stats(a, &st);
	ok(!st.allocated && st.backed == 11 * page_size && st.cached == 11 * page_size,
	   "freed pages stay backed as cache");
	is_int(0, rewire_purge(a), "purge");
	rewire_arena_stats(a, &st);
	ok(!st.backed && !st.cached && !st.locked, "purge gave the pages back");
	rewire_arena_destroy(a);
	ok(vm_locked_kb() == lck && (map_count() == maps || !maps_are_ours()),
	   "destroy leaves no mapping and no locked memory");

	/* Lock on fault: an allocation is backed when touched. */
	a = test_arena(64, 0, REWIRE_ONFAULT);
	p = rewire_alloc(a, 8 * page_size, 0);
	rewire_arena_stats(a, &st);
	ok(p && st.backed == 8 * page_size && st.locked == 0, "ONFAULT: allocated pages are not resident yet");
	p[0] = 1;
	p[5 * page_size] = 1;
	rewire_arena_stats(a, &st);
	is_int(2 * (long long)page_size, (long long)st.locked, "ONFAULT: touched pages are locked");
	rewire_arena_destroy(a);
	ok(vm_locked_kb() == lck && (map_count() == maps || !maps_are_ours()),
	   "and destroy cleans up");
	return done_testing();
}
