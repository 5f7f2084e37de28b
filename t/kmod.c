/*
 * rewire.ko itself, through /dev/rewire (rewire(4)): every refusal with its
 * errno, the bounds, exact progress, TLB coherence with threads on other
 * CPUs, the reverse mapping after moves (NUMA migration of every page), and
 * a fuzz of malformed calls; then the same on huge pages moved as PMD
 * entries (REWIRE_KMOD_ONLY=huge: those alone), with their refusals and a
 * move between two PMD tables. It runs where the module is loaded: inside the
 * VMs of t/vm.sh. REWIRE_KMOD_BROKEN=1, 2 or 3 says the module was loaded
 * with break_for_test=1 (no TLB flush), 2 (no rmap update) or 3 (no TLB
 * generation advance): then only the test that must notice runs (1 and 2
 * on huge pages too), and
 * passes when it does notice (3 only on real hardware with PCID: it skips
 * under QEMU's TCG, which flushes on every switch of process), after the
 * mmu-notifier refusal, which needs that build's test hooks (also alone:
 * REWIRE_KMOD_ONLY=notifier with rewire-test.ko loaded). With 5, 6 or 7
 * (a lock order, a use after free, a page mapped twice) it sends a few
 * batches, and the debugging kernel's checkers must report (t/vm.t).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "devlib.h"
#include "testlib.h"

#define DEV "/dev/rewire"

static struct rewire_dev_info info;

/* The system calls themselves: AddressSanitizer's mlock(3) does nothing. */
static int lock_range(const void *p, size_t len)
{
	return (int)syscall(SYS_mlock, p, len);
}

static int unlock_range(const void *p, size_t len)
{
	return (int)syscall(SYS_munlock, p, len);
}

static int dev_open(void)
{
	int fd = open(DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		bail("open %s: %s", DEV, strerror(errno));
	return fd;
}

/* n pages of private anonymous memory, mlocked and tagged from tag0 on;
 * MADV_NOHUGEPAGE, or, while page_size is a huge page (huge_tests()),
 * aligned to one and MADV_HUGEPAGE. */
static char *map_pages(size_t n, uint64_t tag0, bool lock)
{
	size_t extra = page_size == base_page_size ? 0 : page_size;
	char *p = mmap(NULL, n * page_size + extra, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bail("mmap: %s", strerror(errno));
	if (extra) {
		char *aligned = (char *)(((uintptr_t)p + extra - 1) & ~(uintptr_t)(extra - 1));

		if (aligned > p)
			munmap(p, (size_t)(aligned - p));
		munmap(aligned + n * page_size, (size_t)(p + extra - aligned));
		p = aligned;
	}
	madvise(p, n * page_size, extra ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	if (lock && lock_range(p, n * page_size))
		bail("mlock: %s", strerror(errno));
	for (size_t i = 0; tag0 && i < n; i++)
		tag_page(p + i * page_size, tag0 + i);
	return p;
}

/* EAGAIN means "try again" (a page locked by someone else for a moment;
 * on 7.x kernels DAMON's monitor often): as the library does, 100 times. */
static int batch_retry(int fd, const struct rewire_dev_op *ops, uint32_t n)
{
	int ret, tries = 0;

	do
		ret = batch(fd, ops, n, NULL);
	while (ret == -EAGAIN && ++tries < 100);
	return ret;
}

static struct rewire_dev_op op_of(int type, const char *dst, const char *src, size_t n,
				  const uint64_t *perm)
{
	return (struct rewire_dev_op){ .type = (uint32_t)type, .dst = (uintptr_t)dst,
				       .src = (uintptr_t)src, .npages = n,
				       .perm = (uintptr_t)perm };
}

static int one(int fd, int type, const char *dst, const char *src, size_t n,
	       const uint64_t *perm)
{
	struct rewire_dev_op op = op_of(type, dst, src, n, perm);

	return batch(fd, &op, 1, NULL);
}

/* One swap of a page, retried on EAGAIN. */
static int batch_retry_one(int fd, const char *a, const char *b)
{
	struct rewire_dev_op op = op_of(REWIRE_DEV_SWAP, a, b, 1, NULL);

	return batch_retry(fd, &op, 1);
}

/* A random permutation of the n pages at base, in one call; the model
 * follows when it succeeds. Returns 0 or -errno. */
static int random_permute(int fd, char *base, size_t n, uint64_t *model)
{
	uint64_t perm[4096];
	struct rewire_dev_op op = op_of(REWIRE_DEV_PERMUTE, base, NULL, n, perm);
	int ret;

	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	shuffle((size_t *)perm, n);
	ret = batch(fd, &op, 1, NULL);
	if (!ret)
		model_apply(model, n, &op, base);
	return ret;
}

static void interface(void)
{
	int fd = dev_open(), fd2 = dev_open();
	char *p = map_pages(16, 1, true);
	uint64_t model[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

	/* A gap after the 8 pages, so nothing merges with them. */
	munmap(p + 8 * page_size, 8 * page_size);

	is_int(0, ioctl(fd, REWIRE_IOC_INFO, &info), "REWIRE_IOC_INFO");
	ok(info.version == REWIRE_DEV_VERSION && info.max_ops == REWIRE_DEV_MAX_OPS &&
	   info.max_pages == REWIRE_DEV_MAX_PAGES && info.page_size == page_size,
	   "version %u, at most %u ops and %u pages a batch, page size %u",
	   info.version, info.max_ops, info.max_pages, info.page_size);
	is_int(-ENOTTY, ioctl(fd, _IO(REWIRE_IOC_MAGIC, 9)) ? -errno : 0, "unknown ioctl: ENOTTY");
	is_int(-EBADFD, one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL),
	       "a batch before attaching: EBADFD");
	is_int(-EINVAL, attach(fd, p, 0), "attach zero bytes: EINVAL");
	is_int(-EINVAL, attach(fd, p + 1, page_size), "attach an unaligned start: EINVAL");
	is_int(-EINVAL, attach(fd, p, page_size + 1), "attach an unaligned length: EINVAL");
	is_int(-EINVAL, attach(fd, (void *)-page_size, 2 * page_size), "attach a range that wraps: EINVAL");
	is_int(-EFAULT, attach(fd, p, 16 * page_size), "attach past the mapping: EFAULT");
	is_int(-EFAULT, ioctl(fd, REWIRE_IOC_ATTACH, (void *)8) ? -errno : 0,
	       "attach through a bad pointer: EFAULT");
	is_int(0, attach(fd, p, 8 * page_size), "attach 8 mlocked anonymous pages");
	is_int(-EBUSY, attach(fd, p, 8 * page_size), "attach twice: EBUSY");
	is_int(0, one(fd, REWIRE_DEV_SWAP, p, p + 7 * page_size, 1, NULL), "swap two pages");
	model[0] = 8, model[7] = 1;
	ok(check_pages(p, model, 8), "the pages changed places");
	is_int(0, batch(fd, NULL, 0, NULL), "an empty batch does nothing");
	is_int(-EFAULT, ioctl(fd, REWIRE_IOC_BATCH, (void *)8) ? -errno : 0,
	       "a batch through a bad pointer: EFAULT");
	/* Another file may attach the same memory; both see one page table. */
	is_int(0, attach(fd2, p, 8 * page_size), "a second file attaches the same range");
	is_int(0, one(fd2, REWIRE_DEV_SWAP, p, p + 7 * page_size, 1, NULL), "and swaps back");
	model[0] = 1, model[7] = 8;
	ok(check_pages(p, model, 8), "the pages are back");
	close(fd2);

	/* Rearranging memory needs the file open for writing. */
	{
		int ro = open(DEV, O_RDONLY | O_CLOEXEC);
		struct stat st;
		unsigned int mode = stat(DEV, &st) ? 0 : st.st_mode & 0777;

		ok(mode == 0660, "the device is created with mode 0660 (now %o)", mode);
		if (ro < 0)
			bail("open %s read-only: %s", DEV, strerror(errno));
		is_int(0, ioctl(ro, REWIRE_IOC_INFO, &info) ? -errno : 0,
		       "opened read-only: REWIRE_IOC_INFO works");
		is_int(-EBADF, attach(ro, p, 8 * page_size), "opened read-only: attach fails with EBADF");
		is_int(-EBADF, one(ro, REWIRE_DEV_SWAP, p, p + 7 * page_size, 1, NULL),
		       "opened read-only: a batch fails with EBADF");
		ok(check_pages(p, model, 8), "nothing moved");
		close(ro);
	}
	close(fd);
	munmap(p, 8 * page_size);
}

/* Everything a batch refuses to start, with nothing moved. */
static void bounds(void)
{
	enum { N = 16 };
	int fd = dev_open();
	char *p = map_pages(N, 100, true), *q;
	uint64_t model[N], perm[N], *big;
	struct rewire_dev_op ops[3], *many;
	struct rewire_dev_batch b = { 0 };
	uint32_t done;
	struct {
		const char *what;
		struct rewire_dev_op op;
		int err;
	} bad[] = {
		{ "type 0", op_of(0, p, p + page_size, 1, NULL), -EINVAL },
		{ "type 4", op_of(4, p, p + page_size, 1, NULL), -EINVAL },
		{ "zero pages", op_of(REWIRE_DEV_SWAP, p, p + page_size, 0, NULL), -EINVAL },
		{ "unaligned dst", op_of(REWIRE_DEV_SWAP, p + 8, p + 2 * page_size, 1, NULL), -EINVAL },
		{ "unaligned src", op_of(REWIRE_DEV_SWAP, p, p + page_size + 8, 1, NULL), -EINVAL },
		{ "dst below the range", op_of(REWIRE_DEV_SWAP, p - page_size, p, 1, NULL), -EINVAL },
		{ "src past the range", op_of(REWIRE_DEV_SWAP, p, p + N * page_size, 1, NULL), -EINVAL },
		{ "a run that leaves the range", op_of(REWIRE_DEV_SWAP, p, p + (N - 2) * page_size, 3, NULL), -EINVAL },
		{ "overlapping swap", op_of(REWIRE_DEV_SWAP, p, p + page_size, 2, NULL), -EINVAL },
		{ "overlapping move", op_of(REWIRE_DEV_MOVE, p + page_size, p, 2, NULL), -EINVAL },
		{ "a swap with a permutation", op_of(REWIRE_DEV_SWAP, p, p + page_size, 1, perm), -EINVAL },
		{ "a permutation with src", op_of(REWIRE_DEV_PERMUTE, p, p + page_size, 2, perm), -EINVAL },
		{ "a permutation without perm", op_of(REWIRE_DEV_PERMUTE, p, NULL, 2, NULL), -EINVAL },
		{ "perm at a bad address", op_of(REWIRE_DEV_PERMUTE, p, NULL, 2, (uint64_t *)8), -EFAULT },
		{ "a run of 2^63 pages", op_of(REWIRE_DEV_SWAP, p, p + page_size, 1ULL << 63, NULL), -E2BIG },
	};

	for (size_t i = 0; i < N; i++)
		model[i] = 100 + i;
	is_int(0, attach(fd, p, N * page_size), "attach %d pages", N);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ops[0] = op_of(REWIRE_DEV_SWAP, p + 2 * page_size, p + 3 * page_size, 1, NULL);
		ops[1] = bad[i].op;
		is_int(bad[i].err, batch(fd, ops, 2, &done), "%s: refused", bad[i].what);
		ok(done == 0 && check_pages(p, model, N), "%s: nothing moved, the valid op before it neither", bad[i].what);
	}
	for (size_t i = 0; i < N; i++)
		perm[i] = (i + 1) % N;
	perm[5] = perm[6];
	is_int(-EINVAL, one(fd, REWIRE_DEV_PERMUTE, p, NULL, N, perm), "a permutation with a repeat: EINVAL");
	perm[5] = N;
	is_int(-EINVAL, one(fd, REWIRE_DEV_PERMUTE, p, NULL, N, perm), "a permutation past its run: EINVAL");
	ok(check_pages(p, model, N), "nothing moved");

	b.ops = (uintptr_t)ops;
	b.nops = 1;
	b.flags = 1;
	ops[0] = op_of(REWIRE_DEV_SWAP, p, p + page_size, 1, NULL);
	is_int(-EINVAL, ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0, "batch flags: EINVAL");
	b.flags = 0;
	ops[0].reserved = 1;
	is_int(-EINVAL, ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0, "op reserved field: EINVAL");
	b.ops = 8;
	is_int(-EFAULT, ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0, "ops at a bad address: EFAULT");
	b.ops = (uintptr_t)ops;
	b.nops = info.max_ops + 1;
	is_int(-E2BIG, ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0, "%u ops: E2BIG", b.nops);

	/* The page bound counts the pages of all ops together. */
	q = map_pages(info.max_pages + 1, 0, false);
	close(fd);
	fd = dev_open();
	if (lock_range(q, (info.max_pages + 1) * page_size) == 0) {
		is_int(0, attach(fd, q, (info.max_pages + 1) * page_size), "attach %u pages", info.max_pages + 1);
		big = calloc(info.max_pages + 1, sizeof(*big));
		for (size_t i = 0; i <= info.max_pages; i++)
			big[i] = i;
		is_int(-E2BIG, one(fd, REWIRE_DEV_PERMUTE, q, NULL, info.max_pages + 1, big),
		       "one op of %u pages: E2BIG", info.max_pages + 1);
		many = calloc(2, sizeof(*many));
		many[0] = op_of(REWIRE_DEV_PERMUTE, q, NULL, info.max_pages, big);
		many[1] = op_of(REWIRE_DEV_PERMUTE, q, NULL, 1, big);
		is_int(-E2BIG, batch(fd, many, 2, NULL), "ops of %u pages together: E2BIG", info.max_pages + 1);
		is_int(0, batch_retry(fd, many, 1), "and %u pages: accepted", info.max_pages);
		free(many);
		free(big);
	} else {
		for (int i = 0; i < 4; i++)
			ok(1, "# SKIP cannot mlock %u pages: %s", info.max_pages + 1, strerror(errno));
	}
	munmap(q, (info.max_pages + 1) * page_size);
	close(fd);
	munmap(p, N * page_size);
}

/* Exact progress, and the errors that stop a batch partway. */
static void progress(void)
{
	enum { N = 8 };
	int fd = dev_open();
	char *p = map_pages(N, 200, true);
	uint64_t model[N];
	struct rewire_dev_op ops[3];
	uint32_t done;

	for (size_t i = 0; i < N; i++)
		model[i] = 200 + i;
	attach(fd, p, N * page_size);
	madvise(p + 6 * page_size, 2 * page_size, MADV_DONTNEED_LOCKED);
	model[6] = model[7] = HOLE;
	ops[0] = op_of(REWIRE_DEV_MOVE, p + 6 * page_size, p, 1, NULL);
	ops[1] = op_of(REWIRE_DEV_MOVE, p + 6 * page_size, p + page_size, 1, NULL);
	ops[2] = op_of(REWIRE_DEV_MOVE, p + 7 * page_size, p + 2 * page_size, 1, NULL);
	is_int(-EEXIST, batch(fd, ops, 3, &done), "a move onto data: EEXIST");
	is_int(1, done, "after exactly one op");
	model_apply(model, NELEMS(model), &ops[0], p);
	ok(check_pages(p, model, N), "the first op moved, the rest did not");
	is_int(0, batch(fd, &ops[2], 1, &done), "the last op alone");
	model_apply(model, NELEMS(model), &ops[2], p);
	ok(done == 1 && check_pages(p, model, N), "moved");

	/* A read of a hole maps the shared zero page: not a hole any more. */
	ok(((volatile char *)p)[0] == 0, "a read of a hole gives zeros");
	is_int(-EEXIST, one(fd, REWIRE_DEV_MOVE, p, p + 3 * page_size, 1, NULL),
	       "a move onto the zero page: EEXIST");
	is_int(0, one(fd, REWIRE_DEV_SWAP, p, p + 3 * page_size, 1, NULL),
	       "a swap with the zero page moves both");
	model[0] = model[3];
	model[3] = HOLE;
	ok(page_has_tag(p, model[0]) && ((volatile char *)p)[3 * page_size] == 0,
	   "data and zeros changed places");
	close(fd);
	munmap(p, N * page_size);
}

/*
 * A kill during a batch. A CLONE_VM child, which shares this memory and the
 * file, runs one batch of KILL_OPS one-page swaps and is killed partway:
 * the batch must stop between two ops and write back how many it applied,
 * and the memory, read here, must show exactly those.
 */
enum { KILL_PAIRS = 4096, KILL_OPS = 65536 };
static struct {
	int fd;
	atomic_int calling;
	struct rewire_dev_batch b;
} kill_state;

static int kill_child(void *arg __attribute__((unused)))
{
	atomic_store(&kill_state.calling, 1);
	ioctl(kill_state.fd, REWIRE_IOC_BATCH, &kill_state.b);
	return 0;
}

static void kill_test(void)
{
	enum { STACK = 1 << 16 };
	int fd = dev_open(), st, bad = 0, tries;
	char *p = map_pages(2 * KILL_PAIRS, 1000, true), *stack = malloc(STACK);
	struct rewire_dev_op *ops = calloc(KILL_OPS, sizeof(*ops));
	uint64_t model[2 * KILL_PAIRS];
	uint32_t done = 0, midway = 0;
	long delay = 1000;

	if (!stack || !ops)
		bail("out of memory");
	for (size_t i = 0; i < 2 * KILL_PAIRS; i++)
		model[i] = 1000 + i;
	is_int(0, attach(fd, p, 2 * KILL_PAIRS * page_size), "attach %d pages", 2 * KILL_PAIRS);
	for (size_t k = 0; k < KILL_OPS; k++)
		ops[k] = op_of(REWIRE_DEV_SWAP, p + (k % KILL_PAIRS) * page_size,
			       p + (k % KILL_PAIRS + KILL_PAIRS) * page_size, 1, NULL);
	for (tries = 0; tries < 60 && !midway && !bad; tries++) {
		pid_t pid;

		kill_state.fd = fd;
		atomic_store(&kill_state.calling, 0);
		kill_state.b = (struct rewire_dev_batch){ .ops = (uintptr_t)ops, .nops = KILL_OPS,
							  .done = UINT32_MAX, .pages = UINT64_MAX };
		pid = clone(kill_child, stack + STACK, CLONE_VM | SIGCHLD, NULL);
		if (pid < 0)
			bail("clone: %s", strerror(errno));
		while (!atomic_load(&kill_state.calling))
			sched_yield();
		usleep((useconds_t)delay);
		kill(pid, SIGKILL);
		if (waitpid(pid, &st, 0) != pid)
			bail("waitpid: %s", strerror(errno));
		done = kill_state.b.done;
		if (done == UINT32_MAX) {	/* killed before the batch began */
			delay = delay * 3 / 2 + 1;
			continue;
		}
		if (kill_state.b.pages != 2ULL * done) {
			diag("try %d: done %u but %llu entries moved", tries, done,
			     (unsigned long long)kill_state.b.pages);
			bad++;
		}
		for (uint32_t k = 0; k < done; k++)
			model_apply(model, NELEMS(model), &ops[k], p);
		if (!check_pages(p, model, 2 * KILL_PAIRS)) {
			diag("try %d: the pages are not where %u ops put them", tries, done);
			bad++;
		}
		if (done == KILL_OPS)
			delay /= 2;
		else if (done == 0)
			delay = delay * 3 / 2 + 1;
		else
			midway = done;
	}
	diag("kill: %d tries, the last after %ld us, done %u of %d", tries, delay, done, KILL_OPS);
	is_int(0, bad, "a killed batch reports exactly the ops it applied, each complete");
	ok(midway > 0, "a kill stops a batch between two ops (after %u of %d)", midway, KILL_OPS);
	free(ops);
	free(stack);
	close(fd);
	munmap(p, 2 * KILL_PAIRS * page_size);
}

/*
 * Lock hold time: a batch that another thread waits behind (for the mmap
 * lock) flushes what moved, lets it in, and goes on after checking the
 * mapping again. With an mmap/munmap loop beside it, the batch completes
 * as usual; a munlock of the arena lands between two ops and stops the
 * batch there with EINVAL, done and pages exact. Without the yield, the
 * munlock would wait for the whole batch, which would then complete.
 */
enum { YIELD_RUN = 512, YIELD_OPS = 64 };
static struct {
	char *p;
	atomic_int calling, stop;
	long delay;
	long pairs, worst_us;
} yield_state;

static long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000L + ts.tv_nsec / 1000;
}

static void *yield_mapper(void *arg __attribute__((unused)))
{
	while (!atomic_load(&yield_state.stop)) {
		long t0 = now_us(), t;
		char *q = mmap(NULL, 16 * page_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (q == MAP_FAILED)
			bail("mmap: %s", strerror(errno));
		q[0] = 1;
		munmap(q, 16 * page_size);
		t = now_us() - t0;
		if (atomic_load(&yield_state.calling)) {
			yield_state.pairs++;
			if (t > yield_state.worst_us)
				yield_state.worst_us = t;
		}
	}
	return NULL;
}

static void *yield_unlocker(void *arg __attribute__((unused)))
{
	while (!atomic_load(&yield_state.calling))
		sched_yield();
	usleep((useconds_t)yield_state.delay);
	if (unlock_range(yield_state.p, 2 * YIELD_RUN * page_size))
		bail("munlock: %s", strerror(errno));
	return NULL;
}

static void yield_test(void)
{
	int fd = dev_open(), bad = 0, tries, ret = 0;
	char *p = map_pages(2 * YIELD_RUN, 2000, true);
	struct rewire_dev_op ops[YIELD_OPS];
	uint64_t model[2 * YIELD_RUN];
	struct rewire_dev_batch b;
	uint32_t done = 0, midway = 0;
	long t0, took, lo, hi;
	pthread_t th;

	for (size_t i = 0; i < 2 * YIELD_RUN; i++)
		model[i] = 2000 + i;
	is_int(0, attach(fd, p, 2 * YIELD_RUN * page_size), "attach %d pages", 2 * YIELD_RUN);
	for (size_t k = 0; k < YIELD_OPS; k++)
		ops[k] = op_of(REWIRE_DEV_SWAP, p, p + YIELD_RUN * page_size, YIELD_RUN, NULL);
	yield_state.p = p;

	/* Another thread maps and unmaps meanwhile: the batch completes. */
	atomic_store(&yield_state.stop, 0);
	atomic_store(&yield_state.calling, 0);
	pthread_create(&th, NULL, yield_mapper, NULL);
	for (tries = 0; tries < 100; tries++) {
		b = (struct rewire_dev_batch){ .ops = (uintptr_t)ops, .nops = YIELD_OPS };
		atomic_store(&yield_state.calling, 1);
		t0 = now_us();
		ret = ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0;
		took = now_us() - t0;
		atomic_store(&yield_state.calling, 0);
		for (uint32_t k = 0; k < b.done; k++)
			model_apply(model, NELEMS(model), &ops[k], p);
		if (ret != -EAGAIN)
			break;
	}
	atomic_store(&yield_state.stop, 1);
	pthread_join(th, NULL);
	ok(ret == 0 && b.done == YIELD_OPS && b.pages == 2ULL * YIELD_RUN * YIELD_OPS,
	   "a batch with mmap and munmap beside it completes: %s, done %u, %llu entries",
	   strerror(-ret), b.done, (unsigned long long)b.pages);
	ok(check_pages(p, model, 2 * YIELD_RUN), "and every page is where its ops put it");
	diag("yield: a batch of %d swaps of %d pages took %ld us; meanwhile %ld mmap+munmap, the slowest %ld us",
	     YIELD_OPS, YIELD_RUN, took, yield_state.pairs, yield_state.worst_us);

	/*
	 * munlock of the arena between two ops: EINVAL there. The munlock
	 * starts at a random moment of a window, at first the time a batch
	 * takes alone; a munlock that came after the batch ended narrows the
	 * window from above, one that came before it began from below. (A
	 * search that halved the delay each time missed the batch in 60 tries
	 * on three kernels once, under load; a fixed window from the batch's
	 * time beside mmap, which yields make longer, missed it in 100.)
	 */
	t0 = now_us();
	b = (struct rewire_dev_batch){ .ops = (uintptr_t)ops, .nops = YIELD_OPS };
	if (ioctl(fd, REWIRE_IOC_BATCH, &b) && errno != EAGAIN)
		bail("a batch alone: %s", strerror(errno));
	took = now_us() - t0;
	for (uint32_t k = 0; k < b.done; k++)
		model_apply(model, NELEMS(model), &ops[k], p);
	lo = 0;
	hi = took;
	for (tries = 0; tries < 100 && !midway && !bad; tries++) {
		if (hi <= lo)
			hi = lo + took;
		yield_state.delay = lo + (long)(rnd() % (uint64_t)(hi - lo + 1));
		atomic_store(&yield_state.calling, 0);
		pthread_create(&th, NULL, yield_unlocker, NULL);
		b = (struct rewire_dev_batch){ .ops = (uintptr_t)ops, .nops = YIELD_OPS,
					       .done = UINT32_MAX, .pages = UINT64_MAX };
		atomic_store(&yield_state.calling, 1);
		ret = ioctl(fd, REWIRE_IOC_BATCH, &b) ? -errno : 0;
		pthread_join(th, NULL);
		if (lock_range(p, 2 * YIELD_RUN * page_size))
			bail("mlock: %s", strerror(errno));
		done = b.done;
		if (done == UINT32_MAX || done > YIELD_OPS ||
		    b.pages != 2ULL * YIELD_RUN * done ||
		    (ret && ret != -EINVAL && ret != -EAGAIN) || (!ret && done != YIELD_OPS)) {
			diag("try %d: %s, done %u, %llu entries moved", tries, strerror(-ret), done,
			     (unsigned long long)b.pages);
			bad++;
			break;
		}
		for (uint32_t k = 0; k < done; k++)
			model_apply(model, NELEMS(model), &ops[k], p);
		if (!check_pages(p, model, 2 * YIELD_RUN)) {
			diag("try %d: the pages are not where %u ops put them", tries, done);
			bad++;
		}
		if (ret == -EINVAL && done > 0 && done < YIELD_OPS)
			midway = done;
		else if (!ret)
			hi = yield_state.delay;		/* too late */
		else if (ret == -EINVAL && !done)
			lo = yield_state.delay;		/* too early */
	}
	diag("munlock: %d tries, the last after %ld us, done %u of %d", tries, yield_state.delay,
	     done, YIELD_OPS);
	is_int(0, bad, "a batch the arena's munlock stopped reports exactly the ops it applied");
	ok(midway > 0, "munlock waits for one op, not the batch: EINVAL after %u of %d", midway,
	   YIELD_OPS);
	close(fd);
	munmap(p, 2 * YIELD_RUN * page_size);
}

/* An address in the smaps entry of p: is any of it THP-mapped? */
static long smaps_kb(const void *p, const char *field)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[256];
	unsigned long lo, hi;
	long kb = -1;
	bool in = false;

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && !strncmp(line, field, strlen(field)))
			kb = atol(line + strlen(field));
	}
	if (f)
		fclose(f);
	return kb;
}

/* Two identical locked pages merged by ksmd into one KSM page. */
static void ksm_test(void)
{
	int fd = dev_open();
	char *p = map_pages(4, 0, true);
	bool merged = false;

	memset(p, 0x5a, 2 * page_size);
	tag_page(p + 2 * page_size, 900);
	tag_page(p + 3 * page_size, 901);
	attach(fd, p, 4 * page_size);
	if (!madvise(p, 4 * page_size, MADV_MERGEABLE) &&
	    write_file("/sys/kernel/mm/ksm/sleep_millisecs", "1") &&
	    write_file("/sys/kernel/mm/ksm/run", "1")) {
		for (int i = 0; i < 300 && !merged; i++) {
			usleep(20000);
			merged = read_long("/sys/kernel/mm/ksm/pages_sharing") > 0;
		}
	}
	if (merged) {
		is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p, p + 2 * page_size, 1, NULL),
		       "a KSM page: EBUSY");
		ok(page_has_tag(p + 2 * page_size, 900) && p[0] == 0x5a, "nothing moved");
	} else {
		ok(1, "# SKIP ksmd merged nothing here");
		ok(1, "# SKIP ksmd merged nothing here");
	}
	write_file("/sys/kernel/mm/ksm/run", "2");	/* unmerge everything */
	close(fd);
	munmap(p, 4 * page_size);
}

/* What the module must refuse, each with its documented errno. */
static void refusals(void)
{
	int fd, pipefd[2], st;
	char *p, *h;
	pid_t pid;
	char c = 0;

	fd = dev_open();
	p = map_pages(4, 300, false);
	is_int(-EINVAL, attach(fd, p, 4 * page_size), "memory that is not mlocked: EINVAL");
	munmap(p, 4 * page_size);
	p = mmap(NULL, 4 * page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	lock_range(p, 4 * page_size);
	is_int(-EINVAL, attach(fd, p, 4 * page_size), "shared memory: EINVAL");
	munmap(p, 4 * page_size);
	st = (int)syscall(SYS_memfd_create, "rewire-test", 0);
	if (st < 0 || ftruncate(st, 4 * (off_t)page_size))
		bail("memfd: %s", strerror(errno));
	p = mmap(NULL, 4 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, st, 0);
	lock_range(p, 4 * page_size);
	is_int(-EINVAL, attach(fd, p, 4 * page_size), "a private file mapping: EINVAL");
	munmap(p, 4 * page_size);
	close(st);

	/*
	 * A private mapping of /dev/zero is anonymous to the kernel, but has
	 * a file: refused at attach, and at a batch once it replaced the
	 * attached mapping.
	 */
	st = open("/dev/zero", O_RDWR | O_CLOEXEC);
	if (st < 0)
		bail("/dev/zero: %s", strerror(errno));
	p = mmap(NULL, 4 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, st, 0);
	if (p == MAP_FAILED || lock_range(p, 4 * page_size))
		bail("/dev/zero mapping: %s", strerror(errno));
	is_int(-EINVAL, attach(fd, p, 4 * page_size), "a private mapping of /dev/zero: EINVAL");
	munmap(p, 4 * page_size);
	{
		int fd2 = dev_open();
		char *q = map_pages(4, 310, true);

		is_int(0, attach(fd2, q, 4 * page_size), "attach anonymous memory");
		p = mmap(q, 4 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, st, 0);
		if (p != q || lock_range(p, 4 * page_size))
			bail("/dev/zero over the arena: %s", strerror(errno));
		p[0] = 1;
		is_int(-EINVAL, one(fd2, REWIRE_DEV_SWAP, q, q + page_size, 1, NULL),
		       "the arena replaced by a /dev/zero mapping: a batch fails with EINVAL");
		close(fd2);
		munmap(q, 4 * page_size);
	}
	close(st);

	write_file("/proc/sys/vm/nr_hugepages", "2");
	h = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (h != MAP_FAILED && !lock_range(h, 2 << 20)) {
		is_int(-EINVAL, attach(fd, h, 2 << 20), "hugetlb memory: EINVAL");
		munmap(h, 2 << 20);
	} else {
		ok(1, "# SKIP no hugetlb pages here: %s", strerror(errno));
	}
	write_file("/proc/sys/vm/nr_hugepages", "0");

	/*
	 * A THP-mapped PMD, in one mapping with small pages: THP on for the
	 * first 2 MiB, off for the next. A batch whose second op meets the
	 * huge page stops after the first.
	 */
	{
		const char *thp = "/sys/kernel/mm/transparent_hugepage/enabled";
		char was[64] = "", *l, *r;
		FILE *f = fopen(thp, "r");
		struct rewire_dev_op two[2];
		uint32_t done;

		if (f) {
			if (!fgets(was, sizeof(was), f))
				was[0] = 0;
			fclose(f);
		}
		l = strchr(was, '[');
		r = l ? strchr(l, ']') : NULL;
		if (r)
			*r = 0;
		p = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		h = (char *)(((uintptr_t)p + (2 << 20) - 1) & ~(uintptr_t)((2 << 20) - 1));
		write_file(thp, "always");
		memset(h, 1, 2 << 20);
		write_file(thp, "never");
		memset(h + (2 << 20), 2, 2 << 20);
		/* THP stays off until the end: khugepaged could collapse the
		 * small pages meanwhile. */
		lock_range(h, 4 << 20);
		diag("THP: %ld kB of the 4 MiB mapped by huge pages", smaps_kb(h, "AnonHugePages:"));
		if (smaps_kb(h, "AnonHugePages:") > 0) {
			close(fd);
			fd = dev_open();
			is_int(0, attach(fd, h, 4 << 20), "attach memory partly THP-backed");
			two[0] = op_of(REWIRE_DEV_SWAP, h + (2 << 20), h + (3 << 20), 1, NULL);
			two[1] = op_of(REWIRE_DEV_SWAP, h, h + (3 << 20) + page_size, 1, NULL);
			is_int(-EBUSY, batch(fd, two, 2, &done), "a swap with a THP-mapped page: EBUSY");
			ok(done == 1 && h[2 << 20] == 2 && h[3 << 20] == 2 && h[0] == 1,
			   "after exactly the op before it (done %u)", done);
		} else {
			for (int i = 0; i < 3; i++)
				ok(1, "# SKIP no transparent huge page was mapped");
		}
		munmap(p, 8 << 20);
		if (l)
			write_file(thp, l + 1);
	}

	/* Memory this process may not write, and memory userfaultfd tracks. */
	close(fd);
	fd = dev_open();
	p = mmap(NULL, 4 * page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	lock_range(p, 4 * page_size);
	is_int(-EINVAL, attach(fd, p, 4 * page_size), "read-only memory: EINVAL");
	munmap(p, 4 * page_size);
	p = map_pages(4, 0, true);
	if (syscall(462 /* mseal */, p, 4 * page_size, 0) == 0)
		is_int(-EINVAL, attach(fd, p, 4 * page_size), "sealed memory (mseal): EINVAL");
	else
		ok(1, "# SKIP no mseal(2) here (Linux 6.10 on): %s", strerror(errno));
	p = map_pages(4, 0, true);
	{
		struct uffdio_api api = { .api = UFFD_API };
		struct uffdio_register reg = {
			.range = { (uintptr_t)p, 4 * page_size },
			.mode = UFFDIO_REGISTER_MODE_MISSING,
		};
		int u = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

		if (u >= 0 && !ioctl(u, UFFDIO_API, &api) && !ioctl(u, UFFDIO_REGISTER, &reg))
			is_int(-EINVAL, attach(fd, p, 4 * page_size),
			       "memory registered with userfaultfd: EINVAL");
		else
			ok(1, "# SKIP userfaultfd unavailable: %s", strerror(errno));
		if (u >= 0)
			close(u);
	}
	munmap(p, 4 * page_size);

	/* Memory the thread's protection keys forbid it to write. */
	{
		int key = (int)syscall(SYS_pkey_alloc, 0, 2 /* PKEY_DISABLE_WRITE */);

		p = map_pages(4, 0, true);
		if (key >= 0 && !syscall(SYS_pkey_mprotect, p, 4 * page_size,
					 PROT_READ | PROT_WRITE, key)) {
			is_int(-EACCES, attach(fd, p, 4 * page_size),
			       "memory under a write-disabled protection key: EACCES");
			syscall(SYS_pkey_free, key);
		} else {
			ok(1, "# SKIP no memory protection keys here: %s", strerror(errno));
		}
		munmap(p, 4 * page_size);
	}

	/* A page freed with MADV_FREE, locked afterwards: its data hangs on
	 * the dirty bit, so it is refused. */
	close(fd);
	fd = dev_open();
	p = map_pages(4, 950, false);
	madvise(p, page_size, MADV_FREE);
	lock_range(p, 4 * page_size);
	attach(fd, p, 4 * page_size);
	is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL),
	       "a lazily freed page (MADV_FREE), clean: EBUSY");
	tag_page(p, 960);
	is_int(0, one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL),
	       "written again, its entry dirty: it moves");
	ok(page_has_tag(p + page_size, 960) && page_has_tag(p, 951), "swapped");
	munmap(p, 4 * page_size);

	/* Large folios mapped by PTEs (mTHP, Linux 6.8 on). */
	close(fd);
	fd = dev_open();
	if (write_file("/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled", "always")) {
		p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		lock_range(p, 1 << 20);
		memset(p, 1, 1 << 20);
		write_file("/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled", "never");
		attach(fd, p, 1 << 20);
		is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p + (64 << 10), p + (512 << 10), 1, NULL),
		       "a page of a 64 KiB folio: EBUSY");
		munmap(p, 1 << 20);
	} else {
		ok(1, "# SKIP this kernel has no multi-size THP (Linux 6.8 on)");
	}

	/* Pages shared with a child after fork: mapped twice. */
	close(fd);
	fd = dev_open();
	p = mmap(NULL, 4 * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(p, 4 * page_size, MADV_NOHUGEPAGE);
	lock_range(p, 4 * page_size);
	for (int i = 0; i < 4; i++)
		tag_page(p + i * page_size, 400 + (uint64_t)i);
	attach(fd, p, 4 * page_size);
	if (pipe(pipefd))
		bail("pipe");
	pid = fork();
	if (pid == 0) {
		if (read(pipefd[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL),
	       "pages a child shares: EBUSY");
	ok(page_has_tag(p, 400) && page_has_tag(p + page_size, 401), "nothing moved");
	if (write(pipefd[1], &c, 1) != 1)
		bail("write");
	waitpid(pid, &st, 0);
	is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL),
	       "once the child is gone, pages not yet written are still not exclusive: EBUSY");
	((volatile char *)p)[0] = ((volatile char *)p)[0];
	((volatile char *)p)[page_size] = ((volatile char *)p)[page_size];
	is_int(0, one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL), "written again, they move");
	ok(page_has_tag(p, 401) && page_has_tag(p + page_size, 400), "swapped");

	/* The file of another process: a child that inherited it. */
	pid = fork();
	if (pid == 0)
		_exit(one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL) == -EPERM ? 0 : 1);
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a batch from another process: EPERM");
	close(pipefd[0]);
	close(pipefd[1]);
	/* That fork shared the pages again: write them, so they are not. */
	for (int i = 0; i < 4; i++)
		((volatile char *)p)[i * page_size] = ((volatile char *)p)[i * page_size];
	is_int(0, one(fd, REWIRE_DEV_SWAP, p + 2 * page_size, p + 3 * page_size, 1, NULL),
	       "written again, they move");

	/* A DMA-pinned page: io_uring fixed buffers pin with FOLL_LONGTERM. */
	{
		struct io_uring_params par = { 0 };
		struct iovec iov = { p + 2 * page_size, page_size };
		int ring = (int)syscall(__NR_io_uring_setup, 4, &par);

		if (ring >= 0 && !syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, &iov, 1)) {
			is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p + 2 * page_size, p + 3 * page_size, 1, NULL),
			       "a pinned page: EBUSY");
			syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
			/* io_uring drops its pins from a work queue, later. */
			for (int i = 0; i < 250 && (st = one(fd, REWIRE_DEV_SWAP, p + 2 * page_size,
							      p + 3 * page_size, 1, NULL)) == -EBUSY; i++)
				usleep(20000);
			is_int(0, st, "unpinned, it moves");
		} else {
			ok(1, "# SKIP io_uring cannot pin here: %s", strerror(errno));
			ok(1, "# SKIP io_uring cannot pin here");
		}
		if (ring >= 0)
			close(ring);
	}

	/* Memory unmapped or unlocked after attaching. */
	ksm_test();

	unlock_range(p, page_size);
	is_int(-EFAULT, one(fd, REWIRE_DEV_SWAP, p + 2 * page_size, p + 3 * page_size, 1, NULL),
	       "the range split by munlock: EFAULT");
	lock_range(p, page_size);
	is_int(0, one(fd, REWIRE_DEV_SWAP, p + 2 * page_size, p + 3 * page_size, 1, NULL),
	       "locked again, one mapping again: accepted");
	close(fd);
	munmap(p, 4 * page_size);

	/* A process with an mmu notifier (KVM): secondary TLBs are not
	 * flushed, so the module refuses. Without KVM, notifier_test() shows
	 * the same with a notifier of the module's test hooks. */
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0 && ioctl(fd, _IO(0xAE, 0x01), 0) >= 0) {
		int dev = dev_open();

		p = map_pages(2, 500, true);
		attach(dev, p, 2 * page_size);
		is_int(-EBUSY, one(dev, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL),
		       "an mm with mmu notifiers: EBUSY");
		close(dev);
	} else {
		/* Not a skip: rewire-test.ko's notifier shows the same refusal
		 * on every kernel (REWIRE_KMOD_ONLY=notifier, run by t/vm.t). */
		diag("no KVM here: the refusal is shown with rewire-test.ko's notifier");
	}
	if (fd >= 0)
		close(fd);

	/* The module stays while a file is open. */
	fd = dev_open();
	if (geteuid() == 0) {
		long r = syscall(SYS_delete_module, "rewire", O_NONBLOCK);
		int e = errno;

		ok(r == -1 && (e == EWOULDBLOCK || e == EBUSY),
		   "rmmod while the device is open is refused (%s)", r ? strerror(e) : "unloaded!");
	} else
		ok(1, "# SKIP only root may try to unload the module");
	close(fd);
}

/* Is the page at p in the swap cache (/proc/kpageflags, root only)? */
static int in_swap_cache(const void *p)
{
	uint64_t e = 0, flags = 0;
	int pm = open("/proc/self/pagemap", O_RDONLY), kf = open("/proc/kpageflags", O_RDONLY);
	int ret = -1;

	if (pm >= 0 && kf >= 0 &&
	    pread(pm, &e, 8, (off_t)((uintptr_t)p / page_size * 8)) == 8 && (e >> 63) &&
	    pread(kf, &flags, 8, (off_t)((e & ((1ULL << 55) - 1)) * 8)) == 8)
		ret = (int)((flags >> 14) & 1);	/* KPF_SWAPCACHE */
	if (pm >= 0)
		close(pm);
	if (kf >= 0)
		close(kf);
	return ret;
}

/*
 * A page in the swap cache moves, as UFFDIO_MOVE moves it: swapped out
 * (MADV_PAGEOUT), read back in before the memory is locked, so that it
 * keeps its swap slot. Needs swap: a loop device on a tmpfs file, where
 * the loop driver is there.
 */
static void swapcache_test(void)
{
	struct test_swap sw;
	const char *why = test_swap_on(&sw, 4096);
	char *p = NULL;
	int fd;

	if (!why) {
		p = map_pages(4, 1100, false);
		madvise(p, page_size, 21 /* MADV_PAGEOUT */);
		if (!page_has_tag(p, 1100))	/* swaps it in, into the swap cache */
			why = "the page came back wrong from swap";
		else if (in_swap_cache(p) != 1)
			why = "MADV_PAGEOUT left no page in the swap cache";
		else if (lock_range(p, 4 * page_size) || in_swap_cache(p) != 1)
			why = "locking it took the page out of the swap cache";
	}
	if (why) {
		for (int i = 0; i < 3; i++)
			ok(1, "# SKIP %s", why);
	} else {
		fd = dev_open();
		attach(fd, p, 4 * page_size);
		is_int(0, batch_retry_one(fd, p, p + 2 * page_size),
		       "a page in the swap cache moves (swapped with another)");
		ok(page_has_tag(p, 1102) && page_has_tag(p + 2 * page_size, 1100), "swapped");
		is_int(1, in_swap_cache(p + 2 * page_size), "still in the swap cache at its new address");
		close(fd);
	}
	if (p)
		munmap(p, 4 * page_size);
	test_swap_off(&sw);
}

/*
 * The mmu-notifier refusal, without KVM: a module built with test hooks
 * registers a notifier on the calling process (REWIRE_IOC_TEST_NOTIFIER).
 * In a child, as the refusal lasts as long as the process. Returns false
 * when the module has no test hooks.
 */
static bool notifier_test(void)
{
	enum { HOOK, REFUSED, UNMOVED, AFTER, STEPS };
	int *r = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;
	int st;

	if (r == MAP_FAILED)
		bail("mmap: %s", strerror(errno));
	for (int i = 0; i < STEPS; i++)
		r[i] = 99;
	pid = fork();
	if (pid == 0) {
		int fd = dev_open(), hook = dev_open();
		char *p = map_pages(2, 500, true);

		if (attach(fd, p, 2 * page_size))
			_exit(1);
		r[HOOK] = ioctl(hook, REWIRE_IOC_TEST_NOTIFIER) ? -errno : 0;
		if (r[HOOK])
			_exit(0);
		r[REFUSED] = one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL);
		r[UNMOVED] = page_has_tag(p, 500) && page_has_tag(p + page_size, 501);
		close(hook);	/* unregisters it */
		r[AFTER] = one(fd, REWIRE_DEV_SWAP, p, p + page_size, 1, NULL);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		bail("the notifier test's child failed");
	if (r[HOOK] == -ENOTTY) {
		munmap(r, page_size);
		return false;
	}
	is_int(0, r[HOOK], "test hook: the module registers an mmu notifier on this process");
	is_int(-EBUSY, r[REFUSED], "an mm with an mmu notifier: EBUSY");
	ok(r[UNMOVED] == 1, "nothing moved");
	is_int(-EBUSY, r[AFTER], "an mm that had an mmu notifier, unregistered since: EBUSY");
	munmap(r, page_size);
	return true;
}

/* Run the calling thread on cpu only. */
static void pin_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/*
 * TLB: threads on the other CPUs read every page's tag and write a mark
 * into it; between rounds the main thread rearranges all pages in one
 * batch. A CPU left with a stale translation reads the wrong tag, or marks
 * a page now elsewhere.
 */
enum { TLB_PAGES = 256, TLB_HUGE_PAGES = 32 };
static char *tlb_base;
static size_t tlb_pages;	/* TLB_PAGES; of huge pages, fewer */
static uint64_t tlb_model[TLB_PAGES];
static pthread_barrier_t tlb_bar;
static atomic_int tlb_stop, tlb_bad;

/*
 * The words of slot i that the readers use: at the start of a base page,
 * and in huge page i at its i-th base page. QEMU's TCG caches translations
 * of base pages in a direct-mapped table indexed by the address's page
 * number: the starts of huge pages, 2 MiB apart, all fall on one entry and
 * evict each other, so that every read walked the page table afresh and a
 * missing flush went unseen.
 */
static volatile uint64_t *tlb_words(size_t i)
{
	size_t sub = page_size / base_page_size;

	return (uint64_t *)(tlb_base + i * page_size + i % sub * base_page_size);
}

static void *tlb_reader(void *arg)
{
	pin_to_cpu((int)(intptr_t)arg);
	for (;;) {
		pthread_barrier_wait(&tlb_bar);
		if (atomic_load(&tlb_stop))
			return NULL;
		for (size_t i = 0; i < tlb_pages; i++) {
			volatile uint64_t *w = tlb_words(i);

			if (w[0] != tlb_model[i] * 0x9e3779b97f4a7c15ull)
				atomic_fetch_add(&tlb_bad, 1);
			w[(intptr_t)arg] = tlb_model[i];
		}
		pthread_barrier_wait(&tlb_bar);
	}
}

/*
 * With away set, each reader's CPU runs another process, spinning, pinned
 * there, whenever the reader waits: so while a batch runs, those CPUs have
 * another mm loaded, and switch back to this one after it. Only the mm's
 * TLB generation, which the kernel's flush advances, then tells them to
 * drop what they cached under its PCID (break_for_test=3 leaves it alone).
 * Under QEMU's TCG every CR3 load flushes, so there this cannot fail.
 */
static int tlb_test_(int rounds, bool away)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nthreads = ncpu > 1 ? (int)ncpu - 1 : 1, fd = dev_open(), errors = 0, ret;
	pid_t spinner[64];
	pthread_t th[64];

	for (int t = 0; away && t < nthreads && t < 64; t++) {
		spinner[t] = fork();
		if (spinner[t] < 0)
			bail("fork: %s", strerror(errno));
		if (!spinner[t]) {
			pin_to_cpu(t + 1);
			for (;;)
				;
		}
	}
	pin_to_cpu(0);
	tlb_pages = page_size == base_page_size ? TLB_PAGES : TLB_HUGE_PAGES;
	tlb_base = map_pages(tlb_pages, 0, true);
	/* Each base page of page i starts with its tag. */
	for (size_t i = 0; i < tlb_pages; i++) {
		tlb_model[i] = i + 1;
		for (size_t off = 0; off < page_size; off += base_page_size)
			*(uint64_t *)(tlb_base + i * page_size + off) =
				(i + 1) * 0x9e3779b97f4a7c15ull;
	}
	attach(fd, tlb_base, tlb_pages * page_size);
	pthread_barrier_init(&tlb_bar, NULL, (unsigned)nthreads + 1);
	for (int t = 0; t < nthreads && t < 64; t++)
		pthread_create(&th[t], NULL, tlb_reader, (void *)(intptr_t)(t + 1));
	for (int r = 0; r < rounds; r++) {
		pthread_barrier_wait(&tlb_bar);	/* readers scan */
		pthread_barrier_wait(&tlb_bar);	/* and are done */
		for (size_t i = 0; i < tlb_pages; i++)
			for (int t = 1; t <= nthreads; t++)
				if (tlb_words(i)[t] != tlb_model[i])
					errors++;
		for (int tries = 0; tries < 100; tries++)
			if ((ret = random_permute(fd, tlb_base, tlb_pages, tlb_model)) != -EAGAIN)
				break;
		if (ret)
			bail("permute: %s", strerror(-ret));
	}
	atomic_store(&tlb_stop, 1);
	pthread_barrier_wait(&tlb_bar);
	for (int t = 0; t < nthreads && t < 64; t++)
		pthread_join(th[t], NULL);
	for (int t = 0; away && t < nthreads && t < 64; t++) {
		kill(spinner[t], SIGKILL);
		waitpid(spinner[t], NULL, 0);
	}
	diag("TLB%s: %d rounds, %d reader threads on %ld CPUs: %d stale reads, %d misplaced writes",
	     away ? ", readers' CPUs running another process meanwhile" : "", rounds, nthreads,
	     ncpu, atomic_load(&tlb_bad), errors);
	errors += atomic_load(&tlb_bad);
	atomic_store(&tlb_bad, 0);
	atomic_store(&tlb_stop, 0);
	close(fd);
	munmap(tlb_base, tlb_pages * page_size);
	return errors;
}

static int tlb_test(int rounds)
{
	return tlb_test_(rounds, false);
}

/*
 * TLB, one CPU: a child forked on CPU 0 and pinned there has an mm that no
 * other CPU ever ran, so a batch that changes few pages flushes them one by
 * one (rewire(4)). Before each batch of swaps every page is read, caching
 * its translation; after it, each must hold what the model says. Returns
 * the pages found wrong (at most 255).
 */
static int tlb_local_test(int rounds)
{
	enum { MAX = 64, SWAPS = 8 };
	size_t N = page_size == base_page_size ? MAX : 2 * SWAPS;
	cpu_set_t was;
	int status;
	pid_t pid;

	sched_getaffinity(0, sizeof(was), &was);
	pin_to_cpu(0);
	pid = fork();
	if (pid < 0)
		bail("fork: %s", strerror(errno));
	if (!pid) {
		int fd = dev_open(), wrong = 0;
		char *p = map_pages(N, 1, true);
		struct rewire_dev_op ops[SWAPS];
		uint64_t model[MAX];
		size_t idx[MAX];

		for (size_t i = 0; i < N; i++)
			model[i] = i + 1, idx[i] = i;
		attach(fd, p, N * page_size);
		for (int r = 0; r < rounds && wrong < 255; r++) {
			for (size_t i = 0; i < N; i++)
				wrong += !page_has_tag(p + i * page_size, model[i]);
			shuffle(idx, N);
			for (int k = 0; k < SWAPS; k++)
				ops[k] = op_of(REWIRE_DEV_SWAP, p + idx[2 * k] * page_size,
					       p + idx[2 * k + 1] * page_size, 1, NULL);
			if (batch_retry(fd, ops, SWAPS))
				_exit(255);
			for (int k = 0; k < SWAPS; k++)
				model_apply(model, N, &ops[k], p);
		}
		for (size_t i = 0; i < N; i++)
			wrong += !page_has_tag(p + i * page_size, model[i]);
		_exit(wrong < 255 ? wrong : 255);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		bail("the one-CPU TLB test's child died");
	sched_setaffinity(0, sizeof(was), &was);
	diag("TLB on one CPU: %d rounds of %d swaps a batch: %d pages wrong", rounds, SWAPS,
	     WEXITSTATUS(status));
	return WEXITSTATUS(status);
}

/*
 * Can a missing TLB generation advance show here? Only with PCID, which
 * keeps a process's entries across a switch, and not under QEMU's TCG,
 * which flushes on every CR3 load whatever the CPU model says. NULL if it
 * can, else why not.
 */
/* The CPU's line of /proc/cpuinfo that starts with key has word. */
static bool cpuinfo_has(const char *key, const char *word)
{
	char line[4096];
	bool has = false;
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && !has && fgets(line, sizeof(line), f))
		has = !strncmp(line, key, strlen(key)) && strstr(line, word);
	if (f)
		fclose(f);
	return has;
}

static bool running_under_tcg(void)
{
	return cpuinfo_has("model name", "TCG");
}

static const char *tlb_gen_untestable(void)
{
	static char why[128];
	bool pcid = cpuinfo_has("flags", " pcid"), tcg = running_under_tcg();

	if (tcg)
		snprintf(why, sizeof(why), "QEMU's TCG flushes the TLB on every switch of process");
	else if (!pcid)
		snprintf(why, sizeof(why), "no PCID: the TLB is flushed on every switch of process");
	else
		return NULL;
	return why;
}

/* The TLB test with the readers' CPUs switching to another process and back. */
static int tlb_switch_test(int rounds)
{
	const char *why = tlb_gen_untestable();

	if (why)
		diag("TLB generation: %s, so this test passes here either way: it needs real hardware with PCID",
		     why);
	return tlb_test_(rounds, true);
}

/* move_pages(2) of this process: with nodes NULL, where each page is. */
/* After the module moved pages, migrate every one to the other node:
 * rmap must find each at its new address. Returns pages not migrated. */
static size_t migrate_test(void)
{
	enum { MAX = 128 };
	size_t N = page_size == base_page_size ? MAX : 16, failed = 0;
	int fd = dev_open(), nodes[MAX], status[MAX];
	char *p = map_pages(N, 600, true);
	uint64_t model[MAX];
	void *pages[MAX];

	for (size_t i = 0; i < N; i++)
		model[i] = 600 + i;
	attach(fd, p, N * page_size);
	for (int r = 0; r < 8; r++) {
		struct rewire_dev_op half = op_of(REWIRE_DEV_SWAP, p, p + (N / 2) * page_size,
						  N / 2, NULL);
		int ret = random_permute(fd, p, N, model);

		if (ret)
			bail("permute: %s", strerror(-ret));
		ret = batch(fd, &half, 1, NULL);
		if (ret)
			bail("swap: %s", strerror(-ret));
		model_apply(model, N, &half, p);
	}
	for (size_t i = 0; i < N; i++)
		pages[i] = p + i * page_size;
	if (move_pages_to(N, pages, NULL, status))
		bail("move_pages query: %s", strerror(errno));
	for (size_t i = 0; i < N; i++)
		nodes[i] = status[i] == 0 ? 1 : 0;
	if (move_pages_to(N, pages, nodes, status) < 0)
		bail("move_pages: %s", strerror(errno));
	for (size_t i = 0; i < N; i++)
		failed += status[i] != nodes[i];
	diag("migration after moves: %zu of %zu pages not migrated", failed, N);
	ok(check_pages(p, model, N), "the data is where the model says, after migration");
	close(fd);
	munmap(p, N * page_size);
	return failed;
}

/* Migration racing with batches: pages under migration give EAGAIN, and
 * nothing is lost. */
static atomic_int mig_stop;
static char *mig_base;

static void *migrator(void *arg __attribute__((unused)))
{
	enum { N = 64 };
	void *pages[N];
	int nodes[N], status[N];
	long rounds = 0;

	for (size_t i = 0; i < N; i++)
		pages[i] = mig_base + i * page_size;
	while (!atomic_load(&mig_stop)) {
		for (size_t i = 0; i < N; i++)
			nodes[i] = (int)((rounds + (long)i) & 1);
		move_pages_to(N, pages, nodes, status);
		rounds++;
	}
	return (void *)rounds;
}

static void migrate_race(void)
{
	enum { N = 64 };
	int fd = dev_open(), eagain = 0, done_ops = 0, ret;
	uint64_t model[N];
	pthread_t th;
	void *rounds;

	mig_base = map_pages(N, 700, true);
	for (size_t i = 0; i < N; i++)
		model[i] = 700 + i;
	attach(fd, mig_base, N * page_size);
	pthread_create(&th, NULL, migrator, NULL);
	for (int r = 0; r < 300; r++) {
		usleep(500);	/* let the migrator run between batches */
		ret = random_permute(fd, mig_base, N, model);
		if (ret == -EAGAIN) {
			eagain++;
			continue;
		}
		if (ret)
			bail("permute during migration: %s", strerror(-ret));
		done_ops++;
	}
	atomic_store(&mig_stop, 1);
	pthread_join(th, &rounds);
	diag("migration race: %d permutations applied, %d refused with EAGAIN, %ld migration rounds",
	     done_ops, eagain, (long)(intptr_t)rounds);
	ok(done_ops > 0 && check_pages(mig_base, model, N),
	   "permutations racing with migration: every page where the model says");
	close(fd);
	munmap(mig_base, N * page_size);
}

/* Random and malformed batches; the model follows what the module says it
 * did. Returns the number of calls whose outcome was impossible. */
static long fuzz(long calls)
{
	enum { N = 48, MAXOPS = 6 };
	int fd = dev_open();
	char *p = map_pages(N + 2, 0, true) + page_size;
	uint64_t model[N], perms[MAXOPS][N];
	struct rewire_dev_op ops[MAXOPS];
	long bad = 0, by_err[8] = { 0 }, applied = 0;
	static const int errs[8] = { 0, EINVAL, EEXIST, EFAULT, E2BIG, EBUSY, EAGAIN, -1 };

	for (size_t i = 0; i < N; i++) {
		model[i] = rnd_below(4) ? 800 + i : HOLE;
		if (model[i] != HOLE)
			tag_page(p + i * page_size, model[i]);
	}
	madvise(p, N * page_size, MADV_DONTNEED_LOCKED);
	for (size_t i = 0; i < N; i++)
		if (model[i] != HOLE)
			tag_page(p + i * page_size, model[i]);
	attach(fd, p, N * page_size);
	for (long c = 0; c < calls; c++) {
		uint32_t n = (uint32_t)rnd_below(MAXOPS) + 1, done;
		int ret, k;

		for (uint32_t i = 0; i < n; i++) {
			size_t len = rnd_below(8) ? 1 + rnd_below(6) : rnd_below(3) ? rnd_below(N + 2) : rnd();
			size_t d = rnd_below(N + 4) - 2, s = rnd_below(N + 4) - 2;
			int type = rnd_below(16) ? 1 + (int)rnd_below(3) : (int)rnd_below(6);

			ops[i] = op_of(type, p + d * page_size, p + s * page_size, len, NULL);
			if (!rnd_below(32))
				ops[i].dst += rnd_below(page_size);
			if (!rnd_below(32))
				ops[i].reserved = 1;
			if (type == REWIRE_DEV_PERMUTE && rnd_below(16)) {
				ops[i].src = 0;
				for (size_t j = 0; j < len && j < N; j++)
					perms[i][j] = j;
				if (len <= N)
					shuffle((size_t *)perms[i], len);
				if (len > 1 && len <= N && !rnd_below(16))
					perms[i][rnd_below(len)] = perms[i][rnd_below(len)];
				/* never the arena: the read would map zero pages in its holes */
				ops[i].perm = rnd_below(32) ? (uintptr_t)perms[i] : rnd_below(2) ? 8 : (uintptr_t)-page_size;
			}
			if (type == REWIRE_DEV_MOVE && rnd_below(4))
				/* aim at holes often, so moves succeed */
				for (size_t j = 0; j < N; j++)
					if (model[(d + j) % N] == HOLE) {
						ops[i].dst = (uintptr_t)(p + ((d + j) % N) * page_size);
						break;
					}
		}
		ret = batch(fd, ops, rnd_below(64) ? n : (uint32_t)rnd(), &done);
		for (k = 0; k < 7 && errs[k] != -ret; k++)
			;
		by_err[k]++;
		if (done > n || (ret == 0 && done != n) || k == 7) {
			diag("call %ld: returned %d, done %u of %u", c, ret, done, n);
			bad++;
			break;
		}
		for (uint32_t i = 0; i < done; i++) {
			size_t d = (size_t)((char *)(uintptr_t)ops[i].dst - p) / page_size;

			/* A move is only allowed into holes. */
			for (size_t j = 0; ops[i].type == REWIRE_DEV_MOVE && j < ops[i].npages; j++)
				if (model[d + j] != HOLE) {
					diag("call %ld: op %u moved onto data", c, i);
					bad++;
				}
			if (!model_apply(model, N, &ops[i], p)) {
				diag("call %ld: op %u applied outside the mapping", c, i);
				bad++;
			}
		}
		applied += done;
		if ((c % 4096 == 0 || c == calls - 1) && !check_pages(p, model, N)) {
			diag("call %ld: a page is not where the model says", c);
			bad++;
		}
		if (bad)
			break;
	}
	diag("fuzz: %ld calls, %ld ops applied; ok %ld, EINVAL %ld, EEXIST %ld, EFAULT %ld, "
	     "E2BIG %ld, EBUSY %ld, EAGAIN %ld, other %ld", calls, applied, by_err[0], by_err[1],
	     by_err[2], by_err[3], by_err[4], by_err[5], by_err[6], by_err[7]);
	ok(by_err[0] > calls / 50 && by_err[1] > calls / 50 && by_err[2] > 0,
	   "the fuzz reached both applied batches and refusals");
	close(fd);
	munmap(p - page_size, (N + 2) * page_size);
	return bad;
}

/*
 * The negative controls of the debugging kernel's checkers (break_for_test
 * 5, 6, 7): a few swap batches in a child, which a broken module may get
 * killed by an oops (7). What must catch the module is the kernel's log:
 * lockdep, KASAN or the page-table check, which t/vm.t reads.
 */
static bool checker_control(void)
{
	enum { N = 16 };
	int status;
	pid_t pid = fork();

	if (pid < 0)
		bail("fork: %s", strerror(errno));
	if (!pid) {
		int fd = dev_open();
		char *p = map_pages(N, 1, true);
		struct rewire_dev_op ops[N / 2];

		attach(fd, p, N * page_size);
		for (int r = 0; r < 4; r++) {
			for (int k = 0; k < N / 2; k++)
				ops[k] = op_of(REWIRE_DEV_SWAP, p + 2 * k * page_size,
					       p + (2 * k + 1) * page_size, 1, NULL);
			if (batch_retry(fd, ops, N / 2))
				_exit(1);
		}
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return false;
	if (WIFSIGNALED(status))
		diag("the child died of signal %d, as after an oops", WTERMSIG(status));
	else
		diag("the child exited %d", WEXITSTATUS(status));
	return true;
}

/*
 * Huge pages (REWIRE_IOC_ATTACH_HUGE): transparent huge pages moved as PMD
 * entries, what is refused, and moves between two PMD tables (across a
 * 1 GiB boundary), which must carry each page's deposited page table: the
 * munmap at the end withdraws one per huge page from the table it is in.
 */
#define HUGE REWIRE_HUGE_PAGE_SIZE
#define GIB ((size_t)1 << 30)

/* Every huge page at p, n of them, mapped as one (page_size is HUGE). */
static bool all_huge(const char *p, size_t n)
{
	return smaps_kb(p, "AnonHugePages:") >= (long)(n * HUGE >> 10);
}

static void huge_across_tables(int fd)
{
	size_t len = GIB + 16 * HUGE;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *p, *b;
	uint64_t model[8];
	struct rewire_dev_op ops[3];
	int ret;

	if (m == MAP_FAILED)
		bail("mmap: %s", strerror(errno));
	p = (char *)(((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
	/* b: the first 1 GiB boundary with four huge pages on each side */
	b = (char *)(((uintptr_t)p + 4 * HUGE + GIB - 1) & ~(uintptr_t)(GIB - 1));
	madvise(p, len - HUGE, MADV_HUGEPAGE);
	if (syscall(SYS_mlock2, p, len - HUGE, 1 /* MLOCK_ONFAULT */))
		bail("mlock2: %s", strerror(errno));
	/* pages 0-7 from b - 4 huge pages: backed 2-5, holes 0-1 and 6-7 */
	b -= 4 * HUGE;
	for (size_t i = 0; i < 8; i++) {
		model[i] = i >= 2 && i < 6 ? 800 + i : HOLE;
		if (model[i] != HOLE)
			tag_page(b + i * HUGE, model[i]);
	}
	is_int(0, attach(fd, p, len - HUGE), "huge pages: a range across a 1 GiB boundary attached");
	ops[0] = op_of(REWIRE_DEV_MOVE, b + 6 * HUGE, b + 2 * HUGE, 1, NULL);
	ops[1] = op_of(REWIRE_DEV_MOVE, b + 1 * HUGE, b + 4 * HUGE, 1, NULL);
	ops[2] = op_of(REWIRE_DEV_SWAP, b + 3 * HUGE, b + 5 * HUGE, 1, NULL);
	ret = batch_retry(fd, ops, 3);
	for (size_t k = 0; !ret && k < 3; k++)
		model_apply(model, 8, &ops[k], b);
	ok(!ret && check_pages(b, model, 8),
	   "moves and a swap from one PMD table to the other: every page's data where it went");
	/* Each zap withdraws a deposit from the table the page is in now. */
	ok(!munmap(m, len), "and unmapped, each deposited page table where its page went");
}

/* p: the attached huge pages, the first holding tag. */
static void huge_refusals(int fd, char *p, uint64_t tag)
{
	volatile char c;
	int ret;

	/* 3 becomes a hole with no page table, and is read: the huge zero
	 * page, which is neither a hole nor anonymous. */
	madvise(p + 3 * page_size, page_size, MADV_DONTNEED_LOCKED);
	c = p[3 * page_size];
	(void)c;
	is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p, p + 3 * page_size, 1, NULL),
	       "huge pages: a swap with the huge zero page (a read hole) refused");
	ok(one(fd, REWIRE_DEV_MOVE, p + 3 * page_size, p, 1, NULL) < 0,
	   "a move onto it refused");
	/* 2 split by a partial discard: base pages under a page table. */
	madvise(p + 2 * page_size + base_page_size, base_page_size, MADV_DONTNEED_LOCKED);
	is_int(-EBUSY, one(fd, REWIRE_DEV_SWAP, p, p + 2 * page_size, 1, NULL),
	       "a swap with a huge page split into base pages refused");
	/* and then all discarded: a hole that keeps its page table, which
	 * 7.x frees instead (PT_RECLAIM): then the move is fine */
	madvise(p + 2 * page_size, page_size, MADV_DONTNEED_LOCKED);
	ret = one(fd, REWIRE_DEV_MOVE, p + 2 * page_size, p, 1, NULL);
	ok(ret == -EBUSY || (!ret && page_has_tag(p + 2 * page_size, tag) && !page_resident(p)),
	   "a move into a hole that kept a page table: refused, or moved where the kernel "
	   "freed the table (%s)", ret ? strerror(-ret) : "moved");
	is_int(-EINVAL, one(fd, REWIRE_DEV_MOVE, p + 2 * page_size, p + base_page_size, 1, NULL),
	       "an address inside a huge page refused");
}

/* page_size a huge page for the tests that follow, where the kernel
 * gives huge pages; else a skip, and false. */
static bool huge_on(void)
{
	if (!thp_enabled()) {
		ok(1, "# SKIP transparent huge pages are off here");
		return false;
	}
	page_size = HUGE;
	huge_pages = true;	/* page_has_tag() samples each base page */
	return true;
}

static void huge_off(void)
{
	page_size = base_page_size;
	huge_pages = false;
}

static void huge_tests(void)
{
	enum { N = 16 };
	uint64_t model[N];
	int fd, ret = 0;
	char *p;

	if (!huge_on())
		return;
	fd = dev_open();
	p = map_pages(N, 700, true);
	if (!all_huge(p, N)) {
		ok(1, "# SKIP the kernel gave %ld kB of huge pages of %zu", smaps_kb(p, "AnonHugePages:"),
		   N * HUGE >> 10);
		munmap(p, N * page_size);
		close(fd);
		huge_off();
		return;
	}
	is_int(-EINVAL, attach(fd, p + base_page_size, (N - 1) * page_size),
	       "huge pages: a range that does not start on a huge page refused");
	is_int(0, attach(fd, p, N * page_size), "huge pages: attached");
	for (size_t i = 0; i < N; i++)
		model[i] = 700 + i;
	for (int r = 0; r < 20 && !ret; r++) {
		struct rewire_dev_op half = op_of(REWIRE_DEV_SWAP, p, p + N / 2 * page_size,
						  N / 2, NULL);

		ret = random_permute(fd, p, N, model);
		if (!ret && !(ret = batch_retry(fd, &half, 1)))
			model_apply(model, N, &half, p);
	}
	ok(!ret && check_pages(p, model, N),
	   "huge pages: 20 permutations and swaps, every page's data where the model says");
	ok(all_huge(p, N), "and every page still a huge page (%ld kB)", smaps_kb(p, "AnonHugePages:"));
	huge_refusals(fd, p, model[0]);
	close(fd);
	munmap(p, N * page_size);

	fd = dev_open();
	huge_across_tables(fd);
	close(fd);
	is_int(0, tlb_local_test(50), "huge pages, one CPU: every page where the model says");
	is_int(0, tlb_test(100), "huge pages: no CPU saw a stale translation after a batch returned");
	if (node_count() >= 2)
		is_int(0, (long long)migrate_test(), "every moved huge page migrated to the other node");
	else
		ok(1, "# SKIP one NUMA node: no migration to test");
	huge_off();
}

int main(void)
{
	const char *broken = getenv("REWIRE_KMOD_BROKEN");
	const char *calls = getenv("REWIRE_FUZZ_CALLS");
	const char *only = getenv("REWIRE_KMOD_ONLY");
	int fd;

	test_init();
	if ((fd = open(DEV, O_RDWR | O_CLOEXEC)) < 0)
		skip_all("%s: %s; rewire.ko is tested inside QEMU by t/vm.t", DEV, strerror(errno));
	if (ioctl(fd, REWIRE_IOC_INFO, &info))
		bail("REWIRE_IOC_INFO: %s", strerror(errno));
	close(fd);
	test_seed();

	/* The module with test hooks is loaded: check the notifier refusal. */
	if (broken || (only && !strcmp(only, "notifier"))) {
		if (!notifier_test())
			bail("REWIRE_KMOD_BROKEN or _ONLY=notifier, but rewire.ko has no test hooks");
		if (!broken)
			return done_testing();
	}
	if (broken && !strcmp(broken, "1")) {
		ok(tlb_test(100) > 0, "negative control: without its TLB flush, the module is caught");
		if (huge_on()) {
			ok(tlb_test(100) > 0,
			   "negative control: without its flush of huge pages, the module is caught");
			huge_off();
		}
		return done_testing();
	}
	if (broken && !strcmp(broken, "4")) {
		ok(tlb_local_test(200) > 0,
		   "negative control: without the flush of one of a few pages, the module is caught");
		return done_testing();
	}
	if (broken && !strcmp(broken, "3")) {
		const char *why = tlb_gen_untestable();
		int stale = tlb_switch_test(100);

		if (why)
			ok(1, "# SKIP %s (%d stale): the negative control needs real hardware", why, stale);
		else
			ok(stale > 0, "negative control: without its TLB generation advance, the module is caught");
		return done_testing();
	}
	if (broken && strchr("567", broken[0]) && broken[0] && !broken[1]) {
		ok(checker_control(), "negative control %s: batches sent; the kernel's checker "
		   "must report (t/vm.t reads the log)", broken);
		return done_testing();
	}
	if (broken && !strcmp(broken, "2")) {
		if (node_count() < 2) {
			ok(1, "# SKIP one NUMA node: no migration to test");
			return done_testing();
		}
		ok(migrate_test() > 0, "negative control: without the rmap update, migration fails");
		if (huge_on()) {
			ok(migrate_test() > 0, "negative control: without the rmap update of huge "
			   "pages, their migration fails");
			huge_off();
		}
		return done_testing();
	}

	if (only && !strcmp(only, "huge")) {
		huge_tests();
		return done_testing();
	}
	if (only && !strcmp(only, "tlb")) {
		is_int(0, tlb_local_test(200), "one CPU: every page where the model says after a few swaps");
		is_int(0, tlb_test(400), "no CPU saw a stale translation after a batch returned");
		is_int(0, tlb_switch_test(100),
		       "nor one that ran another process meanwhile and switched back");
		return done_testing();
	}
	interface();
	bounds();
	progress();
	kill_test();
	yield_test();
	refusals();
	swapcache_test();
	if (!notifier_test())
		diag("rewire.ko has no test hooks: the mmu-notifier refusal is tested with "
		     "rewire-test.ko (REWIRE_KMOD_ONLY=notifier)");
	is_int(0, tlb_local_test(200), "one CPU: every page where the model says after a few swaps");
	is_int(0, tlb_test(200), "no CPU saw a stale translation after a batch returned");
	is_int(0, tlb_switch_test(100), "nor one that ran another process meanwhile and switched back");
	if (node_count() >= 2) {
		is_int(0, (long long)migrate_test(), "every moved page migrated to the other node");
		migrate_race();
	} else {
		ok(1, "# SKIP one NUMA node: no migration to test");
		ok(1, "# SKIP one NUMA node: no migration to test");
		ok(1, "# SKIP one NUMA node: no migration to test");
	}
	is_int(0, fuzz(calls ? atol(calls) : 100000), "fuzz: every outcome possible, no data lost");
	huge_tests();
	return done_testing();
}
