/* Several threads allocate, move, swap, permute, grow and free in one arena,
 * each on its own pages, each checked against its own model. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

#define THREADS 4
#define NP 32			/* backed pages per thread, followed by NP holes */
#define ROUNDS 3000

static struct rewire_arena *arena;

struct worker {
	int id;
	uint64_t rng;
	int errors;
	int done;
};

static uint64_t next(struct worker *w)
{
	return rnd_next(&w->rng);
}

/* Index of a random page of m[0, 2 * NP) that is (or is not) a hole. */
static size_t pick(struct worker *w, const uint64_t *m, bool hole)
{
	size_t i = next(w) % (2 * NP);

	while ((m[i] == HOLE) != hole)
		i = (i + 1) % (2 * NP);
	return i;
}

static int one_round(struct worker *w, char *base, uint64_t *m, char **extra)
{
	size_t a, b, perm[8];
	uint64_t t;

	switch (next(w) % 5) {
	case 0:
		a = pick(w, m, true);
		b = pick(w, m, false);
		m[a] = m[b];
		m[b] = HOLE;
		return rewire_move(arena, base + a * page_size, base + b * page_size, page_size);
	case 1:
		a = pick(w, m, false);
		do
			b = pick(w, m, false);
		while (b == a);
		t = m[a];
		m[a] = m[b];
		m[b] = t;
		return rewire_swap(arena, base + a * page_size, base + b * page_size, page_size);
	case 2: {
		/* Gather 8 pages at the start, then permute them. */
		uint64_t tmp[8];
		int ret;

		for (size_t i = 0; i < 8; i++) {
			if (m[i] != HOLE)
				continue;
			b = pick(w, m, false);
			while (b < 8)
				b = pick(w, m, false);
			m[i] = m[b];
			m[b] = HOLE;
			ret = rewire_move(arena, base + i * page_size, base + b * page_size, page_size);
			if (ret)
				return ret;
		}
		for (size_t i = 0; i < 8; i++)
			perm[i] = i;
		for (size_t i = 8; i > 1; i--) {
			size_t j = next(w) % i, x = perm[i - 1];

			perm[i - 1] = perm[j];
			perm[j] = x;
		}
		for (size_t i = 0; i < 8; i++)
			tmp[perm[i]] = m[i];
		memcpy(m, tmp, sizeof(tmp));
		return rewire_permute(arena, base, perm, 8);
	}
	case 3: {
		/* A private run that grows and shrinks. */
		size_t n = 1 + next(w) % 16;
		char *p = rewire_realloc(arena, *extra, n * page_size);

		if (!p) {
			diag("realloc: %s", strerror(errno));
			return -1;
		}
		tag_page(p, (uint64_t)w->id << 32 | n);
		*extra = p;
		return page_has_tag(p, (uint64_t)w->id << 32 | n) ? 0 : -1;
	}
	default:
		if (*extra && rewire_free(arena, *extra))
			return -1;
		*extra = NULL;
		return 0;
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t m[2 * NP];
	char *base = rewire_alloc(arena, 2 * NP * page_size, REWIRE_ALLOC_HOLES);
	char *fill = rewire_alloc(arena, NP * page_size, 0), *extra = NULL;

	/* The region: NP backed pages moved into a run of 2 * NP holes. */
	if (!base || !fill) {
		w->errors++;
		return NULL;
	}
	for (size_t i = 0; i < NP; i++)
		tag_page(fill + i * page_size, (uint64_t)w->id << 32 | (i + 1));
	if (rewire_move(arena, base, fill, NP * page_size) || rewire_free(arena, fill)) {
		w->errors++;
		return NULL;
	}
	for (size_t i = 0; i < 2 * NP; i++)
		m[i] = i < NP ? (uint64_t)w->id << 32 | (i + 1) : HOLE;
	for (int r = 0; r < ROUNDS && !w->errors; r++) {
		int ret = one_round(w, base, m, &extra);
		if (ret) {
			diag("thread %d: operation failed in round %d: %d", w->id, r, ret);
			w->errors++;
		}
		if (r % 500 == 499 && !check_pages(base, m, 2 * NP)) {
			diag("thread %d: pages wrong after round %d", w->id, r);
			w->errors++;
		}
		w->done = r + 1;
	}
	if (!check_pages(base, m, 2 * NP))
		w->errors++;
	return NULL;
}

int main(void)
{
	struct worker w[THREADS];
	pthread_t tid[THREADS];
	struct rewire_stats st;
	uint64_t seed;

	arena = test_arena(THREADS * (2 * NP + 16) * 2, 0, 0);
	seed = test_seed();
	plan(THREADS + 1);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ i + 1, seed * 2654435761u + (uint64_t)i + 1, 0, 0 };
		if (pthread_create(&tid[i], NULL, work, &w[i]))
			bail("pthread_create");
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(tid[i], NULL);
		ok(!w[i].errors, "thread %d: %d rounds, every page where its model says", i + 1,
		   w[i].done);
	}
	ok(!rewire_arena_stats(arena, &st) && st.ops > THREADS * ROUNDS / 2,
	   "the arena counted the operations of all threads");
	rewire_arena_destroy(arena);
	return done_testing();
}
