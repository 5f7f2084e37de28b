// SPDX-License-Identifier: GPL-2.0
/*
 * rewire.ko: /dev/rewire rearranges the pages of the calling process's own
 * mlocked, private, anonymous memory by moving page-table entries, a whole
 * batch of moves, swaps and permutations under one TLB shootdown.
 *
 * This is the restricted successor of remap_file_pages() that Nick Piggin
 * proposed in 2007: anonymous and mlocked memory only, so no writeback, no
 * file reverse mapping, and swap entries only where MLOCK_ONFAULT memory
 * was swapped out before it was locked (refused, see rw_grab()).
 *
 * Locking, outermost first:
 *   mmap_lock (write)      no fault, GUP, madvise or munmap in the mm
 *   the VMA's lock (write) no per-VMA-lock fault either (6.4 on)
 *   anon_vma lock (write)  no rmap walk (migration, reclaim, memory-failure)
 *   folio lock (trylock)   each page whose index changes, as rmap requires
 *   PTE lock               one at a time, around each read or write of an entry
 * mremap's move_ptes() and UFFDIO_MOVE hold the source's and the
 * destination's PTE locks together, as they change entries while faults
 * and rmap walks may run. Here the locks above keep out every other writer
 * of these entries and every reader but lockless GUP-fast (which re-checks
 * the entry after pinning), so no one sees an entry half moved, and one
 * PTE lock at a time is enough: never two, so no order between them.
 * The anon_vma lock is held until the TLB has been flushed, so no rmap walk
 * can see a moved page before every CPU has forgotten its old address.
 * The folio lock ranks above the anon_vma lock, hence trylock (-EAGAIN).
 * Nothing is allocated under the anon_vma lock: reclaim walks anon_vmas.
 *
 * The mmap lock is held for writing because faults in the arena's own VMA
 * must wait: only its VMA write lock keeps per-VMA-lock faults out, and
 * only the mmap write lock may take that. Since 6.4 faults in other VMAs
 * take their own VMA's lock and do not wait; mmap, munmap and (before 7.x)
 * madvise do, so a batch lets them in between two ops (rw_run()).
 *
 * See rewire(4).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mmu_notifier.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pagemap.h>
#include <linux/rmap.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/swapops.h>
#include <linux/uaccess.h>
#include <linux/userfaultfd_k.h>
#include <asm/mmu_context.h>
#include <asm/tlbflush.h>

#include "compat.h"
#include "rewire_uapi.h"

#ifdef REWIRE_TEST_HOOKS
/*
 * Only in the build for the test suite's negative controls (kmod/build.sh
 * --test-hooks): 1 skips the TLB flush, 2 the rmap index update, 3 the
 * advance of the mm's TLB generation, 4 the flush of the last page when a
 * batch flushes its few pages one by one. Each breaks the module, and the
 * tests must notice (3 only on hardware with PCID, not under QEMU's TCG).
 * 5, 6 and 7 are for the checkers of a debugging kernel: 5 takes the file's
 * lock inside the mmap lock after a batch (lockdep), 6 reads a page after
 * freeing it (KASAN), 7 leaves a moved page mapped at its old address too
 * (the page-table check). Each must be reported, so that a clean log on
 * that kernel means something.
 */
static unsigned int break_for_test;
module_param(break_for_test, uint, 0444);
MODULE_PARM_DESC(break_for_test,
		 "tests only: 1 skip TLB flush, 2 skip index update, 3 skip TLB generation, 4 skip a page's flush, 5 lock order, 6 use after free, 7 map twice");
#endif

struct rewire_file {
	struct mutex lock;		/* serializes ioctls on this file */
	struct mm_struct *mm;		/* NULL until attached */
	unsigned long start, end;	/* the attached range */
	unsigned int shift;		/* PAGE_SHIFT, PMD_SHIFT if huge */
#ifdef REWIRE_TEST_HOOKS
	struct mmu_notifier mn;		/* REWIRE_IOC_TEST_NOTIFIER's */
	bool mn_on;
#endif
};

#ifdef REWIRE_TEST_HOOKS
/*
 * An mmu notifier that does nothing, so that the tests can show a batch
 * refused where one is registered without needing KVM.
 */
static const struct mmu_notifier_ops rw_test_mn_ops = { };

static long rw_test_notifier(struct rewire_file *rf)
{
	int ret;

	if (!current->mm)
		return -EPERM;
	if (rf->mn_on)
		return -EBUSY;
	rf->mn.ops = &rw_test_mn_ops;
	ret = mmu_notifier_register(&rf->mn, current->mm);
	if (!ret)
		rf->mn_on = true;
	return ret;
}

static void rw_test_notifier_release(struct rewire_file *rf)
{
	if (rf->mn_on)
		mmu_notifier_unregister(&rf->mn, rf->mn.mm);
}

/* After a batch, with no lock held: break_for_test 5 and 6. */
static void rw_test_after_batch(struct rewire_file *rf)
{
	struct page *page;

	if (break_for_test == 5 && rf->mm) {
		/*
		 * The ioctl takes rf->lock, then the mmap lock: here the other
		 * way round, which lockdep must call a possible deadlock.
		 */
		mmap_read_lock(rf->mm);
		mutex_lock(&rf->lock);
		mutex_unlock(&rf->lock);
		mmap_read_unlock(rf->mm);
	} else if (break_for_test == 6) {
		page = alloc_page(GFP_KERNEL);
		if (!page)
			return;
		__free_page(page);
		/* KASAN must report this read of a freed page. */
		pr_info("a freed page held %#x\n",
			READ_ONCE(*(unsigned int *)page_address(page)));
	}
}
#else
#define break_for_test 0U

static long rw_test_notifier(struct rewire_file *rf)
{
	return -ENOTTY;
}

static void rw_test_notifier_release(struct rewire_file *rf)
{
}

static void rw_test_after_batch(struct rewire_file *rf)
{
}
#endif

/* One page of an operation, between validation and the move. */
struct rw_slot {
	struct folio *folio;	/* locked; NULL for a hole or the zero page */
	pte_t *ptep;		/* the slot's entry, found once by rw_grab() */
	spinlock_t *ptl;	/* and its page table's lock */
	pte_t pte;		/* the entry lifted from the slot's address */
	/*
	 * A huge page's: its PMD entry (ptl is the PMD table's lock), and the
	 * page table deposited with it, which travels with the entry.
	 */
	pmd_t *pmdp;
	pmd_t pmd;
	pgtable_t deposit;
};

/*
 * Up to this many changed pages are flushed one by one when no other CPU
 * has the mm: x86 flushes a range of more than 33 pages as the whole TLB
 * (tlb_single_page_flush_ceiling), and the few pages a buffer manager's
 * batch moves lie far apart.
 */
#define RW_FEW_PAGES 32

/* The state of one batch: everything allocated before any lock is taken. */
struct rw_batch {
	struct mm_struct *mm;
	struct vm_area_struct *vma;
	struct rewire_dev_op *ops;
	u32 nops;
	u64 **perms;		/* per op: the copied permutation, or NULL */
	struct rw_slot *slots;	/* two per page of the largest op */
	u32 tables_ok;		/* ops whose page tables are known present */
	int tables_err;		/* why op tables_ok has none */
	unsigned long lo, hi;	/* the span of changed PTEs, for the flush */
	unsigned long few[RW_FEW_PAGES];	/* the changed pages, while few */
	u32 nfew;		/* how many; RW_FEW_PAGES + 1 once too many */
	u64 pages;
	unsigned int shift;	/* the attached file's page shift */
};

static int rw_noop_pte(pte_t *pte, unsigned long addr, void *data)
{
	return 0;
}

/*
 * The PMD entry of addr, whatever it holds, where its PMD table exists;
 * otherwise NULL, with *err 0 where a table is missing.
 */
static pmd_t *rw_pmd_slot(struct mm_struct *mm, unsigned long addr, int *err)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	p4d_t *p4d;
	pud_t *pud;

	*err = 0;
	if (pgd_none(*pgd))
		return NULL;
	if (pgd_bad(*pgd)) {
		*err = -EFAULT;
		return NULL;
	}
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d))
		return NULL;
	if (p4d_bad(*p4d)) {
		*err = -EFAULT;
		return NULL;
	}
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud))
		return NULL;
	if (pud_leaf(*pud) || pud_bad(*pud)) {
		*err = -EBUSY;
		return NULL;
	}
	return pmd_offset(pud, addr);
}

/*
 * The PMD of addr when it points to a page table. Otherwise NULL, with *err
 * 0 where a table is missing, -EBUSY where a huge page is mapped, -EAGAIN
 * where a huge page is being migrated.
 */
static pmd_t *rw_pmd(struct mm_struct *mm, unsigned long addr, int *err)
{
	pmd_t *pmd = rw_pmd_slot(mm, addr, err);
	pmd_t val;

	if (!pmd)
		return NULL;
	val = READ_ONCE(*pmd);
	if (pmd_none(val))
		return NULL;
	if (!pmd_present(val)) {
		*err = -EAGAIN;
		return NULL;
	}
	if (pmd_trans_huge(val) || pmd_leaf(val) || pmd_bad(val)) {
		*err = -EBUSY;
		return NULL;
	}
	return pmd;
}

/*
 * Make sure every page of [addr, addr + npages) has a page table, so that
 * nothing needs allocating once the anon_vma lock is held.
 */
static int rw_ensure_tables(struct mm_struct *mm, unsigned long addr,
			    u64 npages)
{
	unsigned long end = addr + (npages << PAGE_SHIFT);
	int ret;

	while (addr < end) {
		if (!rw_pmd(mm, addr, &ret)) {
			if (ret)
				return ret;
			ret = apply_to_page_range(mm, addr, PAGE_SIZE,
						  rw_noop_pte, NULL);
			if (ret)
				return ret;
			if (!rw_pmd(mm, addr, &ret))
				return ret ? ret : -ENOMEM;
		}
		addr = pmd_addr_end(addr, end);
	}
	return 0;
}

/*
 * The same for huge pages: each of [addr, addr + npages huge pages) needs
 * its PMD table, and the module cannot make one without a page table under
 * it (__pmd_alloc() is not exported), which would be in the way of a huge
 * page. None: -EBUSY, and the library copies into such a hole (the fault
 * makes the table).
 */
static int rw_ensure_huge_tables(struct mm_struct *mm, unsigned long addr,
				 u64 npages)
{
	unsigned long end = addr + (npages << PMD_SHIFT);
	int ret;

	for (; addr < end; addr += PMD_SIZE)
		if (!rw_pmd_slot(mm, addr, &ret))
			return ret ? ret : -EBUSY;
	return 0;
}

/*
 * The PTE of addr and its lock, or NULL with *err set: the tables were made
 * before, and under the mmap write lock nothing frees them, so NULL means
 * the walk met what rw_ensure_tables() refused, or a bug.
 */
static pte_t *rw_pte(struct mm_struct *mm, unsigned long addr,
		     spinlock_t **ptl, int *err)
{
	pmd_t *pmd = rw_pmd(mm, addr, err);

	if (!pmd) {
		if (!*err)
			*err = -EFAULT;
		return NULL;
	}
	*ptl = pte_lockptr(mm, pmd);
	return pte_offset_kernel(pmd, addr);
}

/*
 * Find the entry of addr, check that its page may move, and lock its folio.
 * A hole is fine, and so is the shared zero page unless a hole is required.
 * On error the slot holds no lock. Every slot is grabbed before any entry
 * changes, and the destinations of an op's slots are its slots' addresses,
 * so the lifts and places after it use the entries found here.
 */
static int rw_grab(struct rw_batch *b, unsigned long addr, bool want_hole,
		   struct rw_slot *slot)
{
	struct folio *folio;
	struct page *page;
	pte_t pte;
	int err;

	slot->folio = NULL;
	slot->ptep = rw_pte(b->mm, addr, &slot->ptl, &err);
	if (!slot->ptep)
		return err;
	spin_lock(slot->ptl);
	pte = ptep_get(slot->ptep);
	spin_unlock(slot->ptl);

	if (pte_none(pte))
		return 0;
	if (want_hole)
		return -EEXIST;
	/*
	 * A swap entry (MLOCK_ONFAULT memory swapped out before it was
	 * locked) stays: moving one, as UFFDIO_MOVE's move_swap_pte() does,
	 * needs the swap device and swap cache lookups that kernels do not
	 * export, and that 6.18 rewrote. A touch swaps the page in, and then
	 * it moves.
	 */
	if (!pte_present(pte))
		return rw_pte_is_migration(pte) ? -EAGAIN : -EBUSY;
	if (is_zero_pfn(pte_pfn(pte)))
		return 0;
	if (pte_special(pte) || !pfn_valid(pte_pfn(pte)))
		return -EBUSY;

	/* The PTE cannot change under our locks, so it pins the page. */
	page = pte_page(pte);
	folio = page_folio(page);
	if (!folio_trylock(folio))
		return -EAGAIN;
	/*
	 * !swapbacked: freed with MADV_FREE, its data hangs on the dirty bit;
	 * fine if the entry is dirty, as the bit moves with it.
	 *
	 * A folio in the swap cache (swapped in before it was locked, its
	 * swap slot kept) moves like any other, as UFFDIO_MOVE's
	 * move_present_pte() moves it: the swap cache finds it by its swap
	 * entry, folio->swap, which the move leaves alone, and rmap by the
	 * index, updated under the folio lock like every moved page's.
	 */
	if (!folio_test_anon(folio) || folio_test_ksm(folio) ||
	    folio_test_large(folio) ||
	    (!folio_test_swapbacked(folio) && !pte_dirty(pte)) ||
	    !PageAnonExclusive(page) || atomic_read(&page->_mapcount) != 0 ||
	    folio_maybe_dma_pinned(folio)) {
		folio_unlock(folio);
		return -EBUSY;
	}
	slot->folio = folio;
	return 0;
}

/*
 * A batch may walk some 10^5 entries under the mmap lock: let other tasks
 * run now and then, and say whether the caller was killed. Called only
 * where stopping leaves every page at exactly one address.
 */
static bool rw_yield(void)
{
	cond_resched();
	return fatal_signal_pending(current);
}

/* Once per page table's worth of slots, not on every slot. */
static bool rw_yield_every(u64 j)
{
	return j && !(j % PTRS_PER_PTE) && rw_yield();
}

static void rw_release(struct rw_slot *slots, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (slots[i].folio)
			folio_unlock(slots[i].folio);
}

/*
 * A PTE at addr changed: lifted, or placed. An address both lifted and
 * placed comes twice and is kept once.
 */
static void rw_touched(struct rw_batch *b, unsigned long addr)
{
	u32 i;

	b->lo = min(b->lo, addr);
	b->hi = max(b->hi, addr + (1UL << b->shift));
	if (b->nfew > RW_FEW_PAGES)
		return;
	for (i = 0; i < b->nfew; i++)
		if (b->few[i] == addr)
			return;
	if (b->nfew < RW_FEW_PAGES)
		b->few[b->nfew] = addr;
	b->nfew++;
}

/* Whether no CPU but this one may hold translations of mm. */
static bool rw_mm_here_only(struct mm_struct *mm)
{
	int cpu = get_cpu();
	bool only = cpumask_any_but(mm_cpumask(mm), cpu) >= nr_cpu_ids;

	put_cpu();
	return only;
}

/*
 * Slot j of an operation: a page of a permutation; for a move or a swap,
 * slot 2i is page i of dst and slot 2i + 1 page i of src.
 */
static unsigned long rw_slot_addr(const struct rw_batch *b,
				  const struct rewire_dev_op *op, u64 j)
{
	if (op->type == REWIRE_DEV_PERMUTE)
		return op->dst + (j << b->shift);
	return (j & 1 ? op->src : op->dst) + ((j >> 1) << b->shift);
}

/* The slot whose address the page of slot j goes to. */
static u64 rw_slot_dest(const struct rewire_dev_op *op, const u64 *perm, u64 j)
{
	return perm ? perm[j] : j ^ 1;
}

static pte_t rw_lift(struct rw_batch *b, unsigned long addr,
		     const struct rw_slot *slot)
{
	pte_t pte;

	spin_lock(slot->ptl);
	/* break_for_test 7: the entry stays at its old address as well. */
	if (break_for_test == 7)
		pte = ptep_get(slot->ptep);
	else
		pte = ptep_get_and_clear(b->mm, addr, slot->ptep);
	spin_unlock(slot->ptl);
	if (!pte_none(pte))
		rw_touched(b, addr);
	return pte;
}

/*
 * Put pte, lifted from the address from, at addr, the address of slot to.
 * A page that changes address gets its rmap index (under its folio lock, as
 * rmap walkers read it) and the soft-dirty bit, as mremap gives it.
 */
static void rw_place(struct rw_batch *b, unsigned long from,
		     unsigned long addr, const struct rw_slot *to, pte_t pte,
		     struct folio *folio)
{
	spinlock_t *ptl = to->ptl;
	pte_t *ptep = to->ptep;

	if (pte_none(pte))
		return;
	spin_lock(ptl);
	if (addr != from) {
		if (folio && break_for_test != 2)
			folio->index = linear_page_index(b->vma, addr);
#ifdef CONFIG_MEM_SOFT_DIRTY
		if (pte_present(pte))
			pte = pte_mksoft_dirty(pte);
#endif
		b->pages++;
	}
	set_pte_at(b->mm, addr, ptep, pte);
	spin_unlock(ptl);
	rw_touched(b, addr);
}

/*
 * Huge pages (a file attached with REWIRE_IOC_ATTACH_HUGE): the same steps
 * on PMD entries that map a whole transparent huge page, under the PMD
 * table's lock. A PMD that points to a page table (a huge page the kernel
 * made of base pages) is refused, and so is a hole that keeps a page table
 * (base pages were there): the library copies those, and MADV_COLLAPSE
 * makes them huge pages again (rewire(7)).
 *
 * Each anonymous huge PMD has a page table deposited with it, in a list of
 * its PMD table, for a split to use. Moved within one PMD table (1 GiB),
 * the list need not change; moved to another, one deposit must go with
 * it, or a later split or zap in the new table finds none. The kernel's
 * pgtable_trans_huge_deposit() and _withdraw() are not exported: these
 * keep the same list, the same way, under the same lock.
 */
static void rw_deposit(struct mm_struct *mm, pmd_t *pmdp, pgtable_t pgtable)
{
	lockdep_assert_held(pmd_lockptr(mm, pmdp));
	if (!pmd_huge_pte(mm, pmdp))
		INIT_LIST_HEAD(&pgtable->lru);
	else
		list_add(&pgtable->lru, &pmd_huge_pte(mm, pmdp)->lru);
	pmd_huge_pte(mm, pmdp) = pgtable;
}

static pgtable_t rw_withdraw(struct mm_struct *mm, pmd_t *pmdp)
{
	pgtable_t pgtable = pmd_huge_pte(mm, pmdp);

	lockdep_assert_held(pmd_lockptr(mm, pmdp));
	pmd_huge_pte(mm, pmdp) = list_first_entry_or_null(&pgtable->lru,
							  struct page, lru);
	if (pmd_huge_pte(mm, pmdp))
		list_del(&pgtable->lru);
	return pgtable;
}

/* rw_grab() for a huge page: the entry must map a whole one, or nothing. */
static int rw_grab_huge(struct rw_batch *b, unsigned long addr, bool want_hole,
			struct rw_slot *slot)
{
	struct folio *folio;
	struct page *page;
	pmd_t pmd;
	int err;

	slot->folio = NULL;
	slot->pmdp = rw_pmd_slot(b->mm, addr, &err);
	if (!slot->pmdp)
		return err ? err : -EBUSY;
	slot->ptl = pmd_lockptr(b->mm, slot->pmdp);
	spin_lock(slot->ptl);
	pmd = READ_ONCE(*slot->pmdp);
	spin_unlock(slot->ptl);

	if (pmd_none(pmd))
		return 0;
	if (!pmd_present(pmd))
		return -EAGAIN;		/* a migration entry */
	if (!pmd_trans_huge(pmd))
		return -EBUSY;		/* a page table: base pages, or none */
	if (want_hole)
		return -EEXIST;

	page = pmd_page(pmd);
	folio = page_folio(page);
	if (!folio_trylock(folio))
		return -EAGAIN;
	/* The huge zero page is not anonymous. */
	if (!folio_test_anon(folio) || folio_test_ksm(folio) ||
	    folio_order(folio) != PMD_SHIFT - PAGE_SHIFT ||
	    (!folio_test_swapbacked(folio) && !pmd_dirty(pmd)) ||
	    !PageAnonExclusive(page) || folio_entire_mapcount(folio) != 1 ||
	    folio_maybe_dma_pinned(folio)) {
		folio_unlock(folio);
		return -EBUSY;
	}
	slot->folio = folio;
	return 0;
}

static void rw_lift_huge(struct rw_batch *b, unsigned long addr,
			 struct rw_slot *slot)
{
	spin_lock(slot->ptl);
	slot->pmd = pmdp_huge_get_and_clear(b->mm, addr, slot->pmdp);
	slot->deposit = NULL;
	if (!pmd_none(slot->pmd))
		slot->deposit = rw_withdraw(b->mm, slot->pmdp);
	spin_unlock(slot->ptl);
	if (!pmd_none(slot->pmd))
		rw_touched(b, addr);
}

/* rw_place() for a huge page, its deposit with it. */
static void rw_place_huge(struct rw_batch *b, unsigned long from,
			  unsigned long addr, const struct rw_slot *to,
			  const struct rw_slot *slot)
{
	pmd_t pmd = slot->pmd;

	if (pmd_none(pmd))
		return;
	spin_lock(to->ptl);
	if (addr != from) {
		if (break_for_test != 2)
			slot->folio->index = linear_page_index(b->vma, addr);
#ifdef CONFIG_MEM_SOFT_DIRTY
		pmd = pmd_mksoft_dirty(pmd);
#endif
		b->pages++;
	}
	set_pmd_at(b->mm, addr, to->pmdp, pmd);
	rw_deposit(b->mm, to->pmdp, slot->deposit);
	spin_unlock(to->ptl);
	rw_touched(b, addr);
}

/*
 * Apply one operation completely or not at all. First check and lock every
 * page it touches; then lift every entry, and only then look for a DMA pin:
 * get_user_pages_fast() re-reads the entry after pinning and backs off if
 * it changed, so either it sees the entry gone or we see its pin. Pinned:
 * put everything back. Otherwise place each entry at its destination.
 */
static int rw_apply_op(struct rw_batch *b, const struct rewire_dev_op *op,
		       const u64 *perm)
{
	u64 j, nslots = perm ? op->npages : 2 * op->npages;
	bool move = op->type == REWIRE_DEV_MOVE, pinned = false;
	bool huge = b->shift != PAGE_SHIFT;
	struct rw_slot *s = b->slots;
	int ret = 0;

	for (j = 0; j < nslots && !ret; j++) {
		/* Nothing has changed yet: a kill may stop the op here. */
		if (rw_yield_every(j)) {
			ret = -EINTR;
			break;
		}
		ret = (huge ? rw_grab_huge : rw_grab)(b, rw_slot_addr(b, op, j),
						      move && !(j & 1), &s[j]);
	}
	if (ret) {
		rw_release(s, j);
		return ret;
	}

	for (j = 0; j < nslots; j++) {
		if (!(j % PTRS_PER_PTE))
			cond_resched();
		if (huge)
			rw_lift_huge(b, rw_slot_addr(b, op, j), &s[j]);
		else
			s[j].pte = rw_lift(b, rw_slot_addr(b, op, j), &s[j]);
	}
	/* Paired with the barrier in GUP's pinning, as in the kernel. */
	smp_mb();
	for (j = 0; j < nslots; j++)
		if (s[j].folio && folio_maybe_dma_pinned(s[j].folio))
			pinned = true;
	for (j = 0; j < nslots; j++) {
		u64 to = pinned ? j : rw_slot_dest(op, perm, j);

		/* Half done: yield, but finish the op even if killed. */
		if (!(j % PTRS_PER_PTE))
			cond_resched();
		if (huge)
			rw_place_huge(b, rw_slot_addr(b, op, j),
				      rw_slot_addr(b, op, to), &s[to], &s[j]);
		else
			rw_place(b, rw_slot_addr(b, op, j),
				 rw_slot_addr(b, op, to), &s[to], s[j].pte,
				 s[j].folio);
	}
	/*
	 * Unlocking before the flush is safe: any rmap walk that could now
	 * lock these folios waits for the anon_vma lock, held past the flush.
	 */
	rw_release(s, nslots);
	return pinned ? -EBUSY : 0;
}

/*
 * A few pages changed, and no other CPU has the mm: flush them one by one,
 * as the rest of the TLB is worth keeping and there is no one to interrupt.
 * Otherwise one flush of their span, which the kernel widens to the whole
 * mm past its ceiling: one shootdown for the batch.
 */
static void rw_flush_changed(struct rw_batch *b)
{
	u32 i;

	if (rw_full_flush || b->nfew > RW_FEW_PAGES || !rw_mm_here_only(b->mm)) {
		rw_flush_tlb(b->vma, b->lo, b->hi, b->shift);
		return;
	}
	for (i = 0; i < b->nfew; i++) {
		if (break_for_test == 4 && i + 1 == b->nfew)
			break;
		rw_flush_tlb(b->vma, b->few[i], b->few[i] + (1UL << b->shift),
			     b->shift);
	}
}

/* Flush what the batch changed so far from every TLB. */
static void rw_flush(struct rw_batch *b)
{
	if (b->lo >= b->hi)
		return;
#ifdef REWIRE_TEST_HOOKS
	if (break_for_test == 3)
		rw_flush_tlb_no_gen(b->mm);
	else if (break_for_test != 1)
#endif
		rw_flush_changed(b);
	b->lo = ULONG_MAX;
	b->hi = 0;
	b->nfew = 0;
}

static bool rw_overlap(const struct rewire_file *rf, u64 a, u64 b, u64 npages)
{
	u64 len = npages << rf->shift;

	return a < b + len && b < a + len;
}

static bool rw_in_range(const struct rewire_file *rf, u64 addr, u64 npages)
{
	return !(addr & ((1UL << rf->shift) - 1)) && addr >= rf->start &&
	       addr < rf->end && npages <= (rf->end - addr) >> rf->shift;
}

/* Copy the permutation of op once and check it is one. */
static int rw_load_perm(const struct rewire_dev_op *op, u64 **out,
			unsigned long *seen)
{
	u64 i, n = op->npages;
	u64 *perm;

	perm = kvmalloc_array(n, sizeof(*perm), GFP_KERNEL_ACCOUNT);
	if (!perm)
		return -ENOMEM;
	if (copy_from_user(perm, u64_to_user_ptr(op->perm), n * sizeof(*perm))) {
		kvfree(perm);
		return -EFAULT;
	}
	bitmap_zero(seen, n);
	for (i = 0; i < n; i++) {
		if (perm[i] >= n || test_and_set_bit(perm[i], seen)) {
			kvfree(perm);
			return -EINVAL;
		}
	}
	*out = perm;
	return 0;
}

/* Copy and check the whole batch before anything is locked or moved. */
static int rw_load_ops(const struct rewire_file *rf, struct rw_batch *b,
		       u64 uops)
{
	unsigned long *seen = NULL;
	u64 total = 0, most = 0;
	u32 k;
	int ret;

	b->ops = kvmalloc_array(b->nops, sizeof(*b->ops), GFP_KERNEL_ACCOUNT);
	b->perms = kvcalloc(b->nops, sizeof(*b->perms), GFP_KERNEL_ACCOUNT);
	if (!b->ops || !b->perms)
		return -ENOMEM;
	if (copy_from_user(b->ops, u64_to_user_ptr(uops),
			   (size_t)b->nops * sizeof(*b->ops)))
		return -EFAULT;

	for (k = 0; k < b->nops; k++) {
		const struct rewire_dev_op *op = &b->ops[k];
		bool pair = op->type != REWIRE_DEV_PERMUTE;

		if (op->type < REWIRE_DEV_MOVE || op->type > REWIRE_DEV_PERMUTE ||
		    op->reserved || !op->npages)
			return -EINVAL;
		if (op->npages > REWIRE_DEV_MAX_PAGES - total)
			return -E2BIG;
		total += op->npages;
		most = max(most, op->npages);
		if (!rw_in_range(rf, op->dst, op->npages))
			return -EINVAL;
		if (pair && (op->perm || !rw_in_range(rf, op->src, op->npages) ||
			     rw_overlap(rf, op->dst, op->src, op->npages)))
			return -EINVAL;
		if (!pair && (op->src || !op->perm))
			return -EINVAL;
	}

	for (k = 0; k < b->nops; k++) {
		if (b->ops[k].type != REWIRE_DEV_PERMUTE)
			continue;
		if (!seen) {
			seen = bitmap_alloc(most, GFP_KERNEL_ACCOUNT);
			if (!seen)
				return -ENOMEM;
		}
		ret = rw_load_perm(&b->ops[k], &b->perms[k], seen);
		if (ret) {
			bitmap_free(seen);
			return ret;
		}
	}
	bitmap_free(seen);

	b->slots = kvmalloc_array(2 * most, sizeof(*b->slots),
				  GFP_KERNEL_ACCOUNT);
	return b->slots ? 0 : -ENOMEM;
}

static void rw_free_batch(struct rw_batch *b)
{
	u32 k;

	if (b->perms)
		for (k = 0; k < b->nops; k++)
			kvfree(b->perms[k]);
	kvfree(b->perms);
	kvfree(b->ops);
	kvfree(b->slots);
}

/*
 * The memory rewire may rearrange: one private, anonymous, writable, mlocked
 * mapping; not hugetlb, PFN or I/O memory, not sealed (mseal), not a shadow
 * stack, not registered with userfaultfd (whose write protection and remap
 * events a move would bypass), and writable under the caller's pkeys.
 */
static int rw_check_vma(struct vm_area_struct *vma, unsigned long start,
			unsigned long end)
{
	vm_flags_t refused = VM_SHARED | VM_IO | VM_PFNMAP | VM_MIXEDMAP;

#ifdef VM_SEALED
	refused |= VM_SEALED;
#endif
#ifdef VM_SHADOW_STACK
	refused |= VM_SHADOW_STACK;
#endif
	if (!vma || vma->vm_start > start || vma->vm_end < end)
		return -EFAULT;
	/*
	 * A private mapping of /dev/zero is anonymous to the kernel but keeps
	 * its file, and its page offsets need not be an anonymous mapping's:
	 * 7.3 keeps the two apart (linear_anon_page_index()). Refused.
	 */
	if (!vma_is_anonymous(vma) || vma->vm_file || is_vm_hugetlb_page(vma) ||
	    (vma->vm_flags & refused) || !(vma->vm_flags & VM_WRITE) ||
	    !(vma->vm_flags & VM_LOCKED) || userfaultfd_armed(vma))
		return -EINVAL;
	/* The calling thread's protection keys must let it write there. */
	if (!arch_vma_access_permitted(vma, true, false, false))
		return -EACCES;
	return 0;
}

/*
 * Make the page tables of ops from on, so that nothing needs allocating
 * once the anon_vma lock is held; tables_ok says how many ops have them,
 * tables_err why the next has none.
 */
static void rw_ensure_ops_tables(struct rw_batch *b, u32 from)
{
	int (*ensure)(struct mm_struct *mm, unsigned long addr, u64 npages);
	u32 k;

	ensure = b->shift == PAGE_SHIFT ? rw_ensure_tables : rw_ensure_huge_tables;

	for (k = from; k < b->nops; k++) {
		const struct rewire_dev_op *op = &b->ops[k];

		b->tables_err = ensure(b->mm, op->dst, op->npages);
		if (!b->tables_err && op->type != REWIRE_DEV_PERMUTE)
			b->tables_err = ensure(b->mm, op->src, op->npages);
		if (!b->tables_err && rw_yield())
			b->tables_err = -EINTR;
		if (b->tables_err)
			break;
	}
	b->tables_ok = k;
}

/*
 * Take the batch's locks, for ops from on: the mmap lock for writing, the
 * attached VMA's write lock, checked as attach checked it, and its
 * anon_vma's lock, with the page tables made in between. Returns with all
 * of them held, or with none and an error.
 */
static int rw_lock_batch(struct rewire_file *rf, struct rw_batch *b,
			 struct anon_vma **anon_vma, u32 from)
{
	int ret;

	ret = mmap_write_lock_killable(b->mm);
	if (ret)
		return ret;
	/* After a yield, another VMA may be there, or none. */
	b->vma = find_vma(b->mm, rf->start);
	ret = rw_check_vma(b->vma, rf->start, rf->end);
	/*
	 * Secondary MMUs would keep stale translations: no notifier calls.
	 * Once any notifier was registered this stays true until the mm dies.
	 */
	if (!ret && mm_has_notifiers(b->mm))
		ret = -EBUSY;
	if (ret) {
		mmap_write_unlock(b->mm);
		return ret;
	}
	/* From here no page fault runs in the VMA, per-VMA-lock ones included. */
	rw_vma_start_write(b->vma);
	/* Tables may have gone meanwhile: munmap, or 7.x's PT_RECLAIM. */
	rw_ensure_ops_tables(b, from);
	*anon_vma = b->vma->anon_vma;
	if (*anon_vma)
		rw_anon_vma_lock_write(*anon_vma);
	return 0;
}

/*
 * Flush what moved from every TLB, then let go of the locks. The flush
 * comes first: once the mmap lock is released, munmap, madvise and KSM may
 * act on the moved pages, and the anon_vma lock keeps rmap walks away from
 * them until no CPU knows their old addresses.
 */
static void rw_unlock_batch(struct rw_batch *b, struct anon_vma *anon_vma)
{
	rw_flush(b);
	if (anon_vma)
		rw_anon_vma_unlock_write(anon_vma);
	mmap_write_unlock(b->mm);
}

/*
 * Apply ops in order until one fails; *done counts those applied. An op
 * whose tables cannot be made stops the batch just before it.
 *
 * Between two ops every page is at one address. There, when another task
 * waits for the mmap lock (a fault in this VMA, mmap, munmap, madvise on
 * older kernels), or this one should give up the CPU, the batch flushes
 * what moved, drops every lock, and takes them again, checking the VMA
 * afresh: one shootdown per batch when no one waits, else one per stretch.
 */
static int rw_run(struct rewire_file *rf, struct rw_batch *b, u32 *done)
{
	struct anon_vma *anon_vma;
	u32 k;
	int ret;

	b->lo = ULONG_MAX;
	b->hi = 0;
	b->nfew = 0;
	ret = rw_lock_batch(rf, b, &anon_vma, 0);
	if (ret)
		return ret;

	for (k = 0; k < b->tables_ok; k++) {
		/*
		 * A kill ends the batch here, reported like any other error,
		 * and what moved is flushed below.
		 */
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		if (rw_mmap_lock_wanted(b->mm) || need_resched()) {
			rw_unlock_batch(b, anon_vma);
			cond_resched();
			ret = rw_lock_batch(rf, b, &anon_vma, k);
			if (ret)
				return ret;
			if (k == b->tables_ok)
				break;
		}
		ret = rw_apply_op(b, &b->ops[k], b->perms[k]);
		if (ret)
			break;
		(*done)++;
	}
	if (!ret)
		ret = b->tables_err;
	/* The batch's shootdown, or the last stretch's. */
	rw_unlock_batch(b, anon_vma);
	return ret;
}

static long rw_ioctl_batch(struct rewire_file *rf,
			   struct rewire_dev_batch __user *ub)
{
	struct rewire_dev_batch req;
	struct rw_batch b = { };
	u32 done = 0;
	int ret;

	if (copy_from_user(&req, ub, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.reserved)
		ret = -EINVAL;
	else if (!rf->mm)
		ret = -EBADFD;
	else if (rf->mm != current->mm)
		ret = -EPERM;
	else if (req.nops > REWIRE_DEV_MAX_OPS)
		ret = -E2BIG;
	else
		ret = 0;

	if (!ret && req.nops) {
		b.mm = rf->mm;
		b.shift = rf->shift;
		b.nops = req.nops;
		ret = rw_load_ops(rf, &b, req.ops);
		if (!ret)
			ret = rw_run(rf, &b, &done);
		rw_free_batch(&b);
	}

	/* How far it got, whatever happened. */
	if (put_user(done, &ub->done) || put_user(b.pages, &ub->pages))
		return -EFAULT;
	return ret;
}

/* Attach the range of pages of 1 << shift bytes that ua describes. */
static long rw_ioctl_attach(struct rewire_file *rf,
			    struct rewire_dev_attach __user *ua,
			    unsigned int shift)
{
	unsigned long mask = (1UL << shift) - 1;
	struct mm_struct *mm = current->mm;
	struct rewire_dev_attach req;
	int ret;

	if (copy_from_user(&req, ua, sizeof(req)))
		return -EFAULT;
	if (!req.len || (req.start & mask) || (req.len & mask) ||
	    req.start + req.len < req.start || req.start + req.len > TASK_SIZE)
		return -EINVAL;
	if (rf->mm)
		return -EBUSY;
	if (!mm)
		return -EPERM;

	mmap_read_lock(mm);
	ret = rw_check_vma(find_vma(mm, req.start), req.start,
			   req.start + req.len);
	mmap_read_unlock(mm);
	if (ret)
		return ret;

	mmgrab(mm);
	rf->start = req.start;
	rf->end = req.start + req.len;
	rf->shift = shift;
	rf->mm = mm;
	return 0;
}

static long rw_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct rewire_file *rf = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct rewire_dev_info info = {
		.version = REWIRE_DEV_VERSION,
		.max_ops = REWIRE_DEV_MAX_OPS,
		.max_pages = REWIRE_DEV_MAX_PAGES,
		.page_size = PAGE_SIZE,
	};
	long ret;

	switch (cmd) {
	case REWIRE_IOC_INFO:
		return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
	case REWIRE_IOC_ATTACH_HUGE:
		/* Huge pages are transparent huge pages. */
		if (!IS_ENABLED(CONFIG_TRANSPARENT_HUGEPAGE))
			return -EOPNOTSUPP;
		fallthrough;
	case REWIRE_IOC_ATTACH:
	case REWIRE_IOC_BATCH:
		/* Rearranging memory is writing to the device: O_RDWR only. */
		if (!(file->f_mode & FMODE_WRITE))
			return -EBADF;
		if (mutex_lock_killable(&rf->lock))
			return -EINTR;
		if (cmd == REWIRE_IOC_BATCH)
			ret = rw_ioctl_batch(rf, uarg);
		else
			ret = rw_ioctl_attach(rf, uarg, cmd == REWIRE_IOC_ATTACH ?
					      PAGE_SHIFT : PMD_SHIFT);
		mutex_unlock(&rf->lock);
		if (cmd == REWIRE_IOC_BATCH && break_for_test)
			rw_test_after_batch(rf);
		return ret;
	case REWIRE_IOC_TEST_NOTIFIER:
		if (mutex_lock_killable(&rf->lock))
			return -EINTR;
		ret = rw_test_notifier(rf);
		mutex_unlock(&rf->lock);
		return ret;
	default:
		return -ENOTTY;
	}
}

static int rw_open(struct inode *inode, struct file *file)
{
	struct rewire_file *rf = kzalloc(sizeof(*rf), GFP_KERNEL_ACCOUNT);

	if (!rf)
		return -ENOMEM;
	mutex_init(&rf->lock);
	file->private_data = rf;
	return 0;
}

static int rw_release_file(struct inode *inode, struct file *file)
{
	struct rewire_file *rf = file->private_data;

	rw_test_notifier_release(rf);
	if (rf->mm)
		mmdrop(rf->mm);
	mutex_destroy(&rf->lock);
	kfree(rf);
	return 0;
}

static const struct file_operations rw_fops = {
	.owner = THIS_MODULE,
	.open = rw_open,
	.release = rw_release_file,
	.unlocked_ioctl = rw_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice rw_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "rewire",
	.fops = &rw_fops,
	/* root and group "rewire" (60-rewire.rules sets the group) */
	.mode = 0660,
};

static int __init rw_init(void)
{
	int ret = rw_resolve_symbols();

	if (ret)
		return ret;
	if (break_for_test)
		pr_notice("break_for_test=%u: for the test suite only\n",
			  break_for_test);
	if (rw_full_flush)
		pr_info("flushing each process's whole mm through an empty zap (full_flush)\n");
	return misc_register(&rw_dev);
}

static void __exit rw_exit(void)
{
	misc_deregister(&rw_dev);
}

module_init(rw_init);
module_exit(rw_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Move page-table entries of mlocked anonymous memory in batches");
MODULE_AUTHOR("The rewire developers");
MODULE_VERSION("1");
