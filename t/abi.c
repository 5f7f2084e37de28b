/* The shared library's compatibility with programs linked before struct
 * rewire_stats grew: rewire_arena_stats@REWIRE_0.1 fills only the fields
 * those programs know, and writes nothing past them. Linked against the
 * shared library (-no-install), not the static one. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "testlib.h"

/* The structure as REWIRE_0.1 knew it. */
struct stats_v1 {
	size_t reserved, lock_budget, allocated, free, backed, cached, locked;
	uint64_t batches, ops, pages_remapped, pages_copied;
};

int stats_v1(struct rewire_arena *a, struct stats_v1 *st);
__asm__(".symver stats_v1, rewire_arena_stats@REWIRE_0.1");

int main(void)
{
	struct {
		struct stats_v1 st;
		unsigned char after[64];
	} old;
	struct rewire_stats st;
	struct rewire_arena *a;
	unsigned char canary[64];

	test_init();
	plan(4);
	ok(sizeof(struct stats_v1) == offsetof(struct rewire_stats, page_size),
	   "the old structure is the new one's first %zu bytes", sizeof(struct stats_v1));
	a = test_arena(16, 0, 0);
	if (!rewire_alloc(a, 3 * page_size, 0))
		bail("alloc: %s", strerror(errno));
	memset(&old, 0xa5, sizeof(old));
	memset(canary, 0xa5, sizeof(canary));
	is_int(0, stats_v1(a, &old.st), "rewire_arena_stats@REWIRE_0.1");
	ok(old.st.allocated == 3 * page_size && old.st.reserved == 16 * page_size,
	   "fills the fields it had");
	ok(!memcmp(old.after, canary, sizeof(canary)) && !rewire_arena_stats(a, &st) &&
	   st.page_size == page_size, "and writes nothing past them; the current one fills page_size");
	rewire_arena_destroy(a);
	return done_testing();
}
