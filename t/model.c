/*
 * Model-based random testing: long random sequences of every public
 * operation (resize in place, populate and the page-state query included), each checked against a simple model of the arena: after every
 * step each page's residency and tag, and the statistics, must agree.
 * REWIRE_SEED replays a sequence; REWIRE_MODEL_OPS sets its length.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../src/fault.h"
#include "testlib.h"

#define P 160			/* pages in the arena */
#define BUDGET 120		/* lock budget in pages */
#define MAXRUNS 64

struct page {
	bool live, backed;
	uint64_t tag;		/* 0: contents not checked */
};

struct run {
	size_t start, n;
};

static struct rewire_arena *arena;
static char *base;
static struct page m[P];
static struct run runs[MAXRUNS];
static size_t nruns;
static uint64_t next_tag = 1, want_ops, want_moved;
static long step;

static char *at(size_t i)
{
	return base + i * page_size;
}

static size_t count_backed(size_t start, size_t n)
{
	size_t c = 0;

	for (size_t i = start; i < start + n; i++)
		c += m[i].backed;
	return c;
}

static size_t nbacked(void)
{
	return count_backed(0, P);
}

static size_t ncached(void)
{
	size_t c = 0;

	for (size_t i = 0; i < P; i++)
		c += !m[i].live && m[i].backed;
	return c;
}

static size_t first_fit(size_t n)
{
	for (size_t i = 0; i + n <= P; i++) {
		size_t j = 0;

		while (j < n && !m[i + j].live)
			j++;
		if (j == n)
			return i;
		i += j;
	}
	return SIZE_MAX;
}

static void purge(void)
{
	for (size_t i = 0; i < P; i++)
		if (!m[i].live)
			m[i].backed = false;
}

/* The library's budget rule for backing the holes of [start, start + n):
 * the cache outside the range may be dropped to make room. */
static bool make_room(size_t start, size_t n)
{
	size_t holes = n - count_backed(start, n), cached_inside = 0;

	for (size_t i = start; i < start + n; i++)
		cached_inside += !m[i].live && m[i].backed;
	if (nbacked() + holes <= BUDGET)
		return true;
	if (nbacked() - (ncached() - cached_inside) + holes > BUDGET)
		return false;
	purge();
	return true;
}

static void tag_new(size_t start, size_t n)
{
	for (size_t i = start; i < start + n; i++) {
		m[i].tag = next_tag++;
		tag_page(at(i), m[i].tag);
	}
}

static void free_pages(size_t start, size_t n)
{
	for (size_t i = start; i < start + n; i++) {
		m[i].live = false;
		m[i].tag = 0;
	}
}

static int fail(const char *fmt, long long want, long long got)
{
	diag("step %ld: %s: wanted %lld, got %lld", step, fmt, want, got);
	return 1;
}

static int do_alloc(void)
{
	size_t n = 1 + rnd_below(rnd_below(4) ? 8 : 40), start = first_fit(n);
	unsigned int flags = (unsigned int)rnd_below(3);	/* 0, ZERO, HOLES */
	bool room = true;
	char *p;

	if (nruns == MAXRUNS)
		return 0;
	if (start != SIZE_MAX && flags != REWIRE_ALLOC_HOLES)
		room = make_room(start, n);
	errno = 0;
	p = rewire_alloc(arena, n * page_size, flags);
	if (start == SIZE_MAX || !room) {
		return p ? fail("alloc should fail", 0, 1) :
		       errno != ENOMEM ? fail("alloc errno", ENOMEM, errno) : 0;
	}
	if (p != at(start))
		return fail("alloc address (page)", (long long)start,
			    p ? (long long)((p - base) / (long)page_size) : -1);
	runs[nruns++] = (struct run){ start, n };
	for (size_t i = start; i < start + n; i++) {
		m[i].live = true;
		m[i].backed = flags != REWIRE_ALLOC_HOLES;
		if (flags == REWIRE_ALLOC_ZERO)
			for (size_t k = 0; k < page_size; k++)
				if (p[(i - start) * page_size + k])
					return fail("zeroed alloc has data at byte", 0, (long long)k);
	}
	if (flags != REWIRE_ALLOC_HOLES)
		tag_new(start, n);
	return 0;
}

static int do_free(void)
{
	size_t r;

	if (!nruns)
		return 0;
	r = rnd_below(nruns);
	if (rewire_free(arena, at(runs[r].start)))
		return fail("free", 0, -1);
	free_pages(runs[r].start, runs[r].n);
	runs[r] = runs[--nruns];
	return 0;
}

static int do_realloc(void)
{
	size_t r, start, n, newn, to;
	struct run *run;
	char *p;

	if (!nruns)
		return 0;
	r = rnd_below(nruns);
	run = &runs[r];
	start = run->start;
	n = run->n;
	newn = 1 + rnd_below(rnd_below(4) ? 2 * n + 4 : 48);
	errno = 0;
	p = rewire_realloc(arena, at(start), newn * page_size);
	if (newn <= n) {
		if (p != at(start))
			return fail("shrinking realloc moved", (long long)start, (long long)(p ? (p - base) / (long)page_size : -1));
		free_pages(start + newn, n - newn);
		run->n = newn;
		return 0;
	}
	to = start;
	{
		size_t j = 0;

		while (start + n + j < P && j < newn - n && !m[start + n + j].live)
			j++;
		if (j < newn - n)
			to = first_fit(newn);
	}
	if (to == SIZE_MAX || !make_room(to + n, newn - n)) {
		if (p)
			return fail("realloc should fail", 0, 1);
		return errno == ENOMEM ? 0 : fail("realloc errno", ENOMEM, errno);
	}
	if (p != at(to))
		return fail("realloc address (page)", (long long)to,
			    p ? (long long)((p - base) / (long)page_size) : -1);
	if (to != start) {
		/* The destination's cached pages are dropped, the pages move
		 * with their states, one operation per stretch of backed pages. */
		for (size_t i = to; i < to + n; i++)
			m[i].backed = false;
		for (size_t i = 0; i < n; i++) {
			if (m[start + i].backed && (i == 0 || !m[to + i - 1].backed))
				want_ops++;
			want_moved += m[start + i].backed;
			m[to + i] = m[start + i];
			m[start + i] = (struct page){ false, false, 0 };
		}
	}
	for (size_t i = to + n; i < to + newn; i++) {
		m[i].live = true;
		m[i].backed = true;
	}
	tag_new(to + n, newn - n);
	run->start = to;
	run->n = newn;
	return 0;
}

static bool all(size_t i, size_t n, bool backed)
{
	for (size_t k = i; k < i + n; k++)
		if (m[k].backed != backed)
			return false;
	return true;
}

static bool all_live(size_t i, size_t n)
{
	for (size_t k = i; k < i + n; k++)
		if (!m[k].live)
			return false;
	return true;
}

static size_t perm_buf[8][P];

/* A random operation over live pages, mostly one that can succeed. */
static void random_op(struct rewire_op *op, int slot)
{
	size_t n = 1 + rnd_below(rnd_below(3) ? 4 : 12), d, s;
	const struct run *r1 = &runs[rnd_below(nruns)], *r2 = &runs[rnd_below(nruns)];

	d = r1->start + rnd_below(r1->n);
	s = r2->start + rnd_below(r2->n);
	if (d + n > P)
		d = P - n;
	if (s + n > P)
		s = P - n;
	memset(op, 0, sizeof(*op));
	op->type = REWIRE_OP_MOVE + (uint32_t)rnd_below(rnd_below(4) ? 3 : 5);
	op->dst = at(d);
	op->len = n * page_size;
	if (op->type == REWIRE_OP_MOVE && !rnd_below(3))
		op->flags = REWIRE_OP_REPLACE;
	if (op->type == REWIRE_OP_POPULATE && rnd_below(2))
		op->flags = REWIRE_OP_RECYCLE;
	if (op->type >= REWIRE_OP_DISCARD)
		return;
	if (op->type == REWIRE_OP_PERMUTE) {
		for (size_t i = 0; i < n; i++)
			perm_buf[slot][i] = i;
		shuffle(perm_buf[slot], n);
		op->perm = perm_buf[slot];
	} else {
		op->src = at(s);
	}
}

/* The model's answer to an operation, applied to m when it succeeds. */
static int model_op(const struct rewire_op *op, uint64_t *moved)
{
	size_t d = (size_t)((char *)op->dst - base) / page_size, n = op->len / page_size;
	size_t s = op->src ? (size_t)((char *)op->src - base) / page_size : 0;
	struct page tmp[P];

	if (!all_live(d, n) || (op->src && !all_live(s, n)))
		return -EFAULT;
	if (op->src && (d < s ? s - d < n : d - s < n))
		return -EINVAL;
	switch (op->type) {
	case REWIRE_OP_DISCARD:
		for (size_t k = d; k < d + n; k++)
			m[k] = (struct page){ true, false, 0 };
		return 0;
	case REWIRE_OP_POPULATE:
		/* Checked here; backed, within the budget, by exec_op(). */
		for (size_t k = d; k < d + n; k++)
			if (!m[k].backed)
				m[k] = (struct page){ true, true, 0 };
		return 0;
	case REWIRE_OP_MOVE:
		if (!(op->flags & REWIRE_OP_REPLACE) && !all(d, n, false))
			return -EEXIST;
		if (!all(s, n, true))
			return -ENOENT;
		for (size_t k = 0; k < n; k++) {
			m[d + k] = m[s + k];
			m[s + k].backed = false;
			m[s + k].tag = 0;
		}
		*moved += n;
		return 0;
	case REWIRE_OP_SWAP:
		if (!all(d, n, true) || !all(s, n, true))
			return -ENOENT;
		for (size_t k = 0; k < n; k++) {
			struct page t = m[d + k];

			m[d + k] = m[s + k];
			m[s + k] = t;
		}
		*moved += 2 * n;
		return 0;
	default:
		if (!all(d, n, true))
			return -ENOENT;
		for (size_t k = 0; k < n; k++) {
			tmp[op->perm[k]] = m[d + k];
			*moved += op->perm[k] != k;
		}
		memcpy(&m[d], tmp, n * sizeof(*tmp));
		return 0;
	}
}

/* Pages the last populate backed with zeroes. */
static bool zeroed[P];

/*
 * Batches lowered to moves (kmod's way, forced on or off on every backend):
 * a batch's discards move their pages to the lowest free holes and its
 * recycling populates take the lowest cached pages, all in one call, which
 * keeps the pages it took claimed until it has run (rewire_batch(3)).
 */
static bool lowering;
static bool claimed[P];

/* The lowest unclaimed stretch of free pages, backed or holes, at most want
 * long; its length. */
static size_t free_stretch(bool backed, size_t want, size_t *at_page)
{
	size_t c = 0, k;

	while (c < P && (m[c].live || m[c].backed != backed || claimed[c]))
		c++;
	for (k = c; k < P && k - c < want && !m[k].live && m[k].backed == backed && !claimed[k];
	     k++)
		;
	*at_page = c;
	return k - c;
}

static size_t count_free(bool backed)
{
	size_t c = 0;

	for (size_t i = 0; i < P; i++)
		c += !m[i].live && m[i].backed == backed && !claimed[i];
	return c;
}

/*
 * A lowered discard (to_holes) or recycling populate of [d, d + n): false,
 * with nothing done, when it is not lowered. Counts its moves.
 */
static bool lower(size_t d, size_t n, bool to_holes, uint64_t *moved, uint64_t *extra_ops)
{
	size_t want = to_holes ? count_backed(d, n) : n - count_backed(d, n);

	if ((to_holes && want != n) || count_free(!to_holes) < want)
		return false;
	for (size_t k = d; k < d + n; k++) {
		size_t end, c, got;

		if (m[k].backed != to_holes)
			continue;
		for (end = k; end < d + n && m[end].backed == to_holes; end++)
			;
		got = free_stretch(!to_holes, end - k, &c);
		for (size_t q = 0; q < got; q++) {
			m[k + q] = (struct page){ true, !to_holes, 0 };
			m[c + q] = (struct page){ false, to_holes, 0 };
			claimed[c + q] = true;
		}
		(*extra_ops)++;
		*moved += got;
		k += got - 1;
	}
	return true;
}

/*
 * A checked operation as the library runs it: a populate may run out of
 * budget (after filling some holes from the cache, counted as moves).
 */
static int exec_op(const struct rewire_op *op, uint64_t *moved, uint64_t *extra_ops,
		   bool batch)
{
	size_t d = (size_t)((char *)op->dst - base) / page_size, n = op->len / page_size;

	if (batch && lowering) {
		bool replace = op->type == REWIRE_OP_MOVE && op->flags & REWIRE_OP_REPLACE;

		if (op->type == REWIRE_OP_DISCARD && lower(d, n, true, moved, extra_ops))
			return 0;
		if (op->type == REWIRE_OP_POPULATE &&
		    (all(d, n, true) ||
		     (op->flags & REWIRE_OP_RECYCLE && lower(d, n, false, moved, extra_ops))))
			return 0;
		if (replace && !all(d, n, false) && !all(d, n, true))
			memset(claimed, 0, sizeof(claimed));
		else if (replace && !all(d, n, false) && !lower(d, n, true, moved, extra_ops))
			memset(claimed, 0, sizeof(claimed));
		if (op->type == REWIRE_OP_DISCARD || op->type == REWIRE_OP_POPULATE)
			memset(claimed, 0, sizeof(claimed));
	}
	if (op->type != REWIRE_OP_POPULATE)
		return model_op(op, moved);
	if (!all_live(d, n))
		return -EFAULT;
	for (size_t k = d; op->flags & REWIRE_OP_RECYCLE && k < d + n; k++) {
		size_t end, c, got;

		if (m[k].backed)
			continue;
		for (end = k; end < d + n && !m[end].backed; end++)
			;
		got = free_stretch(true, end - k, &c);
		if (!got)
			break;
		for (size_t q = 0; q < got; q++) {
			m[k + q] = (struct page){ true, true, 0 };
			m[c + q].backed = false;
		}
		(*extra_ops)++;
		*moved += got;
		k += got - 1;
	}
	if (!make_room(d, n))
		return -ENOMEM;
	memset(zeroed, 0, sizeof(zeroed));
	for (size_t k = d; k < d + n; k++)
		zeroed[k] = !m[k].backed;
	return model_op(op, moved);
}

static int do_ops(size_t nops)
{
	struct rewire_op ops[8];
	struct page saved[P];
	uint64_t moved = 0, extra_ops = 0;
	size_t done = 99, ndone = 0;
	int want = 0, got;

	if (!nruns)
		return 0;
	memcpy(saved, m, sizeof(m));
	/* Every operation is checked first, against the states the ones
	 * before it leave; then they run, and only a populate may fail. */
	for (size_t i = 0; i < nops; i++) {
		random_op(&ops[i], (int)i);
		if (!want)
			want = model_op(&ops[i], &moved);
	}
	memcpy(m, saved, sizeof(m));
	moved = 0;
	for (size_t i = 0; !want && i < nops; i++, ndone++)
		want = exec_op(&ops[i], &moved, &extra_ops, true);
	memset(claimed, 0, sizeof(claimed));
	if (nops == 1 && !ops[0].flags && ops[0].type <= REWIRE_OP_PERMUTE) {
		const struct rewire_op *op = &ops[0];

		got = op->type == REWIRE_OP_MOVE ? rewire_move(arena, op->dst, op->src, op->len) :
		      op->type == REWIRE_OP_SWAP ? rewire_swap(arena, op->dst, op->src, op->len) :
		      rewire_permute(arena, op->dst, op->perm, op->len / page_size);
		done = got ? 0 : 1;
	} else {
		got = rewire_batch(arena, ops, nops, &done);
	}
	if (getenv("MODEL_TRACE"))
		for (size_t i = 0; i < nops; i++)
			diag("  op %u dst %td src %td n %zu -> %d (want %d)", ops[i].type,
			     ((char *)ops[i].dst - base) / (long)page_size,
			     ops[i].src ? ((char *)ops[i].src - base) / (long)page_size : -1,
			     ops[i].len / page_size, got, want);
	/* A check failed: nothing ran. Out of budget: what ran stays. */
	if (want && want != -ENOMEM) {
		memcpy(m, saved, sizeof(m));
		ndone = 0;
	} else {
		if (want)
			ndone--;
		want_ops += ndone + extra_ops;
		want_moved += moved;
	}
	if (got != want)
		return fail("operation result", want, got);
	if (done != ndone)
		return fail("operations done", (long long)ndone, (long long)done);
	return 0;
}

/* A range of 1 to most pages from a random page of a random run (there is
 * one), ending at the arena's end at the latest. */
static void random_range(size_t most, size_t *i, size_t *n)
{
	const struct run *r = &runs[rnd_below(nruns)];

	*i = r->start + rnd_below(r->n);
	*n = 1 + rnd_below(most);
	if (*i + *n > P)
		*n = P - *i;
}

static int do_discard(void)
{
	size_t i, n;
	int want = 0, got;

	if (!nruns)
		return 0;
	random_range(6, &i, &n);
	if (!all_live(i, n))
		want = -EFAULT;
	got = rewire_discard(arena, at(i), n * page_size);
	if (got != want)
		return fail("discard result", want, got);
	for (size_t k = i; !want && k < i + n; k++) {
		m[k].backed = false;
		m[k].tag = 0;
	}
	return 0;
}

/* Grow or shrink a run in place, or fail; it never moves. */
static int do_resize(void)
{
	size_t r, start, n, newn, j = 0;
	struct run *run;
	int want = 0, got;

	if (!nruns)
		return 0;
	r = rnd_below(nruns);
	run = &runs[r];
	start = run->start;
	n = run->n;
	newn = 1 + rnd_below(rnd_below(8) ? 2 * n + 4 : 2 * P);
	while (newn > n && start + n + j < P && j < newn - n && !m[start + n + j].live)
		j++;
	if (newn > P || (newn > n && j < newn - n))
		want = -ENOSPC;
	else if (newn > n && !make_room(start + n, newn - n))
		want = -ENOMEM;
	got = rewire_resize(arena, at(start), newn * page_size);
	if (got != want)
		return fail("resize result", want, got);
	if (want)
		return 0;
	if (newn < n)
		free_pages(start + newn, n - newn);
	for (size_t i = start + n; i < start + newn; i++)
		m[i] = (struct page){ true, true, 0 };
	if (newn > n)
		tag_new(start + n, newn - n);
	run->n = newn;
	return 0;
}

/* Back the holes of live pages: zeroed, or first from the cache. */
static int do_populate(void)
{
	struct rewire_op op = { REWIRE_OP_POPULATE, 0, NULL, NULL, 0, NULL };
	uint64_t moved = 0, moves = 0;
	size_t i, n;
	int want, got;

	if (!nruns)
		return 0;
	random_range(8, &i, &n);
	op.flags = rnd_below(2) ? REWIRE_OP_RECYCLE : 0;
	op.dst = at(i);
	op.len = n * page_size;
	want = exec_op(&op, &moved, &moves, false);
	got = rewire_populate(arena, at(i), n * page_size,
			      op.flags ? REWIRE_POPULATE_RECYCLE : 0);
	if (got != want)
		return fail(op.flags ? "populate (recycling) result" : "populate result", want, got);
	/* Moves from the cache count, also when the budget then fell short. */
	want_ops += moves;
	want_moved += moved;
	for (size_t k = i; !want && k < i + n; k++)
		for (size_t b = 0; zeroed[k] && b < page_size; b++)
			if (at(k)[b])
				return fail("populated hole has data at byte", 0, (long long)b);
	return 0;
}

/* rewire_page_state() over the whole arena against the model. */
static int check_states(void)
{
	unsigned char vec[P];
	bool head[P] = { false };

	for (size_t r = 0; r < nruns; r++)
		head[runs[r].start] = true;
	if (rewire_page_state(arena, base, P * page_size, vec))
		return fail("page_state", 0, -1);
	for (size_t i = 0; i < P; i++) {
		unsigned char want = (m[i].live ? REWIRE_PAGE_LIVE : 0) |
				     (m[i].backed ? REWIRE_PAGE_BACKED : 0) |
				     (head[i] ? REWIRE_PAGE_HEAD : 0);

		if (vec[i] != want)
			return fail("page state (page index in wanted)", (long long)i, vec[i]);
	}
	return 0;
}

static int check_all(bool full)
{
	struct rewire_stats st;
	size_t live = 0;

	for (size_t i = 0; i < P; i++) {
		int resident = page_residency(at(i));

		live += m[i].live;
		if (resident != m[i].backed)
			return fail("page resident (page index in wanted)", (long long)i, resident);
		if (m[i].live && m[i].backed && m[i].tag) {
			bool good = full ? page_has_tag(at(i), m[i].tag) :
				    !memcmp(at(i), &(uint64_t){ m[i].tag * 0x9e3779b97f4a7c15ull }, 8);

			if (!good)
				return fail("page tag (page index in wanted)", (long long)i, -1);
		}
	}
	if (check_states())
		return 1;
	if (rewire_arena_stats(arena, &st))
		return fail("stats", 0, -1);
	if (st.allocated != live * page_size)
		return fail("stats.allocated", (long long)(live * page_size), (long long)st.allocated);
	if (st.backed != nbacked() * page_size || st.locked != st.backed)
		return fail("stats.backed", (long long)(nbacked() * page_size), (long long)st.backed);
	if (st.cached != ncached() * page_size)
		return fail("stats.cached", (long long)(ncached() * page_size), (long long)st.cached);
	if (st.page_size != page_size || st.huge_backed > st.backed || st.huge_backed % page_size)
		return fail("stats.huge_backed (or page_size)", (long long)st.backed,
			    (long long)st.huge_backed);
	if (st.ops != want_ops)
		return fail("stats.ops", (long long)want_ops, (long long)st.ops);
	if (st.pages_copied + st.pages_remapped != want_moved)
		return fail("stats pages moved", (long long)want_moved,
			    (long long)(st.pages_copied + st.pages_remapped));
	return 0;
}

/* One random sequence on backend, its batches lowered to moves (as kmod
 * does) or not; returns the number of mismatches. */
static int run_model(const char *backend, long steps, bool lowered)
{
	struct rewire_options o;
	long counts[9] = { 0 };
	bool trace = getenv("MODEL_TRACE") != NULL;
	int errors = 0, ret;

	test_options_init(&o);
	o.reserve = P * page_size;
	o.lock_budget = BUDGET * page_size;
	o.backend = backend;
	ret = rewire_arena_create(&o, &arena);
	if (ret == -EOPNOTSUPP && strcmp(backend, "copy") && strcmp(backend, "auto")) {
		ok(1, "# SKIP backend %s is not available here", backend);
		ok(1, "# SKIP backend %s is not available here", backend);
		return 0;
	}
	if (ret) {
		ok(0, "arena on %s: %s", backend, strerror(-ret));
		ok(0, "no steps ran");
		return 1;
	}
	memset(m, 0, sizeof(m));
	nruns = 0;
	want_ops = want_moved = 0;
	/* Both ways on every backend: kmod lowers its batches, the others not. */
	rw_test_lower_batches(arena, lowered);
	lowering = lowered;
	base = rewire_alloc(arena, page_size, 0);
	if (base != NULL)
		rewire_free(arena, base);
	rewire_purge(arena);
	for (step = 0; step < steps && !errors; step++) {
		int what = (int)rnd_below(100);

		if (what < 15)
			errors += do_alloc(), counts[0]++;
		else if (what < 25)
			errors += do_free(), counts[1]++;
		else if (what < 35)
			errors += do_realloc(), counts[2]++;
		else if (what < 38)
			errors += do_resize(), counts[7]++;
		else if (what < 41)
			errors += do_populate(), counts[8]++;
		else if (what < 85)
			errors += do_ops(1), counts[3]++;
		else if (what < 93)
			errors += do_ops(2 + rnd_below(5)), counts[4]++;
		else if (what < 97)
			errors += do_discard(), counts[6]++;
		else
			errors += rewire_purge(arena) != 0, purge(), counts[5]++;
		if (trace)
			diag("step %ld: operation %d, %llu ops so far", step, what,
			     (unsigned long long)want_ops);
		if (!errors)
			errors += check_all(step % 64 == 0);
	}
	if (!errors)
		errors += check_all(true);
	diag("%s (as %s): %ld alloc, %ld free, %ld realloc, %ld resize, %ld single ops, "
	     "%ld batches, %ld purges, %ld discards, %ld populate", rewire_backend_name(arena),
	     backend, counts[0], counts[1], counts[2], counts[7], counts[3], counts[4], counts[5],
	     counts[6], counts[8]);
	ok(!errors, "%ld random steps on %s%s match the model", step, backend,
	   lowered ? ", batches lowered" : "");
	ok(step == steps, "%s%s: all %ld steps ran", backend, lowered ? ", batches lowered" : "",
	   steps);
	rewire_arena_destroy(arena);
	return errors;
}

int main(void)
{
	static const char *const all[] = { "copy", "kmod", "uffd", "mremap", "auto" };
	const char *env = getenv("REWIRE_MODEL_OPS"), *one = getenv("REWIRE_BACKEND");
	long steps;

	test_init();
	/* Huge pages cost 512 times the copying and zeroing. */
	steps = env ? atol(env) : huge_pages ? 1500 : 10000;
	test_seed();
	/* Every backend, unless one is asked for. */
	if (one) {
		plan(4);
		run_model(one, steps, false);
		run_model(one, steps, true);
	} else {
		plan(20);
		for (int i = 0; i < 5; i++) {
			run_model(all[i], steps, false);
			run_model(all[i], steps, true);
		}
	}
	return done_testing();
}
