/*
 * A fuzzer of rewire.ko, run inside the VMs of t/vm.t (rewire(4)). Lane
 * threads send random batches, valid and malformed, each on a mapping of
 * its own whose every page a model follows. A victim thread sends them on a
 * mapping that another thread meanwhile unmaps, moves with mremap(2) and
 * replaces by mappings of the kinds the module refuses (unlocked, shared,
 * file, read-only, transparent huge pages, KSM-merged). Chaos threads
 * change the lanes' mappings in ways that keep their data (mprotect,
 * munlock and mlock, MADV_COLD, MADV_PAGEOUT to swap, MADV_MERGEABLE, pins
 * by vmsplice, fork and exit, migration between nodes) and compact memory.
 * Where a batch reports operations done, the model follows them; a lane's
 * every page is checked against it after each refused batch and every 64
 * calls. Seeded (REWIRE_SEED: each thread's choices follow from it, the
 * interleaving does not) and timed (REWIRE_FUZZ_SECONDS, 120 by default);
 * it reports ioctls per second and the errors seen.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "devlib.h"
#include "testlib.h"

#define DEV "/dev/rewire"

#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

enum { N = 64, LANES = 3, MAXOPS = 8, VICTIM_PAGES = 512 /* 2 MiB: room for a THP */ };

/* The outcomes a batch may have; the last slot counts any other. */
static const int errs[] = { 0, EINVAL, EEXIST, EFAULT, E2BIG, EBUSY, EAGAIN, ENOMEM, EPERM,
			    EBADFD, EACCES };
static const char *const err_names[] = { "ok", "EINVAL", "EEXIST", "EFAULT", "E2BIG", "EBUSY",
					 "EAGAIN", "ENOMEM", "EPERM", "EBADFD", "EACCES",
					 "other" };
#define NERRS (sizeof(errs) / sizeof(errs[0]))

struct lane {
	pthread_t tid;
	int id, fd;
	char *p;
	uint64_t model[N];
	uint64_t rng;
	/* Held by a chaos thread while part of the mapping is read-only:
	 * the lane then writes nothing. */
	pthread_mutex_t writable;
	long calls, applied, checks;
	long by_err[NERRS + 1];
};

static struct lane lanes[LANES];
static atomic_int stop;
static atomic_long failures, children, victim_calls, victim_by_err[NERRS + 1], replaced;
static char *victim, *park;
static struct rewire_dev_batch *victim_ro;	/* a page for a read-only batch */
static int nodes;
static pthread_mutex_t report = PTHREAD_MUTEX_INITIALIZER;

/* A failure: the first ten are told. */
#define fail(...)							\
	do {								\
		if (atomic_fetch_add(&failures, 1) < 10) {		\
			pthread_mutex_lock(&report);			\
			diag(__VA_ARGS__);				\
			pthread_mutex_unlock(&report);			\
		}							\
	} while (0)

static size_t below(uint64_t *rng, size_t n)
{
	return n ? (size_t)(rnd_next(rng) % n) : 0;
}

static int err_index(int ret)
{
	size_t k;

	for (k = 0; k < NERRS && errs[k] != -ret; k++)
		;
	return (int)k;
}

/* Random operations on the n pages at p, some malformed: overlapping,
 * unaligned, reaching outside, of no known type, with a bad permutation;
 * moves aimed at a hole of model (if any) most of the time. */
static uint32_t random_ops(uint64_t *rng, char *p, size_t n, const uint64_t *model,
			   struct rewire_dev_op *ops, uint64_t (*perms)[N])
{
	uint32_t nops = 1 + (uint32_t)below(rng, MAXOPS);
	/* Half the batches well formed but for overlaps: one malformed
	 * operation refuses a whole batch. */
	bool clean = below(rng, 2);

	for (uint32_t i = 0; i < nops; i++) {
		size_t len = below(rng, 8) || clean ? 1 + below(rng, 6) :
			     below(rng, 3) ? below(rng, n + 2) : (size_t)rnd_next(rng);
		size_t d = clean ? below(rng, n - len + 1) : below(rng, n + 4) - 2;
		size_t s = clean ? below(rng, n - len + 1) : below(rng, n + 4) - 2;
		int type = below(rng, 16) || clean ? 1 + (int)below(rng, 3) : (int)below(rng, 6);

		ops[i] = (struct rewire_dev_op){ .type = (uint32_t)type,
						 .dst = (uintptr_t)(p + d * page_size),
						 .src = (uintptr_t)(p + s * page_size), .npages = len };
		if (!clean && !below(rng, 32))
			ops[i].dst += below(rng, page_size);
		if (!clean && !below(rng, 64))
			ops[i].reserved = 1;
		if (type == REWIRE_DEV_PERMUTE && (clean || below(rng, 16))) {
			ops[i].src = 0;
			for (size_t j = 0; j < len && j < N; j++)
				perms[i][j] = j;
			for (size_t j = len <= N ? len : 0; j > 1; j--) {
				size_t k = below(rng, j);
				uint64_t t = perms[i][j - 1];

				perms[i][j - 1] = perms[i][k];
				perms[i][k] = t;
			}
			if (!clean && len > 1 && len <= N && !below(rng, 16))
				perms[i][below(rng, len)] = perms[i][below(rng, len)];
			/* never the mapping itself: reading it would fill holes */
			ops[i].perm = clean || below(rng, 32) ? (uintptr_t)perms[i] :
				      below(rng, 2) ? 8 : (uintptr_t)-page_size;
		}
		if (type == REWIRE_DEV_MOVE && model && below(rng, 4))
			for (size_t j = 0; j < n; j++)
				if (model[(d + j) % n] == HOLE) {
					ops[i].dst = (uintptr_t)(p + ((d + j) % n) * page_size);
					break;
				}
	}
	return nops;
}

/* Write each data page's tag again, where the model says it is: a page
 * copied on write for a child since is the lane's own again. */
static void rewrite(struct lane *l)
{
	if (pthread_mutex_trylock(&l->writable))
		return;
	for (size_t i = 0; i < N; i++)
		if (l->model[i] != HOLE)
			tag_page(l->p + i * page_size, l->model[i]);
	pthread_mutex_unlock(&l->writable);
}

/* Hand one data page to a pipe by vmsplice (a reference the pipe holds
 * until read), or read back the page handed over last: its data then. */
static void pin_or_drain(struct lane *l, int *pipefd, uint64_t *spliced)
{
	char *buf;

	if (*spliced) {
		buf = malloc(page_size);
		if (read(pipefd[0], buf, page_size) != (ssize_t)page_size ||
		    !page_has_tag(buf, *spliced))
			fail("lane %d: the page spliced into a pipe came back wrong", l->id);
		free(buf);
		*spliced = 0;
		return;
	}
	for (size_t k = 0, i = below(&l->rng, N); k < N; k++, i = (i + 1) % N) {
		struct iovec v = { l->p + i * page_size, page_size };

		if (l->model[i] == HOLE)
			continue;
		if (vmsplice(pipefd[1], &v, 1, 0) == (ssize_t)page_size)
			*spliced = l->model[i];
		return;
	}
}

static void *lane_work(void *arg)
{
	struct lane *l = arg;
	struct rewire_dev_op ops[MAXOPS];
	uint64_t perms[MAXOPS][N], spliced = 0;
	int pipefd[2];

	if (pipe(pipefd))
		bail("pipe: %s", strerror(errno));
	while (!atomic_load(&stop)) {
		uint32_t n = random_ops(&l->rng, l->p, N, l->model, ops, perms), sent, done;
		int ret, k;

		/* now and then too many, never a count that would read past ops */
		sent = below(&l->rng, 64) ? n : REWIRE_DEV_MAX_OPS + 1 + (uint32_t)below(&l->rng, 1000);
		ret = batch(l->fd, ops, sent, &done);
		k = err_index(ret);
		l->by_err[k]++;
		l->calls++;
		if (k == NERRS || done > n || (!ret && done != sent)) {
			fail("lane %d call %ld: returned %d, done %u of %u", l->id, l->calls, ret,
			     done, sent);
			break;
		}
		for (uint32_t i = 0; i < done; i++) {
			size_t d = (size_t)((char *)(uintptr_t)ops[i].dst - l->p) / page_size;

			for (size_t j = 0; ops[i].type == REWIRE_DEV_MOVE && d + j < N &&
					   j < ops[i].npages; j++)
				if (l->model[d + j] != HOLE)
					fail("lane %d call %ld: op %u moved onto data", l->id,
					     l->calls, i);
			if (!model_apply(l->model, N, &ops[i], l->p))
				fail("lane %d call %ld: op %u applied outside the mapping", l->id,
				     l->calls, i);
		}
		l->applied += done;
		if (ret || l->calls % 64 == 0) {
			l->checks++;
			if (!check_pages(l->p, l->model, N)) {
				fail("lane %d call %ld (%s): a page is not where the model says",
				     l->id, l->calls, strerror(-ret));
				break;
			}
		}
		if (ret == -EBUSY)
			rewrite(l);
		if (!below(&l->rng, 64))
			pin_or_drain(l, pipefd, &spliced);
	}
	if (spliced)
		pin_or_drain(l, pipefd, &spliced);
	close(pipefd[0]);
	close(pipefd[1]);
	return NULL;
}

/*
 * A child of fork: the lane's file belongs to the parent's memory, so a
 * batch on it must fail with EPERM; the child's own copy, locked and
 * attached, may move or be refused (its pages are shared with the parent),
 * and the child exits with its file still open. Only system calls here.
 */
static void child(struct lane *l)
{
	struct rewire_dev_op op = { .type = REWIRE_DEV_SWAP, .dst = (uintptr_t)l->p,
				    .src = (uintptr_t)(l->p + page_size), .npages = 1 };
	struct rewire_dev_batch b = { .ops = (uintptr_t)&op, .nops = 1 };
	int fd;

	if (!ioctl(l->fd, REWIRE_IOC_BATCH, &b) || errno != EPERM)
		_exit(1);	/* a file attached to the parent's memory */
	fd = open(DEV, O_RDWR | O_CLOEXEC);
	if (fd < 0 || syscall(SYS_mlock2, l->p, N * page_size, MLOCK_ONFAULT))
		_exit(2);
	/* whatever it answers: what matters is the kernel's log */
	if (attach(fd, l->p, N * page_size) == 0)
		ioctl(fd, REWIRE_IOC_BATCH, &b);
	_exit(0);
}

static void fork_child(struct lane *l)
{
	int status = 0;
	pid_t pid = fork();

	if (pid < 0)
		return;
	if (!pid)
		child(l);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("a child of fork failed its step %d", WIFEXITED(status) ?
		     WEXITSTATUS(status) : -1);
	atomic_fetch_add(&children, 1);
}

static void migrate(char *p, size_t n, uint64_t *rng)
{
	void *pages[N];
	int to[N], status[N];

	for (size_t i = 0; i < n; i++) {
		pages[i] = p + i * page_size;
		to[i] = (int)below(rng, (size_t)nodes);
	}
	move_pages_to(n, pages, to, status);
}

/* Changes to the lanes' mappings that keep every page's data. */
static void *lane_chaos(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg;

	while (!atomic_load(&stop)) {
		struct lane *l = &lanes[below(&rng, LANES)];
		size_t off = below(&rng, N), len = 1 + below(&rng, N - off);
		char *a = l->p + off * page_size;

		len *= page_size;
		switch (below(&rng, 9)) {
		case 0:
			pthread_mutex_lock(&l->writable);
			mprotect(a, len, PROT_READ);
			usleep((useconds_t)below(&rng, 2000));
			mprotect(a, len, PROT_READ | PROT_WRITE);
			pthread_mutex_unlock(&l->writable);
			break;
		case 1:
			syscall(SYS_munlock, a, len);
			if (below(&rng, 2))
				madvise(a, len, MADV_PAGEOUT);
			usleep((useconds_t)below(&rng, 2000));
			syscall(SYS_mlock2, a, len, MLOCK_ONFAULT);
			break;
		case 2:
			madvise(a, len, MADV_COLD);
			break;
		case 3:
			madvise(a, len, MADV_MERGEABLE);
			usleep((useconds_t)below(&rng, 2000));
			madvise(a, len, MADV_UNMERGEABLE);
			break;
		case 4:
			if (nodes > 1)
				migrate(a, len / page_size, &rng);
			break;
		case 5:
			fork_child(l);
			break;
		case 6:
			write_file("/proc/sys/vm/compact_memory", "1");
			break;
		default:
			usleep((useconds_t)below(&rng, 1000));
		}
	}
	return NULL;
}

/* The victim's range becomes a mapping of another kind, at once (it is
 * never left unmapped for another thread's mmap to take). */
static void replace_victim(uint64_t *rng)
{
	size_t len = VICTIM_PAGES * page_size, off, n;
	int kind = (int)below(rng, 10), fd, pkey, flags = MAP_FIXED | MAP_ANONYMOUS | MAP_PRIVATE;
	char *p = victim;

	switch (kind) {
	case 0:	/* what the module takes: private, anonymous, locked */
	case 1:	/* the same as transparent huge pages */
	case 2:	/* the same, half of it identical pages for KSM */
		p = mmap(victim, len, PROT_READ | PROT_WRITE, flags, -1, 0);
		if (p == MAP_FAILED)
			break;
		madvise(p, len, kind == 1 ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		syscall(SYS_mlock2, p, len, MLOCK_ONFAULT);
		/* a quarter of them left untouched: no page table yet */
		for (size_t i = 0; below(rng, 4) && i < VICTIM_PAGES; i += 1 + below(rng, 4))
			tag_page(p + i * page_size, kind == 2 && i % 2 ? 7 : 5000 + i);
		if (kind == 2)
			madvise(p, len, MADV_MERGEABLE);
		break;
	case 3:	/* not locked */
		p = mmap(victim, len, PROT_READ | PROT_WRITE, flags | MAP_POPULATE, -1, 0);
		break;
	case 4:	/* shared */
		p = mmap(victim, len, PROT_READ | PROT_WRITE,
			 MAP_FIXED | MAP_ANONYMOUS | MAP_SHARED | MAP_LOCKED | MAP_POPULATE, -1, 0);
		break;
	case 5:	/* a private mapping of a file */
		fd = (int)syscall(SYS_memfd_create, "rewire-fuzz", 0);
		if (fd < 0 || ftruncate(fd, (off_t)len)) {
			if (fd >= 0)
				close(fd);
			break;
		}
		p = mmap(victim, len, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_LOCKED |
			 MAP_POPULATE, fd, 0);
		close(fd);
		break;
	case 6:	/* read-only */
		p = mmap(victim, len, PROT_READ, flags | MAP_LOCKED | MAP_POPULATE, -1, 0);
		break;
	case 8:	/* what the module takes, but under a protection key that
		 * forbids this thread to write (where the CPU has them) */
		p = mmap(victim, len, PROT_READ | PROT_WRITE, flags | MAP_LOCKED, -1, 0);
		pkey = (int)syscall(SYS_pkey_alloc, 0, 0);
		if (pkey >= 0) {
			syscall(SYS_pkey_mprotect, p, len, PROT_READ | PROT_WRITE, pkey);
			/* the rights of the key are per thread: this one's and
			 * (set at clone) no one's; deny them to the victim's
			 * thread by freeing the key, which leaves it assigned */
			syscall(SYS_pkey_free, pkey);
		}
		break;
	case 7:	/* part discarded */
		off = below(rng, VICTIM_PAGES);
		n = 1 + below(rng, VICTIM_PAGES - off);
		madvise(victim + off * page_size, n * page_size, MADV_DONTNEED_LOCKED);
		break;
	default:
		/* its pages moved away by mremap, the mapping left empty
		 * (never a gap another thread's mmap could take); the kinds
		 * above that mremap cannot do so stay as they are */
		if (mremap(victim, len, len, MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP,
			   park) != MAP_FAILED)
			mmap(park, len, PROT_NONE, flags | MAP_NORESERVE, -1, 0);
		break;
	}
	if (p != victim)
		fail("replacing the victim's mapping (kind %d): %s", kind, strerror(errno));
	atomic_fetch_add(&replaced, 1);
}

/* A malformed attach, or (attached) a second one: refused. */
static void bad_attach(int fd, bool attached, uint64_t *rng)
{
	struct rewire_dev_attach at = { (uintptr_t)victim, VICTIM_PAGES * page_size };
	int ret;

	switch (below(rng, 5)) {
	case 0:
		at.len = 0;
		break;
	case 1:
		at.start += below(rng, page_size - 1) + 1;
		break;
	case 2:
		at.len = -page_size;	/* wraps */
		break;
	case 3:
		/* the kernel's half: past the user's address space with 4 or
		 * 5 levels of page tables alike */
		at.start = 0xffff800000000000ull;
		break;
	default:
		if (!attached)
			return;
		break;		/* the same again */
	}
	ret = ioctl(fd, REWIRE_IOC_ATTACH, &at) ? -errno : 0;
	if (ret != -EINVAL && ret != -EBUSY)
		fail("victim: a malformed attach returned %d", ret);
}

/* Batches on the victim's range, reattached now and then, whatever it is
 * mapped as; meanwhile another thread replaces it. Now and then the batch's
 * own struct is read-only, so that the module cannot write back done. */
static void *victim_work(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg, perms[MAXOPS][N];
	struct rewire_dev_op ops[MAXOPS];
	struct rewire_dev_batch *ro = victim_ro;
	int fd = -1;
	bool attached = false;

	while (!atomic_load(&stop)) {
		uint32_t n, done;
		int ret, k;

		if (fd < 0 || !below(&rng, 16)) {
			if (fd >= 0)
				close(fd);
			fd = open(DEV, O_RDWR | O_CLOEXEC);
			if (fd < 0)
				bail("open %s: %s", DEV, strerror(errno));
			attached = false;
		}
		/* a file not attached refuses every batch (EBADFD): mostly
		 * attach first, if the mapping is of the kind the module takes */
		if (!attached && below(&rng, 16)) {
			ret = attach(fd, victim, VICTIM_PAGES * page_size);
			if (ret && ret != -EINVAL && ret != -EFAULT && ret != -EACCES)
				fail("victim: attach returned %s", strerror(-ret));
			attached = !ret;
			if (ret)
				continue;
		}
		if (!below(&rng, 32))
			bad_attach(fd, attached, &rng);
		n = random_ops(&rng, victim + below(&rng, VICTIM_PAGES - N) * page_size, N, NULL,
			       ops, perms);
		if (!below(&rng, 64)) {
			mprotect(ro, page_size, PROT_READ | PROT_WRITE);
			*ro = (struct rewire_dev_batch){ .ops = (uintptr_t)ops, .nops = n, .done = 99 };
			mprotect(ro, page_size, PROT_READ);
			ret = ioctl(fd, REWIRE_IOC_BATCH, ro) ? -errno : 0;
			if (ret != -EFAULT)
				fail("victim: a batch whose done cannot be written returned %d", ret);
			continue;
		}
		ret = batch(fd, ops, n, &done);
		k = err_index(ret);
		atomic_fetch_add(&victim_by_err[k], 1);
		atomic_fetch_add(&victim_calls, 1);
		if (k == NERRS || done > n || (!ret && done != n))
			fail("victim: returned %d, done %u of %u", ret, done, n);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void *victim_chaos(void *arg)
{
	uint64_t rng = (uint64_t)(uintptr_t)arg;

	while (!atomic_load(&stop)) {
		replace_victim(&rng);
		usleep((useconds_t)below(&rng, 5000));
		/* a huge page there, if any, migrates whole */
		if (nodes > 1 && below(&rng, 2))
			migrate(victim + below(&rng, VICTIM_PAGES / N) * N * page_size, N, &rng);
	}
	return NULL;
}

/* A 2 MiB-aligned range of len bytes, reserved. */
static char *reserve_aligned(size_t len)
{
	size_t align = 2u << 20;
	char *p = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		       -1, 0);
	char *q;

	if (p == MAP_FAILED)
		bail("mmap: %s", strerror(errno));
	q = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (q > p)
		munmap(p, (size_t)(q - p));
	munmap(q + len, (size_t)(p + align - q));
	return q;
}

static void lane_setup(struct lane *l, int id, uint64_t seed)
{
	size_t len = N * page_size;

	l->id = id;
	l->rng = seed * 0x9e3779b97f4a7c15ull + (uint64_t)id + 1;
	pthread_mutex_init(&l->writable, NULL);
	l->p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (l->p == MAP_FAILED)
		bail("mmap: %s", strerror(errno));
	madvise(l->p, len, MADV_NOHUGEPAGE);
	/* on fault, as the chaos thread locks it again after munlock: the
	 * mapping stays one */
	if (syscall(SYS_mlock2, l->p, len, MLOCK_ONFAULT))
		bail("mlock2: %s", strerror(errno));
	for (size_t i = 0; i < N; i++) {
		l->model[i] = below(&l->rng, 4) ? (uint64_t)(id + 1) * 1000000 + i : HOLE;
		if (l->model[i] != HOLE)
			tag_page(l->p + i * page_size, l->model[i]);
	}
	l->fd = open(DEV, O_RDWR | O_CLOEXEC);
	if (l->fd < 0)
		bail("open %s: %s", DEV, strerror(errno));
	if (attach(l->fd, l->p, len))
		bail("attach lane %d: %s", id, strerror(errno));
}

static void print_errors(const char *who, long calls, double seconds, const long *by_err)
{
	char line[512];
	size_t at = (size_t)snprintf(line, sizeof(line), "%s: %ld ioctls (%.0f a second):", who,
				     calls, calls / seconds);

	for (size_t k = 0; k <= NERRS && at < sizeof(line); k++)
		at += (size_t)snprintf(line + at, sizeof(line) - at, " %s %ld", err_names[k],
				       by_err[k]);
	diag("%s", line);
}

int main(void)
{
	const char *secs = getenv("REWIRE_FUZZ_SECONDS");
	double seconds = secs ? atof(secs) : 120, t0, el;
	pthread_t chaos[3];
	struct test_swap sw;
	const char *no_swap;
	long calls = 0, applied = 0, by_err[NERRS + 1] = { 0 }, victim_errs[NERRS + 1];
	uint64_t seed;
	int fd;

	test_init();
	if ((fd = open(DEV, O_RDWR | O_CLOEXEC)) < 0)
		skip_all("%s: %s; rewire.ko is fuzzed inside QEMU by t/vm.t", DEV, strerror(errno));
	/* It turns on swap and KSM and compacts memory: not on the machine
	 * that runs the suite, unless asked. */
	if (!getenv("REWIRE_IN_VM") && !getenv("REWIRE_FUZZ_HERE"))
		skip_all("rewire.ko is fuzzed inside QEMU by t/vm.t (REWIRE_FUZZ_HERE=1: here)");
	close(fd);
	seed = test_seed();
	nodes = node_count();
	no_swap = test_swap_on(&sw, 8192);
	write_file("/sys/kernel/mm/ksm/run", "1");
	diag("fuzz: %d lanes of %d pages, a victim of %d, %.0f s, %d node(s), swap: %s", LANES, N,
	     VICTIM_PAGES, seconds, nodes, no_swap ? no_swap : "on");

	for (int i = 0; i < LANES; i++)
		lane_setup(&lanes[i], i, seed);
	victim = reserve_aligned(VICTIM_PAGES * page_size);
	park = reserve_aligned(VICTIM_PAGES * page_size);
	victim_ro = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (victim_ro == MAP_FAILED)
		bail("mmap: %s", strerror(errno));
	{
		uint64_t r = seed + 99;

		replace_victim(&r);
	}

	t0 = (double)time(NULL);
	for (int i = 0; i < LANES; i++)
		pthread_create(&lanes[i].tid, NULL, lane_work, &lanes[i]);
	pthread_create(&chaos[0], NULL, lane_chaos, (void *)(uintptr_t)(seed * 3 + 1));
	pthread_create(&chaos[1], NULL, victim_work, (void *)(uintptr_t)(seed * 5 + 1));
	pthread_create(&chaos[2], NULL, victim_chaos, (void *)(uintptr_t)(seed * 7 + 1));
	while (!atomic_load(&stop) && (double)time(NULL) - t0 < seconds)
		sleep(1);
	atomic_store(&stop, 1);
	for (int i = 0; i < LANES; i++)
		pthread_join(lanes[i].tid, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(chaos[i], NULL);
	el = (double)time(NULL) - t0;
	write_file("/sys/kernel/mm/ksm/run", "2");	/* unmerge everything */

	for (int i = 0; i < LANES; i++) {
		struct lane *l = &lanes[i];

		diag("lane %d: %ld calls, %ld operations applied, %ld full checks", i, l->calls,
		     l->applied, l->checks);
		calls += l->calls;
		applied += l->applied;
		for (size_t k = 0; k <= NERRS; k++)
			by_err[k] += l->by_err[k];
	}
	el = el > 0 ? el : 1;
	print_errors("lanes", calls, el, by_err);
	diag("lanes: %ld operations applied", applied);
	for (size_t k = 0; k <= NERRS; k++) {
		victim_errs[k] = atomic_load(&victim_by_err[k]);
		by_err[k] += victim_errs[k];
	}
	print_errors("victim", atomic_load(&victim_calls), el, victim_errs);
	diag("fuzz: %.0f ioctls a second", (calls + atomic_load(&victim_calls)) / el);
	diag("the victim's mapping replaced %ld times; %ld children forked",
	     atomic_load(&replaced), atomic_load(&children));

	for (int i = 0; i < LANES; i++)
		ok(check_pages(lanes[i].p, lanes[i].model, N) && lanes[i].applied > 0,
		   "lane %d: operations applied, every page where the model says at the end", i);
	is_int(0, atomic_load(&failures), "no impossible outcome, no page lost or moved wrongly "
	       "(replay: REWIRE_SEED=%llu)", (unsigned long long)seed);
	ok(by_err[0] && by_err[err_index(-EINVAL)] && by_err[err_index(-EEXIST)] &&
	   by_err[err_index(-EFAULT)], "the fuzz reached applied batches and refusals");
	ok(atomic_load(&victim_calls) > 0 && atomic_load(&replaced) > 0 && atomic_load(&children) > 0,
	   "batches ran while the victim's mapping was replaced and children were forked");
	for (int i = 0; i < LANES; i++)
		close(lanes[i].fd);
	test_swap_off(&sw);
	return done_testing();
}
