/* Arenas: reserve, lock and bind the address range, choose the backend,
 * purge, report statistics, destroy. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef HAVE_NUMA
#include <numa.h>
#include <numaif.h>
#endif

#include "bitmap.h"
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

/* The first version of struct rewire_options ends after backend. */
#define OPTIONS_V1_SIZE (offsetof(struct rewire_options, backend) + sizeof(const char *))

unsigned long rw_fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void after_fork_in_child(void)
{
	__atomic_add_fetch(&rw_fork_generation, 1, __ATOMIC_RELAXED);
}

static void register_atfork(void)
{
	pthread_atfork(NULL, NULL, after_fork_in_child);
}

/* In the order "auto" tries them. */
static const struct backend *const backends[] = {
	&rw_backend_kmod,
	&rw_backend_uffd,
	&rw_backend_mremap,
	&rw_backend_copy,
};

const char *rewire_version(void)
{
	return PACKAGE_VERSION;
}

void rewire_options_init(struct rewire_options *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->struct_size = sizeof(*opts);
	opts->numa_node = -1;
}

static int choose_backend(struct rewire_arena *a, const char *name)
{
	size_t i;

	if (!name)
		name = getenv("REWIRE_BACKEND");
	if (!name || !*name || !strcmp(name, "auto")) {
		a->plan = true;
		for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
			a->backend = backends[i];
			if (!backends[i]->init(a))
				return 0;
		}
		return -EOPNOTSUPP;
	}
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		if (!strcmp(name, backends[i]->name)) {
			a->backend = backends[i];
			return backends[i]->init(a);
		}
	}
	return -EINVAL;
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
 * mappings only, bound to node, locked as pages fault in unless unlocked.
 */
static int set_attributes(char *p, size_t len, int node, bool unlocked)
{
	int ret;

	if (madvise(p, len, MADV_DONTFORK))
		return -errno;
	/* Page-table moves need PTE mappings; a kernel without THP says EINVAL. */
	if (madvise(p, len, MADV_NOHUGEPAGE) && errno != EINVAL)
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

/* Map len bytes that are private to this process and locked as they fault
 * (unless unlocked). */
static int map_arena(size_t len, int node, bool unlocked, char **out)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	int ret;

	/* Our arguments are valid, so EINVAL (valgrind's answer to a length
	 * beyond the address space) means what the kernel's ENOMEM does. */
	if (p == MAP_FAILED)
		return errno == EINVAL ? -ENOMEM : -errno;
	ret = set_attributes(p, len, node, unlocked);
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
	return set_attributes(p, len, a->numa_node, a->flags & REWIRE_UNLOCKED);
}

static void free_arena(struct rewire_arena *a, bool unmap)
{
	if (a->backend && a->backend->fini)
		a->backend->fini(a);
	if (unmap) {
		if (a->base)
			munmap(a->base, a->npages << a->page_shift);
	}
	free(a->live);
	free(a->busy);
	free(a->head);
	free(a->backed);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int rewire_arena_create(const struct rewire_options *opts,
			struct rewire_arena **arenap)
{
	struct rewire_arena *a;
	size_t page_size = (size_t)sysconf(_SC_PAGESIZE), words, len;
	int ret;

	if (!opts || !arenap || opts->struct_size < OPTIONS_V1_SIZE)
		return -EINVAL;
	if (!opts->reserve || opts->flags & ~(REWIRE_ONFAULT | REWIRE_UNLOCKED) || opts->numa_node < -1)
		return -EINVAL;
	if (opts->reserve > SIZE_MAX - page_size)
		return -ENOMEM;
	pthread_once(&atfork_once, register_atfork);

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->first_slot = -1;
	for (int k = 0; k < TCACHE_SLOTS; k++)
		pthread_mutex_init(&a->tcache[k].lock, NULL);
	/* Held for tens of nanoseconds at a time: spin a little before
	 * sleeping on it. */
	{
		pthread_mutexattr_t attr;

		pthread_mutexattr_init(&attr);
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
		pthread_mutex_init(&a->lock, &attr);
		pthread_mutexattr_destroy(&attr);
	}
	a->page_size = page_size;
	a->page_shift = (unsigned int)__builtin_ctzl(page_size);
	a->npages = (opts->reserve + page_size - 1) >> a->page_shift;
	a->budget_pages = opts->lock_budget ? opts->lock_budget >> a->page_shift : a->npages;
	if (a->budget_pages > a->npages)
		a->budget_pages = a->npages;
	a->flags = opts->flags;
	a->numa_node = opts->numa_node;
	for (int k = 0; k < SIZE_CLASSES; k++)
		a->correction[0][k] = a->correction[1][k] = 1;
	a->fork_gen = __atomic_load_n(&rw_fork_generation, __ATOMIC_RELAXED);
	len = a->npages << a->page_shift;

	/* The address space first: a reserve too large fails there, before
	 * any bookkeeping is sized by it. */
	ret = map_arena(len, opts->numa_node, opts->flags & REWIRE_UNLOCKED, &a->base);
	if (ret)
		goto fail;
	words = bitmap_words(a->npages);
	a->live = calloc(words, sizeof(uint64_t));
	a->head = calloc(words, sizeof(uint64_t));
	a->backed = calloc(words, sizeof(uint64_t));
	a->busy = calloc(words, sizeof(uint64_t));
	if (!a->live || !a->head || !a->backed || !a->busy) {
		ret = -ENOMEM;
		goto fail;
	}
	/*
	 * helgrind takes relaxed atomics for plain accesses; what is shared
	 * without a lock is ThreadSanitizer's to check (doc/threads.md).
	 */
	ANNOTATE_BENIGN_RACE_SIZED(a->live, words * sizeof(uint64_t), "atomic bitmap");
	ANNOTATE_BENIGN_RACE_SIZED(a->head, words * sizeof(uint64_t), "atomic bitmap");
	ANNOTATE_BENIGN_RACE_SIZED(a->backed, words * sizeof(uint64_t), "atomic bitmap");
	ANNOTATE_BENIGN_RACE_SIZED(a->busy, words * sizeof(uint64_t), "atomic bitmap");
	ANNOTATE_BENIGN_RACE_SIZED(&a->nlive, sizeof(a->nlive), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->nbacked, sizeof(a->nbacked), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->first_free, sizeof(a->first_free), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->cache_top, sizeof(a->cache_top), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->correction, sizeof(a->correction), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->batches, 4 * sizeof(uint64_t), "atomic counters");
	ANNOTATE_BENIGN_RACE_SIZED(&a->first_slot, sizeof(a->first_slot), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->shared, sizeof(a->shared), "atomic");
	for (int k = 0; k < TCACHE_SLOTS; k++)
		ANNOTATE_BENIGN_RACE_SIZED(&a->tcache[k].pages, sizeof(size_t), "atomic");
	ret = choose_backend(a, opts->backend);
	if (ret) {
		a->backend = NULL;
		goto fail;
	}
	a->lower = a->backend->flush_per_call;
	*arenap = a;
	return 0;
fail:
	free_arena(a, true);
	return ret;
}

void rewire_arena_destroy(struct rewire_arena *a)
{
	if (!a)
		return;
	/* A forked child has no arena memory, and the range may be reused. */
	free_arena(a, !arena_forked(a));
}

const char *rewire_backend_name(const struct rewire_arena *a)
{
	if (!a || arena_forked(a)) {
		errno = a ? EFAULT : EINVAL;
		return NULL;
	}
	return a->backend->name;
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

/* Pages counted as holes may have been touched; drop whatever is there. */
void rw_discard_hole_pages(struct rewire_arena *a, size_t start, size_t n)
{
	size_t end = start + n, i = start;

	while ((i = bits_find(a->backed, i, end, false)) < end) {
		size_t j = bits_find(a->backed, i, end, true);

		rw_pages_discard(a, i, j - i);
		i = j;
	}
}

/* Pages free, backed and not claimed: the cache. Lock held. */
size_t rw_cached_pages(const struct rewire_arena *a)
{
	size_t n = 0;

	for (size_t i = 0; (i = bits_find2(a->live, a->busy, i, a->npages, false)) < a->npages;) {
		size_t j = bits_find(a->live, i, a->npages, true), k = bits_find(a->busy, i, j, true);

		n += bits_count(a->backed, i, k - i);
		i = k;
	}
	return n;
}

/*
 * Claim the next stretch of free, unclaimed pages that are all backed (the
 * cache) or all holes, in [*i, end), at most want long: its length, its
 * start at *i; 0 if there is none. No lock: claimed, then checked again, as
 * an allocation may take the pages meanwhile; a stretch that changed is
 * passed over.
 */
size_t rw_claim_free(struct rewire_arena *a, size_t *i, size_t end, size_t want, bool backed)
{
	size_t k = *i;

	while ((k = bits_find2(a->live, a->busy, k, end, false)) < end) {
		/* A window at a time: the free stretch may be most of the arena,
		 * and the pages wanted at its start. */
		size_t lim = end - k > 4096 ? k + 4096 : end, j;
		size_t stop = bits_find2(a->live, a->busy, k, lim, true);

		k = bits_find(a->backed, k, stop, backed);
		if (k == stop)
			continue;
		j = bits_find2(a->live, a->busy, k, want < end - k ? k + want : end, true);
		j = bits_find(a->backed, k, j, !backed);
		if (j == k) {
			/* Page k was taken or changed since it was found. */
			k++;
			continue;
		}
		/* One of its pages taken meanwhile: look again from k, for the
		 * rest of the stretch may still be there. */
		if (!bits_claim_unless(a->busy, a->live, k, j - k))
			continue;
		if (bits_all(a->live, k, j - k, false) && bits_all(a->backed, k, j - k, backed)) {
			*i = k;
			return j - k;
		}
		bits_release(a->busy, k, j - k);
		k = j;
	}
	*i = end;
	return 0;
}

struct stretch {
	size_t start, n;
	bool dropped;
};

/*
 * Free pages that still hold data become holes again. Called with the lock
 * held and returns with it held, but drops it while the kernel discards
 * the pages, which are claimed meanwhile: no allocation takes them, and
 * they count against the budget until they are gone.
 */
int rw_drop_cache(struct rewire_arena *a)
{
	struct stretch *v = NULL;
	size_t nv = 0, cap = 0, n;
	int ret = 0;

	for (size_t i = 0; (n = rw_claim_free(a, &i, a->npages, SIZE_MAX, true)); i += n) {
		if (nv == cap) {
			struct stretch *w = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));

			if (!w) {
				bits_release(a->busy, i, n);
				ret = -ENOMEM;
				break;
			}
			v = w;
		}
		v[nv++] = (struct stretch){ i, n, false };
	}
	pthread_mutex_unlock(&a->lock);
	for (size_t k = 0; k < nv; k++)
		v[k].dropped = !rw_pages_discard(a, v[k].start, v[k].n);
	pthread_mutex_lock(&a->lock);
	/* Recorded before the claim goes: an allocation that claims the pages
	 * next must see holes, or it would count them as backed and not take
	 * budget for them. */
	for (size_t k = 0; k < nv; k++) {
		if (v[k].dropped) {
			bits_clear(a->backed, v[k].start, v[k].n);
			__atomic_sub_fetch(&a->nbacked, v[k].n, __ATOMIC_RELAXED);
		}
		bits_release(a->busy, v[k].start, v[k].n);
	}
	free(v);
	return ret;
}

int rewire_purge(struct rewire_arena *a)
{
	int ret;

	if (!a)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	rw_flush_tcaches(a);
	pthread_mutex_lock(&a->lock);
	ret = rw_drop_cache(a);
	pthread_mutex_unlock(&a->lock);
	return ret;
}

/* Resident pages of a locked range are locked pages. */
static size_t resident_pages(const struct rewire_arena *a)
{
	unsigned char vec[4096];
	size_t done = 0, count = 0;

	while (done < a->npages) {
		size_t n = sizeof(vec);

		if (n > a->npages - done)
			n = a->npages - done;
		if (mincore(page_addr(a, done), n << a->page_shift, vec))
			return 0;
		for (size_t i = 0; i < n; i++)
			count += vec[i] & 1;
		done += n;
	}
	return count;
}

int rewire_arena_stats(struct rewire_arena *a, struct rewire_stats *st)
{
	size_t locked, tc, live;

	if (!a || !st)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	/* Measured first, without the lock: it reads the whole arena. An
	 * unlocked arena locks nothing. */
	locked = (a->flags & REWIRE_UNLOCKED) ? 0 : resident_pages(a) << a->page_shift;
	pthread_mutex_lock(&a->lock);
	memset(st, 0, sizeof(*st));
	st->reserved = a->npages << a->page_shift;
	st->lock_budget = a->budget_pages << a->page_shift;
	/* Runs kept by threads for reuse are free, and cached. */
	tc = rw_tcache_pages(a);
	live = __atomic_load_n(&a->nlive, __ATOMIC_RELAXED);
	/* Read apart, while other threads work: never below zero. */
	st->allocated = (live > tc ? live - tc : 0) << a->page_shift;
	st->free = a->npages * a->page_size - st->allocated;
	st->backed = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED) << a->page_shift;
	st->locked = locked;
	st->batches = __atomic_load_n(&a->batches, __ATOMIC_RELAXED);
	st->ops = __atomic_load_n(&a->ops, __ATOMIC_RELAXED);
	st->pages_remapped = __atomic_load_n(&a->pages_remapped, __ATOMIC_RELAXED);
	st->pages_copied = __atomic_load_n(&a->pages_copied, __ATOMIC_RELAXED);
	st->cached = (rw_cached_pages(a) + tc) << a->page_shift;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/* A snapshot: other threads may change the pages as it is taken. */
int rewire_page_state(struct rewire_arena *a, const void *addr, size_t len,
		      unsigned char *vec)
{
	size_t start;
	int ret;

	if (!a || !vec)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	ret = rw_page_range(a, addr, len, &start);
	if (ret)
		return ret;
	for (size_t i = 0; i < len >> a->page_shift; i++)
		vec[i] = (bit_test(a->live, start + i) ? REWIRE_PAGE_LIVE : 0) |
			 (bit_test(a->backed, start + i) ? REWIRE_PAGE_BACKED : 0) |
			 (bit_test(a->head, start + i) ? REWIRE_PAGE_HEAD : 0);
	return 0;
}
