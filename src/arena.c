/* Layer 4: arenas. Reserve, lock and bind the address range, choose the
 * backend, purge, report statistics and page states, destroy. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bitmap.h"
#include "internal.h"

/* The first version of struct rewire_options ends after backend; the
 * second after page_size. */
#define OPTIONS_V1_SIZE (offsetof(struct rewire_options, backend) + sizeof(const char *))
#define OPTIONS_V2_SIZE (offsetof(struct rewire_options, page_size) + sizeof(size_t))

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
	free(a->seq);
	free(a->spare);
	free(a->spares.page);
	pthread_mutex_destroy(&a->spares.lock);
	for (int k = 0; k < SLOTS; k++)
		pthread_mutex_destroy(&a->slot[k].lock);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

/* The page size asked for: the base page size, or the huge one; 0 if
 * neither. */
static size_t arena_page_size(const struct rewire_options *opts)
{
	size_t base = rw_base_page_size();
	size_t want = opts->struct_size >= OPTIONS_V2_SIZE ? opts->page_size : 0;

	if (!want || want == base)
		return base;
	return want == rw_huge_page_size() ? want : 0;
}

int rewire_arena_create(const struct rewire_options *opts,
			struct rewire_arena **arenap)
{
	struct rewire_arena *a;
	size_t page_size, words, len;
	int ret;

	if (!opts || !arenap || opts->struct_size < OPTIONS_V1_SIZE)
		return -EINVAL;
	if (!opts->reserve || opts->flags & ~(REWIRE_ONFAULT | REWIRE_UNLOCKED) || opts->numa_node < -1)
		return -EINVAL;
	page_size = arena_page_size(opts);
	if (!page_size)
		return -EINVAL;
	if (opts->reserve > SIZE_MAX - 2 * page_size)
		return -ENOMEM;
	pthread_once(&atfork_once, register_atfork);

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	pthread_mutex_init(&a->spares.lock, NULL);
	for (int k = 0; k < SLOTS; k++) {
		pthread_mutex_init(&a->slot[k].lock, NULL);
		a->slot[k].stage = SIZE_MAX;
	}
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
	a->huge = page_size != rw_base_page_size();
	a->page_shift = (unsigned int)__builtin_ctzl(page_size);
	a->npages = (opts->reserve + page_size - 1) >> a->page_shift;
	a->budget_pages = opts->lock_budget ? opts->lock_budget >> a->page_shift : a->npages;
	if (a->budget_pages > a->npages)
		a->budget_pages = a->npages;
	a->flags = opts->flags;
	a->numa_node = opts->numa_node;
	a->fork_gen = __atomic_load_n(&rw_fork_generation, __ATOMIC_RELAXED);
	len = a->npages << a->page_shift;

	/* The address space first: a reserve too large fails there, before
	 * any bookkeeping is sized by it. */
	ret = rw_map_arena(len, page_size, opts->numa_node, opts->flags & REWIRE_UNLOCKED,
			   &a->base);
	if (ret)
		goto fail;
	words = bitmap_words(a->npages);
	a->live = calloc(words, sizeof(uint64_t));
	a->head = calloc(words, sizeof(uint64_t));
	a->backed = calloc(words, sizeof(uint64_t));
	a->busy = aligned_alloc(64, words * BUSY_STRIDE * sizeof(uint64_t));
	if (a->busy)
		memset(a->busy, 0, words * BUSY_STRIDE * sizeof(uint64_t));
	a->seq = calloc(words, sizeof(uint64_t));
	a->spare = calloc(words, sizeof(uint64_t));
	if (!a->live || !a->head || !a->backed || !a->busy || !a->seq || !a->spare) {
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
	ANNOTATE_BENIGN_RACE_SIZED(a->busy, words * BUSY_STRIDE * sizeof(uint64_t), "atomic bitmap");
	ANNOTATE_BENIGN_RACE_SIZED(a->seq, words * sizeof(uint64_t), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(a->spare, words * sizeof(uint64_t), "atomic bitmap");
	ANNOTATE_BENIGN_RACE_SIZED(&a->spares.count, sizeof(a->spares.count), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->dropping, sizeof(a->dropping), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->copying, sizeof(a->copying), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->nbacked, sizeof(a->nbacked), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->first_free, sizeof(a->first_free), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->cache_top, sizeof(a->cache_top), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->correction, sizeof(a->correction), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->first_user, sizeof(a->first_user), "atomic");
	ANNOTATE_BENIGN_RACE_SIZED(&a->shared, sizeof(a->shared), "atomic");
	for (int k = 0; k < SLOTS; k++) {
		struct slot *s = &a->slot[k];

		ANNOTATE_BENIGN_RACE_SIZED(&s->pages, sizeof(s->pages), "atomic");
		ANNOTATE_BENIGN_RACE_SIZED(&s->batches, 4 * sizeof(uint64_t) + sizeof(long) +
					   sizeof(size_t), "atomic counters");
	}
	ret = choose_backend(a, opts->backend);
	if (ret) {
		a->backend = NULL;
		goto fail;
	}
	a->lower = a->backend->flush_per_call;
	/* The copy costs were measured per base page. */
	a->costs.copy_page *= (double)page_size / (double)rw_base_page_size();
	a->costs.copy_per_page *= (double)page_size / (double)rw_base_page_size();
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

/*
 * Remake huge pages of the backed pages of a huge arena that the kernel
 * made of base pages (no huge page was free, or a move split one), each
 * under a claim so that nothing moves or discards it meanwhile. EAGAIN
 * (a base page off its LRU list, held or locked for a moment, as while
 * khugepaged or a migration works on it) is tried again, waiting longer
 * each time, for some 60 ms a page and 250 ms a purge; a page the kernel
 * will not collapse now is left for the next purge. Stops at ENOMEM,
 * EBUSY or EINVAL: with no huge page free, none chargeable, or no
 * MADV_COLLAPSE (before Linux 6.1), the rest fail alike.
 * None is tried when the kernel maps all that is backed as huge pages
 * already (one read of smaps, where each MADV_COLLAPSE costs some 20 us
 * even on a huge page).
 */
static void repair_huge_pages(struct rewire_arena *a)
{
	size_t backed = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED) << a->page_shift;
	unsigned int waited_us = 0;

	if (rw_huge_mapped(a) >= backed)
		return;
	for (size_t i = 0; i < a->npages; i++) {
		int ret = 0;

		if (!bit_test(a->backed, i) || !rw_claim(a, i, 1))
			continue;
		for (unsigned int wait_us = 250; bit_test(a->backed, i); wait_us *= 2) {
			ret = rw_pages_collapse(a, i, 1);
			if (ret != -EAGAIN || wait_us > 32000 || waited_us + wait_us > 250000)
				break;
			usleep(wait_us);
			waited_us += wait_us;
		}
		rw_release(a, page_addr(a, i), 1);
		if (ret == -ENOMEM || ret == -EBUSY || ret == -EINVAL)
			break;
	}
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
	rw_drop_all_spares(a);
	if (a->huge)
		repair_huge_pages(a);
	return ret;
}

/* Resident bytes of a locked range are locked bytes: counted in base
 * pages, which is what mincore(2) reports on. */
static size_t resident_bytes(const struct rewire_arena *a)
{
	unsigned char vec[4096];
	size_t base_page = rw_base_page_size();
	size_t total = (a->npages << a->page_shift) / base_page, done = 0, count = 0;

	while (done < total) {
		size_t n = sizeof(vec);

		if (n > total - done)
			n = total - done;
		if (mincore(a->base + done * base_page, n * base_page, vec))
			return 0;
		for (size_t i = 0; i < n; i++)
			count += vec[i] & 1;
		done += n;
	}
	return count * base_page;
}

/*
 * In the shared library this is rewire_arena_stats@@REWIRE_0.3, bound with
 * .symver below; a static library has it under its own name.
 */
#ifdef PIC
#define ARENA_STATS rw_arena_stats_v3
int rw_arena_stats_v3(struct rewire_arena *a, struct rewire_stats *st);
#else
#define ARENA_STATS rewire_arena_stats
#endif

int ARENA_STATS(struct rewire_arena *a, struct rewire_stats *st)
{
	size_t locked, huge, tc, live;

	if (!a || !st)
		return -EINVAL;
	if (arena_forked(a))
		return -EFAULT;
	/* Measured first, without the lock: they read the whole arena. An
	 * unlocked arena locks nothing. */
	locked = (a->flags & REWIRE_UNLOCKED) ? 0 : resident_bytes(a);
	huge = a->huge ? rw_huge_mapped(a) : 0;
	pthread_mutex_lock(&a->lock);
	memset(st, 0, sizeof(*st));
	st->reserved = a->npages << a->page_shift;
	st->lock_budget = a->budget_pages << a->page_shift;
	/* Runs kept by threads for reuse are free, and cached. */
	tc = rw_tcache_pages(a);
	live = rw_live_pages(a);
	/* Read apart, while other threads work: never below zero. */
	st->allocated = (live > tc ? live - tc : 0) << a->page_shift;
	st->free = a->npages * a->page_size - st->allocated;
	st->backed = __atomic_load_n(&a->nbacked, __ATOMIC_RELAXED) << a->page_shift;
	st->locked = locked;
	st->page_size = a->page_size;
	st->huge_backed = huge;
	for (int k = 0; k < SLOTS; k++) {
		const struct slot *s = &a->slot[k];

		st->batches += __atomic_load_n(&s->batches, __ATOMIC_RELAXED);
		st->ops += __atomic_load_n(&s->ops, __ATOMIC_RELAXED);
		st->pages_remapped += __atomic_load_n(&s->pages_remapped, __ATOMIC_RELAXED);
		st->pages_copied += __atomic_load_n(&s->pages_copied, __ATOMIC_RELAXED);
	}
	/* Evicted pages' frames are cache too: recycled first. */
	st->cached = (rw_cached_pages(a) + tc + rw_spare_count(a)) << a->page_shift;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

/*
 * struct rewire_stats grew page_size and huge_backed in REWIRE_0.3. A
 * program linked before that passes the smaller structure and calls the
 * version it was linked with, which fills only the fields it knew.
 */
#define STATS_V1_SIZE offsetof(struct rewire_stats, page_size)

int rw_arena_stats_v1(struct rewire_arena *a, struct rewire_stats *st);

int rw_arena_stats_v1(struct rewire_arena *a, struct rewire_stats *st)
{
	struct rewire_stats full;
	int ret;

	if (!st)
		return -EINVAL;
	ret = ARENA_STATS(a, &full);
	if (!ret)
		memcpy(st, &full, STATS_V1_SIZE);
	return ret;
}

/* Versions are the shared library's (libtool defines PIC for its
 * objects); a static link takes the current one. */
#ifdef PIC
__asm__(".symver rw_arena_stats_v1, rewire_arena_stats@REWIRE_0.1");
__asm__(".symver rw_arena_stats_v3, rewire_arena_stats@@REWIRE_0.3");
#endif

/* A snapshot: other threads may change the pages as it is taken, but each
 * page's byte is a state that page had (pages.c). */
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
	rw_page_states(a, start, len >> a->page_shift, vec);
	return 0;
}

void *rewire_arena_base(const struct rewire_arena *a)
{
	if (!a || arena_forked(a)) {
		errno = a ? EFAULT : EINVAL;
		return NULL;
	}
	return a->base;
}
