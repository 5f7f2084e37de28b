/* The mremap backend: mremap(MREMAP_FIXED | MREMAP_DONTUNMAP) moves a run's
 * page tables to the holes at its destination and leaves the source mapped,
 * empty. Every move splits the arena's mapping, so it watches
 * vm.max_map_count. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>

#include "internal.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

/* Mappings left for everything else in the process. */
#define MAP_HEADROOM 1024
/* A move splits at most the destination (two new mappings) and leaves a new
 * hole mapping at the source that may split its neighbours: four in all. */
#define MAPS_PER_MOVE 4

/*
 * The rest of the process maps too, so the figure is counted again from
 * /proc/self/maps after this many calls or this long; counting is O(maps),
 * so never more often than it keeps counting under a tenth of the time.
 */
#define RECOUNT_CALLS 64
#define RECOUNT_NS 1000000

struct mremap_state {
	long max_maps;
	long maps;		/* mappings at the last count, plus ours since */
	int calls;		/* since the last count */
	double counted_at;
	double count_cost;	/* ns the last count took */
};

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		char line[32], *end;

		if (fgets(line, sizeof(line), f)) {
			v = strtol(line, &end, 10);
			if (end == line)
				v = -1;
		}
		fclose(f);
	}
	return v;
}

static long count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void recount(struct mremap_state *m)
{
	double t = rw_now_ns();

	m->maps = count_maps();
	m->calls = 0;
	m->counted_at = rw_now_ns();
	m->count_cost = m->counted_at - t;
}

/* Is there room for one more move? */
static bool room_for_move(struct mremap_state *m)
{
	double since = rw_now_ns() - m->counted_at;
	bool room = m->maps + MAPS_PER_MOVE + MAP_HEADROOM <= m->max_maps;

	m->calls++;
	if (since > 10 * m->count_cost &&
	    (m->calls >= RECOUNT_CALLS || since > RECOUNT_NS || !room)) {
		recount(m);
		room = m->maps >= 0 && m->maps + MAPS_PER_MOVE + MAP_HEADROOM <= m->max_maps;
	}
	return room;
}

/* Recursion halves n each time, so it is at most log2(n) deep. */
static int mremap_remap(struct rewire_arena *a, char *dst, char *src, size_t n, // NOLINT(misc-no-recursion)
			size_t *moved)
{
	struct mremap_state *m = a->backend_data;
	size_t len = n << a->page_shift;

	*moved = 0;
	/* Out of mappings: refuse, and the planner copies instead. */
	if (!room_for_move(m))
		return -ENOSPC;
	/*
	 * DONTUNMAP keeps the source mapped, so no other thread's mmap can
	 * land in the arena between the move and the source becoming holes.
	 */
	/*
	 * DONTUNMAP clears VM_LOCKED on what it leaves behind without taking
	 * it off the locked-memory count, so unlock the source first and
	 * lock both sides again afterwards: the count stays exact.
	 */
	munlock(src, len);
	if (mremap(src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
		   dst) == MAP_FAILED) {
		int err = errno;

		syscall(SYS_mlock2, src, len, MLOCK_ONFAULT);
		errno = err;
		size_t half = n / 2, first;
		int ret;

		/* Earlier moves split the source into several mappings, and
		 * mremap takes one at a time: move the halves separately. */
		if (n == 1 || (errno != EFAULT && errno != EINVAL))
			return -errno;
		ret = mremap_remap(a, dst, src, half, &first);
		*moved = first;
		if (ret)
			return ret;
		ret = mremap_remap(a, dst + (half << a->page_shift),
				   src + (half << a->page_shift), n - half, &first);
		*moved += first;
		return ret;
	}
	m->maps += MAPS_PER_MOVE;
	*moved = n;
	/* Neither can fail for the limit: both ranges were locked before. */
	syscall(SYS_mlock2, dst, len, MLOCK_ONFAULT);
	syscall(SYS_mlock2, src, len, MLOCK_ONFAULT);
	return 0;
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
	m->max_maps = read_long("/proc/sys/vm/max_map_count");
	if (m->max_maps < 0)
		m->max_maps = 65530;
	recount(m);
	rw_copy_costs(&a->costs);
	/* Measured on 6.18: 5.3 to 8.3 us per call, VMA splits included. */
	a->costs.remap_call = 6000;
	a->costs.remap_per_page = 60;
	a->backend_data = m;
	return 0;
}

static void mremap_fini(struct rewire_arena *a)
{
	free(a->backend_data);
	a->backend_data = NULL;
}

const struct backend rw_backend_mremap = {
	.name = "mremap",
	.init = mremap_init,
	.fini = mremap_fini,
	.remap = mremap_remap,
	.apply = NULL,
};
