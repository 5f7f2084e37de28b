/* Compaction: a segment of runs loses a random half of them, then the
 * survivors close ranks at its start: by moving pages (rewire_discard, then
 * one rewire_batch of moves) against copying them down with memmove, and
 * against the same moves made one kernel call each, by the mechanism auto
 * uses here, on a mapping like an arena's: what the kernel allows. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "rewire.h"

#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif

/* The kernel call that auto's backend makes for a move, if any. */
enum raw_kind { RAW_NONE, RAW_UFFD, RAW_MREMAP };

struct piece {
	size_t start, n;
	bool alive;
};

/* Cut n pages into runs of 16 to 128 pages; mark a random half dead. */
static size_t cut(struct piece *p, size_t n)
{
	size_t k = 0, at = 0;

	while (at < n) {
		size_t len = 16 + rnd() % 113;

		if (len > n - at)
			len = n - at;
		p[k++] = (struct piece){ at, len, rnd() & 1 };
		at += len;
	}
	return k;
}

static void stamp(char *base, size_t n)
{
	for (size_t i = 0; i < n; i++)
		*(size_t *)(base + i * ps) = i;
}

/* The survivors, in order, must start the segment. */
static bool compacted(const char *base, const struct piece *p, size_t k)
{
	size_t to = 0;

	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; p[i].alive && j < p[i].n; j++, to++)
			if (*(const size_t *)(base + to * ps) != p[i].start + j)
				return false;
	return true;
}

/* Moves that slide each survivor down; a run that moves by less than its
 * length goes in pieces of that distance, each into the holes just left. */
static size_t plan_moves(char *base, const struct piece *p, size_t k, struct rewire_op *ops)
{
	size_t to = 0, nops = 0;

	for (size_t i = 0; i < k; i++) {
		size_t gap, done = 0;

		if (!p[i].alive)
			continue;
		gap = p[i].start - to;
		while (gap && done < p[i].n) {
			size_t len = p[i].n - done < gap ? p[i].n - done : gap;

			ops[nops++] = (struct rewire_op){ REWIRE_OP_MOVE, 0, base + (to + done) * ps,
							  base + (p[i].start + done) * ps, len * ps,
							  NULL };
			done += len;
		}
		to += p[i].n;
	}
	return nops;
}

static double compact_rewire(const char *backend, size_t n, uint64_t seed, bool *ok)
{
	struct piece *p = malloc(n * sizeof(*p));
	struct rewire_op *ops = malloc(n * sizeof(*ops));
	struct rewire_options o;
	struct rewire_arena *a;
	size_t k, nops, done;
	double t = 0;
	char *base;

	rewire_options_init(&o);
	o.reserve = 2 * n * ps;
	o.backend = backend;
	*ok = false;
	if (!p || !ops || rewire_arena_create(&o, &a))
		goto out;
	base = rewire_alloc(a, n * ps, 0);
	if (base) {
		stamp(base, n);
		rnd_seed(seed);
		k = cut(p, n);
		for (size_t i = 0; i < k; i++)
			if (!p[i].alive)
				rewire_discard(a, base + p[i].start * ps, p[i].n * ps);
		t = now_ns();
		nops = plan_moves(base, p, k, ops);
		*ok = !rewire_batch(a, ops, nops, &done);
		t = now_ns() - t;
		*ok = *ok && compacted(base, p, k);
	}
	rewire_arena_destroy(a);
out:
	free(p);
	free(ops);
	return t / n;
}

/*
 * One move as the backend makes it: a UFFDIO_MOVE; or the four calls of a
 * locked move by mremap: the source unlocked (mremap's MREMAP_DONTUNMAP
 * would unlock what it leaves behind without uncounting it from the
 * locked memory), moved, and both sides locked again.
 */
static bool raw_move(enum raw_kind kind, int fd, char *dst, char *src, size_t len)
{
	if (kind == RAW_UFFD)
		return raw_uffd_move(fd, dst, src, len);
	return !munlock(src, len) &&
	       syscall(SYS_mremap, src, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
		       dst) == (long)dst &&
	       !syscall(SYS_mlock2, dst, len, MLOCK_ONFAULT) &&
	       !syscall(SYS_mlock2, src, len, MLOCK_ONFAULT);
}

/* The same compaction by raw kernel calls; 0 where one is refused, and
 * *wrong set where the calls succeeded and the data came out wrong. */
static double compact_raw(enum raw_kind kind, size_t n, uint64_t seed, bool *wrong)
{
	struct piece *p = malloc(n * sizeof(*p));
	struct rewire_op *ops = malloc(n * sizeof(*ops));
	char *base = MAP_FAILED;
	size_t k, nops;
	bool ok = false;
	double t = 0;
	int fd = -1;

	*wrong = false;
	if (!p || !ops)
		goto out;
	if (kind == RAW_UFFD) {
		if (raw_uffd_map(&base, n, &fd)) {
			base = MAP_FAILED;
			fd = -1;
		}
	} else {
		base = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			    0);
		/* (EINVAL without transparent huge pages: nothing to keep out) */
		if (base != MAP_FAILED)
			madvise(base, n * ps, MADV_NOHUGEPAGE);
		if (base != MAP_FAILED && syscall(SYS_mlock2, base, n * ps, MLOCK_ONFAULT)) {
			munmap(base, n * ps);
			base = MAP_FAILED;
		}
	}
	if (base == MAP_FAILED)
		goto out;
	stamp(base, n);
	rnd_seed(seed);
	k = cut(p, n);
	for (size_t i = 0; i < k; i++)
		if (!p[i].alive &&
		    madvise(base + p[i].start * ps, p[i].n * ps, MADV_DONTNEED_LOCKED))
			goto out;
	t = now_ns();
	nops = plan_moves(base, p, k, ops);
	ok = true;
	for (size_t i = 0; ok && i < nops; i++)
		ok = raw_move(kind, fd, ops[i].dst, ops[i].src, ops[i].len);
	t = now_ns() - t;
	*wrong = ok && !compacted(base, p, k);
	ok = ok && !*wrong;
out:
	if (fd >= 0)
		close(fd);
	if (base != MAP_FAILED)
		munmap(base, n * ps);
	free(p);
	free(ops);
	return ok ? t / n : 0;
}

static double compact_memmove(size_t n, uint64_t seed, bool *ok)
{
	struct piece *p = malloc(n * sizeof(*p));
	struct rewire_options o;
	struct rewire_arena *a;
	size_t k, to = 0;
	double t = 0;
	char *base;

	rewire_options_init(&o);
	o.reserve = n * ps;
	o.backend = "copy";
	*ok = false;
	if (!p || rewire_arena_create(&o, &a))
		goto out;
	base = rewire_alloc(a, n * ps, 0);
	if (base) {
		stamp(base, n);
		rnd_seed(seed);
		k = cut(p, n);
		t = now_ns();
		for (size_t i = 0; i < k; i++) {
			if (!p[i].alive)
				continue;
			memmove(base + to * ps, base + p[i].start * ps, p[i].n * ps);
			to += p[i].n;
		}
		t = now_ns() - t;
		*ok = compacted(base, p, k);
	}
	rewire_arena_destroy(a);
out:
	free(p);
	return t / n;
}

/* The backend auto takes for an arena like compact_rewire()'s. */
static enum raw_kind auto_kind(size_t n, const char **name)
{
	struct rewire_options o;
	struct rewire_arena *a;
	enum raw_kind kind = RAW_NONE;

	*name = "none";
	rewire_options_init(&o);
	o.reserve = 2 * n * ps;
	if (rewire_arena_create(&o, &a))
		return RAW_NONE;
	*name = rewire_backend_name(a);
	if (!strcmp(*name, "uffd"))
		kind = RAW_UFFD;
	else if (!strcmp(*name, "mremap"))
		kind = RAW_MREMAP;
	rewire_arena_destroy(a);
	return kind;
}

/* The lanes: memmove, the raw calls, then rewire on each backend. */
enum { MEMMOVE, RAW, AUTO, NLANES = AUTO + 4 };

void bench_compaction(size_t n)
{
	static const char *const backends[] = { "auto", "uffd", "mremap", "copy" };
	static const char *const raw_names[] = { "", "raw UFFDIO_MOVE", "raw mremap calls" };
	double t[NLANES][32], med[NLANES], ratio[32], x;
	bool ok, lane_ok[NLANES];
	const char *auto_name;
	enum raw_kind kind = auto_kind(n, &auto_name);

	printf("\ncompaction: %zu pages in runs of 16 to 128 pages, a random half freed, "
	       "survivors moved to the start; the raw row makes the same moves by the kernel "
	       "calls of auto's backend (%s), without the library\n", n, auto_name);
	printf("  %-22s %12s %12s %s\n", "method", "ns/page", "vs memmove", "");
	for (int l = 0; l < NLANES; l++)
		lane_ok[l] = true;
	/* Round r: every lane on the same cut, so ratios within it are fair. */
	for (int r = 0; r < reps; r++) {
		uint64_t seed = 0xc0c0 + (uint64_t)r;
		bool wrong = false;

		progress("compaction: memmove, run %d of %d", r + 1, reps);
		t[MEMMOVE][r] = compact_memmove(n, seed, &ok);
		lane_ok[MEMMOVE] &= ok;
		for (int b = 0; b < 4; b++) {
			/* The raw calls just before auto (b 0) or just after it,
			 * by turns: what follows memmove finds the caches full of
			 * its data. */
			if (b == r % 2) {
				progress("compaction: raw calls, run %d of %d", r + 1, reps);
				t[RAW][r] = kind != RAW_NONE ? compact_raw(kind, n, seed, &wrong) : 0;
				lane_ok[RAW] &= kind == RAW_NONE || !wrong;
			}
			progress("compaction: rewire on %s, run %d of %d", backends[b], r + 1, reps);
			t[AUTO + b][r] = compact_rewire(backends[b], n, seed, &ok);
			lane_ok[AUTO + b] &= ok || t[AUTO + b][r] == 0;
		}
	}
	progress_done();
	for (int l = 0; l < NLANES; l++) {
		char name[40];
		bool measured = true;

		for (int r = 0; r < reps; r++)
			measured &= t[l][r] > 0;
		med[l] = measured ? median(t[l], reps) : 0;
		if (l == RAW) {
			bench_failed |= !lane_ok[l];
			if (!lane_ok[l])
				printf("  raw kernel calls: WRONG DATA\n");
			else if (med[l])
				printf("  %-22s %12.1f %12.2f\n", raw_names[kind], med[l],
				       med[MEMMOVE] / med[l]);
			else
				printf("  raw kernel calls: not measured here (%s)\n",
				       kind == RAW_NONE ? "auto neither on uffd nor mremap" :
				       "the kernel refused a call");
			continue;
		}
		if (l == MEMMOVE)
			snprintf(name, sizeof(name), "memmove");
		else
			snprintf(name, sizeof(name), "rewire (%s)", backends[l - AUTO]);
		if (!med[l]) {
			printf("  %s: not available here\n", name);
			continue;
		}
		bench_failed |= !lane_ok[l];
		printf("  %-22s %12.1f %12.2f %s\n", name, med[l], med[MEMMOVE] / med[l],
		       lane_ok[l] ? "" : "WRONG DATA");
		record("compaction", name, "ns_per_page", med[l]);
	}
	record("compaction", "raw", "ns_per_page", med[RAW]);
	for (int r = 0; r < reps; r++)
		ratio[r] = t[RAW][r] ? t[AUTO][r] / t[RAW][r] : 0;
	x = med[RAW] && med[AUTO] && lane_ok[AUTO] ? median(ratio, reps) : 0;
	printf("  goals\n");
	figure("memmove time / rewire (auto) time", med[AUTO] ? med[MEMMOVE] / med[AUTO] : 0);
	goal("rewire (auto) / raw kernel calls, same moves", x, "<= 1.1", x && x <= 1.1);
}
