/* Layer 0: the system calls on an arena's memory. Mapping the range with
 * the arena's attributes, populating and discarding pages, and the clock
 * and copy costs the planner and the backends measure with. Nothing here
 * reads the arena's page states. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_NUMA
#include <numa.h>
#include <numaif.h>
#endif

#include "internal.h"

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

size_t rw_base_page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

long rw_read_long(const char *path)
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

/* What one page-middle-directory entry maps: the kernel says, where it has
 * transparent huge pages; else a page of base pages' entries. */
size_t rw_huge_page_size(void)
{
	static size_t size;
	size_t s = __atomic_load_n(&size, __ATOMIC_RELAXED);

	if (!s) {
		long v = rw_read_long("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");

		s = rw_base_page_size() / sizeof(void *) * rw_base_page_size();
		if (v > 0 && !(v & (v - 1)))
			s = (size_t)v;
		__atomic_store_n(&size, s, __ATOMIC_RELAXED);
	}
	return s;
}

static int bind_node(char *base, size_t len, int node)
{
	if (node < 0)
		return 0;
#ifdef HAVE_NUMA
	struct bitmask *mask;
	int ret = 0;

	if (numa_available() < 0)
		return -EOPNOTSUPP;
	if (node > numa_max_node() || !numa_bitmask_isbitset(numa_all_nodes_ptr, (unsigned int)node))
		return -EINVAL;
	mask = numa_bitmask_alloc((unsigned int)numa_num_possible_nodes());
	if (!mask)
		return -ENOMEM;
	numa_bitmask_setbit(mask, (unsigned int)node);
	if (mbind(base, len, MPOL_BIND, mask->maskp, mask->size + 1, 0))
		ret = -errno;
	numa_bitmask_free(mask);
	return ret;
#else
	(void)base;
	(void)len;
	return -EOPNOTSUPP;
#endif
}

/*
 * Give [p, p + len) the arena's attributes: private to this process, PTE
 * mappings only (huge: huge pages wherever the kernel can), bound to node,
 * locked as pages fault in unless unlocked.
 */
static int set_attributes(char *p, size_t len, int node, bool unlocked, bool huge)
{
	int ret;

	if (madvise(p, len, MADV_DONTFORK))
		return -errno;
	/* A kernel without transparent huge pages says EINVAL: a huge arena
	 * is then made of base pages, 512 to a page, and works as well. */
	if (madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) && errno != EINVAL)
		return -errno;
	ret = bind_node(p, len, node);
	if (ret || unlocked)
		return ret;
	/* The raw call: glibc turns ENOSYS from mlock2 into EINVAL. */
	if (syscall(SYS_mlock2, p, len, MLOCK_ONFAULT)) {
		ret = -errno;
		/* Without mlock2 (Linux before 4.4, valgrind 3.19), lock the
		 * range populated, then drop the pages: faults still lock. */
		if (ret != -ENOSYS)
			return ret;
		if (mlock(p, len) || madvise(p, len, MADV_DONTNEED_LOCKED))
			return -errno;
	}
	return 0;
}

/* Map len bytes aligned to the arena's page size align, private to this
 * process and locked as they fault (unless unlocked). */
int rw_map_arena(size_t len, size_t align, int node, bool unlocked, char **out)
{
	size_t extra = align > rw_base_page_size() ? align : 0;
	char *p = mmap(NULL, len + extra, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int ret;

	/* Our arguments are valid, so EINVAL (valgrind's answer to a length
	 * beyond the address space) means what the kernel's ENOMEM does. */
	if (p == MAP_FAILED)
		return errno == EINVAL ? -ENOMEM : -errno;
	if (extra) {
		char *aligned = p + (align - (uintptr_t)p % align) % align;

		if (aligned > p)
			munmap(p, (size_t)(aligned - p));
		munmap(aligned + len, (size_t)(p + extra - aligned));
		p = aligned;
	}
	ret = set_attributes(p, len, node, unlocked, extra != 0);
	if (ret) {
		munmap(p, len);
		return ret;
	}
	*out = p;
	return 0;
}

/*
 * Replace [start, start + n) of the arena, which must hold no data, by a
 * fresh mapping of holes: where a failed mremap(2) left the range unmapped,
 * or to merge the empty mappings that moves left behind into one.
 */
int rw_map_holes(struct rewire_arena *a, size_t start, size_t n)
{
	size_t len = n << a->page_shift;
	char *p = mmap(page_addr(a, start), len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);

	if (p == MAP_FAILED)
		return -errno;
	return set_attributes(p, len, a->numa_node, a->flags & REWIRE_UNLOCKED, a->huge);
}

int rw_pages_populate(struct rewire_arena *a, size_t start, size_t n)
{
	while (madvise(page_addr(a, start), n << a->page_shift, MADV_POPULATE_WRITE)) {
		if (errno != EINTR)
			return -ENOMEM;
	}
	return 0;
}

int rw_pages_discard(struct rewire_arena *a, size_t start, size_t n)
{
	if (madvise(page_addr(a, start), n << a->page_shift, MADV_DONTNEED_LOCKED))
		return -errno;
	return 0;
}

/*
 * Make [start, start + n), wholly backed and claimed, huge pages where it
 * is made of base pages: the kernel copies each into a new huge page
 * (MADV_COLLAPSE, Linux 6.1). It fills empty entries too, so never on a
 * range with holes. -EAGAIN: busy for a moment; -ENOMEM or -EBUSY: no
 * huge page to be had now; -EINVAL: no MADV_COLLAPSE.
 */
int rw_pages_collapse(struct rewire_arena *a, size_t start, size_t n)
{
	if (madvise(page_addr(a, start), n << a->page_shift, MADV_COLLAPSE))
		return -errno;
	return 0;
}

/* Whether a line of /proc/self/smaps begins a mapping ("start-end ..."),
 * and if so, where it lies. */
static bool smaps_mapping(const char *line, uintptr_t *start, uintptr_t *end)
{
	char *p;

	*start = (uintptr_t)strtoull(line, &p, 16);
	if (p == line || *p != '-')
		return false;
	*end = (uintptr_t)strtoull(p + 1, NULL, 16);
	return true;
}

/* Bytes of the arena mapped by page-middle-directory entries now, as the
 * kernel counts them in /proc/self/smaps (AnonHugePages); 0 if unreadable. */
size_t rw_huge_mapped(const struct rewire_arena *a)
{
	uintptr_t lo = (uintptr_t)a->base, hi = lo + (a->npages << a->page_shift), s, e;
	static const char key[] = "AnonHugePages:";
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool inside = false, whole = true;
	size_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* Lines longer than the buffer continue on the next read. */
		if (whole) {
			if (smaps_mapping(line, &s, &e))
				inside = s >= lo && e <= hi;
			else if (inside && !strncmp(line, key, sizeof(key) - 1))
				kb += (size_t)strtoull(line + sizeof(key) - 1, NULL, 10);
		}
		whole = line[0] && line[strlen(line) - 1] == '\n';
	}
	fclose(f);
	return kb << 10;
}

/* For the cost measurements and the mremap backend's recounts. */
double rw_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* This thread's time spent on a backend's own bookkeeping. */
static __thread double bookkeeping_ns;

void rw_note_bookkeeping(double ns)
{
	bookkeeping_ns += ns;
}

/*
 * The clock less this thread's bookkeeping: what an operation timed by it
 * cost, without a recount of mappings that happened to fall in it.
 */
double rw_work_ns(void)
{
	return rw_now_ns() - bookkeeping_ns;
}

static struct costs measured_copy;
static pthread_once_t copy_once = PTHREAD_ONCE_INIT;

/* Nanoseconds per call of moving n pages back and forth between two areas. */
static double time_copy_move(char *x, char *y, size_t n, size_t ps, int reps)
{
	double t = rw_now_ns();

	for (int r = 0; r < reps; r++) {
		char *dst = r & 1 ? x : y, *src = r & 1 ? y : x;

		madvise(dst, n * ps, MADV_POPULATE_WRITE);
		memcpy(dst, src, n * ps);
		madvise(src, n * ps, MADV_DONTNEED);
	}
	return (rw_now_ns() - t) / reps;
}

/* Measure copying on this machine, once per process, in about a millisecond,
 * on a private unlocked mapping. */
static void measure_copy(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), n = 64;
	char *p = mmap(NULL, 2 * n * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double t, one, many;

	/* Typical figures of a current x86-64 machine, if measuring fails. */
	measured_copy = (struct costs){ 350, 1500, 600, 0, 0 };
	if (p == MAP_FAILED)
		return;
	memset(p, 1, 2 * n * ps);
	memcpy(p + n * ps, p, n * ps);
	t = rw_now_ns();
	for (int r = 0; r < 8; r++)
		memcpy(p + (r & 1 ? 0 : n) * ps, p + (r & 1 ? n : 0) * ps, n * ps);
	measured_copy.copy_page = (rw_now_ns() - t) / (8.0 * n);
	madvise(p + n * ps, n * ps, MADV_DONTNEED);
	one = time_copy_move(p, p + n * ps, 1, ps, 64);
	many = time_copy_move(p, p + n * ps, n, ps, 8);
	measured_copy.copy_per_page = many > one ? (many - one) / (n - 1) : many / n;
	measured_copy.copy_call = one > measured_copy.copy_per_page ?
				  one - measured_copy.copy_per_page : 0;
	munmap(p, 2 * n * ps);
}

void rw_copy_costs(struct costs *c)
{
	pthread_once(&copy_once, measure_copy);
	*c = measured_copy;
}
