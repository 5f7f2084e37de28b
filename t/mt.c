/*
 * Many threads on one arena. Each thread owns runs and keeps a model of
 * their pages; all threads allocate, free, realloc and operate at once, hand
 * runs to each other (so runs are freed by threads that did not allocate
 * them), and check what they own against their model after every step. A
 * monitor checks that the lock budget holds at every moment. Then: frees
 * racing operations on the same run, cross-thread frees in bulk, and purges
 * racing allocations.
 * REWIRE_MT_STEPS sets the steps per thread, REWIRE_MT_SECONDS the time a
 * phase may take at most.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define MAX_THREADS 16
#define RUNS 6			/* runs a thread owns at most */
#define MAX_PAGES 24		/* pages a run has at most */

struct run {
	char *p;
	size_t n;
	uint64_t tag[MAX_PAGES];	/* HOLE: the page is a hole */
};

struct worker {
	pthread_t tid;
	int id;
	uint64_t rng, next_tag;
	struct run runs[RUNS];
	int nruns;
	long steps, handed, taken;
	int errors;
};

static struct rewire_arena *arena;
static size_t budget_pages;
static long steps_per_thread = 3000;
/* Each phase also stops after this long: under emulation (t/vm.t) a step
 * costs a hundred times more. */
static double seconds_per_phase = 3;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs handed from one thread to another: one slot per thread. */
static pthread_mutex_t mailbox_lock = PTHREAD_MUTEX_INITIALIZER;
static struct run mailbox[MAX_THREADS];
static bool mailbox_full[MAX_THREADS];
static int nthreads, running;
static double deadline;

static uint64_t next(struct worker *w)
{
	return rnd_next(&w->rng);
}

static bool fail(struct worker *w, const char *what, int err)
{
	diag("thread %d, step %ld: %s: %s", w->id, w->steps, what, strerror(err));
	w->errors++;
	return false;
}

static bool check_run(struct worker *w, const struct run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const char *p = r->p + i * page_size;

		if (r->tag[i] == HOLE ? page_resident(p) : !page_has_tag(p, r->tag[i])) {
			diag("thread %d, step %ld: page %zu of a run of %zu should %s", w->id,
			     w->steps, i, r->n, r->tag[i] == HOLE ? "be a hole" : "hold its tag");
			w->errors++;
			return false;
		}
	}
	return true;
}

static void tag_run(struct worker *w, struct run *r, size_t from)
{
	for (size_t i = from; i < r->n; i++) {
		r->tag[i] = (uint64_t)w->id << 40 | w->next_tag++;
		tag_page(r->p + i * page_size, r->tag[i]);
	}
}

static void alloc_run(struct worker *w)
{
	struct run *r = &w->runs[w->nruns];
	bool holes = next(w) % 4 == 0;

	r->n = 1 + next(w) % MAX_PAGES;
	errno = 0;
	r->p = rewire_alloc(arena, r->n * page_size, holes ? REWIRE_ALLOC_HOLES : 0);
	if (!r->p) {
		if (errno != ENOMEM)
			fail(w, "alloc", errno);
		return;
	}
	if (holes)
		for (size_t i = 0; i < r->n; i++)
			r->tag[i] = HOLE;
	else
		tag_run(w, r, 0);
	w->nruns++;
}

static void free_run(struct worker *w, int k)
{
	int ret = rewire_free(arena, w->runs[k].p);

	if (ret)
		fail(w, "free", -ret);
	w->runs[k] = w->runs[--w->nruns];
}

static void realloc_run(struct worker *w, struct run *r)
{
	size_t n = 1 + next(w) % MAX_PAGES, keep = n < r->n ? n : r->n;
	char *p;

	errno = 0;
	p = rewire_realloc(arena, r->p, n * page_size);
	if (!p) {
		if (errno != ENOMEM)
			fail(w, "realloc", errno);
		return;
	}
	r->p = p;
	r->n = n;
	/* The pages kept keep their data, holes included; new ones are backed. */
	if (n > keep)
		tag_run(w, r, keep);
}

/*
 * A buffer manager's batch: page i replaces page j, then a page is dropped
 * and one backed from the cache (on kmod all in one call of the module,
 * its free pages claimed beside the other threads' allocations). What a
 * failed batch did is read from done and from the pages.
 */
static int buffer_batch(struct worker *w, struct run *r, size_t i, size_t j)
{
	size_t drop = next(w) % r->n, back = next(w) % r->n, done = 0;
	char *at_j = r->p + j * page_size, *at_back = r->p + back * page_size;
	struct rewire_op ops[3] = {
		{ REWIRE_OP_MOVE, REWIRE_OP_REPLACE, at_j, r->p + i * page_size, page_size, NULL },
		{ REWIRE_OP_DISCARD, 0, r->p + drop * page_size, NULL, page_size, NULL },
		{ REWIRE_OP_POPULATE, REWIRE_OP_RECYCLE, at_back, NULL, page_size, NULL },
	};
	int ret;

	if (i == j || r->tag[i] == HOLE)
		return 0;
	ret = rewire_batch(arena, ops, 3, &done);
	if (done >= 1) {
		r->tag[j] = r->tag[i];
		r->tag[i] = HOLE;
	} else if (ret && !page_resident(at_j)) {
		r->tag[j] = HOLE;	/* dropped before the move failed */
	}
	if (done >= 2)
		r->tag[drop] = HOLE;
	if ((done == 3 || (ret && done == 2)) && r->tag[back] == HOLE && page_resident(at_back)) {
		r->tag[back] = (uint64_t)w->id << 40 | w->next_tag++;
		tag_page(at_back, r->tag[back]);
	}
	return ret;
}

/* A page operation inside one of the thread's runs. */
static void operate(struct worker *w, struct run *r)
{
	size_t i = next(w) % r->n, j = next(w) % r->n, perm[MAX_PAGES];
	uint64_t t, old[MAX_PAGES];
	int ret = 0;

	switch (next(w) % 5) {
	case 0:	/* move a page onto a hole, if there is one */
		for (j = 0; j < r->n && r->tag[j] != HOLE; j++)
			;
		if (j == r->n || r->tag[i] == HOLE)
			return;
		ret = rewire_move(arena, r->p + j * page_size, r->p + i * page_size, page_size);
		if (!ret) {
			r->tag[j] = r->tag[i];
			r->tag[i] = HOLE;
		}
		break;
	case 1:	/* swap two backed pages */
		if (i == j || r->tag[i] == HOLE || r->tag[j] == HOLE)
			return;
		ret = rewire_swap(arena, r->p + i * page_size, r->p + j * page_size, page_size);
		if (!ret) {
			t = r->tag[i];
			r->tag[i] = r->tag[j];
			r->tag[j] = t;
		}
		break;
	case 2:	/* permute the whole run, if it is all backed */
		for (i = 0; i < r->n; i++) {
			if (r->tag[i] == HOLE)
				return;
			perm[i] = i;
		}
		for (i = r->n; i > 1; i--) {
			j = next(w) % i;
			t = perm[i - 1];
			perm[i - 1] = perm[j];
			perm[j] = t;
		}
		ret = rewire_permute(arena, r->p, perm, r->n);
		if (!ret) {
			memcpy(old, r->tag, r->n * sizeof(*old));
			for (i = 0; i < r->n; i++)
				r->tag[perm[i]] = old[i];
		}
		break;
	case 3:	/* discard a page */
		ret = rewire_discard(arena, r->p + i * page_size, page_size);
		if (!ret)
			r->tag[i] = HOLE;
		break;
	default:
		ret = buffer_batch(w, r, i, j);
	}
	/* Staging and copying may run short of memory; nothing else is an
	 * excuse: no other thread touches this run. */
	if (ret && ret != -ENOMEM)
		fail(w, "page operation", -ret);
}

/* Hand a run to the next thread, or take the one handed to this thread. */
static void hand_over(struct worker *w)
{
	int to = (w->id + 1) % nthreads;

	pthread_mutex_lock(&mailbox_lock);
	if (mailbox_full[w->id] && w->nruns < RUNS) {
		w->runs[w->nruns] = mailbox[w->id];
		mailbox_full[w->id] = false;
		pthread_mutex_unlock(&mailbox_lock);
		w->taken++;
		check_run(w, &w->runs[w->nruns++]);
		return;
	}
	if (!mailbox_full[to] && w->nruns) {
		int k = (int)(next(w) % (uint64_t)w->nruns);

		mailbox[to] = w->runs[k];
		mailbox_full[to] = true;
		w->runs[k] = w->runs[--w->nruns];
		w->handed++;
	}
	pthread_mutex_unlock(&mailbox_lock);
}

static void *model_thread(void *arg)
{
	struct worker *w = arg;

	for (w->steps = 0; w->steps < steps_per_thread && !w->errors &&
	     (w->steps % 64 || now() < deadline); w->steps++) {
		int what = (int)(next(w) % 100), k = w->nruns ? (int)(next(w) % (uint64_t)w->nruns) : 0;

		if (what < 15 && w->nruns < RUNS)
			alloc_run(w);
		else if (what < 25 && w->nruns)
			free_run(w, k);
		else if (what < 40 && w->nruns)
			realloc_run(w, &w->runs[k]);
		else if (what < 92 && w->nruns)
			operate(w, &w->runs[k]);
		else
			hand_over(w);
		for (int i = 0; i < w->nruns && !w->errors; i++)
			check_run(w, &w->runs[i]);
	}
	while (w->nruns)
		free_run(w, 0);
	return NULL;
}

/*
 * The budget holds at every moment: by the arena's count and by the pages
 * really locked, with no slack. The budget bounds what is resident, not
 * what the arena counts: a copy that populates before it discards is over
 * it. mincore(2) reads the arena a stretch at a time while pages move, so
 * a page moved from a stretch read to one not read yet is seen twice: a
 * count over the budget is measured again at once, and only two in a row
 * are a failure.
 */
static void *monitor(void *arg)
{
	long *violations = arg;
	bool over = false;

	while (__atomic_load_n(&running, __ATOMIC_RELAXED)) {
		struct rewire_stats st;

		if (rewire_arena_stats(arena, &st) || st.backed > budget_pages * page_size) {
			(*violations)++;
			diag("budget %zu pages: %zu backed", budget_pages, st.backed / page_size);
		} else if (st.locked > budget_pages * page_size) {
			if (over) {
				(*violations)++;
				diag("budget %zu pages: %zu measured locked, twice in a row",
				     budget_pages, st.locked / page_size);
			}
			over = true;
			continue;
		}
		over = false;
		usleep(200);
	}
	return NULL;
}

static void model(int threads, uint64_t seed)
{
	struct worker w[MAX_THREADS];
	struct rewire_stats st;
	pthread_t mon;
	long violations = 0, handed = 0, taken = 0, steps = steps_per_thread;
	int errors = 0;

	nthreads = threads;
	/* Room for every run at its largest, twice over; a budget short of it. */
	budget_pages = (size_t)threads * RUNS * MAX_PAGES * 3 / 4;
	arena = test_arena((size_t)threads * RUNS * MAX_PAGES * 2 + 64, budget_pages, 0);
	memset(w, 0, sizeof(w));
	memset(mailbox_full, 0, sizeof(mailbox_full));
	__atomic_store_n(&running, 1, __ATOMIC_RELAXED);
	deadline = now() + seconds_per_phase;
	if (pthread_create(&mon, NULL, monitor, &violations))
		bail("pthread_create");
	for (int i = 0; i < threads; i++) {
		w[i].id = i;
		w[i].rng = seed * 2654435761u + (uint64_t)i * 7919 + 1;
		w[i].next_tag = 1;
		if (pthread_create(&w[i].tid, NULL, model_thread, &w[i]))
			bail("pthread_create");
	}
	for (int i = 0; i < threads; i++) {
		pthread_join(w[i].tid, NULL);
		errors += w[i].errors;
		handed += w[i].handed;
		taken += w[i].taken;
		steps = w[i].steps < steps ? w[i].steps : steps;
	}
	__atomic_store_n(&running, 0, __ATOMIC_RELAXED);
	pthread_join(mon, NULL);
	/* Runs left in the mailbox are freed here, by yet another thread. */
	for (int i = 0; i < threads; i++)
		if (mailbox_full[i] && rewire_free(arena, mailbox[i].p))
			errors++;
	ok(!errors, "%d threads, at least %ld steps each: every thread's pages matched its "
	   "model after every step", threads, steps);
	ok(taken > 0 && handed >= taken, "%d threads: %ld runs handed over, %ld taken and "
	   "freed or kept by another thread", threads, handed, taken);
	ok(!violations, "%d threads: the lock budget held at every moment (%ld times not)",
	   threads, violations);
	rewire_arena_stats(arena, &st);
	ok(st.allocated == 0 && st.backed == st.cached && st.backed <= budget_pages * page_size,
	   "%d threads: all freed; backed %zu = cached %zu, within the budget", threads,
	   st.backed, st.cached);
	rewire_purge(arena);
	rewire_arena_stats(arena, &st);
	ok(st.backed == 0 && st.locked == 0, "%d threads: a purge leaves nothing backed or locked",
	   threads);
	rewire_arena_destroy(arena);
}

/* Frees racing operations on the same run. */
struct race {
	char *run;
	int freed;		/* the free has returned 0 */
	long ops_ok, ops_efault, ops_ebusy, late_ok, other;
};

static void *race_operator(void *arg)
{
	struct race *r = arg;

	/* A bounded number of tries, so that the free is not starved. */
	for (int tries = 0; tries < 2000; tries++) {
		int freed = __atomic_load_n(&r->freed, __ATOMIC_ACQUIRE);
		int ret = rewire_swap(arena, r->run, r->run + page_size, page_size);

		if (ret == 0)
			r->ops_ok++, r->late_ok += freed;
		else if (ret == -EFAULT)
			r->ops_efault++;
		else if (ret == -EBUSY)
			r->ops_ebusy++;
		else
			r->other++;
		if (freed && ret == -EFAULT)
			break;
	}
	return NULL;
}

static void free_races(int rounds)
{
	long ok_ops = 0, efault = 0, ebusy_free = 0, late = 0, other = 0;
	char *bystander;
	bool bystander_ok = true;

	arena = test_arena(256, 0, 0);
	bystander = rewire_alloc(arena, 8 * page_size, 0);
	for (size_t i = 0; i < 8; i++)
		tag_page(bystander + i * page_size, 1000 + i);
	deadline = now() + seconds_per_phase;
	for (int k = 0; k < rounds && now() < deadline; k++) {
		struct race r = { 0 };
		pthread_t t;
		int ret;

		r.run = rewire_alloc(arena, 2 * page_size, 0);
		if (!r.run || pthread_create(&t, NULL, race_operator, &r))
			bail("cannot start a race");
		usleep((useconds_t)(k % 7) * 10);
		while ((ret = rewire_free(arena, r.run)) == -EBUSY) {
			ebusy_free++;
			sched_yield();
		}
		other += ret != 0;
		__atomic_store_n(&r.freed, 1, __ATOMIC_RELEASE);
		pthread_join(t, NULL);
		ok_ops += r.ops_ok;
		efault += r.ops_efault;
		late += r.late_ok;
		other += r.other;
		for (size_t i = 0; i < 8; i++)
			bystander_ok &= page_has_tag(bystander + i * page_size, 1000 + i);
	}
	diag("free races: %ld swaps done, %ld refused (EFAULT), %ld frees refused (EBUSY)",
	     ok_ops, efault, ebusy_free);
	ok(!other, "free racing swaps on the same run: each call succeeded or failed with "
	   "EBUSY or EFAULT, nothing else");
	ok(!late, "no swap succeeded on a run after its free returned");
	ok(bystander_ok, "another run of the arena was untouched by the races");
	rewire_free(arena, bystander);
	rewire_arena_destroy(arena);
}

/*
 * A free while another thread's long permutation of the run is under way
 * must fail with EBUSY and leave the run alone. The free is sent 1 ms after
 * the thread starts the permutation, which on a loaded machine (a VM under
 * TCG beside other tests) may be before it claims the run; and a claim
 * waits up to 20 ms for its holder, which may see the permutation end (on
 * the host it takes about 8). Then the free succeeds, and the permutation
 * fails on a freed run (EFAULT, EBUSY while the free holds it) or succeeded
 * before it. Both are right, and the rounds start over on a new run;
 * anything else is wrong.
 */
struct long_op {
	char *run;
	size_t n, *perm;
	int started, ret;
};

static void *permute_run(void *arg)
{
	struct long_op *o = arg;

	__atomic_store_n(&o->started, 1, __ATOMIC_RELEASE);
	o->ret = rewire_permute(arena, o->run, o->perm, o->n);
	return NULL;
}

static char *tagged_run(size_t n)
{
	char *run = rewire_alloc(arena, n * page_size, 0);

	if (!run)
		bail("cannot set up a run of %zu pages", n);
	for (size_t i = 0; i < n; i++)
		tag_page(run + i * page_size, i + 1);
	return run;
}

static void reversal(struct long_op *o, size_t n)
{
	o->n = n;
	for (size_t i = 0; i < n; i++)
		o->perm[i] = n - 1 - i;
}

/*
 * The permutation must outlast the free's wait for its claim (20 ms): if
 * one of n pages takes less than 60 ms (16,384 pages take about 8 on the
 * host's mremap), the run grows to max_n pages.
 */
static void free_during_permute(size_t n, size_t max_n)
{
	struct long_op o = { 0 };
	int refused = 0, wrong = 0, early = 0, ret, probe;
	bool data_ok = true;
	double t0;

	arena = test_arena(3 * max_n, 0, 0);
	o.perm = malloc(max_n * sizeof(*o.perm));
	if (!o.perm)
		bail("malloc");
	reversal(&o, n);
	o.run = tagged_run(n);
	t0 = now();
	if (rewire_permute(arena, o.run, o.perm, n))
		bail("cannot permute a run of %zu pages", n);
	if (now() - t0 < 0.06 && n < max_n) {
		rewire_free(arena, o.run);
		reversal(&o, max_n);
		o.run = tagged_run(max_n);
	} else {
		rewire_permute(arena, o.run, o.perm, n);
	}
	n = o.n;
	while (refused < 4 && early < 16 && !wrong) {
		pthread_t t;

		o.started = 0;
		if (pthread_create(&t, NULL, permute_run, &o))
			bail("pthread_create");
		while (!__atomic_load_n(&o.started, __ATOMIC_ACQUIRE))
			sched_yield();
		usleep(1000);
		ret = rewire_free(arena, o.run);
		/*
		 * A run a free gave back is not live and no call holds it: a
		 * call on it fails with EFAULT. EBUSY past the claim's wait:
		 * the permutation still ran on it; success: it was not freed.
		 */
		if (ret == 0 && (probe = rewire_discard(arena, o.run, page_size)) != -EFAULT) {
			diag("after the free, a discard of the run returned %d", probe);
			wrong++;
		}
		pthread_join(t, NULL);
		if (wrong) {
			break;
		} else if (ret == -EBUSY) {
			refused++;
			wrong += o.ret != 0;
		} else if (ret == 0 &&
			   (o.ret == 0 || o.ret == -EFAULT || o.ret == -EBUSY)) {
			/* Not under way when the free came: again, on a new run. */
			early++;
			refused = 0;
			o.run = tagged_run(n);
		} else {
			diag("free returned %d, the permutation %d", ret, o.ret);
			wrong++;
		}
	}
	/* Four reversals: every page back in place. */
	for (size_t i = 0; i < n && refused == 4; i++)
		data_ok &= page_has_tag(o.run + i * page_size, i + 1);
	diag("free during a permutation of %zu pages: refused 4 in a row %s, after %d "
	     "frees that came before or after it", n, refused == 4 ? "yes" : "no", early);
	ok(!wrong, "a free during another thread's permutation of the run fails with EBUSY");
	ok(data_ok, "and the permutation completes, every page where it belongs");
	free(o.perm);
	rewire_arena_destroy(arena);
}

/*
 * Purges racing allocations in an arena short of budget: allocations drop
 * the cache too. Every page an allocation returns must be resident (the
 * arena is locked, not on fault), and the arena's count of backed pages must
 * match its pages at the end. An allocation may fail only when the pages
 * the churners hold, its own included, do not fit in the budget (the arena
 * has free pages for all of them many times over): churn_held counts them,
 * raised before each allocation and lowered after each free, so it is
 * never below what they hold.
 */
static long purge_bad, churn_unexplained, churn_allocs;
static size_t churn_held;
static int churn_errno;

static void *purger(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&running, __ATOMIC_RELAXED))
		if (rewire_purge(arena))
			__atomic_add_fetch(&purge_bad, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *churner(void *arg)
{
	uint64_t rng = (uint64_t)(intptr_t)arg;
	char *mine[4] = { NULL };
	size_t len[4] = { 0 };

	for (long i = 0; now() < deadline; i++) {
		int k = (int)(i % 4);
		size_t n = 1 + rnd_next(&rng) % 8, held;

		if (mine[k] && rewire_free(arena, mine[k]))
			__atomic_add_fetch(&purge_bad, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&churn_held, len[k], __ATOMIC_RELAXED);
		held = __atomic_add_fetch(&churn_held, n, __ATOMIC_RELAXED);
		mine[k] = rewire_alloc(arena, n * page_size, 0);
		len[k] = mine[k] ? n : 0;
		__atomic_add_fetch(&churn_allocs, 1, __ATOMIC_RELAXED);
		if (!mine[k]) {
			__atomic_sub_fetch(&churn_held, n, __ATOMIC_RELAXED);
			if (held <= budget_pages) {
				__atomic_store_n(&churn_errno, errno, __ATOMIC_RELAXED);
				__atomic_add_fetch(&churn_unexplained, 1, __ATOMIC_RELAXED);
			}
		}
		for (size_t j = 0; mine[k] && j < n; j++)
			if (!page_resident(mine[k] + j * page_size))
				__atomic_add_fetch(&purge_bad, 1, __ATOMIC_RELAXED);
	}
	for (int k = 0; k < 4; k++) {
		if (mine[k] && rewire_free(arena, mine[k]))
			__atomic_add_fetch(&purge_bad, 1, __ATOMIC_RELAXED);
		__atomic_sub_fetch(&churn_held, len[k], __ATOMIC_RELAXED);
	}
	return NULL;
}

static void purge_races(double seconds)
{
	pthread_t t[4];
	struct rewire_stats st;

	/* Three churners hold at most 4 runs of 8 pages each: 96. */
	budget_pages = 96;
	arena = test_arena(512, budget_pages, 0);
	__atomic_store_n(&running, 1, __ATOMIC_RELAXED);
	deadline = now() + seconds;
	for (int i = 0; i < 4; i++)
		if (pthread_create(&t[i], NULL, i ? churner : purger, (void *)(intptr_t)(i + 1)))
			bail("pthread_create");
	for (int i = 1; i < 4; i++)
		pthread_join(t[i], NULL);
	__atomic_store_n(&running, 0, __ATOMIC_RELAXED);
	pthread_join(t[0], NULL);
	rewire_arena_stats(arena, &st);
	ok(!purge_bad, "purges racing allocations: every page allocated was backed, every "
	   "call succeeded (%ld not)", purge_bad);
	ok(!churn_unexplained, "purges racing allocations: no allocation failed while the "
	   "budget and free pages sufficed (%ld of %ld did, last %s)", churn_unexplained,
	   churn_allocs, strerror(churn_errno));
	ok(st.allocated == 0 && st.backed == st.cached, "purges racing allocations: backed "
	   "%zu = cached %zu", st.backed, st.cached);
	rewire_purge(arena);
	rewire_arena_stats(arena, &st);
	ok(st.backed == 0 && st.locked == 0, "purges racing allocations: a last purge leaves "
	   "nothing backed (%zu) or locked (%zu)", st.backed, st.locked);
	rewire_arena_destroy(arena);
}

/* Producers allocate and tag runs, consumers on other threads check and
 * free them. */
#define QUEUE 64
static char *queue[QUEUE];
static size_t qhead, qtail;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static long produced_total, consumed_bad;

static void *producer(void *arg)
{
	long n = (long)(intptr_t)arg;

	for (long i = 0; i < n; i++) {
		size_t pages = 1 + (size_t)i % 8;
		char *p;

		while (!(p = rewire_alloc(arena, pages * page_size, 0)))
			sched_yield();
		for (size_t k = 0; k < pages; k++)
			tag_page(p + k * page_size, pages << 8 | k);
		pthread_mutex_lock(&qlock);
		while (qtail - qhead == QUEUE)
			pthread_cond_wait(&qcond, &qlock);
		queue[qtail++ % QUEUE] = p;
		produced_total++;
		pthread_cond_broadcast(&qcond);
		pthread_mutex_unlock(&qlock);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	long n = (long)(intptr_t)arg;

	for (long i = 0; i < n; i++) {
		char *p;
		size_t pages;

		pthread_mutex_lock(&qlock);
		while (qtail == qhead)
			pthread_cond_wait(&qcond, &qlock);
		p = queue[qhead++ % QUEUE];
		pthread_cond_broadcast(&qcond);
		pthread_mutex_unlock(&qlock);
		pages = rewire_usable_size(arena, p) / page_size;
		for (size_t k = 0; k < pages; k++)
			if (!page_has_tag(p + k * page_size, pages << 8 | k))
				__atomic_add_fetch(&consumed_bad, 1, __ATOMIC_RELAXED);
		if (rewire_free(arena, p))
			__atomic_add_fetch(&consumed_bad, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void cross_frees(long per_thread)
{
	pthread_t t[4];
	struct rewire_stats st;

	arena = test_arena(2048, 0, 0);
	for (int i = 0; i < 4; i++)
		if (pthread_create(&t[i], NULL, i < 2 ? producer : consumer,
				   (void *)(intptr_t)per_thread))
			bail("pthread_create");
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	rewire_arena_stats(arena, &st);
	ok(!consumed_bad, "cross-thread frees: %ld runs allocated by two threads, checked and "
	   "freed by two others", produced_total);
	ok(st.allocated == 0 && st.free == st.reserved, "cross-thread frees: nothing left "
	   "allocated");
	rewire_arena_destroy(arena);
}

int main(void)
{
	const char *env = getenv("REWIRE_MT_STEPS");
	bool valgrind = test_init();
	uint64_t seed = test_seed();

	if (env)
		steps_per_thread = atol(env);
	if (getenv("REWIRE_MT_SECONDS"))
		seconds_per_phase = atof(getenv("REWIRE_MT_SECONDS"));
	else if (valgrind)
		steps_per_thread = 200;
	model(4, seed);
	model(valgrind ? 4 : 16, seed + 1);
	free_races(valgrind ? 20 : 300);
	free_during_permute(valgrind ? 1024 : 16384, valgrind ? 1024 : 65536);
	cross_frees(valgrind ? 200 : 2000);
	purge_races(valgrind ? 0.5 : seconds_per_phase / 3);
	return done_testing();
}
