/* Page bitmaps: one bit per arena page. Ranges are [start, start + n).
 * Words are read and written atomically: a thread may read the bits of
 * pages it has claimed without the arena's lock while other threads change
 * other bits of the same word under it (doc/threads.md). */
#ifndef REWIRE_BITMAP_H
#define REWIRE_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BITS_PER_WORD 64

/*
 * A claim orders what its holder does after what the last holder did before
 * releasing (acquire and release). valgrind's helgrind does not see that in
 * compare-and-swap, so where its header is at hand (configure looks), say it.
 */
#ifdef HAVE_VALGRIND_HELGRIND_H
#include <valgrind/helgrind.h>
#endif
#ifndef ANNOTATE_HAPPENS_BEFORE
#define ANNOTATE_HAPPENS_BEFORE(obj) ((void)(obj))
#define ANNOTATE_HAPPENS_AFTER(obj) ((void)(obj))
#define ANNOTATE_BENIGN_RACE_SIZED(addr, size, why) ((void)(addr))
#endif

static inline size_t bitmap_words(size_t nbits)
{
	return (nbits + BITS_PER_WORD - 1) / BITS_PER_WORD;
}

/*
 * A map's words may sit stride words apart: the busy map, which threads
 * working on disjoint pages write, keeps each word on a cache line of its
 * own (BUSY_STRIDE in internal.h). The functions named *_s take a stride
 * for each map; the others are for maps of consecutive words.
 */
static inline uint64_t word_at_s(const uint64_t *map, size_t stride, size_t w)
{
	return __atomic_load_n(&map[w * stride], __ATOMIC_ACQUIRE);
}

static inline uint64_t word_at(const uint64_t *map, size_t w)
{
	return word_at_s(map, 1, w);
}

static inline bool bit_test(const uint64_t *map, size_t i)
{
	return word_at(map, i / BITS_PER_WORD) >> (i % BITS_PER_WORD) & 1;
}

/* Mask of the bits of word w that fall in [start, end). */
static inline uint64_t word_mask(size_t w, size_t start, size_t end)
{
	size_t lo = w * BITS_PER_WORD, hi = lo + BITS_PER_WORD;
	uint64_t m = ~(uint64_t)0;

	if (start > lo)
		m &= ~(uint64_t)0 << (start - lo);
	if (end < hi)
		m &= ~(~(uint64_t)0 << (end - lo));
	return m;
}

static inline void bits_assign(uint64_t *map, size_t start, size_t n, bool v)
{
	size_t end = start + n;

	for (size_t w = start / BITS_PER_WORD; n && w <= (end - 1) / BITS_PER_WORD; w++) {
		if (v)
			__atomic_fetch_or(&map[w], word_mask(w, start, end), __ATOMIC_RELEASE);
		else
			__atomic_fetch_and(&map[w], ~word_mask(w, start, end), __ATOMIC_RELEASE);
	}
}

/*
 * Claim [start, start + n): set its bits if none is set (and, where unless
 * is given, none of its bits there either), one word at a time with
 * compare-and-swap, in ascending order. If one is set, the words taken are
 * given back and nothing is claimed. Claims that overlap cannot both
 * succeed; each may fail.
 */
static inline bool bits_claim_unless_s(uint64_t *map, size_t stride, const uint64_t *unless,
				       size_t start, size_t n)
{
	size_t end = start + n, first = start / BITS_PER_WORD;

	for (size_t w = first; n && w <= (end - 1) / BITS_PER_WORD; w++) {
		uint64_t m = word_mask(w, start, end), old = word_at_s(map, stride, w);

		do {
			if (old & m || (unless && word_at(unless, w) & m)) {
				for (size_t u = first; u < w; u++)
					__atomic_fetch_and(&map[u * stride], ~word_mask(u, start, end),
							   __ATOMIC_RELEASE);
				return false;
			}
		} while (!__atomic_compare_exchange_n(&map[w * stride], &old, old | m, true,
						      __ATOMIC_ACQUIRE, __ATOMIC_RELAXED));
	}
	ANNOTATE_HAPPENS_AFTER(map);
	return true;
}

static inline bool bits_claim_unless(uint64_t *map, const uint64_t *unless, size_t start,
				     size_t n)
{
	return bits_claim_unless_s(map, 1, unless, start, n);
}

static inline bool bits_claim(uint64_t *map, size_t start, size_t n)
{
	return bits_claim_unless(map, NULL, start, n);
}

/* Give a claim back; what was done under it is seen by the next claimer. */
static inline void bits_release_s(uint64_t *map, size_t stride, size_t start, size_t n)
{
	size_t end = start + n;

	ANNOTATE_HAPPENS_BEFORE(map);
	for (size_t w = start / BITS_PER_WORD; n && w <= (end - 1) / BITS_PER_WORD; w++)
		__atomic_fetch_and(&map[w * stride], ~word_mask(w, start, end), __ATOMIC_RELEASE);
}

static inline void bits_release(uint64_t *map, size_t start, size_t n)
{
	bits_release_s(map, 1, start, n);
}

static inline void bits_set(uint64_t *map, size_t start, size_t n)
{
	bits_assign(map, start, n, true);
}

static inline void bits_clear(uint64_t *map, size_t start, size_t n)
{
	bits_assign(map, start, n, false);
}

static inline size_t bits_count(const uint64_t *map, size_t start, size_t n)
{
	size_t end = start + n, c = 0;

	for (size_t w = start / BITS_PER_WORD; n && w <= (end - 1) / BITS_PER_WORD; w++)
		c += (size_t)__builtin_popcountll(word_at(map, w) & word_mask(w, start, end));
	return c;
}

/* First index in [start, end) whose bit equals v, or end. */
static inline size_t bits_find_s(const uint64_t *map, size_t stride, size_t start, size_t end,
				 bool v)
{
	for (size_t w = start / BITS_PER_WORD; start < end && w <= (end - 1) / BITS_PER_WORD; w++) {
		uint64_t x = word_at_s(map, stride, w);

		x = (v ? x : ~x) & word_mask(w, start, end);
		if (x)
			return w * BITS_PER_WORD + (size_t)__builtin_ctzll(x);
	}
	return end;
}

static inline size_t bits_find(const uint64_t *map, size_t start, size_t end, bool v)
{
	return bits_find_s(map, 1, start, end, v);
}

/*
 * First index in [start, end) where either map has its bit set (v), or
 * neither has (!v), or end: bits_find over the two maps' union.
 */
static inline size_t bits_find2_s(const uint64_t *a, const uint64_t *b, size_t bstride,
				  size_t start, size_t end, bool v)
{
	for (size_t w = start / BITS_PER_WORD; start < end && w <= (end - 1) / BITS_PER_WORD; w++) {
		uint64_t x = word_at(a, w) | word_at_s(b, bstride, w);

		x = (v ? x : ~x) & word_mask(w, start, end);
		if (x)
			return w * BITS_PER_WORD + (size_t)__builtin_ctzll(x);
	}
	return end;
}

/* First index in [start, end) where a has its bit clear or b has its bit
 * set, or end: where a run ends, with a the live map and b the heads. */
static inline size_t bits_find_end(const uint64_t *a, const uint64_t *b, size_t start,
				   size_t end)
{
	for (size_t w = start / BITS_PER_WORD; start < end && w <= (end - 1) / BITS_PER_WORD; w++) {
		uint64_t x = (~word_at(a, w) | word_at(b, w)) & word_mask(w, start, end);

		if (x)
			return w * BITS_PER_WORD + (size_t)__builtin_ctzll(x);
	}
	return end;
}

/*
 * Last index in [start, end) where any of the three maps has its bit set
 * (v), or none has (!v); SIZE_MAX if there is none: a search from the top.
 */
static inline size_t bits_rfind3_s(const uint64_t *a, const uint64_t *b, size_t bstride,
				   const uint64_t *c, size_t start, size_t end, bool v)
{
	for (size_t w = start < end ? (end - 1) / BITS_PER_WORD + 1 : 0; w-- > start / BITS_PER_WORD;) {
		uint64_t x = word_at(a, w) | word_at_s(b, bstride, w) | word_at(c, w);

		x = (v ? x : ~x) & word_mask(w, start, end);
		if (x)
			return w * BITS_PER_WORD + BITS_PER_WORD - 1 - (size_t)__builtin_clzll(x);
	}
	return SIZE_MAX;
}

static inline bool bits_all(const uint64_t *map, size_t start, size_t n, bool v)
{
	return bits_find(map, start, start + n, !v) == start + n;
}

#endif
