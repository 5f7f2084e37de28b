/* NUMA placement: an arena bound to a node has its pages there, checked with
 * move_pages(2) status queries, before and after pages move. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#ifdef HAVE_NUMA
#include <numa.h>
#include <numaif.h>

#define NP 32

/* Number of the n pages at p that live on node. */
static int pages_on(char *p, size_t n, int node)
{
	void *pages[NP];
	int status[NP], count = 0;

	for (size_t i = 0; i < n; i++)
		pages[i] = p + i * page_size;
	if (move_pages(0, n, pages, NULL, status, 0))
		return -errno;
	for (size_t i = 0; i < n; i++)
		count += status[i] == node;
	return count;
}

int main(void)
{
	int nodes;

	if (numa_available() < 0)
		skip_all("the kernel has no NUMA support");
	nodes = numa_max_node() + 1;
	if (nodes < 2)
		skip_all("no second NUMA node on this machine");
	plan(4 * nodes);
	for (int node = 0; node < nodes; node++) {
		struct rewire_options o;
		struct rewire_arena *a;
		size_t perm[NP];
		char *p, *h;

		page_size = (size_t)numa_pagesize();
		rewire_options_init(&o);
		o.reserve = 4 * NP * page_size;
		o.numa_node = node;
		if (!numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned int)node)) {
			for (int i = 0; i < 4; i++)
				ok(1, "# SKIP node %d has no memory", node);
			continue;
		}
		is_int(0, rewire_arena_create(&o, &a), "arena bound to node %d", node);
		p = rewire_alloc(a, NP * page_size, 0);
		h = rewire_alloc(a, NP * page_size, REWIRE_ALLOC_HOLES);
		is_int(NP, pages_on(p, NP, node), "all %d allocated pages are on node %d", NP, node);
		for (size_t i = 0; i < NP; i++)
			perm[i] = NP - 1 - i;
		rewire_permute(a, p, perm, NP);
		rewire_move(a, h, p, NP / 2 * page_size);
		is_int(NP / 2, pages_on(p + NP / 2 * page_size, NP / 2, node),
		       "after a permutation the pages stay on node %d", node);
		is_int(NP / 2, pages_on(h, NP / 2, node), "so do pages moved to new addresses");
		rewire_arena_destroy(a);
	}
	return done_testing();
}
#else
int main(void)
{
	skip_all("built without libnuma (./configure --with-numa)");
}
#endif
