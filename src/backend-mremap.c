/* The mremap backend: mremap(MREMAP_FIXED | MREMAP_DONTUNMAP) moves a run's
 * page tables to the holes at its destination and leaves the source mapped,
 * empty. Every move splits the arena's mapping, so it counts mappings
 * against vm.max_map_count before each move and keeps a headroom. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bitmap.h"
#include "fault.h"
#include "internal.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

/*
 * Mappings left for everything else in the process (rewire(7)). Moving
 * pages back after a failure may use most of them: the alternative is pages
 * whose place the arena no longer knows. The tests turn both off.
 */
static long map_headroom = 1024, undo_headroom = 64;

void rw_mremap_set_headroom(long maps)
{
	map_headroom = maps;
	undo_headroom = maps < undo_headroom ? maps : undo_headroom;
}
/*
 * A move of a source inside one mapping adds at most four: the source is
 * split out of its mapping to unlock it (two, merged back when it is locked
 * again), and the destination's mapping is split around the new one (two).
 */
#define MAPS_PER_CALL 4

/*
 * The rest of the process maps too, so the figure is counted again from
 * /proc/self/maps after this many calls or this long; counting is O(maps),
 * so never more often than it keeps counting under a tenth of the time.
 */
#define RECOUNT_CALLS 64
#define RECOUNT_NS 1000000

/*
 * lock serializes this backend's moves and its count of mappings: every
 * mremap(2) takes the process's mmap lock for writing anyway, and the count
 * must cover all threads' moves. Allocations and copies never wait for it.
 */
struct mremap_state {
	pthread_mutex_t lock;
	long max_maps;
	long maps;		/* mappings at the last count, plus ours since */
	int calls;		/* since the last count */
	double counted_at;
	double count_cost;	/* ns the last count took */
	/*
	 * One bit per arena page: a mapping may start there. A superset of
	 * the real boundaries, made exact at each count, so a source range
	 * split at these bits lies in one mapping per piece: mremap(2) then
	 * moves each piece whole or not at all (a source spanning mappings
	 * fails with EFAULT before Linux 6.17, after unmapping the
	 * destination; from 6.17 on it may move part of it and fail).
	 */
	uint64_t *starts;
};

/* Count the process's mappings and note where the arena's begin. */
static void recount(struct rewire_arena *a, struct mremap_state *m)
{
	uintptr_t base = (uintptr_t)a->base, end = base + (a->npages << a->page_shift);
	FILE *f = fopen("/proc/self/maps", "r");
	double t = rw_now_ns();
	char line[512];
	long n = 0;
	bool whole = true;

	if (!f) {
		m->maps = -1;
		return;
	}
	bits_clear(m->starts, 0, a->npages);
	while (fgets(line, sizeof(line), f)) {
		uintptr_t start = (uintptr_t)strtoull(line, NULL, 16);

		/* Lines longer than the buffer continue on the next read. */
		if (whole) {
			n++;
			if (start > base && start < end)
				bits_set(m->starts, (start - base) >> a->page_shift, 1);
		}
		whole = line[0] && line[strlen(line) - 1] == '\n';
	}
	fclose(f);
	m->maps = n;
	m->calls = 0;
	m->counted_at = rw_now_ns();
	m->count_cost = m->counted_at - t;
	/* Not the cost of the move that asked: the planner leaves it out. */
	rw_note_bookkeeping(m->count_cost);
}

/* Is there room for calls more moves, keeping the headroom? */
static bool calls_fit(const struct mremap_state *m, size_t calls)
{
	long headroom = rw_undoing ? undo_headroom : map_headroom;

	return m->maps >= 0 && calls <= (size_t)m->max_maps &&
	       m->maps + (long)calls * MAPS_PER_CALL + headroom <= m->max_maps;
}

static bool room(struct rewire_arena *a, size_t calls)
{
	struct mremap_state *m = a->backend_data;
	double since = rw_now_ns() - m->counted_at;
	bool ok = calls_fit(m, calls);

	/* Count again when the estimate may be stale, and it matters. */
	if (since > 10 * m->count_cost &&
	    (m->calls >= RECOUNT_CALLS || since > RECOUNT_NS ||
	     (!ok && (m->calls || since > 1000 * RECOUNT_NS)))) {
		recount(a, m);
		ok = calls_fit(m, calls);
	}
	return ok;
}

static void lock_onfault(const struct rewire_arena *a, char *p, size_t len)
{
	if (!(a->flags & REWIRE_UNLOCKED))
		syscall(SYS_mlock2, p, len, MLOCK_ONFAULT);
}

/* Mark where the mappings a move made may begin. */
static void note_bounds(struct rewire_arena *a, size_t i, size_t n)
{
	struct mremap_state *m = a->backend_data;

	bits_set(m->starts, i, 1);
	if (i + n < a->npages)
		bits_set(m->starts, i + n, 1);
}

/*
 * Move n pages of one mapping. mremap(2) moves a whole mapping or nothing,
 * but with MREMAP_FIXED it may unmap the destination before it fails: then
 * the destination, holes by contract, is mapped again.
 */
static int move_piece(struct rewire_arena *a, char *dst, char *src, size_t n)
{
	struct mremap_state *m = a->backend_data;
	size_t len = n << a->page_shift;
	int ret;

	if (!room(a, 1))
		return -ENOSPC;
	/*
	 * DONTUNMAP clears VM_LOCKED on what it leaves behind without taking
	 * it off the locked-memory count, so unlock the source first and
	 * lock both sides again afterwards: the count stays exact.
	 */
	if (munlock(src, len)) {
		ret = -errno;
		lock_onfault(a, src, len);
		return ret;
	}
	m->maps += MAPS_PER_CALL;
	m->calls++;
	note_bounds(a, page_index(a, src), n);
	/* DONTUNMAP keeps the source mapped, so no other thread's mmap can
	 * land in the arena between the move and the source becoming holes. */
	if (mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
		   dst) == MAP_FAILED) {
		ret = -errno;
		lock_onfault(a, src, len);
		/* msync says ENOMEM where part of a range is unmapped. */
		if (msync(dst, len, MS_ASYNC) && errno == ENOMEM) {
			note_bounds(a, page_index(a, dst), n);
			if (rw_map_holes(a, page_index(a, dst), n))
				return -EIO;
		}
		return ret;
	}
	note_bounds(a, page_index(a, dst), n);
	/* Neither can fail for the limits: both ranges were locked before,
	 * and each is now exactly one mapping, so nothing splits. */
	lock_onfault(a, dst, len);
	lock_onfault(a, src, len);
	return 0;
}

static int mremap_remap(struct rewire_arena *a, char *dst, char *src, size_t n,
			size_t *moved)
{
	struct mremap_state *m = a->backend_data;
	size_t s = page_index(a, src), end = s + n;
	bool recounted = false;
	int ret = 0;

	*moved = 0;
	pthread_mutex_lock(&m->lock);
	while (*moved < n) {
		size_t piece = bits_find(m->starts, s + *moved + 1, end, true) - (s + *moved);
		size_t off = *moved << a->page_shift;
		ret = move_piece(a, dst + off, src + off, piece);
		/* A source in several mappings: something else split the arena
		 * (mprotect, say). Learn the boundaries once, and go on. */
		if (ret == -EFAULT && piece > 1 && !recounted) {
			recount(a, m);
			recounted = true;
			continue;
		}
		if (ret)
			break;
		*moved += piece;
	}
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/* Under the lock: a recount clears the map of starts before it reads the
 * mappings again, and a count read meanwhile would be too low. */
static size_t mremap_calls(const struct rewire_arena *a, const char *src, size_t n)
{
	struct mremap_state *m = a->backend_data;
	size_t s = page_index(a, src), calls;

	if (n == 1)
		return 1;
	pthread_mutex_lock(&m->lock);
	calls = 1 + bits_count(m->starts, s + 1, n - 1);
	pthread_mutex_unlock(&m->lock);
	return calls;
}

/* The empty mappings staged pages left in free holes become one again. */
static void mremap_tidy(struct rewire_arena *a, char *p, size_t n)
{
	struct mremap_state *m = a->backend_data;
	size_t i = page_index(a, p);

	if (mremap_calls(a, p, n) < 2)
		return;
	pthread_mutex_lock(&m->lock);
	if (room(a, 1)) {
		note_bounds(a, i, n);
		if (!rw_map_holes(a, i, n) && n > 1)
			bits_clear(m->starts, i + 1, n - 1);
	}
	pthread_mutex_unlock(&m->lock);
}

static bool mremap_room_for(struct rewire_arena *a, size_t calls)
{
	struct mremap_state *m = a->backend_data;
	bool fits;

	pthread_mutex_lock(&m->lock);
	fits = room(a, calls);
	pthread_mutex_unlock(&m->lock);
	return fits;
}

/*
 * MREMAP_DONTUNMAP takes private anonymous memory from Linux 5.7 on.
 * valgrind 3.19 does not know it: then this backend is unusable.
 */
static bool dontunmap_works(size_t ps)
{
	char *p = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool works;

	if (p == MAP_FAILED)
		return false;
	p[0] = 1;
	works = mremap(p, ps, ps, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
		       p + ps) == p + ps && p[ps] == 1 && p[0] == 0;
	munmap(p, 2 * ps);
	return works;
}

static int mremap_init(struct rewire_arena *a)
{
	struct mremap_state *m;

	if (!dontunmap_works(a->page_size))
		return -EOPNOTSUPP;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->starts = calloc(bitmap_words(a->npages), sizeof(uint64_t));
	if (!m->starts) {
		free(m);
		return -ENOMEM;
	}
	pthread_mutex_init(&m->lock, NULL);
	m->max_maps = rw_read_long("/proc/sys/vm/max_map_count");
	if (m->max_maps < 0)
		m->max_maps = 65530;
	recount(a, m);
	rw_copy_costs(&a->costs);
	/* Measured on 6.18: 5.3 to 8.3 us per call, VMA splits included. */
	a->costs.remap_call = 6000;
	a->costs.remap_per_page = 60;
	a->backend_data = m;
	return 0;
}

static void mremap_fini(struct rewire_arena *a)
{
	struct mremap_state *m = a->backend_data;

	if (!m)
		return;
	pthread_mutex_destroy(&m->lock);
	free(m->starts);
	free(m);
	a->backend_data = NULL;
}

const struct backend rw_backend_mremap = {
	.name = "mremap",
	.init = mremap_init,
	.fini = mremap_fini,
	.remap = mremap_remap,
	.apply = NULL,
	.remap_calls = mremap_calls,
	.room_for = mremap_room_for,
	.tidy = mremap_tidy,
};
