/* Page runs: alloc, zalloc, free, usable size, realloc growing in place, by
 * moving pages, and shrinking; contents checked page by page. */
#include <errno.h>
#include <string.h>

#include "testlib.h"

static bool tags_ok(const char *p, size_t n, uint64_t first)
{
	for (size_t i = 0; i < n; i++)
		if (!page_has_tag(p + i * page_size, first + i))
			return false;
	return true;
}

static void tag_run(char *p, size_t n, uint64_t first)
{
	for (size_t i = 0; i < n; i++)
		tag_page(p + i * page_size, first + i);
}

static bool all_zero(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

int main(void)
{
	struct rewire_arena *a = test_arena(256, 0, 0);
	struct rewire_stats st, st2;
	size_t ps = page_size;
	char *p, *q, *r, *blocker;
	uint64_t model[8];

	plan(31);
	p = rewire_alloc(a, 4 * ps, 0);
	q = rewire_alloc(a, 4 * ps, 0);
	ok(p && q == p + 4 * ps, "first fit: runs are laid out in order");
	tag_run(p, 4, 100);
	is_int(0, rewire_free(a, p), "free the first run");
	r = rewire_zalloc(a, 2 * ps);
	ok(r == p, "the freed pages are reused first");
	ok(all_zero(r, 2 * ps), "zalloc clears reused pages");
	rewire_free(a, r);
	r = rewire_alloc(a, 4 * ps, 0);
	ok(r == p, "alloc reuses the run");
	rewire_free(a, r);
	rewire_free(a, q);

	/* Growth in place: the following pages are free. */
	p = rewire_alloc(a, 4 * ps, 0);
	tag_run(p, 4, 200);
	q = rewire_realloc(a, p, 10 * ps);
	ok(q == p, "realloc grows in place when the next pages are free");
	is_int(10 * (long long)ps, (long long)rewire_usable_size(a, q), "usable size 10 pages");
	ok(tags_ok(q, 4, 200), "contents kept");
	memset(q + 4 * ps, 1, 6 * ps);

	/* Growth by moving: a neighbour blocks the way. */
	tag_run(q, 10, 300);
	blocker = rewire_alloc(a, ps, 0);
	ok(blocker == q + 10 * ps, "a neighbour run right after");
	rewire_arena_stats(a, &st);
	r = rewire_realloc(a, q, 30 * ps);
	ok(r && r != q, "realloc moves the run when it cannot grow in place");
	ok(r && tags_ok(r, 10, 300), "every page's data moved with it");
	rewire_arena_stats(a, &st2);
	is_int(10, (long long)(st2.pages_copied + st2.pages_remapped - st.pages_copied - st.pages_remapped),
	       "10 pages moved by the backend");
	ok(st2.ops > st.ops, "the moves are counted as operations");
	ok(!page_resident(q) && !page_resident(q + 9 * ps), "the old pages are holes afterwards");
	errno = 0;
	ok(!rewire_usable_size(a, q) && errno == EINVAL, "the old pointer is no longer a run");
	if (r)
		memset(r + 10 * ps, 7, 20 * ps);
	ok(r && r[29 * ps] == 7, "the grown part is writable");

	/* Shrinking keeps the pointer and frees the tail. */
	q = rewire_realloc(a, r, 6 * ps);
	ok(q == r, "shrinking keeps the pointer");
	ok(tags_ok(q, 6, 300), "shrinking keeps the head's contents");
	is_int(6 * (long long)ps, (long long)rewire_usable_size(a, q), "usable size 6 pages");
	rewire_arena_stats(a, &st);
	is_int(7 * (long long)ps, (long long)st.allocated, "the tail is free: 6 pages and the blocker left");

	/* Holes travel as holes. */
	p = rewire_alloc(a, 8 * ps, 0);
	r = rewire_alloc(a, 4 * ps, REWIRE_ALLOC_HOLES);
	ok(p && r && !page_resident(r) && !page_resident(r + 3 * ps), "ALLOC_HOLES gives holes");
	for (int i = 0; i < 8; i++) {
		model[i] = 500 + (uint64_t)i;
		tag_page(p + (size_t)i * ps, model[i]);
	}
	is_int(0, rewire_move(a, r, p + 2 * ps, 2 * ps), "move two pages out, leaving holes");
	model[2] = model[3] = HOLE;
	q = rewire_realloc(a, p, 64 * ps);
	ok(q && q != p && check_pages(q, model, 8), "realloc moves data and holes alike");
	is_int(0, rewire_move(a, q + 2 * ps, r, 2 * ps), "the holes can be filled again");
	model[2] = 502;
	model[3] = 503;
	ok(check_pages(q, model, 8), "contents complete again");
	ok(!rewire_realloc(a, NULL, 0) && errno == EINVAL, "realloc(NULL, 0) is alloc(0): EINVAL");
	r = rewire_realloc(a, NULL, ps);
	ok(r && rewire_usable_size(a, r) == ps, "realloc(NULL, n) allocates");
	q = rewire_realloc(a, q, 64 * ps);
	ok(q && check_pages(q, model, 8), "realloc to the same size is a no-op");

	rewire_arena_stats(a, &st);
	is_int(0, rewire_purge(a), "purge");
	rewire_arena_stats(a, &st2);
	ok(st2.backed == st.backed - st.cached && !st2.cached, "purge gives back exactly the cached pages");
	ok(check_pages(q, model, 8), "and leaves live data alone");
	rewire_arena_destroy(a);
	return done_testing();
}
