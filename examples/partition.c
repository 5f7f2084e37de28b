/*
 * Partitioning a large array by rewiring pages (in the manner of RUMA,
 * "rewired user-space memory access"): each record is written once, into
 * the current page of its partition, and a partition takes a fresh page
 * whenever its page fills, so partitions interleave page by page. One
 * rewire_permute then gathers every partition's pages together, so the
 * output is partitioned without copying a record a second time.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rewire.h>

#define PARTS 16
#define RECORDS (1 << 20)

int main(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), per_page = ps / sizeof(uint32_t);
	size_t pages = RECORDS / per_page + PARTS, next = 0, *perm, k = 0;
	size_t cur[PARTS], fill[PARTS], npages[PARTS] = { 0 }, *owner;
	struct rewire_options opts;
	struct rewire_arena *a;
	uint32_t *out, prev = 0;
	char *base;

	rewire_options_init(&opts);
	opts.reserve = 2 * pages * ps;
	if (rewire_arena_create(&opts, &a))
		return 1;
	base = rewire_alloc(a, pages * ps, REWIRE_ALLOC_ZERO);
	owner = malloc(pages * sizeof(*owner));
	perm = malloc(pages * sizeof(*perm));
	if (!base || !owner || !perm)
		return 1;
	for (int p = 0; p < PARTS; p++) {
		owner[next] = (size_t)p;
		cur[p] = next++;
		fill[p] = 0;
		npages[p] = 1;
	}

	/* Scatter: records go to their partition's current page. */
	srand(7);
	for (size_t i = 0; i < RECORDS; i++) {
		uint32_t key = (uint32_t)rand() | 1;	/* 0 marks an empty slot */
		int p = (int)(key >> 27);		/* the top 4 bits of 31 */

		if (fill[p] == per_page) {
			owner[next] = (size_t)p;
			cur[p] = next++;
			fill[p] = 0;
			npages[p]++;
		}
		((uint32_t *)(base + cur[p] * ps))[fill[p]++] = key;
	}

	/* Gather: page i goes to the place of its partition, in order. */
	for (int p = 0; p < PARTS; p++)
		for (size_t i = 0; i < next; i++)
			if (owner[i] == (size_t)p)
				perm[i] = k++;
	for (size_t i = next; i < pages; i++)
		perm[i] = k++;
	if (rewire_permute(a, base, perm, pages))
		return 1;

	/* Every page now holds keys of a partition no lower than the last. */
	out = (uint32_t *)base;
	for (size_t i = 0; i < next * per_page; i++) {
		if (!out[i])
			continue;		/* a partly filled last page */
		if (out[i] >> 27 < prev >> 27)
			return 1;
		prev = out[i];
	}
	printf("partitioned %d keys into %d partitions of %zu pages on %s, no record copied "
	       "twice\n", RECORDS, PARTS, next, rewire_backend_name(a));
	rewire_arena_destroy(a);
	free(owner);
	free(perm);
	return 0;
}
