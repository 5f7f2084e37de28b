/* Library overhead: what rewire adds to the kernel calls it makes. A
 * rewire_batch of 1, 16 and 64 scattered single-page moves on the uffd
 * backend against as many raw UFFDIO_MOVE ioctls moving the same pages of
 * a mapping made like an arena's (private, anonymous, mlocked on fault, no
 * huge pages, registered with a userfaultfd), taking turns round by round. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "rewire.h"

/* Debian 12's uapi headers predate UFFDIO_MOVE (6.8). */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst, src, len, mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif
#define MOVE_DONTWAKE 1ULL

enum { PAGES = 4096, ROUNDS = 64 };

static const size_t batch_sizes[] = { 1, 16, 64 };
#define NSIZES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

/* The raw side: a mapping like an arena's, and its userfaultfd. */
int raw_uffd_map(char **p, size_t npages, int *fd)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_WP };

	*p = mmap(NULL, npages * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (*p == MAP_FAILED)
		return -1;
	madvise(*p, npages * ps, MADV_NOHUGEPAGE);
	if (syscall(SYS_mlock2, *p, npages * ps, 1 /* MLOCK_ONFAULT */))
		goto fail;
	*fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | 1 /* user mode only */);
	if (*fd < 0)
		goto fail;
	reg.range.start = (uintptr_t)*p;
	reg.range.len = npages * ps;
	if (ioctl(*fd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE) ||
	    ioctl(*fd, UFFDIO_REGISTER, &reg)) {
		close(*fd);
		*fd = -1;
		goto fail;
	}
	return 0;
fail:
	munmap(*p, npages * ps);
	return -1;
}

/* UFFDIO_MOVE of len bytes, as the library makes it (no wake-up), the
 * rest again where the kernel moved part and asks to try again; false if
 * it refused. */
bool raw_uffd_move(int fd, char *dst, char *src, size_t len)
{
	for (int tries = 0; tries < 100; tries++) {
		struct uffdio_move m = { .dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len,
					 .mode = MOVE_DONTWAKE };

		if (!ioctl(fd, UFFDIO_MOVE, &m))
			return true;
		if (errno != EAGAIN)
			return false;
		if (m.move > 0) {
			dst += m.move;
			src += m.move;
			len -= (size_t)m.move;
		}
	}
	return false;
}

/*
 * Which pages move: k pairs, a backed page and a hole far from it, each
 * pair its own, scattered over the mapping; the same pairs on both sides.
 */
static void pick_pairs(size_t *from, size_t *to, size_t k)
{
	size_t idx[PAGES];

	for (size_t i = 0; i < PAGES; i++)
		idx[i] = i;
	shuffle(idx, PAGES);
	for (size_t i = 0; i < k; i++) {
		from[i] = idx[2 * i];
		to[i] = idx[2 * i + 1];
	}
}

/* ns per page moved: k pages one way, then back, by rewire_batch. */
static double rewire_round(struct rewire_arena *a, char *base, const size_t *from,
			   const size_t *to, size_t k)
{
	struct rewire_op ops[2][64];
	double t;

	for (size_t i = 0; i < k; i++) {
		ops[0][i] = (struct rewire_op){ REWIRE_OP_MOVE, 0, base + to[i] * ps,
						base + from[i] * ps, ps, NULL };
		ops[1][i] = (struct rewire_op){ REWIRE_OP_MOVE, 0, base + from[i] * ps,
						base + to[i] * ps, ps, NULL };
	}
	t = now_ns();
	if (rewire_batch(a, ops[0], k, NULL) || rewire_batch(a, ops[1], k, NULL))
		bench_failed = true;
	return (now_ns() - t) / (2.0 * k);
}

/* The same pages by UFFDIO_MOVE, one ioctl a page as the library makes. */
static double raw_round(int fd, char *base, const size_t *from, const size_t *to, size_t k)
{
	double t = now_ns();

	for (int way = 0; way < 2; way++) {
		for (size_t i = 0; i < k; i++) {
			struct uffdio_move m = {
				.dst = (uintptr_t)(base + (way ? from[i] : to[i]) * ps),
				.src = (uintptr_t)(base + (way ? to[i] : from[i]) * ps),
				.len = ps, .mode = MOVE_DONTWAKE,
			};

			if (ioctl(fd, UFFDIO_MOVE, &m))
				bench_failed = true;
		}
	}
	return (now_ns() - t) / (2.0 * k);
}

void bench_overhead(void)
{
	struct rewire_options o;
	struct rewire_arena *a;
	size_t from[64], to[64];
	char *base, *raw;
	int fd;

	printf("\nlibrary overhead: rewire_batch of scattered single-page moves on uffd against as\n"
	       "many raw UFFDIO_MOVE ioctls on the same pages of a mapping like an arena's; %d\n"
	       "rounds, taking turns (ns per page, medians)\n", ROUNDS);
	rewire_options_init(&o);
	o.reserve = PAGES * ps;
	o.backend = "uffd";
	if (rewire_arena_create(&o, &a)) {
		printf("  not measured here: no uffd backend (see rewire-info)\n");
		return;
	}
	base = rewire_alloc(a, PAGES * ps, REWIRE_ALLOC_HOLES);
	if (!base || raw_uffd_map(&raw, PAGES, &fd)) {
		printf("  not measured here: %s\n", base ? "no userfaultfd for the raw side" :
		       "no arena run");
		rewire_arena_destroy(a);
		return;
	}
	printf("  %-10s %12s %12s %12s\n", "batch", "rewire", "raw ioctl", "rewire/raw");
	for (size_t s = 0; s < NSIZES; s++) {
		size_t k = batch_sizes[s];
		double lib[ROUNDS], sys[ROUNDS], ratio[ROUNDS], r;
		char what[64];

		pick_pairs(from, to, k);
		for (size_t i = 0; i < k; i++) {
			if (rewire_populate(a, base + from[i] * ps, ps, 0))
				bench_failed = true;
			memset(raw + from[i] * ps, 1, ps);
		}
		for (int i = 0; i < ROUNDS; i++) {
			/* Each round led by the other side. */
			if (i & 1) {
				sys[i] = raw_round(fd, raw, from, to, k);
				lib[i] = rewire_round(a, base, from, to, k);
			} else {
				lib[i] = rewire_round(a, base, from, to, k);
				sys[i] = raw_round(fd, raw, from, to, k);
			}
			ratio[i] = lib[i] / sys[i];
		}
		for (size_t i = 0; i < k; i++) {
			rewire_discard(a, base + from[i] * ps, ps);
			madvise(raw + from[i] * ps, ps, MADV_DONTNEED);
		}
		r = median(ratio, ROUNDS);
		printf("  %-10zu %12.0f %12.0f %12.2f\n", k, median(lib, ROUNDS), median(sys, ROUNDS), r);
		snprintf(what, sizeof(what), "%zu", k);
		record("overhead", what, "rewire/raw", r);
		snprintf(what, sizeof(what), "rewire_batch / raw ioctls, %zu single-page move%s", k,
			 k > 1 ? "s" : "");
		goal(what, r, "<= 1.1", r <= 1.1);
	}
	close(fd);
	munmap(raw, PAGES * ps);
	rewire_arena_destroy(a);
}

/*
 * What the kernel allows a buffer manager per evicted and loaded page, for
 * the bufferpool section: one UFFDIO_MOVE of a scattered page into a hole
 * of a mapping like an arena's, and MADV_DONTNEED of a page plus a write
 * fault of another in a plain mapping, as a manager without rewire does.
 * ns per page, medians of rounds taking turns; false where uffd is missing.
 */
bool raw_evict_load_ns(double *move_ns, double *plain_ns)
{
	enum { N = 256, RAW_ROUNDS = 32 };
	double mv[RAW_ROUNDS], pl[RAW_ROUNDS];
	size_t idx[PAGES];
	char *raw, *plain;
	int fd;

	if (raw_uffd_map(&raw, PAGES, &fd))
		return false;
	plain = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (plain == MAP_FAILED) {
		close(fd);
		munmap(raw, PAGES * ps);
		return false;
	}
	madvise(plain, PAGES * ps, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < PAGES; i++)
		idx[i] = i;
	shuffle(idx, PAGES);
	/* Pages idx[0, N) hold data, idx[N, 2N) are holes; each round moves
	 * the data across and back by turns. */
	for (size_t i = 0; i < N; i++) {
		memset(raw + idx[i] * ps, 1, ps);
		memset(plain + idx[i] * ps, 1, ps);
	}
	for (int r = 0; r < RAW_ROUNDS; r++) {
		size_t from = r & 1 ? N : 0, to = r & 1 ? 0 : N;
		double t = now_ns();

		for (size_t i = 0; i < N; i++) {
			struct uffdio_move m = {
				.dst = (uintptr_t)(raw + idx[to + i] * ps),
				.src = (uintptr_t)(raw + idx[from + i] * ps),
				.len = ps, .mode = MOVE_DONTWAKE,
			};

			if (ioctl(fd, UFFDIO_MOVE, &m))
				bench_failed = true;
		}
		mv[r] = (now_ns() - t) / N;
		t = now_ns();
		for (size_t i = 0; i < N; i++) {
			madvise(plain + idx[from + i] * ps, ps, MADV_DONTNEED);
			plain[idx[to + i] * ps] = 1;
		}
		pl[r] = (now_ns() - t) / N;
	}
	*move_ns = median(mv, RAW_ROUNDS);
	*plain_ns = median(pl, RAW_ROUNDS);
	close(fd);
	munmap(raw, PAGES * ps);
	munmap(plain, PAGES * ps);
	return true;
}
