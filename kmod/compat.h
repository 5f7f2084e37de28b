/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one kernel function rewire.ko needs that no kernel exports to modules:
 * flush_tlb_mm_range(), the x86 TLB shootdown behind flush_tlb_range().
 * Exported primitives cannot do its job: a CPU that switched away from the
 * mm keeps stale entries under PCID unless the mm's TLB generation advances,
 * and only this function advances it. The address is found through
 * kallsyms_lookup_name(), itself found with a kprobe, once at load; the
 * module refuses to load when either is missing.
 */
#ifndef _REWIRE_COMPAT_H
#define _REWIRE_COMPAT_H

#include <linux/kprobes.h>

typedef void (*rw_flush_tlb_fn)(struct mm_struct *mm, unsigned long start,
				unsigned long end, unsigned int stride_shift,
				bool freed_tables);

static rw_flush_tlb_fn rw_flush_tlb_mm_range;

static int rw_resolve_symbols(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long (*lookup)(const char *name);
	int ret;

	ret = register_kprobe(&kp);
	if (ret < 0) {
		pr_err("cannot find kallsyms_lookup_name: %d\n", ret);
		return ret;
	}
	lookup = (void *)kp.addr;
	unregister_kprobe(&kp);

	rw_flush_tlb_mm_range = (rw_flush_tlb_fn)lookup("flush_tlb_mm_range");
	if (!rw_flush_tlb_mm_range) {
		pr_err("cannot find flush_tlb_mm_range\n");
		return -ENOENT;
	}
	return 0;
}

/* Per-VMA locks (6.4 on) let page faults run without mmap_lock. */
static inline void rw_vma_start_write(struct vm_area_struct *vma)
{
#ifdef CONFIG_PER_VMA_LOCK
	vma_start_write(vma);
#endif
}

#endif /* _REWIRE_COMPAT_H */
