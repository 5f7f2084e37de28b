/* What the files of src/ share: the arena, the internal page operation and
 * the backend interface. Nothing here is part of the public API. */
#ifndef REWIRE_INTERNAL_H
#define REWIRE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rewire.h"

/* A validated page operation; addresses are page aligned and inside the arena. */
struct page_op {
	enum rewire_op_type type;
	char *dst;
	char *src;		/* NULL for permutations */
	size_t npages;
	const size_t *perm;	/* REWIRE_OP_PERMUTE only */
};

/* What a backend reports back from one call. */
struct apply_result {
	size_t done;		/* operations fully applied */
	uint64_t remapped;	/* pages moved by page-table change */
	uint64_t copied;	/* pages moved by copying */
};

/*
 * One mechanism that moves pages. apply() receives a whole batch and must
 * leave ops[0, done) fully applied and every later operation not applied at
 * all, whatever happens; that is the invariant of rewire(7).
 */
struct backend {
	const char *name;
	int (*init)(struct rewire_arena *a);	/* -EOPNOTSUPP when unusable here */
	void (*fini)(struct rewire_arena *a);
	int (*apply)(struct rewire_arena *a, const struct page_op *ops,
		     size_t nops, struct apply_result *res);
};

extern const struct backend backend_copy;

struct rewire_arena {
	pthread_mutex_t lock;
	char *base;
	size_t npages;
	size_t page_size;
	unsigned int page_shift;
	size_t budget_pages;
	unsigned int flags;
	unsigned long fork_gen;	/* fork_generation when created */

	/* One bit per page. */
	uint64_t *live;		/* in a live run */
	uint64_t *head;		/* first page of a live run */
	uint64_t *backed;	/* holds data (committed against the budget) */
	size_t nlive;
	size_t nbacked;
	size_t first_free;	/* no free page below this index */

	char *scratch;		/* one mlocked page for copying */
	const struct backend *backend;
	void *backend_data;

	uint64_t batches, ops, pages_remapped, pages_copied;
};

extern unsigned long fork_generation;

static inline bool arena_forked(const struct rewire_arena *a)
{
	return a->fork_gen != __atomic_load_n(&fork_generation, __ATOMIC_RELAXED);
}

static inline size_t page_index(const struct rewire_arena *a, const void *p)
{
	return (size_t)((const char *)p - a->base) >> a->page_shift;
}

static inline char *page_addr(const struct rewire_arena *a, size_t i)
{
	return a->base + (i << a->page_shift);
}

/* arena.c */
int pages_populate(struct rewire_arena *a, size_t start, size_t n);
int pages_discard(struct rewire_arena *a, size_t start, size_t n);
void discard_hole_pages(struct rewire_arena *a, size_t start, size_t n);
int make_room(struct rewire_arena *a, size_t start, size_t n);

/* ops.c */
int ops_apply(struct rewire_arena *a, const struct page_op *ops, size_t nops,
	      size_t *done);

#endif
