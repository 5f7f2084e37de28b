/* Layer 2: how checked operations are applied. A batch goes to the
 * backend; for a backend without a batch call of its own, adjacent moves
 * coalesce into runs, each operation is done by remapping page-table
 * entries or by copying, whichever the arena's cost model says is cheaper,
 * and every operation is all-or-nothing. Calls only layers 0 and 1. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bitmap.h"
#include "fault.h"
#include "internal.h"

#define EAGAIN_RETRIES 100

/*
 * Fault injection for the tests (src/fault.h): page attempts nth to
 * nth + count - 1 of each batch fail with err, wherever they are tried.
 * Per thread, so threads on other arenas never see another's faults.
 */
static __thread struct {
	int err;
	long nth, count, seen, fired;
} fault;

void rw_fault_inject(int err, long nth, long count)
{
	fault.err = err;
	fault.nth = nth;
	fault.count = count;
	fault.fired = 0;
}

long rw_fault_fired(void)
{
	return fault.fired;
}

int rw_fault_armed(void)
{
	return fault.count != 0;
}

/* Of n page attempts starting now, how many succeed before an injected
 * fault (n if none). */
static size_t fault_check(size_t n)
{
	long first = fault.seen;

	if (!fault.count)
		return n;
	fault.seen += (long)n;
	if (fault.nth + fault.count <= first || fault.nth >= first + (long)n)
		return n;
	fault.fired++;
	fault.seen = (fault.nth > first ? fault.nth : first) + 1;
	return fault.nth > first ? (size_t)(fault.nth - first) : 0;
}

/*
 * Copying swaps and permutations goes through one page of scratch, each
 * call its own so that threads copy in parallel. It is not locked memory,
 * so it is cleared before it is freed: no copy of the arena's data is left
 * where it may be swapped out (free_scratch(), after each use). A thread
 * working on arenas of both page sizes keeps one of the larger: its first
 * word holds its size.
 */
#define SCRATCH_HEADER 64

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void make_scratch_key(void)
{
	pthread_key_create(&scratch_key, free);
	/* helgrind does not see pthread_once order the key's readers. */
	ANNOTATE_BENIGN_RACE_SIZED(&scratch_key, sizeof(scratch_key), "set once");
}

/* The calling thread's scratch page, made on first use, freed at its exit. */
static char *scratch_page(const struct rewire_arena *a)
{
	char *p;

	pthread_once(&scratch_once, make_scratch_key);
	p = pthread_getspecific(scratch_key);
	if (!p || *(size_t *)p < a->page_size) {
		char *q = aligned_alloc(SCRATCH_HEADER, SCRATCH_HEADER + a->page_size);

		if (!q || pthread_setspecific(scratch_key, q)) {
			free(q);
			return NULL;
		}
		*(size_t *)q = a->page_size;
		free(p);
		p = q;
	}
	return p + SCRATCH_HEADER;
}

static void free_scratch(const struct rewire_arena *a, char *scratch)
{
	explicit_bzero(scratch, a->page_size);
}

/*
 * Move one page into the hole at dst by way of the scratch page, when the
 * lock budget has no room for the page's new place: the old place is
 * discarded first, so no more pages are backed at any moment. Only if the
 * kernel then refuses to back either place is the page's data lost: -EIO.
 */
static int bounce_move(struct rewire_arena *a, char *dst, char *src, bool undo)
{
	char *scratch = scratch_page(a);
	int ret = 0;

	if (!scratch)
		return -ENOMEM;
	memcpy(scratch, src, a->page_size);
	rw_pages_discard(a, page_index(a, src), 1);
	if (!rw_pages_populate(a, page_index(a, dst), 1)) {
		memcpy(dst, scratch, a->page_size);
	} else {
		if (!undo)
			rw_pages_discard(a, page_index(a, dst), 1);
		ret = rw_pages_populate(a, page_index(a, src), 1) ? -EIO : -ENOMEM;
		if (ret == -ENOMEM)
			memcpy(src, scratch, a->page_size);
	}
	free_scratch(a, scratch);
	return ret;
}

/* Pages one stretch of a copying move takes from the budget at most. */
#define COPY_STRETCH 64

/*
 * Copy n pages into the holes at dst a stretch at a time, each stretch's
 * new pages taken from the lock budget and backed before they are filled
 * (so running out of memory is an error, not a fault halfway), the old
 * ones discarded after and their budget given back. *done: pages moved.
 * Unless undoing, dst is known to be holes, and what populating it left is
 * dropped.
 */
static int copy_stretches(struct rewire_arena *a, char *dst, char *src, size_t n, bool undo,
			  size_t *done)
{
	size_t off = 0, ps = a->page_size;
	int ret = 0;

	while (off < n && !ret) {
		size_t want = n - off < COPY_STRETCH ? n - off : COPY_STRETCH, m;
		size_t d = page_index(a, dst + off * ps);

		/*
		 * Others short of budget wait for these rather than fail:
		 * counted before they are taken and until after they are
		 * given back, as reserve() reads them.
		 */
		__atomic_add_fetch(&a->copying, want, __ATOMIC_SEQ_CST);
		m = rw_budget_take_upto(a, want);
		__atomic_sub_fetch(&a->copying, want - m, __ATOMIC_SEQ_CST);
		if (!m) {
			ret = bounce_move(a, dst + off * ps, src + off * ps, undo);
			off += !ret;
			continue;
		}
		ret = rw_pages_populate(a, d, m);
		if (ret) {
			if (!undo)
				rw_pages_discard(a, d, m);
		} else {
			memcpy(dst + off * ps, src + off * ps, m * ps);
			rw_pages_discard(a, page_index(a, src + off * ps), m);
			off += m;
		}
		rw_budget_give(a, m);
		__atomic_sub_fetch(&a->copying, m, __ATOMIC_SEQ_CST);
	}
	*done = off;
	return ret;
}

/* Move n pages into the holes at dst by copying: all of them, or, if a
 * stretch fails, none (those before it moved back; -EIO if that fails). */
static int copy_move(struct rewire_arena *a, char *dst, char *src, size_t n, bool undo)
{
	size_t done, back;
	int ret;

	if (fault_check(n) < n)
		return -fault.err;
	ret = copy_stretches(a, dst, src, n, undo, &done);
	if (ret && ret != -EIO && done &&
	    (fault_check(done) < done || copy_stretches(a, src, dst, done, true, &back)))
		ret = -EIO;
	return ret;
}

/* 16 bytes, one SSE2 register on x86-64; pages are aligned to them. */
typedef uint64_t swap_unit __attribute__((vector_size(16)));

/*
 * Exchange the contents of two ranges (never overlapping: ops.c checks)
 * 64 bytes at a time, in registers: each byte is read and written once,
 * and no copy of the arena's data is left in memory that may be swapped
 * out. A scratch page took three copies and a clearing: a single-page
 * swap cost 530 ns, 15% of it the clearing.
 */
static int copy_swap(struct rewire_arena *a, char *x, char *y, size_t n)
{
	swap_unit *restrict p = (swap_unit *)x, *restrict q = (swap_unit *)y;

	for (size_t i = 0; i < (n << a->page_shift) / sizeof(*p); i += 4) {
		swap_unit p0 = p[i], p1 = p[i + 1], p2 = p[i + 2], p3 = p[i + 3];
		swap_unit q0 = q[i], q1 = q[i + 1], q2 = q[i + 2], q3 = q[i + 3];

		p[i] = q0;
		p[i + 1] = q1;
		p[i + 2] = q2;
		p[i + 3] = q3;
		q[i] = p0;
		q[i + 1] = p1;
		q[i + 2] = p2;
		q[i + 3] = p3;
	}
	return 0;
}

/* Walk each cycle backwards: position p receives the page that goes to p,
 * so every page is copied once plus one scratch copy per cycle. */
static int copy_permute(struct rewire_arena *a, char *base, const size_t *perm,
			size_t n, uint64_t *moved)
{
	size_t *from = malloc(n * sizeof(*from)), ps = a->page_size;
	char *scratch = scratch_page(a);

	if (!from || !scratch) {
		free(from);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		from[perm[i]] = i;
	for (size_t start = 0; start < n; start++) {
		size_t pos = start;

		if (from[start] == start || from[start] == SIZE_MAX)
			continue;
		memcpy(scratch, base + start * ps, ps);
		while (from[pos] != start) {
			size_t src = from[pos];

			memcpy(base + pos * ps, base + src * ps, ps);
			from[pos] = SIZE_MAX;
			pos = src;
			++*moved;
		}
		memcpy(base + pos * ps, scratch, ps);
		from[pos] = SIZE_MAX;
		++*moved;
	}
	free_scratch(a, scratch);
	free(from);
	return 0;
}

/*
 * Remap n pages from src to the holes at dst, resuming short moves and
 * copying the pages the backend refuses (pinned, shared). *moved says how
 * far it got, also on error. An undo moves pages back to where they just
 * were; if that place is not empty, nothing there may be dropped.
 */
static int move_run(struct rewire_arena *a, char *dst, char *src, size_t n,
		    struct apply_result *res, size_t *moved, bool undo)
{
	size_t off = 0, ps = a->page_size;
	int retries = 0, ret = 0;
	bool cleared = false;

	while (off < n) {
		size_t m = 0, ok = fault_check(n - off);

		ret = ok ? a->backend->remap(a, dst + off * ps, src + off * ps, ok, &m) : 0;
		if (!ret && ok < n - off)
			ret = -fault.err;
		off += m;
		res->remapped += m;
		if (!ret || off == n)
			continue;
		if (ret == -EAGAIN && ++retries < EAGAIN_RETRIES)
			continue;
		if (ret == -EEXIST && !cleared && !undo) {
			/* The program touched a hole: its data is void. */
			rw_pages_discard(a, page_index(a, dst + off * ps), n - off);
			cleared = true;
			continue;
		}
		ret = copy_move(a, dst + off * ps, src + off * ps, 1, undo);
		if (ret)
			break;
		off++;
		res->copied++;
		retries = 0;
	}
	*moved = off;
	return off == n ? 0 : ret;
}

/* One page-table move of an operation, kept so a failure can be undone. */
struct step {
	char *dst, *src;
	size_t n;
};

/*
 * Run the steps in order; if one fails, move back what has moved. If moving
 * back fails too (the kernel refused a move, then the copy instead, for want
 * of memory), stop: every page still holds its data, but not all of it is
 * where the arena's records say, and the caller gets -EIO.
 */
static int run_steps(struct rewire_arena *a, const struct step *s, size_t nsteps,
		     struct apply_result *res)
{
	size_t i, moved = 0, back;
	int ret = 0;

	for (i = 0; i < nsteps; i++) {
		ret = move_run(a, s[i].dst, s[i].src, s[i].n, res, &moved, false);
		if (ret)
			break;
	}
	if (!ret)
		return 0;
	rw_undoing = true;
	if (move_run(a, s[i].src, s[i].dst, moved, res, &back, true))
		ret = -EIO;
	while (ret != -EIO && i-- > 0)
		if (move_run(a, s[i].src, s[i].dst, s[i].n, res, &back, true))
			ret = -EIO;
	rw_undoing = false;
	return ret;
}

/*
 * Staged operations move pages more than once; statistics count the pages
 * whose data changed address, as copied if any copying was involved.
 */
static int counted(struct apply_result *res, const struct apply_result *before,
		   int ret, uint64_t pages)
{
	uint64_t copied = res->copied - before->copied;

	if (ret) {
		res->copied = before->copied;
		res->remapped = before->remapped;
	} else {
		res->copied = before->copied + (copied < pages ? copied : pages);
		res->remapped = before->remapped + pages - (copied < pages ? copied : pages);
	}
	return ret;
}

/* Backend calls that moving [src, src + n) by page tables takes. */
static size_t calls_for(const struct rewire_arena *a, const char *src, size_t n)
{
	return a->backend->remap_calls ? a->backend->remap_calls(a, src, n) : 1;
}

/*
 * memcpy of a page among n: the calibration copies within the caches, and
 * larger working sets cost more, about 0.75x the cached figure more for
 * each doubling past 1 MiB (x86-64, measured from 1 MiB to 512 MiB).
 */
static double copy_page_cost(const struct rewire_arena *a, size_t n)
{
	double f = 1;

	for (size_t mib = (n << a->page_shift) >> 20; mib > 1; mib >>= 1)
		f += 0.75;
	return f * a->costs.copy_page;
}

static double load_double(const double *p)
{
	double v;

	__atomic_load(p, &v, __ATOMIC_RELAXED);
	return v;
}

static unsigned int size_class(size_t n)
{
	unsigned int k = 0;

	while (n >>= 1)
		k++;
	return k < SIZE_CLASSES ? k : SIZE_CLASSES - 1;
}

/*
 * The correction for one way and size: 1 until an operation of that way
 * and size teaches one. But where remapping has cost more than twice its
 * model, copying, not yet timed at that size, is taken to be off by as
 * much the other way, so that it is tried and timed once: the models err
 * in those directions (remapping's per-call figures leave out locking
 * and splitting mappings; copying's growth with size, fitted on another
 * machine, is up to 3x too dear here), and otherwise auto kept remapping
 * 64-page blocks on mremap at 3.6x a copy's time. Remapping gets no such
 * benefit: tried on scattered pages it can cost seconds.
 */
static double correction(const struct rewire_arena *a, bool remap, unsigned int k)
{
	double f = load_double(&a->correction[remap][k]), r;

	if (f)
		return f;
	if (remap)
		return 1;
	r = load_double(&a->correction[1][k]);
	return r > 2 ? 1 / r : 1;
}

/*
 * Remap when the backend can and, under auto, when the model says it is
 * cheaper, each side corrected by what operations of this size really cost
 * before; and only when the backend has room for every call the operation
 * will make, counted before it starts, so it never runs out halfway.
 */
static bool choose_remap(struct rewire_arena *a, size_t calls, size_t n, double remap_ns,
			 double copy_ns)
{
	unsigned int k = size_class(n);

	if (!a->backend->remap)
		return false;
	if (a->plan && remap_ns * correction(a, true, k) >= copy_ns * correction(a, false, k))
		return false;
	return !a->backend->room_for || a->backend->room_for(a, calls);
}

/*
 * Operations the planner times, to re-check its model: only where it
 * chooses (auto) and only above one page. A single page's choice is
 * obvious on a backend that remaps (it never copies one that the backend
 * moves cheaper), and timing it would cost two clock reads a move. The
 * clock leaves out a backend's bookkeeping: mremap's recount of mappings
 * (60-190 us) lands in whichever operation runs then, and taught the
 * planner that remapping 16-128 pages cost up to 35x the model, not 5x.
 */
static double start_clock(const struct rewire_arena *a, size_t n)
{
	return a->plan && n > 1 ? rw_work_ns() : 0;
}

/*
 * Re-check the model against the clock: how long the operation took,
 * against what the model said, becomes the correction for this way and
 * size the first time, and half of it after. The first is taken whole
 * because the model can be several times off on a machine (on mremap,
 * scattered runs of 64 pages cost 6x what it says, a copy among 256 MiB
 * a third), and halving the way there took three or more operations of a
 * size before the planner chose the cheaper way; but no further than 10x
 * either way, as the way it makes dearer may not be tried again to put an
 * outlier right. Operations too short to time well teach nothing.
 */
static void learn(struct rewire_arena *a, bool remap, size_t n, double model_ns, double t0)
{
	double took, old, *f = &a->correction[remap][size_class(n)];

	if (!t0 || model_ns <= 0)
		return;
	took = rw_work_ns() - t0;
	if (took < 20000)
		return;
	took /= model_ns;
	/* Threads may race here; either's figure is as good. */
	old = load_double(f);
	if (old)
		took = (old + (took < 0.05 ? 0.05 : took > 50 ? 50 : took)) / 2;
	else
		took = took < 0.1 ? 0.1 : took > 10 ? 10 : took;
	__atomic_store(f, &took, __ATOMIC_RELAXED);
}

static int do_move(struct rewire_arena *a, const struct page_op *op,
		   struct apply_result *res)
{
	const struct costs *c = &a->costs;
	struct step s = { op->dst, op->src, op->npages };
	struct apply_result before = *res;
	size_t n = op->npages, calls = calls_for(a, op->src, n);
	double remap_ns = calls * c->remap_call + n * c->remap_per_page;
	double copy_ns = c->copy_call + n * c->copy_per_page, t0 = start_clock(a, n);
	int ret;

	if (choose_remap(a, calls, n, remap_ns, copy_ns)) {
		ret = counted(res, &before, run_steps(a, &s, 1, res), n);
		learn(a, true, n, remap_ns, t0);
		return ret;
	}
	ret = copy_move(a, op->dst, op->src, n, false);
	if (!ret)
		res->copied += n;
	learn(a, false, n, copy_ns, t0);
	return ret;
}

/* Swap through staging holes: x to the stage, y to x, the stage to y. */
static int do_swap(struct rewire_arena *a, const struct page_op *op,
		   struct apply_result *res)
{
	const struct costs *c = &a->costs;
	size_t n = op->npages;
	struct apply_result before = *res;
	size_t calls = 2 * calls_for(a, op->dst, n) + calls_for(a, op->src, n);
	double remap_ns = calls * c->remap_call + 3 * n * c->remap_per_page;
	double copy_ns = 3 * n * copy_page_cost(a, 2 * n), t0 = start_clock(a, n);
	char *stage;

	int ret;

	if (choose_remap(a, calls, n, remap_ns, copy_ns) && (stage = rw_claim_stage(a, n))) {
		struct step s[3] = { { stage, op->dst, n }, { op->dst, op->src, n },
				     { op->src, stage, n } };

		ret = run_steps(a, s, 3, res);
		if (ret != -EIO && a->backend->tidy)
			a->backend->tidy(a, stage, n);
		/* After EIO pages may be left in the stage: keep it claimed. */
		if (ret != -EIO)
			rw_release_stage(a, stage, n);
		learn(a, true, n, remap_ns, t0);
		return counted(res, &before, ret, 2 * n);
	}
	ret = copy_swap(a, op->dst, op->src, n);
	if (!ret)
		res->copied += 2 * n;
	learn(a, false, n, copy_ns, t0);
	return ret;
}

/* Pages i .. i + n - 1 that go together to perm[i] .. perm[i] + n - 1. */
struct run {
	size_t src, dst, n;
};

static size_t find_runs(const size_t *perm, size_t n, struct run *r)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		if (i && perm[i] == perm[i - 1] + 1) {
			r[k - 1].n++;
			continue;
		}
		r[k++] = (struct run){ i, perm[i], 1 };
	}
	return k;
}

/*
 * When every run lands exactly on the place of a run of the same length
 * (blocks permuted, say), the runs form cycles: walk each backwards through
 * one staging slot, so each page moves once. from[] receives, for each run,
 * the run whose pages come to its place. Returns the number of cycles, or
 * SIZE_MAX if the runs do not line up.
 */
static size_t run_cycles(const struct run *r, size_t nruns, size_t n, size_t *from)
{
	size_t *at = malloc(n * sizeof(*at)), cycles = 0;
	uint64_t *seen;

	if (!at)
		return SIZE_MAX;
	for (size_t i = 0; i < n; i++)
		at[i] = SIZE_MAX;
	for (size_t k = 0; k < nruns; k++)
		at[r[k].src] = k;
	for (size_t k = 0; k < nruns; k++) {
		size_t j = at[r[k].dst];

		if (j == SIZE_MAX || r[j].n != r[k].n) {
			free(at);
			return SIZE_MAX;
		}
		from[j] = k;
	}
	free(at);
	seen = calloc(nruns / 64 + 1, sizeof(uint64_t));
	if (!seen)
		return SIZE_MAX;
	for (size_t k = 0; k < nruns; k++) {
		if (from[k] == k || seen[k / 64] >> (k % 64) & 1)
			continue;
		cycles++;
		for (size_t j = k; !(seen[j / 64] >> (j % 64) & 1); j = from[j])
			seen[j / 64] |= 1ull << (j % 64);
	}
	free(seen);
	return cycles;
}

static size_t cycle_steps(struct rewire_arena *a, char *base, const struct run *r,
			  size_t nruns, const size_t *from, char *stage, struct step *s)
{
	size_t ps = a->page_size, k = 0;
	uint64_t *seen = calloc(nruns / 64 + 1, sizeof(uint64_t));

	if (!seen)
		return 0;
	for (size_t c = 0; c < nruns; c++) {
		size_t j = c;

		if (from[c] == c || seen[c / 64] >> (c % 64) & 1)
			continue;
		s[k++] = (struct step){ stage, base + r[c].src * ps, r[c].n };
		for (;;) {
			seen[j / 64] |= 1ull << (j % 64);
			if (from[j] == c) {
				s[k++] = (struct step){ base + r[j].src * ps, stage, r[j].n };
				break;
			}
			s[k++] = (struct step){ base + r[j].src * ps, base + r[from[j]].src * ps,
						r[j].n };
			j = from[j];
		}
	}
	free(seen);
	return k;
}

/*
 * Permute by page-table moves: through cycles of runs when the runs line
 * up, else every run to its place in a staging area and then the whole
 * stage back in one contiguous step. Copy when that is cheaper.
 */
static int do_permute(struct rewire_arena *a, const struct page_op *op,
		      struct apply_result *res)
{
	const struct costs *c = &a->costs;
	size_t n = op->npages, nruns, cycles, k = 0, max_run = 0, ps = a->page_size;
	size_t calls = 0, max_calls = 0, stage_len;
	struct apply_result before = *res;
	struct run *r = NULL;
	size_t *from = NULL;
	struct step *s = NULL;
	double remap_ns, copy_ns, t0;
	uint64_t moved = 0;
	char *stage;
	int ret = -ENOMEM;

	if (!a->backend->remap)
		return copy_permute(a, op->dst, op->perm, n, &res->copied);
	/*
	 * Every run is at least one call: where that alone costs more than
	 * copying (a random permutation), copy without analysing further.
	 */
	copy_ns = n * copy_page_cost(a, n);
	nruns = 1;
	for (size_t i = 1; i < n; i++)
		nruns += op->perm[i] != op->perm[i - 1] + 1;
	if (!choose_remap(a, 0, n, (double)nruns * c->remap_call, copy_ns))
		goto copy;
	r = malloc(n * sizeof(*r));
	from = malloc(n * sizeof(*from));
	if (!r || !from)
		goto copy;
	nruns = find_runs(op->perm, n, r);
	cycles = run_cycles(r, nruns, n, from);
	for (size_t i = 0; i < nruns; i++) {
		size_t ci = calls_for(a, op->dst + r[i].src * ps, r[i].n);

		max_run = r[i].n > max_run ? r[i].n : max_run;
		max_calls = ci > max_calls ? ci : max_calls;
		moved += r[i].src != r[i].dst ? r[i].n : 0;
		/* Staged, every run moves; through cycles, those that move. */
		calls += cycles == SIZE_MAX || r[i].src != r[i].dst ? ci : 0;
	}
	/*
	 * Through cycles, each cycle also goes through the staging slot and
	 * out again; staged, the stage goes back in as many pieces as came in.
	 */
	calls += cycles != SIZE_MAX ? cycles * max_calls : calls;
	if (cycles != SIZE_MAX)
		remap_ns = (double)calls * c->remap_call + (double)(moved + cycles * max_run) * c->remap_per_page;
	else
		remap_ns = (double)calls * c->remap_call + 2.0 * n * c->remap_per_page;
	if (!choose_remap(a, calls, n, remap_ns, copy_ns))
		goto copy;
	stage_len = cycles != SIZE_MAX ? max_run : n;
	s = malloc((2 * nruns + 1) * sizeof(*s));
	stage = s ? rw_claim_stage(a, stage_len) : NULL;
	if (!stage)
		goto copy;
	if (cycles != SIZE_MAX) {
		k = cycle_steps(a, op->dst, r, nruns, from, stage, s);
	} else {
		for (size_t i = 0; i < nruns; i++)
			s[k++] = (struct step){ stage + r[i].dst * ps, op->dst + r[i].src * ps, r[i].n };
		s[k++] = (struct step){ op->dst, stage, n };
	}
	if (!k && moved) {
		rw_release_stage(a, stage, stage_len);
		goto copy;
	}
	t0 = start_clock(a, n);
	ret = run_steps(a, s, k, res);
	if (ret != -EIO && a->backend->tidy)
		a->backend->tidy(a, stage, stage_len);
	if (ret != -EIO)
		rw_release_stage(a, stage, stage_len);
	learn(a, true, n, remap_ns, t0);
	ret = counted(res, &before, ret, moved);
	goto out;
copy:
	t0 = start_clock(a, n);
	ret = copy_permute(a, op->dst, op->perm, n, &res->copied);
	learn(a, false, n, copy_ns, t0);
out:
	free(r);
	free(from);
	free(s);
	return ret;
}

/* Consecutive moves whose ranges continue each other are one run. */
static size_t coalesce(const struct rewire_arena *a, const struct page_op *ops,
		       size_t nops, struct page_op *run)
{
	size_t i = 1;

	*run = ops[0];
	while (run->type == REWIRE_OP_MOVE && i < nops && ops[i].type == REWIRE_OP_MOVE) {
		size_t len = run->npages << a->page_shift;
		size_t total = len + (ops[i].npages << a->page_shift);
		uintptr_t d = (uintptr_t)run->dst, s = (uintptr_t)run->src;

		if (ops[i].dst != run->dst + len || ops[i].src != run->src + len ||
		    (d < s ? s - d < total : d - s < total))
			break;
		run->npages += ops[i].npages;
		i++;
	}
	return i;
}

static int plan_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
		      struct apply_result *res)
{
	struct page_op run;
	int ret = 0;

	fault.seen = 0;
	while (res->done < nops && !ret) {
		size_t n = coalesce(a, ops + res->done, nops - res->done, &run);

		switch (run.type) {
		case REWIRE_OP_MOVE:
			ret = do_move(a, &run, res);
			break;
		case REWIRE_OP_SWAP:
			ret = do_swap(a, &run, res);
			break;
		case REWIRE_OP_PERMUTE:
			ret = do_permute(a, &run, res);
			break;
		default:	/* the library runs the others itself */
			ret = -EINVAL;
		}
		if (!ret)
			res->done += n;
	}
	return ret;
}

/*
 * Hand checked operations, whose state change is already recorded, to the
 * backend: its own batch call if it has one (with injected faults, the
 * planner drives it instead), and the planner for what that refuses.
 */
int rw_backend_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
		     struct apply_result *res)
{
	int ret;

	if (!a->backend->apply || rw_fault_armed())
		return plan_apply(a, ops, nops, res);
	while ((ret = a->backend->apply(a, ops, nops, res)) == RW_APPLY_PLAN) {
		struct apply_result one = { 0, 0, 0 };

		ret = plan_apply(a, ops + res->done, 1, &one);
		res->remapped += one.remapped;
		res->copied += one.copied;
		res->done += one.done;
		if (ret)
			break;
	}
	return ret;
}

/* Put back the backed bits saved in op->was over [start, start + n). */
static void restore_bits(struct rewire_arena *a, const struct page_op *op, size_t start)
{
	for (size_t i = 0; i < op->npages; i++)
		bits_assign(a->backed, start + i, 1, op->was[i / BITS_PER_WORD] >> (i % BITS_PER_WORD) & 1);
}

/*
 * The backed/hole state an operation changes: moves, and, while a batch is
 * checked, discards, populates and replacing moves, whose earlier state is
 * kept in op->was to be put back.
 */
void rw_apply_state(struct rewire_arena *a, const struct page_op *op, bool undo)
{
	size_t d, s;

	if (op->type == REWIRE_OP_SWAP || op->type == REWIRE_OP_PERMUTE)
		return;
	d = page_index(a, op->dst);
	if (op->type != REWIRE_OP_MOVE) {
		if (undo)
			restore_bits(a, op, d);
		else
			bits_assign(a->backed, d, op->npages, op->type == REWIRE_OP_POPULATE);
		return;
	}
	s = page_index(a, op->src);
	if (op->flags & RW_OP_FROM_SPARE) {
		/* The source was a hole with a spare frame, and is again. */
		bits_assign(a->backed, d, op->npages, !undo);
		bits_assign(a->spare, s, op->npages, undo);
		rw_spare_counted(a, undo ? (long)op->npages : -(long)op->npages);
		return;
	}
	if (undo && op->was)
		restore_bits(a, op, d);
	else
		bits_assign(a->backed, d, op->npages, !undo);
	bits_assign(a->backed, s, op->npages, undo);
}

/* The outcome of a backend call: operations not applied get their state
 * back, and the counters count. The pages are claimed. */
void rw_record(struct rewire_arena *a, const struct page_op *ops, size_t nops,
	       const struct apply_result *res, int ret)
{
	if (ret)
		for (size_t i = nops; i-- > res->done;)
			rw_apply_state(a, &ops[i], true);
	rw_count(a, 1, res->done, res->remapped, res->copied);
}
