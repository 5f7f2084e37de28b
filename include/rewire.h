/* rewire: mlocked anonymous memory arenas whose pages move without copying.
 * The whole public API; see rewire(7) for the concepts and each function's
 * man page for the details. */
#ifndef REWIRE_H
#define REWIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define REWIRE_VERSION_MAJOR 0
#define REWIRE_VERSION_MINOR 1
#define REWIRE_VERSION_PATCH 0

struct rewire_arena;

/* Arena flags (rewire_options.flags). */
#define REWIRE_ONFAULT	(1u << 0)	/* allocations are backed on first touch */
#define REWIRE_UNLOCKED	(1u << 1)	/* nothing mlocked: the lock budget alone
					 * bounds what is backed (rewire(7)) */

/* Options for rewire_arena_create(). Fill with rewire_options_init() first:
 * it sets struct_size, which lets the library grow this struct compatibly. */
struct rewire_options {
	size_t struct_size;	/* sizeof(struct rewire_options) */
	size_t reserve;		/* virtual size in bytes (rounded up to pages) */
	size_t lock_budget;	/* most bytes backed at once; 0: the reserve */
	int numa_node;		/* node to bind to, or -1 for none */
	unsigned int flags;	/* REWIRE_ONFAULT, REWIRE_UNLOCKED */
	const char *backend;	/* NULL: $REWIRE_BACKEND or "auto" */
	size_t page_size;	/* 0 or the base page size; or REWIRE_HUGE_PAGE_SIZE */
};

/* The page size of a huge arena (rewire_options.page_size): one page-middle-
 * directory entry on x86-64 and on arm64 with 4 KiB pages. */
#define REWIRE_HUGE_PAGE_SIZE ((size_t)2 << 20)

/* Allocation flags for rewire_alloc(). */
#define REWIRE_ALLOC_ZERO	(1u << 0)	/* contents read as zero */
#define REWIRE_ALLOC_HOLES	(1u << 1)	/* pages start as holes */

/* Flags for rewire_populate(). */
#define REWIRE_POPULATE_RECYCLE	(1u << 0)	/* contents need not be zero */

/* Page states, as rewire_page_state() reports them. */
#define REWIRE_PAGE_LIVE	(1u << 0)	/* in a run */
#define REWIRE_PAGE_BACKED	(1u << 1)	/* holds data (a free one: cached) */
#define REWIRE_PAGE_HEAD	(1u << 2)	/* the first page of a run */

/* Operations for rewire_batch(). */
enum rewire_op_type {
	REWIRE_OP_MOVE = 1,	/* move len bytes from src to the holes at dst */
	REWIRE_OP_SWAP = 2,	/* exchange len bytes at dst and src */
	REWIRE_OP_PERMUTE = 3,	/* page i of dst goes to page perm[i] of dst */
	REWIRE_OP_DISCARD = 4,	/* the len bytes at dst become holes */
	REWIRE_OP_POPULATE = 5,	/* the holes in len bytes at dst are backed */
	REWIRE_OP_EVICT = 6,	/* as discard, the frames kept for recycling */
};

/* Flags of an operation (rewire_op.flags). */
#define REWIRE_OP_REPLACE	(1u << 0)	/* move: dst may hold data; it is dropped */
#define REWIRE_OP_RECYCLE	(1u << 1)	/* populate: as REWIRE_POPULATE_RECYCLE */

struct rewire_op {
	uint32_t type;		/* enum rewire_op_type */
	uint32_t flags;		/* REWIRE_OP_REPLACE, REWIRE_OP_RECYCLE, or 0 */
	void *dst;		/* move: destination; swap: one side; others: the range */
	void *src;		/* move: source; swap: other side; others: NULL */
	size_t len;		/* bytes, a multiple of the page size */
	const size_t *perm;	/* permute only: len / page size entries */
};

struct rewire_stats {
	size_t reserved;	/* virtual size of the arena */
	size_t lock_budget;	/* most bytes that may be backed */
	size_t allocated;	/* bytes in live runs */
	size_t free;		/* bytes not in live runs */
	size_t backed;		/* bytes the arena holds backed (committed) */
	size_t cached;		/* of the free bytes, those still backed */
	size_t locked;		/* bytes resident and locked now, measured */
	uint64_t batches;	/* backend calls */
	uint64_t ops;		/* page operations applied */
	uint64_t pages_remapped; /* pages moved by changing page tables */
	uint64_t pages_copied;	/* pages moved by copying their data */
	size_t page_size;	/* the arena's page size */
	size_t huge_backed;	/* of backed, bytes mapped as huge pages, measured */
};

const char *rewire_version(void);

void rewire_options_init(struct rewire_options *opts);
int rewire_arena_create(const struct rewire_options *opts,
			struct rewire_arena **arenap);
void rewire_arena_destroy(struct rewire_arena *arena);
const char *rewire_backend_name(const struct rewire_arena *arena);
void *rewire_arena_base(const struct rewire_arena *arena);
int rewire_arena_stats(struct rewire_arena *arena, struct rewire_stats *stats);
int rewire_purge(struct rewire_arena *arena);

void *rewire_alloc(struct rewire_arena *arena, size_t len, unsigned int flags);
void *rewire_zalloc(struct rewire_arena *arena, size_t len);
void *rewire_realloc(struct rewire_arena *arena, void *ptr, size_t len);
int rewire_free(struct rewire_arena *arena, void *ptr);
size_t rewire_usable_size(struct rewire_arena *arena, const void *ptr);
int rewire_resize(struct rewire_arena *arena, void *ptr, size_t len);
int rewire_page_state(struct rewire_arena *arena, const void *addr, size_t len,
		      unsigned char *vec);

int rewire_discard(struct rewire_arena *arena, void *addr, size_t len);
int rewire_evict(struct rewire_arena *arena, void *addr, size_t len);
int rewire_populate(struct rewire_arena *arena, void *addr, size_t len,
		    unsigned int flags);
int rewire_move(struct rewire_arena *arena, void *dst, void *src, size_t len);
int rewire_swap(struct rewire_arena *arena, void *a, void *b, size_t len);
int rewire_permute(struct rewire_arena *arena, void *base, const size_t *perm,
		   size_t npages);
int rewire_batch(struct rewire_arena *arena, const struct rewire_op *ops,
		 size_t nops, size_t *done);

#ifdef __cplusplus
}
#endif

#endif
