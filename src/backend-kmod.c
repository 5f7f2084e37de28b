/* The kmod backend: rewire.ko (/dev/rewire, rewire(4)) applies a whole batch
 * of moves, swaps and permutations by moving page-table entries, with one
 * TLB shootdown per call. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "internal.h"
#include "rewire_uapi.h"

#define EAGAIN_RETRIES 100

/* Where the kernel's page-table moves are; rewire-info(1) reports it. */
#define DEVICE_PATH "/dev/rewire"

struct kmod {
	int fd;
	struct rewire_dev_info info;
};

/* The kernel takes permutations as __u64 arrays; size_t is passed as is. */
_Static_assert(sizeof(size_t) == sizeof(__u64), "size_t is not 64 bits");

static int open_device(struct rewire_dev_info *info)
{
	int fd = open(DEVICE_PATH, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, REWIRE_IOC_INFO, info)) {
		close(fd);
		return -ENOTTY;
	}
	if (info->version != REWIRE_DEV_VERSION) {
		close(fd);
		return -EPROTO;
	}
	return fd;
}

static void to_dev_op(const struct page_op *op, struct rewire_dev_op *d)
{
	d->type = op->type == REWIRE_OP_MOVE ? REWIRE_DEV_MOVE :
		  op->type == REWIRE_OP_SWAP ? REWIRE_DEV_SWAP : REWIRE_DEV_PERMUTE;
	d->reserved = 0;
	d->dst = (uintptr_t)op->dst;
	d->src = (uintptr_t)op->src;
	d->npages = op->npages;
	d->perm = (uintptr_t)op->perm;
}

/* One ioctl; *done ops applied, even on error. */
static int dev_batch(struct kmod *k, const struct rewire_dev_op *ops, size_t n,
		     size_t *done)
{
	struct rewire_dev_batch b = { .ops = (uintptr_t)ops, .nops = (__u32)n };
	int ret = ioctl(k->fd, REWIRE_IOC_BATCH, &b) ? -errno : 0;

	*done = b.done;
	return ret;
}

static int kmod_remap(struct rewire_arena *a, char *dst, char *src, size_t n,
		      size_t *moved)
{
	struct kmod *k = a->backend_data;
	struct rewire_dev_op op = { .type = REWIRE_DEV_MOVE };

	*moved = 0;
	while (*moved < n) {
		size_t chunk = n - *moved < k->info.max_pages ? n - *moved : k->info.max_pages;
		size_t done;
		int ret;

		op.dst = (uintptr_t)(dst + (*moved << a->page_shift));
		op.src = (uintptr_t)(src + (*moved << a->page_shift));
		op.npages = chunk;
		ret = dev_batch(k, &op, 1, &done);
		if (ret)
			return ret;
		*moved += chunk;
	}
	return 0;
}

/* The pages whose data an operation moves, as rewire_arena_stats(3) counts
 * them (the module counts page-table entries, holes left out). */
static uint64_t pages_moved(const struct page_op *op)
{
	uint64_t n = 0;

	if (op->type == REWIRE_OP_MOVE)
		return op->npages;
	if (op->type == REWIRE_OP_SWAP)
		return 2 * op->npages;
	for (size_t i = 0; i < op->npages; i++)
		n += op->perm[i] != i;
	return n;
}

/* How many of ops, from the first, fit one call of the module. */
static size_t fits(const struct kmod *k, const struct page_op *ops, size_t nops)
{
	size_t n = 0, pages = 0;

	while (n < nops && n < k->info.max_ops &&
	       ops[n].npages <= k->info.max_pages - pages)
		pages += ops[n++].npages;
	return n;
}

/*
 * The whole batch goes to the module, as few calls as its bounds allow. An
 * operation the module refuses (a page pinned, shared or being migrated, a
 * zero page where a hole should be) or that is larger than one call is
 * handed back alone for the planner (RW_APPLY_PLAN), which moves what it
 * can and copies the rest; then the module takes over again.
 */
static int kmod_apply(struct rewire_arena *a, const struct page_op *ops,
		      size_t nops, struct apply_result *res)
{
	struct kmod *k = a->backend_data;
	struct rewire_dev_op *dev;
	int retries = 0, ret = 0;

	/* Each call its own: threads send batches in parallel. */
	dev = calloc(nops < k->info.max_ops ? nops : k->info.max_ops, sizeof(*dev));
	if (!dev)
		return -ENOMEM;

	while (res->done < nops) {
		const struct page_op *rest = ops + res->done;
		size_t n = fits(k, rest, nops - res->done), done;

		if (n == 0) {
			/* Larger than one call: the planner splits it. */
			ret = RW_APPLY_PLAN;
			break;
		}
		for (size_t i = 0; i < n; i++)
			to_dev_op(&rest[i], &dev[i]);
		ret = dev_batch(k, dev, n, &done);
		for (size_t i = 0; i < done; i++)
			res->remapped += pages_moved(&rest[i]);
		res->done += done;
		if (!ret) {
			retries = 0;
			continue;
		}
		if (ret == -EAGAIN && ++retries < EAGAIN_RETRIES)
			continue;
		if (ret == -ENOMEM || ret == -EINTR)
			break;
		ret = RW_APPLY_PLAN;
		break;
	}
	free(dev);
	return ret;
}

static int kmod_init(struct rewire_arena *a)
{
	struct rewire_dev_attach at = {
		.start = (uintptr_t)a->base,
		.len = a->npages << a->page_shift,
	};
	struct kmod *k;
	int ret;

	/* The module moves only mlocked memory. */
	if (a->flags & REWIRE_UNLOCKED)
		return -EOPNOTSUPP;
	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->fd = open_device(&k->info);
	if (k->fd < 0) {
		ret = k->fd == -ENOMEM ? -ENOMEM : -EOPNOTSUPP;
		goto fail;
	}
	ret = -EOPNOTSUPP;
	if (k->info.page_size != rw_base_page_size() || !k->info.max_ops || !k->info.max_pages)
		goto fail;
	/* A huge arena's pages move as PMD entries: a module without them
	 * says ENOTTY. */
	if (ioctl(k->fd, a->huge ? REWIRE_IOC_ATTACH_HUGE : REWIRE_IOC_ATTACH, &at))
		goto fail;
	rw_copy_costs(&a->costs);
	/* Each call takes the mmap lock and flushes the TLB once; per page it
	 * is a PTE exchange (measured under rewire-bench, rewire(4)). */
	a->costs.remap_call = 1500;
	a->costs.remap_per_page = 60;
	a->backend_data = k;
	return 0;
fail:
	if (k->fd >= 0)
		close(k->fd);
	free(k);
	return ret;
}

static void kmod_fini(struct rewire_arena *a)
{
	struct kmod *k = a->backend_data;

	if (!k)
		return;
	close(k->fd);
	free(k);
	a->backend_data = NULL;
}

const struct backend rw_backend_kmod = {
	.name = "kmod",
	.init = kmod_init,
	.fini = kmod_fini,
	.remap = kmod_remap,
	.apply = kmod_apply,
	.flush_per_call = true,
};
