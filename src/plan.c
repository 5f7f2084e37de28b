/* How a batch is applied: adjacent moves coalesce into runs, each operation
 * is done by remapping page-table entries or by copying, whichever the
 * arena's cost model says is cheaper, and every operation is all-or-nothing. */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define EAGAIN_RETRIES 100

/* Move n pages into the holes at dst by copying: back dst first, so running
 * out of memory is an error rather than a fault halfway. */
static int copy_move(struct rewire_arena *a, char *dst, char *src, size_t n)
{
	size_t d = page_index(a, dst);
	int ret = pages_populate(a, d, n);

	if (ret) {
		pages_discard(a, d, n);
		return ret;
	}
	memcpy(dst, src, n << a->page_shift);
	pages_discard(a, page_index(a, src), n);
	return 0;
}

static void copy_swap(struct rewire_arena *a, char *x, char *y, size_t n)
{
	for (size_t i = 0; i < n << a->page_shift; i += a->page_size) {
		memcpy(a->scratch, x + i, a->page_size);
		memcpy(x + i, y + i, a->page_size);
		memcpy(y + i, a->scratch, a->page_size);
	}
}

/* Walk each cycle backwards: position p receives the page that goes to p,
 * so every page is copied once plus one scratch copy per cycle. */
static int copy_permute(struct rewire_arena *a, char *base, const size_t *perm,
			size_t n, uint64_t *moved)
{
	size_t *from = malloc(n * sizeof(*from)), ps = a->page_size;

	if (!from)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		from[perm[i]] = i;
	for (size_t start = 0; start < n; start++) {
		size_t pos = start;

		if (from[start] == start || from[start] == SIZE_MAX)
			continue;
		memcpy(a->scratch, base + start * ps, ps);
		while (from[pos] != start) {
			size_t src = from[pos];

			memcpy(base + pos * ps, base + src * ps, ps);
			from[pos] = SIZE_MAX;
			pos = src;
			++*moved;
		}
		memcpy(base + pos * ps, a->scratch, ps);
		from[pos] = SIZE_MAX;
		++*moved;
	}
	free(from);
	return 0;
}

/*
 * Remap n pages from src to the holes at dst, resuming short moves and
 * copying the pages the backend refuses (pinned, shared). *moved says how
 * far it got, also on error.
 */
static int move_run(struct rewire_arena *a, char *dst, char *src, size_t n,
		    struct apply_result *res, size_t *moved)
{
	size_t off = 0, ps = a->page_size;
	int retries = 0, ret = 0;
	bool cleared = false;

	while (off < n) {
		size_t m = 0;

		ret = a->backend->remap(a, dst + off * ps, src + off * ps, n - off, &m);
		off += m;
		res->remapped += m;
		if (!ret || off == n)
			continue;
		if (ret == -EAGAIN && ++retries < EAGAIN_RETRIES)
			continue;
		if (ret == -EEXIST && !cleared) {
			/* The program touched a hole: its data is void. */
			pages_discard(a, page_index(a, dst + off * ps), n - off);
			cleared = true;
			continue;
		}
		ret = copy_move(a, dst + off * ps, src + off * ps, 1);
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

/* Run the steps in order; if one fails, move back what has moved. */
static int run_steps(struct rewire_arena *a, const struct step *s, size_t nsteps,
		     struct apply_result *res)
{
	size_t i, moved = 0, back;
	int ret = 0;

	for (i = 0; i < nsteps; i++) {
		ret = move_run(a, s[i].dst, s[i].src, s[i].n, res, &moved);
		if (ret)
			break;
	}
	if (!ret)
		return 0;
	move_run(a, s[i].src, s[i].dst, moved, res, &back);
	while (i-- > 0)
		move_run(a, s[i].src, s[i].dst, s[i].n, res, &back);
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

/* Free holes of n pages to stage pages in, or NULL. */
static char *staging_area(struct rewire_arena *a, size_t n)
{
	size_t start = find_free(a, n);

	if (start == a->npages)
		return NULL;
	make_holes(a, start, n);
	return page_addr(a, start);
}

static bool remap_is_cheaper(const struct rewire_arena *a, double remap_ns, double copy_ns)
{
	if (!a->backend->remap)
		return false;
	return !a->plan || remap_ns < copy_ns;
}

static int do_move(struct rewire_arena *a, const struct page_op *op,
		   struct apply_result *res)
{
	const struct costs *c = &a->costs;
	struct step s = { op->dst, op->src, op->npages };
	struct apply_result before = *res;
	int ret;

	if (remap_is_cheaper(a, c->remap_call + op->npages * c->remap_per_page,
			     c->copy_call + op->npages * c->copy_per_page))
		return counted(res, &before, run_steps(a, &s, 1, res), op->npages);
	ret = copy_move(a, op->dst, op->src, op->npages);
	if (!ret)
		res->copied += op->npages;
	return ret;
}

/* Swap through staging holes: x to the stage, y to x, the stage to y. */
static int do_swap(struct rewire_arena *a, const struct page_op *op,
		   struct apply_result *res)
{
	const struct costs *c = &a->costs;
	size_t n = op->npages;
	struct apply_result before = *res;
	char *stage;

	if (remap_is_cheaper(a, 3 * (c->remap_call + n * c->remap_per_page),
			     3 * n * c->copy_page) &&
	    (stage = staging_area(a, n))) {
		struct step s[3] = { { stage, op->dst, n }, { op->dst, op->src, n },
				     { op->src, stage, n } };

		return counted(res, &before, run_steps(a, s, 3, res), 2 * n);
	}
	copy_swap(a, op->dst, op->src, n);
	res->copied += 2 * n;
	return 0;
}

/*
 * Permute through staging holes: every run of pages that stay adjacent
 * moves to its place in the stage in one step, then the whole stage moves
 * back in one contiguous step.
 */
static int do_permute(struct rewire_arena *a, const struct page_op *op,
		      struct apply_result *res)
{
	const struct costs *c = &a->costs;
	size_t n = op->npages, runs = 1, k = 0, ps = a->page_size;
	const size_t *perm = op->perm;
	struct apply_result before = *res;
	struct step *s;
	uint64_t moved;
	char *stage;
	int ret;

	for (size_t i = 1; i < n; i++)
		runs += perm[i] != perm[i - 1] + 1;
	if (runs == 1 && perm[0] == 0)
		return 0;
	if (!remap_is_cheaper(a, (double)(runs + 1) * c->remap_call + 2.0 * n * c->remap_per_page,
			      n * c->copy_page) ||
	    !(s = malloc((runs + 1) * sizeof(*s))))
		return copy_permute(a, op->dst, perm, n, &res->copied);
	stage = staging_area(a, n);
	if (!stage) {
		free(s);
		return copy_permute(a, op->dst, perm, n, &res->copied);
	}
	for (size_t i = 0; i < n; i++) {
		if (i && perm[i] == perm[i - 1] + 1) {
			s[k - 1].n++;
			continue;
		}
		s[k++] = (struct step){ stage + perm[i] * ps, op->dst + i * ps, 1 };
	}
	s[k++] = (struct step){ op->dst, stage, n };
	moved = 0;
	for (size_t i = 0; i < n; i++)
		moved += perm[i] != i;
	ret = counted(res, &before, run_steps(a, s, k, res), moved);
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

int plan_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
	       struct apply_result *res)
{
	struct page_op run;
	int ret = 0;

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
		}
		if (!ret)
			res->done += n;
	}
	return ret;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static struct costs measured_copy;
static pthread_once_t copy_once = PTHREAD_ONCE_INIT;

/* Nanoseconds per call of moving n pages back and forth between two areas. */
static double time_copy_move(char *x, char *y, size_t n, size_t ps, int reps)
{
	double t = now_ns();

	for (int r = 0; r < reps; r++) {
		char *dst = r & 1 ? x : y, *src = r & 1 ? y : x;

		madvise(dst, n * ps, MADV_POPULATE_WRITE);
		memcpy(dst, src, n * ps);
		madvise(src, n * ps, MADV_DONTNEED);
	}
	return (now_ns() - t) / reps;
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
	t = now_ns();
	for (int r = 0; r < 8; r++)
		memcpy(p + (r & 1 ? 0 : n) * ps, p + (r & 1 ? n : 0) * ps, n * ps);
	measured_copy.copy_page = (now_ns() - t) / (8.0 * n);
	madvise(p + n * ps, n * ps, MADV_DONTNEED);
	one = time_copy_move(p, p + n * ps, 1, ps, 64);
	many = time_copy_move(p, p + n * ps, n, ps, 8);
	measured_copy.copy_per_page = many > one ? (many - one) / (n - 1) : many / n;
	measured_copy.copy_call = one > measured_copy.copy_per_page ?
				  one - measured_copy.copy_per_page : 0;
	munmap(p, 2 * n * ps);
}

void copy_costs(struct costs *c)
{
	pthread_once(&copy_once, measure_copy);
	*c = measured_copy;
}
