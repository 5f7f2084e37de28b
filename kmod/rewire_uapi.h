/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * The interface of /dev/rewire, shared by the rewire.ko module and the
 * rewire library. See rewire(4).
 */
#ifndef _REWIRE_UAPI_H
#define _REWIRE_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define REWIRE_DEV_VERSION	1

/* Bounds of one REWIRE_IOC_BATCH call. */
#define REWIRE_DEV_MAX_OPS	65536
#define REWIRE_DEV_MAX_PAGES	65536

struct rewire_dev_info {
	__u32 version;		/* REWIRE_DEV_VERSION */
	__u32 max_ops;		/* REWIRE_DEV_MAX_OPS */
	__u32 max_pages;	/* REWIRE_DEV_MAX_PAGES: pages in all ops */
	__u32 page_size;
};

/* The range of the caller's memory that later batches may rearrange. */
struct rewire_dev_attach {
	__u64 start;
	__u64 len;
};

enum rewire_dev_op_type {
	REWIRE_DEV_MOVE = 1,	/* npages from src to the holes at dst */
	REWIRE_DEV_SWAP = 2,	/* exchange npages at dst and src */
	REWIRE_DEV_PERMUTE = 3,	/* page i at dst goes to page perm[i] */
};

struct rewire_dev_op {
	__u32 type;
	__u32 reserved;		/* must be 0 */
	__u64 dst;
	__u64 src;		/* 0 for REWIRE_DEV_PERMUTE */
	__u64 npages;
	__u64 perm;		/* user address of __u64[npages], PERMUTE only */
};

struct rewire_dev_batch {
	__u64 ops;		/* user address of struct rewire_dev_op[nops] */
	__u32 nops;
	__u32 flags;		/* must be 0 */
	__u32 done;		/* out: operations fully applied */
	__u32 reserved;		/* must be 0 */
	__u64 pages;		/* out: page-table entries moved */
};

#define REWIRE_IOC_MAGIC	0xBB
#define REWIRE_IOC_INFO		_IOR(REWIRE_IOC_MAGIC, 0, struct rewire_dev_info)
#define REWIRE_IOC_ATTACH	_IOW(REWIRE_IOC_MAGIC, 1, struct rewire_dev_attach)
#define REWIRE_IOC_BATCH	_IOWR(REWIRE_IOC_MAGIC, 2, struct rewire_dev_batch)
/*
 * As REWIRE_IOC_ATTACH, for a range of huge pages: start and len multiples
 * of the PMD size (2 MiB on x86-64), and every op's addresses and npages
 * in huge pages, each moved as one PMD entry (max_pages counts them).
 * -ENOTTY from a module without it.
 */
#define REWIRE_IOC_ATTACH_HUGE	_IOW(REWIRE_IOC_MAGIC, 3, struct rewire_dev_attach)

/*
 * Only in a module built for the test suite (kmod/build.sh --test-hooks):
 * the module registers an mmu notifier on the calling process, until the
 * file is closed. Other builds answer ENOTTY.
 */
#define REWIRE_IOC_TEST_NOTIFIER	_IO(REWIRE_IOC_MAGIC, 0x7f)

#endif /* _REWIRE_UAPI_H */
