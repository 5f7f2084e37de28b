/*
 * A hash table's nodes allocated by jemalloc, from memory that is pinned:
 * a jemalloc arena on a rewire arena (librewire-jemalloc). A database keeps
 * its allocator, and its memory stays locked in RAM, on one NUMA node if it
 * asks, and never above the lock budget: past it, mallocx returns NULL and
 * nothing is swapped.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jemalloc/jemalloc.h>
#include <rewire-jemalloc.h>

struct node {
	struct node *next;
	uint64_t key;
	char value[48];
};

#define BUCKETS 4096

int main(void)
{
	static struct node *bucket[BUCKETS];
	struct rewire_options o;
	struct rewire_arena *a;
	struct rewire_stats st;
	unsigned ind;
	int flags, ret;
	uint64_t n = 0, found = 0;

	rewire_options_init(&o);
	o.reserve = (size_t)1 << 30;		/* address space: free */
	o.lock_budget = (size_t)16 << 20;	/* memory: 16 MiB at most */
	ret = rewire_arena_create(&o, &a);
	if (!ret)
		ret = rewire_jemalloc_create(a, o.reserve, &ind);
	if (ret) {
		fprintf(stderr, "jemalloc-arena: %s\n", strerror(-ret));
		return 1;
	}
	flags = rewire_jemalloc_flags(ind);

	/* Insert until the budget says no. */
	for (;;) {
		struct node *p = mallocx(sizeof(*p), flags);

		if (!p)
			break;
		p->key = n * 0x9e3779b97f4a7c15ull;
		snprintf(p->value, sizeof(p->value), "row %llu", (unsigned long long)n);
		p->next = bucket[p->key % BUCKETS];
		bucket[p->key % BUCKETS] = p;
		n++;
	}
	rewire_arena_stats(a, &st);
	printf("%llu nodes in %zu MiB locked (budget %zu MiB)\n", (unsigned long long)n,
	       st.backed >> 20, st.lock_budget >> 20);

	for (uint64_t i = 0; i < n; i++) {
		uint64_t key = i * 0x9e3779b97f4a7c15ull;

		for (struct node *p = bucket[key % BUCKETS]; p; p = p->next)
			if (p->key == key) {
				found++;
				break;
			}
	}
	for (int b = 0; b < BUCKETS; b++)
		while (bucket[b]) {
			struct node *next = bucket[b]->next;

			dallocx(bucket[b], flags);
			bucket[b] = next;
		}
	ret = rewire_jemalloc_destroy(ind);
	rewire_arena_stats(a, &st);
	printf("found %llu of %llu; destroyed: %s, %zu bytes backed\n", (unsigned long long)found,
	       (unsigned long long)n, ret ? strerror(-ret) : "yes", st.backed);
	rewire_arena_destroy(a);
	return found == n && n > 0 && !ret && !st.backed ? 0 : 1;
}
