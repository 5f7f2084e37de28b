/* Every bad input of every public function: the documented error, no crash,
 * and the arena's contents and statistics unchanged, checked each time. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define NP 16

static struct rewire_arena *arena;
static char *base;		/* NP backed pages, then NP holes, then free pages */
static uint64_t model[2 * NP];
static struct rewire_stats before;
static long maps_before;

static char *at(size_t i)
{
	return base + i * page_size;
}

static void snapshot(void)
{
	rewire_arena_stats(arena, &before);
	maps_before = map_count();
}

/* Contents, statistics and mappings are what snapshot() saw. */
static void unchanged(const char *what)
{
	struct rewire_stats now;

	rewire_arena_stats(arena, &now);
	ok(check_pages(base, model, 2 * NP) && !memcmp(&now, &before, sizeof(now)) &&
	   (map_count() == maps_before || !maps_are_ours()), "%s: contents, stats and mappings unchanged", what);
}

#define IS_ERR(want, call, what) do { \
		is_int(want, call, "%s fails with " #want, what); \
		unchanged(what); \
	} while (0)

#define IS_NULL_ERR(want, call, what) do { \
		errno = 0; \
		ok((call) == NULL && errno == (want), "%s: NULL, errno " #want, what); \
		unchanged(what); \
	} while (0)

static void create_errors(void)
{
	struct rewire_options o;
	struct rewire_arena *a = (struct rewire_arena *)1;
	long maps = map_count(), lck = vm_locked_kb();

	rewire_options_init(&o);
	o.reserve = 16 * page_size;
	is_int(-EINVAL, rewire_arena_create(NULL, &a), "create: NULL options");
	is_int(-EINVAL, rewire_arena_create(&o, NULL), "create: NULL result pointer");
	o.struct_size = 8;
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: struct_size too small");
	rewire_options_init(&o);
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: reserve 0");
	o.reserve = 16 * page_size;
	o.flags = 0x80;
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: unknown flag");
	o.flags = 0;
	o.numa_node = -2;
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: numa_node -2");
	o.numa_node = 4096;
	ok(rewire_arena_create(&o, &a) < 0, "create: numa_node 4096 refused");
	o.numa_node = -1;
	o.backend = "no-such-backend";
	is_int(-EINVAL, rewire_arena_create(&o, &a), "create: unknown backend");
	o.backend = NULL;
	o.reserve = SIZE_MAX;
	is_int(-ENOMEM, rewire_arena_create(&o, &a), "create: reserve SIZE_MAX");
	o.reserve = (size_t)1 << 62;
	is_int(-ENOMEM, rewire_arena_create(&o, &a), "create: reserve 4 EiB");
	ok(a == (struct rewire_arena *)1, "create: result untouched on failure");
	ok((map_count() == maps || !maps_are_ours()) && vm_locked_kb() == lck, "create: failures leave no mapping, no locked memory");
	rewire_arena_destroy(NULL);
	ok(1, "destroy(NULL) is harmless");
	errno = 0;
	ok(!rewire_backend_name(NULL) && errno == EINVAL, "backend_name(NULL): NULL, EINVAL");
	is_int(-EINVAL, rewire_arena_stats(NULL, &before), "stats: NULL arena");
	is_int(-EINVAL, rewire_arena_stats(arena, NULL), "stats: NULL result");
	is_int(-EINVAL, rewire_purge(NULL), "purge: NULL arena");
}

static void alloc_errors(struct rewire_arena *other, char *foreign)
{
	char local[64];

	IS_NULL_ERR(EINVAL, rewire_alloc(NULL, page_size, 0), "alloc: NULL arena");
	IS_NULL_ERR(EINVAL, rewire_alloc(arena, 0, 0), "alloc: zero length");
	IS_NULL_ERR(EINVAL, rewire_alloc(arena, page_size, 0x100), "alloc: unknown flag");
	IS_NULL_ERR(ENOMEM, rewire_alloc(arena, SIZE_MAX, 0), "alloc: SIZE_MAX");
	IS_NULL_ERR(ENOMEM, rewire_alloc(arena, 65 * page_size, 0), "alloc: more than the reserve");
	IS_NULL_ERR(ENOMEM, rewire_alloc(arena, 40 * page_size, 0), "alloc: more than is free");
	IS_NULL_ERR(EINVAL, rewire_zalloc(NULL, page_size), "zalloc: NULL arena");
	IS_NULL_ERR(EINVAL, rewire_zalloc(arena, 0), "zalloc: zero length");

	IS_ERR(-EINVAL, rewire_free(NULL, base), "free: NULL arena");
	IS_ERR(0, rewire_free(arena, NULL), "free: NULL pointer is a no-op");
	IS_ERR(-EINVAL, rewire_free(arena, local), "free: pointer to the stack");
	IS_ERR(-EINVAL, rewire_free(arena, foreign), "free: pointer from another arena");
	IS_ERR(-EINVAL, rewire_free(other, base), "free: pointer given to the wrong arena");
	IS_ERR(-EINVAL, rewire_free(arena, at(1)), "free: interior pointer");
	IS_ERR(-EINVAL, rewire_free(arena, base + 1), "free: unaligned pointer");
	IS_ERR(-EINVAL, rewire_free(arena, at(3 * NP)), "free: free page");

	IS_NULL_ERR(EINVAL, rewire_realloc(NULL, base, page_size), "realloc: NULL arena");
	IS_NULL_ERR(EINVAL, rewire_realloc(arena, base, 0), "realloc: zero length");
	IS_NULL_ERR(EINVAL, rewire_realloc(arena, at(2), 4 * page_size), "realloc: interior pointer");
	IS_NULL_ERR(EINVAL, rewire_realloc(arena, local, page_size), "realloc: foreign pointer");
	IS_NULL_ERR(ENOMEM, rewire_realloc(arena, base, SIZE_MAX), "realloc: SIZE_MAX");
	IS_NULL_ERR(ENOMEM, rewire_realloc(arena, base, 60 * page_size), "realloc: no room");

	IS_NULL_ERR(EINVAL, (void *)(uintptr_t)rewire_usable_size(NULL, base), "usable_size: NULL arena");
	IS_NULL_ERR(EINVAL, (void *)(uintptr_t)rewire_usable_size(arena, NULL), "usable_size: NULL pointer");
	IS_NULL_ERR(EINVAL, (void *)(uintptr_t)rewire_usable_size(arena, at(5)), "usable_size: interior pointer");
	IS_NULL_ERR(EINVAL, (void *)(uintptr_t)rewire_usable_size(arena, local), "usable_size: foreign pointer");
}

static void move_swap_errors(char *foreign)
{
	size_t ps = page_size;
	char *hole = at(NP);

	IS_ERR(-EINVAL, rewire_move(NULL, hole, base, ps), "move: NULL arena");
	IS_ERR(-EINVAL, rewire_move(arena, hole + 8, base, ps), "move: unaligned dst");
	IS_ERR(-EINVAL, rewire_move(arena, hole, base + 8, ps), "move: unaligned src");
	IS_ERR(-EINVAL, rewire_move(arena, hole, base, ps - 1), "move: unaligned length");
	IS_ERR(-EINVAL, rewire_move(arena, hole, base, 0), "move: zero length");
	IS_ERR(-EINVAL, rewire_move(arena, at(NP - 2), at(NP - 4), 4 * ps), "move: overlapping ranges");
	IS_ERR(-EINVAL, rewire_move(arena, base, base, ps), "move: dst == src");
	IS_ERR(-EFAULT, rewire_move(arena, hole, foreign, ps), "move: src in another arena");
	IS_ERR(-EFAULT, rewire_move(arena, foreign, base, ps), "move: dst in another arena");
	IS_ERR(-EFAULT, rewire_move(arena, at(3 * NP), base, ps), "move: dst in free pages");
	IS_ERR(-EFAULT, rewire_move(arena, at(2 * NP - 1), base, 2 * ps), "move: dst runs into free pages");
	IS_ERR(-EFAULT, rewire_move(arena, hole, base, SIZE_MAX & ~(ps - 1)), "move: huge length");
	IS_ERR(-EFAULT, rewire_move(arena, base - ps, hole, ps), "move: dst below the arena");
	IS_ERR(-EFAULT, rewire_move(arena, (void *)(uintptr_t)-ps, base, ps), "move: dst at the top of the address space");
	IS_ERR(-EEXIST, rewire_move(arena, at(NP - 1), hole, ps), "move: dst backed (and src a hole)");
	IS_ERR(-EEXIST, rewire_move(arena, at(NP - 1), at(NP - 3), ps), "move: dst backed");
	IS_ERR(-ENOENT, rewire_move(arena, hole, at(NP + 1), ps), "move: src a hole");
	IS_ERR(-ENOENT, rewire_move(arena, at(NP + 4), at(NP - 2), 4 * ps), "move: src partly holes");

	IS_ERR(-EINVAL, rewire_discard(NULL, base, ps), "discard: NULL arena");
	IS_ERR(-EINVAL, rewire_discard(arena, base + 8, ps), "discard: unaligned address");
	IS_ERR(-EINVAL, rewire_discard(arena, base, 0), "discard: zero length");
	IS_ERR(-EINVAL, rewire_discard(arena, base, ps + 1), "discard: unaligned length");
	IS_ERR(-EFAULT, rewire_discard(arena, foreign, ps), "discard: another arena");
	IS_ERR(-EFAULT, rewire_discard(arena, at(2 * NP - 1), 2 * ps), "discard: into free pages");
	IS_ERR(-EFAULT, rewire_discard(arena, NULL, ps), "discard: NULL address");

	IS_ERR(-EINVAL, rewire_swap(NULL, base, at(4), ps), "swap: NULL arena");
	IS_ERR(-EINVAL, rewire_swap(arena, base, base, ps), "swap: a == b");
	IS_ERR(-EINVAL, rewire_swap(arena, base, at(1), 2 * ps), "swap: overlapping ranges");
	IS_ERR(-EINVAL, rewire_swap(arena, base + 1, at(4), ps), "swap: unaligned");
	IS_ERR(-EINVAL, rewire_swap(arena, base, at(4), 0), "swap: zero length");
	IS_ERR(-EFAULT, rewire_swap(arena, base, foreign, ps), "swap: other side in another arena");
	IS_ERR(-ENOENT, rewire_swap(arena, base, hole, ps), "swap: other side a hole");
	IS_ERR(-ENOENT, rewire_swap(arena, at(NP - 1), at(NP + 2), 2 * ps), "swap: partly holes");
}

static void permute_batch_errors(char *foreign)
{
	size_t ps = page_size, dup[4] = { 0, 1, 1, 3 }, big[4] = { 0, 1, 2, 4 };
	size_t id[4] = { 0, 1, 2, 3 }, done = 77;
	struct rewire_op ops[3];

	IS_ERR(-EINVAL, rewire_permute(NULL, base, id, 4), "permute: NULL arena");
	IS_ERR(-EINVAL, rewire_permute(arena, base, NULL, 4), "permute: NULL perm");
	IS_ERR(-EINVAL, rewire_permute(arena, base, id, 0), "permute: zero pages");
	IS_ERR(-EINVAL, rewire_permute(arena, base + 16, id, 4), "permute: unaligned base");
	IS_ERR(-EINVAL, rewire_permute(arena, base, dup, 4), "permute: duplicate entry");
	IS_ERR(-EINVAL, rewire_permute(arena, base, big, 4), "permute: entry out of range");
	IS_ERR(-EFAULT, rewire_permute(arena, foreign, id, 4), "permute: another arena");
	IS_ERR(-EFAULT, rewire_permute(arena, base, id, SIZE_MAX / 2), "permute: huge count");
	IS_ERR(-ENOENT, rewire_permute(arena, at(NP - 2), id, 4), "permute: holes in the range");

	IS_ERR(-EINVAL, rewire_batch(NULL, ops, 1, &done), "batch: NULL arena");
	IS_ERR(-EINVAL, rewire_batch(arena, NULL, 1, &done), "batch: NULL ops");
	IS_ERR(0, rewire_batch(arena, NULL, 0, &done), "batch: zero ops succeed");
	is_int(0, (long long)done, "batch: zero ops, zero done");
	ops[0] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP), at(0), ps, NULL };
	ops[1] = (struct rewire_op){ 42, 0, at(NP + 1), at(1), ps, NULL };
	done = 77;
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: unknown type after a valid move");
	is_int(0, (long long)done, "batch: nothing done");
	ops[1] = (struct rewire_op){ REWIRE_OP_MOVE, REWIRE_OP_RECYCLE, at(NP + 1), at(1), ps, NULL };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: a move with a populate flag");
	ops[1] = (struct rewire_op){ REWIRE_OP_SWAP, REWIRE_OP_REPLACE, at(2), at(1), ps, NULL };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: a swap with a move flag");
	ops[1] = (struct rewire_op){ REWIRE_OP_MOVE, 1u << 9, at(NP + 1), at(1), ps, NULL };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: unknown flag");
	ops[1] = (struct rewire_op){ REWIRE_OP_DISCARD, 0, at(2), at(3), ps, NULL };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: discard with a src");
	ops[1] = (struct rewire_op){ REWIRE_OP_POPULATE, 0, at(NP + 2), NULL, ps, id };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: populate with a permutation");
	ops[1] = (struct rewire_op){ REWIRE_OP_DISCARD, 0, at(2 * NP), NULL, ps, NULL };
	IS_ERR(-EFAULT, rewire_batch(arena, ops, 2, &done), "batch: discard of a free page");
	ops[1] = (struct rewire_op){ REWIRE_OP_POPULATE, REWIRE_OP_REPLACE, at(NP + 2), NULL, ps,
				     NULL };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: populate with a move flag");
	ops[1] = (struct rewire_op){ REWIRE_OP_PERMUTE, 0, at(2), at(3), ps, id };
	IS_ERR(-EINVAL, rewire_batch(arena, ops, 2, &done), "batch: permute with a src");
	ops[1] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP + 1), at(0), ps, NULL };
	IS_ERR(-ENOENT, rewire_batch(arena, ops, 2, NULL), "batch: second move of an already moved page");
	ops[1] = (struct rewire_op){ REWIRE_OP_SWAP, 0, at(NP), at(5), ps, NULL };
	ops[2] = (struct rewire_op){ REWIRE_OP_MOVE, 0, at(NP), at(6), ps, NULL };
	IS_ERR(-EEXIST, rewire_batch(arena, ops, 3, &done), "batch: third op's dst filled by the first");
	is_int(0, (long long)done, "batch: nothing done");
}

static void buffer_manager_errors(char *foreign)
{
	size_t ps = page_size;
	unsigned char vec[NP];

	IS_ERR(-EINVAL, rewire_populate(NULL, at(NP), ps, 0), "populate: NULL arena");
	IS_ERR(-EINVAL, rewire_populate(arena, at(NP), ps, 1u << 7), "populate: unknown flag");
	IS_ERR(-EINVAL, rewire_populate(arena, at(NP) + 8, ps, 0), "populate: unaligned address");
	IS_ERR(-EINVAL, rewire_populate(arena, at(NP), 0, 0), "populate: zero length");
	IS_ERR(-EINVAL, rewire_populate(arena, at(NP), ps + 1, 0), "populate: unaligned length");
	IS_ERR(-EFAULT, rewire_populate(arena, foreign, ps, 0), "populate: another arena");
	IS_ERR(-EFAULT, rewire_populate(arena, at(2 * NP - 1), 2 * ps, 0),
	       "populate: into free pages");
	IS_ERR(-EFAULT, rewire_populate(arena, NULL, ps, 0), "populate: NULL address");

	IS_ERR(-EINVAL, rewire_resize(NULL, base, ps), "resize: NULL arena");
	IS_ERR(-EINVAL, rewire_resize(arena, NULL, ps), "resize: NULL pointer");
	IS_ERR(-EINVAL, rewire_resize(arena, base, 0), "resize: zero length");
	IS_ERR(-EINVAL, rewire_resize(arena, at(1), ps), "resize: not the start of a run");
	IS_ERR(-EINVAL, rewire_resize(arena, foreign, ps), "resize: another arena");
	IS_ERR(-ENOSPC, rewire_resize(arena, base, (NP + 1) * ps),
	       "resize: the next run follows at once");
	IS_ERR(-ENOSPC, rewire_resize(arena, at(NP), 65 * ps), "resize: more than the arena");

	IS_ERR(-EINVAL, rewire_page_state(NULL, base, ps, vec), "page_state: NULL arena");
	IS_ERR(-EINVAL, rewire_page_state(arena, base, ps, NULL), "page_state: NULL vector");
	IS_ERR(-EINVAL, rewire_page_state(arena, base + 8, ps, vec),
	       "page_state: unaligned address");
	IS_ERR(-EINVAL, rewire_page_state(arena, base, 0, vec), "page_state: zero length");
	IS_ERR(-EFAULT, rewire_page_state(arena, foreign, ps, vec), "page_state: another arena");
	IS_ERR(-EFAULT, rewire_page_state(arena, at(63), 2 * ps, vec),
	       "page_state: past the arena's end");
}

int main(void)
{
	struct rewire_arena *other;
	char *foreign;

	arena = test_arena(64, 0, 0);
	other = test_arena(8, 0, 0);
	plan(227);
	foreign = rewire_alloc(other, 4 * page_size, 0);
	base = rewire_alloc(arena, NP * page_size, 0);
	if (!base || !foreign || rewire_alloc(arena, NP * page_size, REWIRE_ALLOC_HOLES) != at(NP))
		bail("cannot set up the arena");
	for (size_t i = 0; i < NP; i++) {
		model[i] = 1000 + i;
		tag_page(at(i), model[i]);
	}
	snapshot();
	create_errors();
	unchanged("arena creation errors");
	alloc_errors(other, foreign);
	move_swap_errors(foreign);
	permute_batch_errors(foreign);
	buffer_manager_errors(foreign);
	rewire_arena_destroy(other);
	rewire_arena_destroy(arena);
	return done_testing();
}
