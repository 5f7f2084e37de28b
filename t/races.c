/*
 * Races between one thread's calls and another's that t/mt.t does not
 * provoke: allocations beside purges and beside swaps, the lock budget
 * while copying, page states read while runs come and go, and the thread
 * cache of an arena's second user. Linked with -Wl,--wrap=madvise: the
 * library is linked statically, so every page it populates passes here.
 * REWIRE_RACES_SECONDS sets how long each race runs (default 1).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double seconds = 1;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *backend_of(struct rewire_arena *a)
{
	return rewire_backend_name(a);
}

/* An arena on the named backend (NULL: $REWIRE_BACKEND or auto). */
static struct rewire_arena *arena_on(const char *backend, size_t pages, size_t budget)
{
	return test_arena_on(backend, pages, budget, 0);
}

/* Errnos seen by failed calls, for the messages. */
struct errs {
	long n, enomem, enospc, other;
	int last_other;
};

static void count_err(struct errs *e, int err)
{
	e->n++;
	if (err == ENOMEM)
		e->enomem++;
	else if (err == ENOSPC)
		e->enospc++;
	else
		e->other++, e->last_other = err;
}

/*
 * 1. One thread allocates and frees the whole arena while another purges.
 * The purge claims the cached pages while it discards them, but they are
 * free pages all the same: an allocation must wait for them or take them,
 * never report ENOMEM.
 */
struct purger {
	struct rewire_arena *a;
	int stop;
	long purges, failed;
};

static void *purge_loop(void *arg)
{
	struct purger *p = arg;

	while (!__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
		if (rewire_purge(p->a))
			p->failed++;
		p->purges++;
	}
	return NULL;
}

static void alloc_beside_purge(void)
{
	const size_t n = 4096;
	struct purger p = { arena_on(NULL, n, 0), 0, 0, 0 };
	struct errs e = { 0 };
	pthread_t t;
	double end;
	long allocs = 0, frees_failed = 0;

	if (pthread_create(&t, NULL, purge_loop, &p))
		bail("pthread_create");
	end = now() + seconds;
	for (allocs = 0; now() < end; allocs++) {
		char *x = rewire_alloc(p.a, n * page_size, 0);

		if (!x) {
			count_err(&e, errno);
			continue;
		}
		if (allocs & 1)
			for (size_t i = 0; i < n; i += 64)
				x[i * page_size] = 1;
		frees_failed += rewire_free(p.a, x) != 0;
		/* A moment between uses, as a program has: the purges find the
		 * pages cached, not only taken again at once, even where both
		 * threads share a CPU. */
		for (double until = now() + 2e-6; now() < until;)
			;
		sched_yield();
	}
	__atomic_store_n(&p.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	ok(!e.n && !frees_failed && !p.failed,
	   "%s: allocating all 4,096 pages beside purges: %ld of %ld allocations failed "
	   "(%ld ENOMEM, %ld other, last %s), %ld frees and %ld of %ld purges failed",
	   backend_of(p.a), e.n, allocs, e.enomem, e.other, strerror(e.last_other),
	   frees_failed, p.failed, p.purges);
	rewire_arena_destroy(p.a);
}

/*
 * 2. One thread swaps the two halves of its run while another allocates,
 * or grows a run in place, into the only free pages. A remapping swap
 * stages a half in free holes from the arena's first free page on: the
 * very pages the other thread needs, and only for a moment each time.
 * uffd and mremap stage; copy never does, and auto's planner stages only
 * where it finds remapping SWAP_N pages cheaper than copying them, so
 * there the race may not happen. Layout of the arena:
 *
 *	swapped (2N)   grown in place (1)   free holes (N)   filler (rest)
 *
 * The free pages are there whenever the other thread asks for them: no
 * ENOMEM, no ENOSPC.
 */
#define SWAP_N 16
#define SWAP_PAGES 64

struct swapper {
	struct rewire_arena *a;
	char *run;
	int stop;
	long swaps, failed;
	int last;
};

static void *swap_loop(void *arg)
{
	struct swapper *s = arg;
	size_t half = SWAP_N * page_size;

	while (!__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		int ret = rewire_swap(s->a, s->run, s->run + half, half);

		if (ret)
			s->failed++, s->last = -ret;
		s->swaps++;
	}
	return NULL;
}

static void alloc_beside_swaps(void)
{
	struct swapper s = { arena_on(NULL, SWAP_PAGES, 0), NULL, 0, 0, 0, 0 };
	struct errs alloc_e = { 0 }, grow_e = { 0 };
	const size_t len = SWAP_N * page_size;
	char *grown, *free_at, *filler;
	long allocs = 0, grows = 0, misplaced = 0, other = 0;
	struct rewire_stats st;
	pthread_t t;
	double end;

	s.run = rewire_alloc(s.a, 2 * len, 0);
	grown = rewire_alloc(s.a, page_size, 0);
	free_at = rewire_alloc(s.a, len, REWIRE_ALLOC_HOLES);
	filler = rewire_alloc(s.a, (SWAP_PAGES - 3 * SWAP_N - 1) * page_size, REWIRE_ALLOC_HOLES);
	if (!s.run || grown != s.run + 2 * len || free_at != grown + page_size || !filler ||
	    rewire_free(s.a, free_at))
		bail("cannot lay out the arena for the swaps");
	if (pthread_create(&t, NULL, swap_loop, &s))
		bail("pthread_create");
	end = now() + seconds;
	for (long i = 0; now() < end; i++) {
		bool holes = i % 8;
		char *x;
		int ret;

		/* Into the free pages: holes (most often: no system call, so
		 * many tries), or backed and discarded before the free, so that
		 * they are holes again, where a swap stages. */
		x = rewire_alloc(s.a, len, holes ? REWIRE_ALLOC_HOLES : 0);
		allocs++;
		if (!x) {
			count_err(&alloc_e, errno);
		} else {
			misplaced += x != free_at;
			if (!holes && rewire_discard(s.a, x, len))
				other++;
			if (rewire_free(s.a, x))
				other++;
		}
		/* A moment between uses, as a program has: else this thread,
		 * whose calls hold the pages through their system calls, may
		 * keep them claimed nearly all the time, and the swaps never
		 * find them free to stage in. */
		for (double until = now() + 5e-6; now() < until;)
			;
		/* Now and then, grow the run before them into them, and give
		 * them back. */
		if (i % 4)
			continue;
		ret = rewire_resize(s.a, grown, page_size + len);
		grows++;
		if (ret) {
			count_err(&grow_e, -ret);
			continue;
		}
		if (rewire_discard(s.a, grown + page_size, len) ||
		    rewire_resize(s.a, grown, page_size))
			other++;
	}
	__atomic_store_n(&s.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	rewire_arena_stats(s.a, &st);
	diag("%s: %ld swaps (%llu pages remapped, %llu copied) beside %ld allocations and %ld "
	     "growths", backend_of(s.a), s.swaps, (unsigned long long)st.pages_remapped,
	     (unsigned long long)st.pages_copied, allocs, grows);
	ok(!alloc_e.n && !misplaced,
	   "%s: allocations beside swaps: %ld of %ld failed (%ld ENOMEM, %ld other, last %s), "
	   "%ld not in the free pages", backend_of(s.a), alloc_e.n, allocs, alloc_e.enomem,
	   alloc_e.other, strerror(alloc_e.last_other), misplaced);
	ok(!grow_e.n && !other && !s.failed,
	   "%s: growths in place beside swaps: %ld of %ld failed (%ld ENOSPC, %ld other, last "
	   "%s); %ld other calls and %ld of %ld swaps failed (last %s)", backend_of(s.a),
	   grow_e.n, grows, grow_e.enospc, grow_e.enomem + grow_e.other,
	   strerror(grow_e.last_other), other, s.failed, s.swaps, strerror(s.last));
	rewire_arena_destroy(s.a);
}

/*
 * 3. The lock budget while pages are copied. Every populate the library
 * makes passes through here; right after it, the pages of the watched
 * arena that are resident are counted. Single-threaded: no race makes the
 * count, so it is exact.
 */
static char *watch_base;
static size_t watch_pages, watch_max;

int __real_madvise(void *addr, size_t len, int advice);
int __wrap_madvise(void *addr, size_t len, int advice);

int __wrap_madvise(void *addr, size_t len, int advice)
{
	int ret = __real_madvise(addr, len, advice), saved = errno;

	if (advice == MADV_POPULATE_WRITE && watch_base) {
		unsigned char vec[256];
		size_t resident = 0;

		for (size_t i = 0; i < watch_pages; i += sizeof(vec)) {
			size_t n = watch_pages - i < sizeof(vec) ? watch_pages - i : sizeof(vec);

			if (mincore(watch_base + i * page_size, n * page_size, vec))
				bail("mincore: %s", strerror(errno));
			for (size_t k = 0; k < n; k++)
				resident += vec[k] & 1;
		}
		if (resident > watch_max)
			watch_max = resident;
	}
	errno = saved;
	return ret;
}

static void watch(struct rewire_arena *a, char *base)
{
	struct rewire_stats st;

	rewire_arena_stats(a, &st);
	watch_base = base;
	watch_pages = st.reserved / page_size;
	watch_max = 0;
}

static size_t unwatch(void)
{
	watch_base = NULL;
	return watch_max;
}

#define BUDGET 64

/* A 40-page run, all written, grows to 42 pages where it cannot grow in place. */
static void budget_realloc(const char *backend)
{
	struct rewire_arena *a = arena_on(backend, 4 * BUDGET, BUDGET);
	char *x = rewire_alloc(a, 40 * page_size, 0), *block, *y;
	bool data = true;
	size_t most;

	block = rewire_alloc(a, page_size, 0);
	if (!x || block != x + 40 * page_size)
		bail("cannot lay out the arena for the realloc");
	for (size_t i = 0; i < 40; i++)
		tag_page(x + i * page_size, i + 1);
	watch(a, x);
	errno = 0;
	y = rewire_realloc(a, x, 42 * page_size);
	most = unwatch();
	for (size_t i = 0; y && i < 40; i++)
		data &= page_has_tag(y + i * page_size, i + 1);
	ok(y && data && most <= BUDGET, "%s: budget %d: a realloc of 40 written pages to 42 "
	   "that moves them: %s; %zu pages resident at most after a populate",
	   backend_of(a), BUDGET,
	   !y ? strerror(errno) : data ? "data kept" : "DATA LOST", most);
	rewire_arena_destroy(a);
}

/* With the budget full, n pages move into holes. Refusing is allowed
 * (ENOMEM), exceeding the budget is not. */
static void budget_move(const char *backend, size_t n)
{
	struct rewire_arena *a = arena_on(backend, 4 * BUDGET, BUDGET);
	char *full = rewire_alloc(a, BUDGET * page_size, 0);
	char *holes = rewire_alloc(a, 16 * page_size, REWIRE_ALLOC_HOLES);
	bool data = true;
	size_t most;
	int ret;

	if (!full || !holes)
		bail("cannot lay out the arena for the moves");
	for (size_t i = 0; i < BUDGET; i++)
		tag_page(full + i * page_size, i + 1);
	watch(a, full);
	ret = rewire_move(a, holes + 3 * page_size, full + 5 * page_size, n * page_size);
	most = unwatch();
	for (size_t i = 0; !ret && i < n; i++)
		data &= page_has_tag(holes + (3 + i) * page_size, 5 + i + 1);
	ok((!ret || ret == -ENOMEM) && data && most <= BUDGET, "%s: budget %d, all backed: "
	   "a move of %zu page%s into holes: %s; %zu pages resident at most after a populate",
	   backend_of(a),
	   BUDGET, n, n > 1 ? "s" : "", ret ? strerror(-ret) : data ? "data moved" : "DATA LOST",
	   most);
	rewire_arena_destroy(a);
}

static void budget_while_copying(void)
{
	const char *backends[] = { "copy", NULL };

	for (int k = 0; k < 2; k++) {
		budget_realloc(backends[k]);
		budget_move(backends[k], 1);
		budget_move(backends[k], 8);
	}
}

/*
 * 4. rewire_page_state beside a thread that allocates and frees. Every
 * byte it returns must be a state a page can be in, whatever the moment:
 * a hole (0), cached (BACKED), or in a run (LIVE, with BACKED, with HEAD
 * on its first page). The writer keeps the rest of the arena allocated, so
 * every run it makes starts at page STATE_AT: there, LIVE without HEAD is
 * torn too.
 */
#define STATE_PAGES 64
#define STATE_AT 8
#define STATE_FREE 16

struct writer {
	struct rewire_arena *a;
	char *base;
	int stop, ready;
	uint64_t rng;
	long runs, misplaced, failed;
};

static void *state_writer(void *arg)
{
	struct writer *w = arg;
	char *before = rewire_alloc(w->a, STATE_AT * page_size, 0);
	char *mid = rewire_alloc(w->a, STATE_FREE * page_size, 0);
	char *after = rewire_alloc(w->a, (STATE_PAGES - STATE_AT - STATE_FREE) * page_size,
				   REWIRE_ALLOC_HOLES);

	if (!before || !mid || !after || rewire_free(w->a, mid))
		bail("cannot lay out the arena for the page states");
	/* The first run of a fresh arena is at its base. */
	w->base = before;
	__atomic_store_n(&w->ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		size_t n = 1 + rnd_next(&w->rng) % STATE_FREE;
		unsigned int how = (unsigned int)(rnd_next(&w->rng) % 64);
		char *x = rewire_alloc(w->a, n * page_size, how == 0 ? REWIRE_ALLOC_HOLES : 0);

		if (!x) {
			w->failed++;
			continue;
		}
		w->misplaced += x != mid;
		/* A few runs leave holes behind; most leave cached pages, which the
		 * next run takes without a system call, so runs come and go fast. */
		if (how == 1 && rewire_discard(w->a, x, n * page_size))
			w->failed++;
		if (rewire_free(w->a, x))
			w->failed++;
		w->runs++;
	}
	rewire_free(w->a, before);
	rewire_free(w->a, after);
	return NULL;
}

/* What one reader saw. */
struct reader {
	struct writer *w;
	pthread_t tid;
	long reads, bytes, no_live, first_reads, no_head, seen[8];
};

static void tally(struct reader *r, const unsigned char *vec, size_t from, size_t n)
{
	r->reads++;
	for (size_t i = 0; i < n; i++) {
		unsigned char v = vec[i];

		r->bytes++;
		r->seen[v & 7]++;
		if (v > 7 || ((v & REWIRE_PAGE_HEAD) && !(v & REWIRE_PAGE_LIVE)))
			r->no_live++;
		else if (from + i == STATE_AT && (r->first_reads++, v & REWIRE_PAGE_LIVE) &&
			 !(v & REWIRE_PAGE_HEAD))
			r->no_head++;
	}
}

/* The whole arena, then the writer's first page alone, again and again. */
static void *state_reader(void *arg)
{
	struct reader *r = arg;
	struct writer *w = r->w;
	unsigned char vec[STATE_PAGES];

	while (!__atomic_load_n(&w->stop, __ATOMIC_RELAXED)) {
		if (rewire_page_state(w->a, w->base, STATE_PAGES * page_size, vec))
			bail("rewire_page_state failed");
		tally(r, vec, 0, STATE_PAGES);
		for (int k = 0; k < 16; k++) {
			if (rewire_page_state(w->a, w->base + STATE_AT * page_size, page_size, vec))
				bail("rewire_page_state failed");
			tally(r, vec, STATE_AT, 1);
		}
	}
	return NULL;
}

/* Readers: one more thread than this machine has cores, so that readers
 * are also preempted between the bits of one page, as in real programs. */
#define READERS 2

static void states_beside_allocations(void)
{
	struct writer w = { arena_on(NULL, STATE_PAGES, 0), NULL, 0, 0, test_seed() | 1, 0, 0, 0 };
	struct reader r[READERS], all = { 0 };
	pthread_t t;
	double end;

	/* Only the writer allocates: one thread, so exact first fit. */
	if (pthread_create(&t, NULL, state_writer, &w))
		bail("pthread_create");
	while (!__atomic_load_n(&w.ready, __ATOMIC_ACQUIRE))
		;
	memset(r, 0, sizeof(r));
	for (int k = 0; k < READERS; k++) {
		r[k].w = &w;
		if (pthread_create(&r[k].tid, NULL, state_reader, &r[k]))
			bail("pthread_create");
	}
	end = now() + seconds;
	while (now() < end)
		usleep(10000);
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, NULL);
	for (int k = 0; k < READERS; k++) {
		pthread_join(r[k].tid, NULL);
		all.reads += r[k].reads;
		all.bytes += r[k].bytes;
		all.no_live += r[k].no_live;
		all.first_reads += r[k].first_reads;
		all.no_head += r[k].no_head;
		for (int v = 0; v < 8; v++)
			all.seen[v] += r[k].seen[v];
	}
	diag("%s: %ld runs made and freed beside %ld reads; states seen: 0:%ld 1:%ld 2:%ld "
	     "3:%ld 4:%ld 5:%ld 6:%ld 7:%ld", backend_of(w.a), w.runs, all.reads, all.seen[0],
	     all.seen[1], all.seen[2], all.seen[3], all.seen[4], all.seen[5], all.seen[6],
	     all.seen[7]);
	ok(!all.no_live && !w.failed && !w.misplaced, "%s: page states beside allocations: %ld "
	   "of %ld bytes read were HEAD without LIVE (0x4 0x6); %ld of %ld writer runs failed, "
	   "%ld not first fit", backend_of(w.a), all.no_live, all.bytes, w.failed, w.runs,
	   w.misplaced);
	ok(!all.no_head, "%s: page states beside allocations: a run's first page read %ld times "
	   "of %ld as LIVE without HEAD (0x1 0x3)", backend_of(w.a), all.no_head,
	   all.first_reads);
	rewire_arena_destroy(w.a);
}

/*
 * 5. The thread cache of an arena's second user. Threads get cache slots
 * in turn, 16 of them, so the 16th thread to start using rewire after an
 * arena's first user shares its slot. It is still a second thread: its
 * frees go to its cache, and an operation on a run it freed so is EBUSY
 * (doc/threads.md), not EFAULT as on a run freed for good.
 */
struct user {
	struct rewire_arena *a, *b;
	int ret;
};

/* The arena's first user: its first calls give the thread its slot. */
static void *first_use(void *arg)
{
	struct user *u = arg;

	for (int k = 0; k < 2; k++) {
		struct rewire_arena *a = k ? u->b : u->a;
		char *x = rewire_alloc(a, page_size, 0);

		if (!x || rewire_free(a, x))
			u->ret = -1;
	}
	return NULL;
}

/* A later user: frees a backed page of its own, then discards it. */
static void *later_use(void *arg)
{
	struct user *u = arg;
	char *x = rewire_alloc(u->a, page_size, 0);

	u->ret = !x ? -errno : rewire_free(u->a, x) ? -1 : rewire_discard(u->a, x, page_size);
	return NULL;
}

static int run_user(struct rewire_arena *a, void *(*fn)(void *), struct rewire_arena *b)
{
	struct user u = { a, b, 0 };
	pthread_t t;

	if (pthread_create(&t, NULL, fn, &u))
		bail("pthread_create");
	pthread_join(t, NULL);
	return u.ret;
}

static void second_user_slot(void)
{
	struct rewire_arena *a = arena_on(NULL, 256, 0), *control = arena_on(NULL, 256, 0);
	struct rewire_arena *scratch = arena_on(NULL, 256, 0);
	int ret;

	if (run_user(a, first_use, control))
		bail("the first user's calls failed");
	/* The next thread's slot is the first user's plus one. */
	ret = run_user(control, later_use, NULL);
	ok(ret == -EBUSY, "%s: the 2nd thread to use an arena keeps the runs it frees: an "
	   "operation on one is %s (want EBUSY)", backend_of(control), strerror(-ret));
	/* 14 more take the slots up to the first user's (the first of them
	 * is the scratch arena's first user: EFAULT there). */
	for (int k = 2; k < 16; k++) {
		ret = run_user(scratch, later_use, NULL);
		if (ret != -EBUSY && ret != -EFAULT)
			bail("a thread on the scratch arena failed: %s", strerror(-ret));
	}
	ret = run_user(a, later_use, NULL);
	ok(ret == -EBUSY, "%s: the 16th thread started after an arena's first user, its "
	   "second user, keeps the runs it frees: an operation on one is %s (want EBUSY)",
	   backend_of(a), strerror(-ret));
	rewire_arena_destroy(scratch);
	rewire_arena_destroy(control);
	rewire_arena_destroy(a);
}

int main(void)
{
	bool valgrind = test_init();

	if (getenv("REWIRE_RACES_SECONDS"))
		seconds = atof(getenv("REWIRE_RACES_SECONDS"));
	else if (valgrind)
		seconds = 0.3;
	plan(13);
	alloc_beside_purge();
	alloc_beside_swaps();
	budget_while_copying();
	states_beside_allocations();
	second_user_slot();
	return done_testing();
}
