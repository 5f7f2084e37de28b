/* Arenas of huge pages: the page size and its errors, backing by transparent
 * huge pages and the statistics that count them, moves that keep them whole,
 * and the fallback to base pages where the kernel gives none. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "devlib.h"
#include "testlib.h"

#define NP 16

static char *base;
/* What ops_keep_data() left where: a tag, or HOLE. */
static uint64_t model[2 * NP];

static char *at(size_t i)
{
	return base + i * page_size;
}

/* A line of /proc/vmstat, or -1. */
static long vmstat(const char *name)
{
	FILE *f = fopen("/proc/vmstat", "r");
	char key[64];
	long v, found = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%63s %ld", key, &v) == 2)
		if (!strcmp(key, name))
			found = v;
	fclose(f);
	return found;
}

static size_t huge_backed(struct rewire_arena *a, size_t *backed)
{
	struct rewire_stats st;

	if (rewire_arena_stats(a, &st))
		return 0;
	if (backed)
		*backed = st.backed;
	return st.huge_backed;
}

/* How often the kernel had no huge page to give: a fault that fell back
 * to base pages, or a collapse that failed. */
static long thp_failures(void)
{
	return vmstat("thp_fault_fallback") + vmstat("thp_collapse_alloc_failed");
}

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/*
 * Where backed pages are not huge, whether the kernel would make them huge
 * now: each resident page of [0, 2 * NP) is collapsed here (MADV_COLLAPSE,
 * which succeeds on a huge page too). Returns by how many bytes the arena's
 * huge pages grew, which the library should have done; the errno of the
 * last refusal goes to *refused.
 */
static size_t collapsible_now(struct rewire_arena *a, int *refused)
{
	size_t before = huge_backed(a, NULL), after;

	int tried = 0;

	*refused = 0;
	for (size_t i = 0; i < 2 * NP; i++) {
		if (page_residency(at(i)) != 1)
			continue;
		tried++;
		if (madvise(at(i), page_size, MADV_COLLAPSE)) {
			*refused = errno;
			diag("page %zu: MADV_COLLAPSE: %s", i, strerror(errno));
		}
	}
	after = huge_backed(a, NULL);
	diag("collapsed %d resident pages: huge bytes %zu, then %zu", tried, before, after);
	return after > before ? after - before : 0;
}

/* A read of each resident page of [0, 2 * NP). */
static void touch_resident_pages(void)
{
	for (size_t i = 0; i < 2 * NP; i++)
		if (page_residency(at(i)) == 1)
			(void)*(volatile char *)at(i);
}

/* Every backed page huge, as stats say and as smaps says; a skip where
 * the kernel had no huge page to give since failed_before, or will not
 * collapse the pages that are not (checked only then: it changes them). */
static void all_huge(struct rewire_arena *a, long failed_before, const char *what)
{
	size_t backed, huge = huge_backed(a, &backed);
	struct rewire_stats st;
	size_t collapsed;
	int refused;

	/* Linux 6.1's smaps does not count a huge page that NUMA balancing has
	 * made inaccessible, to see who touches it next (a hinting fault),
	 * until it is touched; Linux 6.12's does. Touched, then counted again. */
	for (int tries = 0; tries < 3 && huge < backed; tries++) {
		size_t before = huge;

		touch_resident_pages();
		huge = huge_backed(a, &backed);
		diag("%s: %zu huge bytes counted, %zu once touched", what, before, huge);
	}
	rewire_arena_stats(a, &st);

	if (!thp_enabled()) {
		ok(1, "# SKIP transparent huge pages are off here: %s", what);
		return;
	}
	if (huge < backed && thp_failures() > failed_before) {
		ok(1, "# SKIP no free huge page (memory fragmented): %s", what);
		return;
	}
	if (huge == backed && huge == huge_mapped(rewire_arena_base(a), st.reserved, false) && backed) {
		ok(1, "%s: all %zu backed bytes are huge pages", what, backed);
		return;
	}
	diag("thp_fault_alloc %ld thp_fault_fallback %ld thp_collapse_alloc %ld "
	     "thp_collapse_alloc_failed %ld thp_split_pmd %ld thp_migration_split %ld "
	     "numa_hint_faults %ld", vmstat("thp_fault_alloc"), vmstat("thp_fault_fallback"),
	     vmstat("thp_collapse_alloc"), vmstat("thp_collapse_alloc_failed"),
	     vmstat("thp_split_pmd"), vmstat("thp_migration_split"), vmstat("numa_hint_faults"));
	huge_mapped(rewire_arena_base(a), st.reserved, true);
	collapsed = collapsible_now(a, &refused);
	if (backed && !collapsed && refused) {
		ok(1, "# SKIP the kernel will not collapse the %zu of %zu backed bytes "
		      "that are base pages (%s): %s", backed - huge, backed, strerror(refused), what);
		return;
	}
	ok(0, "%s: %zu of %zu backed bytes are huge pages (%zu more collapsible now)", what,
	   huge, backed, collapsed);
}

static void check_errors(void)
{
	struct rewire_options o;
	struct rewire_arena *a;
	struct rewire_stats st;

	test_options_init(&o);
	o.reserve = 3 * page_size / 2;
	o.page_size = 3 * page_size / 2;
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: a page size of 3 MiB");
	o.page_size = 2 * base_page_size;
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: twice the base page size");
	o.page_size = base_page_size;
	if (!is_int(0, rewire_arena_create(&o, &a), "create: the base page size"))
		bail("no arena on this backend");
	rewire_arena_stats(a, &st);
	ok(st.page_size == base_page_size && st.reserved == 3 * page_size / 2,
	   "that is a base-page arena");
	rewire_arena_destroy(a);
	/* A caller built before page_size existed: the field is not read. */
	o.struct_size = offsetof(struct rewire_options, page_size);
	o.page_size = 12345;
	if (!is_int(0, rewire_arena_create(&o, &a), "create: an older struct_size ignores page_size"))
		bail("no arena on this backend");
	rewire_arena_stats(a, &st);
	ok(st.page_size == base_page_size, "and makes a base-page arena");
	rewire_arena_destroy(a);

	o.struct_size = sizeof(o);
	o.page_size = page_size;
	o.reserve = 3 * page_size / 2;
	if (!is_int(0, rewire_arena_create(&o, &a), "create: a huge arena of 3 MiB"))
		bail("no huge arena on this backend");
	rewire_arena_stats(a, &st);
	ok(st.page_size == page_size && st.reserved == 2 * page_size &&
	   !((uintptr_t)rewire_arena_base(a) & (page_size - 1)),
	   "two huge pages, the arena aligned to one");
	base = rewire_alloc(a, page_size, 0);
	ok(base && rewire_usable_size(a, base) == page_size &&
	   rewire_alloc(a, page_size, REWIRE_ALLOC_HOLES) == base + page_size,
	   "allocations of a huge page and of a huge hole");
	is_int(-EINVAL, rewire_move(a, base + page_size, base + base_page_size, page_size),
	       "move: a source aligned to a base page only");
	is_int(-EINVAL, rewire_move(a, base + page_size, base, base_page_size),
	       "move: a base page's length");
	is_int(-EINVAL, rewire_discard(a, base, page_size / 2), "discard: half a huge page");
	rewire_arena_destroy(a);
}

/* Tag pages [0, n), run the operations, and check the model. */
static bool ops_keep_data(struct rewire_arena *a)
{
	size_t perm[NP / 2];
	struct rewire_op batch[2];

	memset(model, 0, sizeof(model));
	for (size_t i = 0; i < NP; i++) {
		tag_page(at(i), 100 + i);
		model[i] = 100 + i;
	}
	/* 0-3 to the holes at NP..NP+3 */
	if (rewire_move(a, at(NP), at(0), 4 * page_size))
		return false;
	for (size_t i = 0; i < 4; i++)
		model[NP + i] = model[i], model[i] = HOLE;
	if (rewire_swap(a, at(4), at(6), 2 * page_size))
		return false;
	for (size_t i = 4; i < 6; i++) {
		uint64_t t = model[i];

		model[i] = model[i + 2], model[i + 2] = t;
	}
	for (size_t i = 0; i < NP / 2; i++)
		perm[i] = (i * 3 + 1) % (NP / 2);
	if (rewire_permute(a, at(8), perm, NP / 2))
		return false;
	{
		uint64_t old[NP / 2];

		memcpy(old, model + 8, sizeof(old));
		for (size_t i = 0; i < NP / 2; i++)
			model[8 + perm[i]] = old[i];
	}
	batch[0] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(0), at(NP + 1), page_size, NULL };
	batch[1] = (struct rewire_op){ REWIRE_OP_SWAP, 0, at(4), at(NP + 2), page_size, NULL };
	if (rewire_batch(a, batch, 2, NULL))
		return false;
	model[0] = model[NP + 1], model[NP + 1] = HOLE;
	{
		uint64_t t = model[4];

		model[4] = model[NP + 2], model[NP + 2] = t;
	}
	return check_pages(base, model, 2 * NP);
}

/* A fresh huge arena of 2 * NP pages, the first NP allocated and backed,
 * the next NP allocated as holes. */
static struct rewire_arena *arena_with_pages(void)
{
	struct rewire_arena *a = test_arena(2 * NP + 4, 0, 0);
	char *holes;

	base = rewire_alloc(a, NP * page_size, 0);
	holes = rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES);
	if (!base || holes != at(NP))
		bail("cannot allocate the pages");
	return a;
}

/*
 * What the kernel does to memory on its own, done to huge pages the
 * operations moved: migration to another node (where there are two),
 * compaction, reclaim (mlocked: refused), and khugepaged scanning at full
 * speed. Each page's data stays where the arena says, and holes stay holes.
 */
static void kernel_events(void)
{
	static const char sleep_path[] =
		"/sys/kernel/mm/transparent_hugepage/khugepaged/scan_sleep_millisecs";
	static const char scan_path[] =
		"/sys/kernel/mm/transparent_hugepage/khugepaged/pages_to_scan";
	void *pages[2 * NP];
	int nodes[2 * NP], status[2 * NP];
	size_t n = 0;
	char old_sleep[32], old_scan[32];

	if (node_count() < 2) {
		ok(1, "# SKIP one NUMA node here: no migration");
	} else {
		for (size_t i = 0; i < 2 * NP; i++) {
			if (model[i] == HOLE)
				continue;
			pages[n] = at(i);
			nodes[n++] = 1;
		}
		ok(!move_pages_to(n, pages, nodes, status) && check_pages(base, model, 2 * NP),
		   "moved huge pages migrated to node 1: every page's data where it was");
	}
	if (!write_file("/proc/sys/vm/compact_memory", "1"))
		ok(1, "# SKIP cannot compact memory (not root)");
	else
		ok(check_pages(base, model, 2 * NP), "memory compacted: every page's data intact");
	madvise(base, 2 * NP * page_size, MADV_PAGEOUT);
	ok(check_pages(base, model, 2 * NP), "reclaim asked for (MADV_PAGEOUT): every page intact");
	snprintf(old_sleep, sizeof(old_sleep), "%ld", read_long(sleep_path));
	snprintf(old_scan, sizeof(old_scan), "%ld", read_long(scan_path));
	if (old_sleep[0] == '-' || old_scan[0] == '-' ||
	    !write_file(sleep_path, "0") || !write_file(scan_path, "65536")) {
		ok(1, "# SKIP cannot make khugepaged scan (not root, or no THP)");
		return;
	}
	usleep(1500 * 1000);
	write_file(sleep_path, old_sleep);
	write_file(scan_path, old_scan);
	ok(check_pages(base, model, 2 * NP),
	   "khugepaged scanning for 1.5 s backed no hole and moved no page");
}

int main(void)
{
	struct rewire_arena *a;
	long failed;
	size_t backed, huge;

	setenv("REWIRE_TEST_PAGE_SIZE", "huge", 1);
	test_init();
	test_seed();
	plan(33);
	check_errors();

	/* Backed as huge pages, and moved whole. */
	failed = thp_failures();
	a = arena_with_pages();
	diag("backend %s", rewire_backend_name(a));
	all_huge(a, failed, "allocated pages");
	ok(ops_keep_data(a), "move, swap, permute and a batch of huge pages keep every page's data");
	all_huge(a, failed, "after the moves");
	kernel_events();
	rewire_arena_destroy(a);

	/* The kernel gives no huge page: base pages, 512 to a huge one. */
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		bail("PR_SET_THP_DISABLE: %s", strerror(errno));
	a = arena_with_pages();
	is_int(0, (long long)huge_backed(a, &backed), "with huge pages disabled, none is huge");
	ok(backed == NP * page_size, "yet all %d pages are backed", NP);
	ok(ops_keep_data(a), "and every operation keeps every page's data");
	is_int(0, rewire_purge(a), "purge, which cannot remake huge pages now");
	is_int(0, (long long)huge_backed(a, NULL), "none is huge");
	prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);

	/* Allowed again: purge repairs (before khugepaged is made to scan
	 * below, which would collapse them too). */
	failed = thp_failures();
	is_int(0, rewire_purge(a), "purge with huge pages allowed again");
	all_huge(a, failed, "repaired by purge");
	/* The kernel's own work beside the holes that base pages left their
	 * page tables in; then a huge page moved into such a hole, which no
	 * move may lose. */
	kernel_events();
	tag_page(at(4), 7);
	ok(!rewire_move(a, at(1), at(4), page_size) && page_has_tag(at(1), 7),
	   "a huge page moved into a hole that held base pages");
	rewire_purge(a);
	all_huge(a, failed, "after purge");
	huge_backed(a, &backed);
	ok(!rewire_discard(a, at(1), page_size) && !page_resident(at(1)) &&
	   huge_backed(a, &huge) <= huge && huge == backed - page_size,
	   "a discarded huge page is a hole, and no longer backed");
	rewire_arena_destroy(a);
	return done_testing();
}
