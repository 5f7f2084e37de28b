/* rewire-demo: create an arena, allocate, swap, permute and grow a buffer,
 * printing what happened. A first look at the API. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rewire.h"

#define MIB (1024 * 1024)

static void show(struct rewire_arena *a, const char *what)
{
	struct rewire_stats st;

	rewire_arena_stats(a, &st);
	printf("%-34s allocated %6zu KiB  backed %6zu KiB  locked %6zu KiB  "
	       "ops %llu  pages remapped %llu  copied %llu\n", what,
	       st.allocated / 1024, st.backed / 1024, st.locked / 1024,
	       (unsigned long long)st.ops, (unsigned long long)st.pages_remapped,
	       (unsigned long long)st.pages_copied);
}

int main(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), perm[4] = { 3, 0, 1, 2 };
	struct rewire_options o;
	struct rewire_arena *a;
	char *buf, *grown;
	int ret;

	rewire_options_init(&o);
	o.reserve = 64 * MIB;
	ret = rewire_arena_create(&o, &a);
	if (ret) {
		fprintf(stderr, "rewire-demo: cannot create a 64 MiB arena: %s\n",
			strerror(-ret));
		return 1;
	}
	printf("rewire %s, backend %s, page size %zu\n", rewire_version(),
	       rewire_backend_name(a), ps);

	buf = rewire_alloc(a, 4 * ps, 0);
	if (!buf) {
		perror("rewire_alloc");
		return 1;
	}
	for (int i = 0; i < 4; i++)
		snprintf(buf + i * ps, ps, "page %c", 'A' + i);
	show(a, "allocated 4 pages A B C D");

	ret = rewire_swap(a, buf, buf + 3 * ps, ps);
	printf("swap(first, last) = %d: %s %s %s %s\n", ret, buf, buf + ps,
	       buf + 2 * ps, buf + 3 * ps);
	ret = rewire_permute(a, buf, perm, 4);
	printf("permute(3 0 1 2) = %d: %s %s %s %s\n", ret, buf, buf + ps,
	       buf + 2 * ps, buf + 3 * ps);

	/* A neighbour blocks growth in place, so realloc moves the pages. */
	if (!rewire_alloc(a, ps, 0)) {
		perror("rewire_alloc");
		return 1;
	}
	grown = rewire_realloc(a, buf, 16 * MIB);
	if (!grown) {
		perror("rewire_realloc");
		return 1;
	}
	printf("realloc to 16 MiB moved the run by %td pages: %s %s %s %s\n",
	       (grown - buf) / (ptrdiff_t)ps, grown, grown + ps, grown + 2 * ps,
	       grown + 3 * ps);
	show(a, "after growing to 16 MiB");
	rewire_free(a, grown);
	show(a, "after free (pages kept as cache)");
	rewire_purge(a);
	show(a, "after purge");
	rewire_arena_destroy(a);
	return 0;
}
