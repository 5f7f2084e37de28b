/* Helpers of the module's own programs: see devlib.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "devlib.h"
#include "testlib.h"

int attach(int fd, const void *p, size_t len)
{
	struct rewire_dev_attach at = { (uintptr_t)p, len };
	unsigned long req = page_size == base_page_size ? REWIRE_IOC_ATTACH :
			    REWIRE_IOC_ATTACH_HUGE;

	return ioctl(fd, req, &at) ? -errno : 0;
}

int batch(int fd, const struct rewire_dev_op *ops, uint32_t n, uint32_t *done)
{
	struct rewire_dev_batch b = { .ops = (uintptr_t)ops, .nops = n, .done = 99 };
	int ret = ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0;

	if (done)
		*done = b.done;
	return ret;
}

static bool inside(const struct rewire_dev_op *op, uint64_t addr, const char *base,
		   size_t npages)
{
	uint64_t start = (uintptr_t)base, end = start + npages * page_size;

	return addr >= start && addr < end && op->npages <= (end - addr) / page_size;
}

bool model_apply(uint64_t *m, size_t npages, const struct rewire_dev_op *op, const char *base)
{
	size_t d = (size_t)((const char *)(uintptr_t)op->dst - base) / page_size;
	size_t s = (size_t)((const char *)(uintptr_t)op->src - base) / page_size;
	const uint64_t *perm = (const uint64_t *)(uintptr_t)op->perm;
	uint64_t tmp[4096], t;

	if (!inside(op, op->dst, base, npages) || op->npages > 4096 ||
	    (op->type != REWIRE_DEV_PERMUTE && !inside(op, op->src, base, npages)))
		return false;
	for (size_t i = 0; i < op->npages; i++) {
		switch (op->type) {
		case REWIRE_DEV_MOVE:
			m[d + i] = m[s + i];
			m[s + i] = HOLE;
			break;
		case REWIRE_DEV_SWAP:
			t = m[d + i];
			m[d + i] = m[s + i];
			m[s + i] = t;
			break;
		default:
			tmp[perm[i]] = m[d + i];
		}
	}
	if (op->type == REWIRE_DEV_PERMUTE)
		memcpy(&m[d], tmp, op->npages * sizeof(*m));
	return true;
}

bool write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	bool done = fd >= 0 && write(fd, s, strlen(s)) == (ssize_t)strlen(s);

	if (fd >= 0)
		close(fd);
	return done;
}

int node_count(void)
{
	char path[64];

	for (int n = 0;; n++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", n);
		if (access(path, F_OK))
			return n;
	}
}

int move_pages_to(size_t n, void **pages, const int *nodes, int *status)
{
	return (int)syscall(SYS_move_pages, 0, n, pages, nodes, status, 1 << 1 /* MPOL_MF_MOVE */);
}
