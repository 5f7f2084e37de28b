/* The uffd backend: mainline UFFDIO_MOVE (Linux 6.8+) moves page-table
 * entries of the arena, one run per ioctl. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Debian 12's uapi headers predate UFFDIO_MOVE (6.8). */
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFDIO_MOVE
#define _UFFDIO_MOVE 0x05
#define UFFDIO_MOVE_MODE_DONTWAKE (1ULL << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES (1ULL << 1)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct uffd {
	int fd;
};

/*
 * Linux 6.18 loses pages that UFFDIO_MOVE moves while compaction migrates
 * them: the move succeeds, and the migration later puts the page back at its
 * old address, the new one empty (6.18.44: a few pages in 300,000 single-page
 * moves beside a compaction loop, with or without mlock, any register mode).
 * A backend that loses data is no backend: refuse it there.
 */
static bool kernel_loses_moved_pages(void)
{
	struct utsname u;
	char *end;

	if (uname(&u) || strtol(u.release, &end, 10) != 6 || *end != '.')
		return false;
	return strtol(end + 1, &end, 10) == 18;
}

static int open_uffd(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	int fd;

	if (kernel_loses_moved_pages())
		return -EOPNOTSUPP;
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return errno == ENOSYS || errno == EPERM || errno == EINVAL ? -EOPNOTSUPP : -errno;
	if (ioctl(fd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE)) {
		close(fd);
		return -EOPNOTSUPP;
	}
	return fd;
}

/*
 * UFFDIO_MOVE needs the destination registered with the descriptor. Register
 * for write-protect faults only, never requested: a touch of a hole then
 * faults in a zero page as on every other backend, instead of waiting for a
 * fault handler that does not exist.
 */
static int register_range(int fd, void *p, size_t len)
{
	struct uffdio_register reg = {
		.range = { (uintptr_t)p, len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		return -EOPNOTSUPP;
	return 0;
}

static int move(int fd, char *dst, char *src, size_t len, size_t *moved)
{
	struct uffdio_move m = {
		.dst = (uintptr_t)dst,
		.src = (uintptr_t)src,
		.len = len,
		/* Untouched pages of REWIRE_ONFAULT arenas are not there yet. */
		.mode = UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES,
	};

	if (!ioctl(fd, UFFDIO_MOVE, &m)) {
		*moved = len;
		return 0;
	}
	*moved = m.move > 0 ? (size_t)m.move : 0;
	return -errno;
}

static int uffd_remap(struct rewire_arena *a, char *dst, char *src, size_t n,
		      size_t *moved)
{
	struct uffd *u = a->backend_data;
	size_t bytes;
	int ret = move(u->fd, dst, src, n << a->page_shift, &bytes);

	*moved = bytes >> a->page_shift;
	return ret;
}

static struct costs measured;
static pthread_once_t measure_once = PTHREAD_ONCE_INIT;

/* Nanoseconds per ioctl moving n pages back and forth. */
static double time_moves(int fd, char *x, char *y, size_t len, int reps)
{
	size_t moved;
	double t = rw_now_ns();

	for (int r = 0; r < reps; r++)
		if (move(fd, r & 1 ? x : y, r & 1 ? y : x, len, &moved))
			return -1;
	return (rw_now_ns() - t) / reps;
}

/* Calibrate UFFDIO_MOVE once per process on a private registered mapping. */
static void measure(void)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), n = 64;
	int fd = open_uffd();
	char *p = mmap(NULL, 2 * n * ps, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double one = -1, many = -1;

	rw_copy_costs(&measured);
	/* The figures of DESIGN.md, if measuring fails. */
	measured.remap_call = 1150;
	measured.remap_per_page = 50;
	if (fd >= 0 && p != MAP_FAILED && !register_range(fd, p, 2 * n * ps)) {
		memset(p, 1, n * ps);
		one = time_moves(fd, p, p + n * ps, ps, 64);
		many = time_moves(fd, p, p + n * ps, n * ps, 8);
	}
	if (one > 0 && many > 0) {
		measured.remap_per_page = many > one ? (many - one) / (n - 1) : many / n;
		measured.remap_call = one > measured.remap_per_page ?
				      one - measured.remap_per_page : 0;
	}
	if (p != MAP_FAILED)
		munmap(p, 2 * n * ps);
	if (fd >= 0)
		close(fd);
}

static int uffd_init(struct rewire_arena *a)
{
	struct uffd *u = calloc(1, sizeof(*u));
	int ret;

	if (!u)
		return -ENOMEM;
	u->fd = open_uffd();
	if (u->fd < 0) {
		ret = u->fd;
		free(u);
		return ret;
	}
	ret = register_range(u->fd, a->base, a->npages << a->page_shift);
	if (ret) {
		close(u->fd);
		free(u);
		return ret;
	}
	pthread_once(&measure_once, measure);
	a->costs = measured;
	a->backend_data = u;
	return 0;
}

static void uffd_fini(struct rewire_arena *a)
{
	struct uffd *u = a->backend_data;

	if (!u)
		return;
	close(u->fd);
	free(u);
	a->backend_data = NULL;
}

const struct backend rw_backend_uffd = {
	.name = "uffd",
	.init = uffd_init,
	.fini = uffd_fini,
	.remap = uffd_remap,
	.apply = NULL,
};
