// SPDX-License-Identifier: GPL-2.0
/*
 * rewire.ko: /dev/rewire rearranges the pages of the calling process's own
 * mlocked, private, anonymous memory by moving page-table entries, a whole
 * batch of moves, swaps and permutations under one TLB shootdown.
 *
 * This is the restricted successor of remap_file_pages() that Nick Piggin
 * proposed in 2007: anonymous and mlocked memory only, so no writeback, no
 * file reverse mapping and no swap entries to care about.
 *
 * Locking, outermost first:
 *   mmap_lock (write)      no fault, GUP, madvise or munmap in the mm
 *   the VMA's lock (write) no per-VMA-lock fault either (6.4 on)
 *   anon_vma lock (write)  no rmap walk (migration, reclaim, memory-failure)
 *   folio lock (trylock)   each page whose index changes, as rmap requires
 *   PTE locks              taken in address order, two at most
 * The anon_vma lock is held until the TLB has been flushed, so no rmap walk
 * can see a moved page before every CPU has forgotten its old address.
 * The folio lock ranks above the anon_vma lock, hence trylock (-EAGAIN).
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
#include <linux/slab.h>
#include <linux/swap.h>
#include <linux/swapops.h>
#include <linux/uaccess.h>
#include <asm/tlbflush.h>

#include "compat.h"
#include "rewire_uapi.h"

/*
 * For the test suite's negative controls only, set at load time by root:
 * 1 skips the TLB flush, 2 skips the rmap index update. Either breaks the
 * module, and the tests must notice.
 */
static unsigned int break_for_test;
module_param(break_for_test, uint, 0444);
MODULE_PARM_DESC(break_for_test, "tests only: 1 skip TLB flush, 2 skip index update");

struct rewire_file {
	struct mutex lock;		/* serializes ioctls on this file */
	struct mm_struct *mm;		/* NULL until attached */
	unsigned long start, end;	/* the attached range */
};

/* One page of an operation, between validation and the move. */
struct rw_slot {
	struct folio *folio;	/* locked; NULL for a hole or the zero page */
	pte_t pte;		/* what a permutation lifted */
};

/* The state of one batch: everything allocated before any lock is taken. */
struct rw_batch {
	struct mm_struct *mm;
	struct vm_area_struct *vma;
	struct rewire_dev_op *ops;
	u32 nops;
	u64 **perms;		/* per op: the copied permutation, or NULL */
	struct rw_slot *slots;	/* two per page of the largest op */
	unsigned long lo, hi;	/* the span of changed PTEs, for the flush */
	u64 pages;
};

static int rw_noop_pte(pte_t *pte, unsigned long addr, void *data)
{
	return 0;
}

/* The PMD of addr when it points to a page table; NULL otherwise. */
static pmd_t *rw_pmd(struct mm_struct *mm, unsigned long addr, bool *huge)
{
	pgd_t *pgd = pgd_offset(mm, addr);
	p4d_t *p4d;
	pud_t *pud;
	pmd_t *pmd;
	pmd_t val;

	*huge = false;
	if (pgd_none(*pgd) || pgd_bad(*pgd))
		return NULL;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		return NULL;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud))
		return NULL;
	if (pud_leaf(*pud) || pud_bad(*pud)) {
		*huge = true;
		return NULL;
	}
	pmd = pmd_offset(pud, addr);
	val = READ_ONCE(*pmd);
	if (pmd_none(val))
		return NULL;
	if (!pmd_present(val) || pmd_trans_huge(val) || pmd_leaf(val) ||
	    pmd_bad(val)) {
		*huge = true;
		return NULL;
	}
	return pmd;
}

/*
 * Make sure every page of [addr, addr + npages) has a page table, so that
 * nothing needs allocating once the anon_vma lock is held (reclaim walks
 * anon_vmas). THP-mapped PMDs are refused.
 */
static int rw_ensure_tables(struct mm_struct *mm, unsigned long addr,
			    u64 npages)
{
	unsigned long end = addr + (npages << PAGE_SHIFT);
	bool huge;
	int ret;

	while (addr < end) {
		if (!rw_pmd(mm, addr, &huge)) {
			if (huge)
				return -EBUSY;
			ret = apply_to_page_range(mm, addr, PAGE_SIZE,
						  rw_noop_pte, NULL);
			if (ret)
				return ret;
			if (!rw_pmd(mm, addr, &huge))
				return -ENOMEM;
		}
		addr = pmd_addr_end(addr, end);
	}
	return 0;
}

static pte_t *rw_pte(struct mm_struct *mm, unsigned long addr,
		     spinlock_t **ptl)
{
	bool huge;
	pmd_t *pmd = rw_pmd(mm, addr, &huge);

	if (!pmd)
		return NULL;
	*ptl = pte_lockptr(mm, pmd);
	return pte_offset_kernel(pmd, addr);
}

/*
 * Check that the page at addr may move, and lock its folio. A hole is fine,
 * and so is the shared zero page unless a hole is required. On error the
 * slot holds no lock.
 */
static int rw_grab(struct rw_batch *b, unsigned long addr, bool want_hole,
		   struct rw_slot *slot)
{
	struct folio *folio;
	struct page *page;
	spinlock_t *ptl;
	pte_t *ptep;
	pte_t pte;

	slot->folio = NULL;
	ptep = rw_pte(b->mm, addr, &ptl);
	if (!ptep)
		return -EFAULT;
	spin_lock(ptl);
	pte = ptep_get(ptep);
	spin_unlock(ptl);

	if (pte_none(pte))
		return 0;
	if (want_hole)
		return -EEXIST;
	if (!pte_present(pte))
		return is_migration_entry(pte_to_swp_entry(pte)) ? -EAGAIN :
								   -EBUSY;
	if (is_zero_pfn(pte_pfn(pte)))
		return 0;
	if (pte_special(pte) || !pfn_valid(pte_pfn(pte)))
		return -EBUSY;

	/* The PTE cannot change under our locks, so it pins the page. */
	page = pte_page(pte);
	folio = page_folio(page);
	if (!folio_test_anon(folio) || folio_test_ksm(folio) ||
	    folio_test_large(folio) || folio_test_swapcache(folio) ||
	    !PageAnonExclusive(page) || atomic_read(&page->_mapcount) != 0 ||
	    folio_maybe_dma_pinned(folio))
		return -EBUSY;
	if (!folio_trylock(folio))
		return -EAGAIN;
	slot->folio = folio;
	return 0;
}

static void rw_release(struct rw_slot *slots, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (slots[i].folio)
			folio_unlock(slots[i].folio);
}

static void rw_touched(struct rw_batch *b, unsigned long addr)
{
	b->lo = min(b->lo, addr);
	b->hi = max(b->hi, addr + PAGE_SIZE);
}

/* Put pte, lifted from elsewhere, at addr; the PTE lock is held. */
static void rw_place(struct rw_batch *b, unsigned long addr, pte_t *ptep,
		     pte_t pte, struct folio *folio)
{
	if (pte_none(pte))
		return;
	if (folio && break_for_test != 2)
		folio->index = linear_page_index(b->vma, addr);
	set_pte_at(b->mm, addr, ptep, pte);
	rw_touched(b, addr);
	b->pages++;
}

static void rw_double_lock(spinlock_t *l1, spinlock_t *l2)
{
	if (l1 == l2) {
		spin_lock(l1);
	} else if (l1 < l2) {
		spin_lock(l1);
		spin_lock_nested(l2, SINGLE_DEPTH_NESTING);
	} else {
		spin_lock(l2);
		spin_lock_nested(l1, SINGLE_DEPTH_NESTING);
	}
}

static void rw_double_unlock(spinlock_t *l1, spinlock_t *l2)
{
	spin_unlock(l1);
	if (l1 != l2)
		spin_unlock(l2);
}

/* Exchange the PTEs at x and y, either of which may be a hole. */
static void rw_exchange(struct rw_batch *b, unsigned long x, unsigned long y,
			struct rw_slot *sx, struct rw_slot *sy)
{
	spinlock_t *lx, *ly;
	pte_t *px = rw_pte(b->mm, x, &lx);
	pte_t *py = rw_pte(b->mm, y, &ly);
	pte_t vx, vy;

	rw_double_lock(lx, ly);
	vx = ptep_get_and_clear(b->mm, x, px);
	vy = ptep_get_and_clear(b->mm, y, py);
	if (!pte_none(vx) || !pte_none(vy)) {
		rw_touched(b, x);
		rw_touched(b, y);
	}
	rw_place(b, y, py, vx, sx->folio);
	rw_place(b, x, px, vy, sy->folio);
	rw_double_unlock(lx, ly);
}

static void rw_permute(struct rw_batch *b, unsigned long base, u64 n,
		       const u64 *perm)
{
	struct rw_slot *s = b->slots;
	spinlock_t *ptl;
	unsigned long addr;
	pte_t *ptep;
	u64 i;

	for (i = 0; i < n; i++) {
		addr = base + (i << PAGE_SHIFT);
		ptep = rw_pte(b->mm, addr, &ptl);
		spin_lock(ptl);
		s[i].pte = ptep_get_and_clear(b->mm, addr, ptep);
		spin_unlock(ptl);
		if (!pte_none(s[i].pte))
			rw_touched(b, addr);
	}
	for (i = 0; i < n; i++) {
		addr = base + (perm[i] << PAGE_SHIFT);
		ptep = rw_pte(b->mm, addr, &ptl);
		spin_lock(ptl);
		rw_place(b, addr, ptep, s[i].pte, s[i].folio);
		spin_unlock(ptl);
	}
}

/*
 * Apply one operation completely or not at all: first check and lock every
 * page it touches, then move the PTEs, which can no longer fail.
 */
static int rw_apply_op(struct rw_batch *b, const struct rewire_dev_op *op,
		       const u64 *perm)
{
	bool move = op->type == REWIRE_DEV_MOVE;
	u64 i, n = op->npages, nslots = 0;
	struct rw_slot *s = b->slots;
	int ret = 0;

	for (i = 0; i < n && !ret; i++) {
		unsigned long off = i << PAGE_SHIFT;

		ret = rw_grab(b, op->dst + off, move, &s[nslots++]);
		if (!ret && !perm)
			ret = rw_grab(b, op->src + off, false, &s[nslots++]);
	}
	if (ret) {
		rw_release(s, nslots);
		return ret;
	}

	if (perm) {
		rw_permute(b, op->dst, n, perm);
	} else {
		for (i = 0; i < n; i++)
			rw_exchange(b, op->src + (i << PAGE_SHIFT),
				    op->dst + (i << PAGE_SHIFT),
				    &s[2 * i + 1], &s[2 * i]);
	}
	/*
	 * Unlocking before the flush is safe: any rmap walk that could now
	 * lock these folios waits for the anon_vma lock, held past the flush.
	 */
	rw_release(s, nslots);
	return 0;
}

static bool rw_overlap(u64 a, u64 b, u64 npages)
{
	u64 len = npages << PAGE_SHIFT;

	return a < b + len && b < a + len;
}

static bool rw_in_range(const struct rewire_file *rf, u64 addr, u64 npages)
{
	return PAGE_ALIGNED(addr) && addr >= rf->start && addr < rf->end &&
	       npages <= (rf->end - addr) >> PAGE_SHIFT;
}

/* Copy the permutation of op once and check it is one. */
static int rw_load_perm(const struct rewire_dev_op *op, u64 **out,
			unsigned long *seen)
{
	u64 i, n = op->npages;
	u64 *perm;

	perm = kvmalloc_array(n, sizeof(*perm), GFP_KERNEL);
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

	b->ops = kvmalloc_array(b->nops, sizeof(*b->ops), GFP_KERNEL);
	b->perms = kvcalloc(b->nops, sizeof(*b->perms), GFP_KERNEL);
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
			     rw_overlap(op->dst, op->src, op->npages)))
			return -EINVAL;
		if (!pair && (op->src || !op->perm))
			return -EINVAL;
	}

	for (k = 0; k < b->nops; k++) {
		if (b->ops[k].type != REWIRE_DEV_PERMUTE)
			continue;
		if (!seen) {
			seen = bitmap_alloc(most, GFP_KERNEL);
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

	b->slots = kvmalloc_array(2 * most, sizeof(*b->slots), GFP_KERNEL);
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
 * The memory rewire may rearrange: one private anonymous mlocked mapping,
 * not hugetlb, not a PFN or I/O mapping.
 */
static int rw_check_vma(struct vm_area_struct *vma, unsigned long start,
			unsigned long end)
{
	if (!vma || vma->vm_start > start || vma->vm_end < end)
		return -EFAULT;
	if (!vma_is_anonymous(vma) || is_vm_hugetlb_page(vma) ||
	    (vma->vm_flags & (VM_SHARED | VM_IO | VM_PFNMAP | VM_MIXEDMAP)) ||
	    !(vma->vm_flags & VM_LOCKED))
		return -EINVAL;
	return 0;
}

/* Apply ops in order until one fails; *done counts those applied. */
static int rw_run(struct rewire_file *rf, struct rw_batch *b, u32 *done)
{
	struct anon_vma *anon_vma;
	u32 k;
	int ret;

	ret = mmap_write_lock_killable(b->mm);
	if (ret)
		return ret;
	b->vma = find_vma(b->mm, rf->start);
	ret = rw_check_vma(b->vma, rf->start, rf->end);
	/* Secondary MMUs would keep stale translations: no notifier calls. */
	if (!ret && mm_has_notifiers(b->mm))
		ret = -EBUSY;
	for (k = 0; k < b->nops && !ret; k++) {
		ret = rw_ensure_tables(b->mm, b->ops[k].dst, b->ops[k].npages);
		if (!ret && b->ops[k].type != REWIRE_DEV_PERMUTE)
			ret = rw_ensure_tables(b->mm, b->ops[k].src,
					       b->ops[k].npages);
	}
	if (ret)
		goto out;

	rw_vma_start_write(b->vma);
	anon_vma = b->vma->anon_vma;
	if (anon_vma)
		anon_vma_lock_write(anon_vma);

	b->lo = ULONG_MAX;
	b->hi = 0;
	for (k = 0; k < b->nops; k++) {
		ret = rw_apply_op(b, &b->ops[k], b->perms[k]);
		if (ret)
			break;
		(*done)++;
	}
	/* The one shootdown of the batch. */
	if (b->lo < b->hi && break_for_test != 1)
		rw_flush_tlb_mm_range(b->mm, b->lo, b->hi, PAGE_SHIFT, false);

	if (anon_vma)
		anon_vma_unlock_write(anon_vma);
out:
	mmap_write_unlock(b->mm);
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

static long rw_ioctl_attach(struct rewire_file *rf,
			    struct rewire_dev_attach __user *ua)
{
	struct mm_struct *mm = current->mm;
	struct rewire_dev_attach req;
	int ret;

	if (copy_from_user(&req, ua, sizeof(req)))
		return -EFAULT;
	if (!req.len || !PAGE_ALIGNED(req.start) || !PAGE_ALIGNED(req.len) ||
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
	case REWIRE_IOC_ATTACH:
		mutex_lock(&rf->lock);
		ret = rw_ioctl_attach(rf, uarg);
		mutex_unlock(&rf->lock);
		return ret;
	case REWIRE_IOC_BATCH:
		if (mutex_lock_interruptible(&rf->lock))
			return -EINTR;
		ret = rw_ioctl_batch(rf, uarg);
		mutex_unlock(&rf->lock);
		return ret;
	default:
		return -ENOTTY;
	}
}

static int rw_open(struct inode *inode, struct file *file)
{
	struct rewire_file *rf = kzalloc(sizeof(*rf), GFP_KERNEL);

	if (!rf)
		return -ENOMEM;
	mutex_init(&rf->lock);
	file->private_data = rf;
	return 0;
}

static int rw_release_file(struct inode *inode, struct file *file)
{
	struct rewire_file *rf = file->private_data;

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
	.mode = 0666,
};

static int __init rw_init(void)
{
	int ret = rw_resolve_symbols();

	if (ret)
		return ret;
	if (break_for_test)
		pr_notice("break_for_test=%u: for the test suite only\n",
			  break_for_test);
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
