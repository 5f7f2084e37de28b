#define _GNU_SOURCE
/* Touching a hole: never hangs, reads zero, on every backend; the arena
 * still counts the page a hole, and moving data onto it or freeing it
 * discards what the touch left. */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "testlib.h"

static volatile char *target;
static volatile int seen = -1;

static void *toucher(void *arg)
{
	seen = *target;
	if (arg)
		*target = 0x5a;
	return NULL;
}

/* Touch the page from another thread; false if the thread hangs. */
static bool touch_from_thread(volatile char *p, bool write)
{
	struct timespec until;
	pthread_t t;

	target = p;
	seen = -1;
	if (pthread_create(&t, NULL, toucher, write ? (void *)1 : NULL))
		return false;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 10;
	return !pthread_timedjoin_np(t, NULL, &until);
}

int main(void)
{
	struct rewire_arena *a = test_arena(64, 0, 0);
	struct rewire_stats st;
	uint64_t model[8] = { 1, 2, 3, 4, HOLE, HOLE, HOLE, HOLE };
	char *p;

	plan(11);
	p = rewire_alloc(a, 4 * page_size, 0);
	if (!p || rewire_alloc(a, 4 * page_size, REWIRE_ALLOC_HOLES) != p + 4 * page_size)
		bail("no memory");
	for (int i = 0; i < 4; i++)
		tag_page(p + (size_t)i * page_size, model[i]);

	ok(touch_from_thread(p + 4 * page_size, false), "a thread reading a hole returns");
	is_int(0, seen, "and reads zero");
	ok(touch_from_thread(p + 5 * page_size, true), "a thread writing a hole returns");
	rewire_arena_stats(a, &st);
	ok(st.backed == 4 * page_size && st.locked > st.backed,
	   "the arena still counts them holes; the kernel shows the touched pages");

	is_int(0, rewire_move(a, p + 4 * page_size, p, 2 * page_size),
	       "moving data onto touched holes works");
	model[4] = 1;
	model[5] = 2;
	model[0] = model[1] = HOLE;
	ok(check_pages(p, model, 8), "the moved data replaced what the touches left");
	rewire_arena_stats(a, &st);
	is_int((long long)st.backed, (long long)st.locked, "nothing stray is left locked");

	ok(touch_from_thread(p, true), "touching a hole made by a move returns too");
	is_int(0, rewire_swap(a, p + 2 * page_size, p + 4 * page_size, 2 * page_size),
	       "swap next to a touched hole");
	model[2] = 1;
	model[3] = 2;
	model[4] = 3;
	model[5] = 4;
	ok(check_pages(p + 2 * page_size, model + 2, 4), "swapped");
	rewire_free(a, p + 4 * page_size);
	rewire_free(a, p);
	rewire_purge(a);
	rewire_arena_stats(a, &st);
	is_int(0, (long long)st.locked, "freeing runs with touched holes leaves nothing locked");
	rewire_arena_destroy(a);
	return done_testing();
}
