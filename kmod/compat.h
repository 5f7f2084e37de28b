/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What rewire.ko needs that kernels hide from modules: the x86 TLB
 * shootdown of a range of one mm, flush_tlb_mm_range(), behind
 * flush_tlb_range(). Exported primitives cannot do its job alone: a CPU
 * that switched away from the mm keeps stale entries under PCID unless the
 * mm's TLB generation advances, and only tlbflush.h's inline functions
 * advance it, inside #ifndef MODULE.
 *
 * Its address is found through kallsyms_lookup_name(), itself found with a
 * kprobe, once at load. Under kernel IBT (6.12 on CPUs that have it) both
 * functions lose their ENDBR at boot, and an indirect call to either would
 * trap. There, or when asked with full_flush=1, the module reaches the
 * same function through an exported one instead: an empty zap of the VMA
 * while the mm has a TLB flush pending makes tlb_finish_mmu() flush the
 * whole mm, rw_flush_tlb_zap(). That flushes this mm only, where it is
 * loaded, and advances its TLB generation, as the kernel's own flush does.
 */
#ifndef _REWIRE_COMPAT_H
#define _REWIRE_COMPAT_H

#include <linux/kprobes.h>
#include <linux/kvm_types.h>
#include <linux/mm_inline.h>
#include <linux/smp.h>
#include <linux/utsname.h>
#include <asm/cpufeature.h>
#include <asm/ibt.h>

static bool rw_full_flush;
module_param_named(full_flush, rw_full_flush, bool, 0444);
MODULE_PARM_DESC(full_flush, "flush the whole mm through an exported zap, not its range");

/*
 * The kernel versions the module was tested on. A module that calls an
 * unexported function through a pointer found at run time is checked by no
 * compiler against the kernel's declaration, and DKMS rebuilds it for every
 * new kernel: Kbuild refuses other major.minor versions, unless built with
 * make REWIRE_UNTESTED=1, which defines REWIRE_UNTESTED_KERNEL; such a
 * module then loads only with untested_kernel=1.
 */
/* Kbuild's rewire_tested, in words: keep the two in step. */
#define RW_TESTED_LIST "6.1, 6.12, 7.2 and 7.3"

static bool rw_untested_kernel;
module_param_named(untested_kernel, rw_untested_kernel, bool, 0444);
MODULE_PARM_DESC(untested_kernel, "load on a kernel version not tested (make REWIRE_UNTESTED=1)");

/* Refuse to load where the module was not tested, unless asked to. */
static int rw_check_kernel(void)
{
#ifdef REWIRE_UNTESTED_KERNEL
	if (!rw_untested_kernel) {
		pr_err("not tested on Linux %s, only on %s\n",
		       init_utsname()->release, RW_TESTED_LIST);
		pr_err("check flush_tlb_mm_range() there, then load with untested_kernel=1\n");
		return -EOPNOTSUPP;
	}
	pr_notice("untested_kernel=1: Linux %s, not tested\n",
		  init_utsname()->release);
#endif
	return 0;
}

/*
 * As declared in arch/x86/include/asm/tlbflush.h (6.1, 6.12, 7.2, 7.3),
 * where the declaration is hidden from modules.
 */
typedef void (*rw_flush_tlb_fn)(struct mm_struct *mm, unsigned long start,
				unsigned long end, unsigned int stride_shift,
				bool freed_tables);

static rw_flush_tlb_fn rw_flush_tlb_mm_range;

static int rw_resolve_symbols(void)
{
	struct kprobe kp = { .symbol_name = "kallsyms_lookup_name" };
	unsigned long (*lookup)(const char *name);
	int ret = rw_check_kernel();

	if (ret)
		return ret;
	/* 6.1 has no kernel IBT, whatever the CPU offers. */
	if (HAS_KERNEL_IBT && cpu_feature_enabled(X86_FEATURE_IBT))
		rw_full_flush = true;
	if (rw_full_flush)
		return 0;

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

/*
 * Which exported zap function this kernel has, from its Module.symvers
 * (Kbuild): zap_page_range() (6.1), zap_page_range_single() (6.12),
 * zap_vma_range() (7.x).
 */
#if RW_ZAP < 1 || RW_ZAP > 3
#error "rewire: no exported zap function in this kernel's Module.symvers"
#endif

/*
 * The kernel's own shootdown of the whole mm, reached through an exported
 * function. An mmu_gather that gathered nothing flushes nothing, unless
 * another flush of the mm is pending; then tlb_finish_mmu() sees it
 * (mm_tlb_flush_nested()) and flushes the whole mm, as
 * flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, .., true): this mm's ASIDs
 * only, on the CPUs in its cpumask, lazy ones included, with the mm's TLB
 * generation advanced so that a CPU switching back to it later flushes
 * too. The pending count raised here is what makes the flush nested. The
 * zap is empty: it starts at vm_start with size 0, and 7.x does not clip a
 * size to the VMA, so anything else would zap pages.
 *
 * Called with the mmap lock held and no spinlock: the zap may sleep.
 */
static void rw_flush_tlb_zap(struct vm_area_struct *vma)
{
	struct mm_struct *mm = vma->vm_mm;

	mmap_assert_locked(mm);
	inc_tlb_flush_pending(mm);
#if RW_ZAP == 3
	zap_vma_range(vma, vma->vm_start, 0);
#elif RW_ZAP == 2
	zap_page_range_single(vma, vma->vm_start, 0, NULL);
#else
	zap_page_range(vma, vma->vm_start, 0);
#endif
	dec_tlb_flush_pending(mm);
}

#ifdef REWIRE_TEST_HOOKS
/*
 * break_for_test=3 only: a shootdown that leaves the mm's TLB generation
 * alone. Each CPU of the mm's cpumask that has the mm loaded now flushes
 * its whole TLB; one that switched to another process keeps its entries,
 * and, the generation unchanged, uses them again when it switches back
 * (on hardware with PCID; QEMU's TCG flushes on every CR3 load).
 */
static void rw_flush_all_local(void *mm)
{
#ifdef EXPORT_SYMBOL_FOR_KVM
	unsigned long cr4;
#endif

	if (current->active_mm != mm)
		return;
#ifdef EXPORT_SYMBOL_FOR_KVM
	/*
	 * 7.x exports __flush_tlb_all() to KVM alone: do as
	 * native_flush_tlb_global() does, INVPCID or CR4.PGE toggled.
	 */
	if (boot_cpu_has(X86_FEATURE_INVPCID)) {
		invpcid_flush_all();
		return;
	}
	cr4 = native_read_cr4();
	asm volatile("mov %0, %%cr4" : : "r" (cr4 ^ X86_CR4_PGE) : "memory");
	asm volatile("mov %0, %%cr4" : : "r" (cr4) : "memory");
#else
	__flush_tlb_all();
#endif
}

static void rw_flush_tlb_no_gen(struct mm_struct *mm)
{
	on_each_cpu_mask(mm_cpumask(mm), rw_flush_all_local, mm, true);
}
#endif

/*
 * No CPU may keep a translation of [start, end) of vma's mm once this
 * returns, nor find one when it switches back to the mm later; the entries
 * that changed map pages of 1 << shift bytes (a PMD's: one flush of an
 * address per huge page, where a 4 KiB stride would count 512). Called
 * with the mmap lock held and no spinlock.
 */
static void rw_flush_tlb(struct vm_area_struct *vma, unsigned long start,
			 unsigned long end, unsigned int shift)
{
	if (rw_full_flush)
		rw_flush_tlb_zap(vma);
	else
		rw_flush_tlb_mm_range(vma->vm_mm, start, end, shift, false);
}

/*
 * 6.19 brought linux/leafops.h, software leaf entries in place of
 * swapops.h's swap entries; by 7.2 is_migration_entry() and
 * pte_to_swp_entry() are gone, and anon_vma_lock_write() and
 * anon_vma_unlock_write() have left rmap.h (struct anon_vma and its root's
 * rwsem, which they took, stayed). The header tells the two apart.
 */
#if __has_include("linux/leafops.h")
#define RW_SOFTLEAF 1
#include <linux/leafops.h>
#endif

/* Is this PTE, neither none nor present, a migration entry? */
static inline bool rw_pte_is_migration(pte_t pte)
{
#ifdef RW_SOFTLEAF
	return softleaf_is_migration(softleaf_from_pte(pte));
#else
	return is_migration_entry(pte_to_swp_entry(pte));
#endif
}

/* As anon_vma_lock_write() and anon_vma_unlock_write() do. */
static inline void rw_anon_vma_lock_write(struct anon_vma *anon_vma)
{
#ifdef RW_SOFTLEAF
	down_write(&anon_vma->root->rwsem);
#else
	anon_vma_lock_write(anon_vma);
#endif
}

static inline void rw_anon_vma_unlock_write(struct anon_vma *anon_vma)
{
#ifdef RW_SOFTLEAF
	up_write(&anon_vma->root->rwsem);
#else
	anon_vma_unlock_write(anon_vma);
#endif
}

/* Per-VMA locks (6.4 on) let page faults run without mmap_lock. */
static inline void rw_vma_start_write(struct vm_area_struct *vma)
{
#ifdef CONFIG_PER_VMA_LOCK
	vma_start_write(vma);
#endif
}

/*
 * Whether another task wants the mmap lock: queued for it, or spinning on
 * it while its owner runs, which a writer does before it queues (and so
 * mmap_lock_is_contended() does not see it) for as long as that lasts.
 */
static inline bool rw_mmap_lock_wanted(struct mm_struct *mm)
{
	if (mmap_lock_is_contended(mm))
		return true;
#ifdef CONFIG_RWSEM_SPIN_ON_OWNER
	if (osq_is_locked(&mm->mmap_lock.osq))
		return true;
#endif
	return false;
}

#endif /* _REWIRE_COMPAT_H */
