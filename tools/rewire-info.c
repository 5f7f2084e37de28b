/* rewire-info: what rewire can use on this machine, like numactl --hardware:
 * the kernel, each backend and why it is unusable, NUMA nodes, and the
 * limits that bound an arena. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/userfaultfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#ifdef HAVE_NUMA
#include <numa.h>
#endif

#include "rewire.h"
#include "rewire_uapi.h"

#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static void read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	snprintf(buf, len, "unknown");
	if (f) {
		if (fgets(buf, (int)len, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

static long count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/* Why the uffd backend cannot be used here, or NULL. */
static const char *uffd_problem(const struct utsname *u)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	static char why[160];
	int major = 0, minor = 0, fd;

	sscanf(u->release, "%d.%d", &major, &minor);
	if (major == 6 && minor == 18)
		return "Linux 6.18 loses pages UFFDIO_MOVE moves while compaction migrates them";
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0) {
		if (errno == ENOSYS)
			return "the kernel has no userfaultfd(2)";
		snprintf(why, sizeof(why), "userfaultfd(2) refused: %s (see vm.unprivileged_userfaultfd)",
			 strerror(errno));
		return why;
	}
	if (ioctl(fd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE)) {
		close(fd);
		if (major < 6 || (major == 6 && minor < 8))
			return "kernel too old: UFFDIO_MOVE needs Linux 6.8";
		return "the kernel does not report UFFD_FEATURE_MOVE";
	}
	close(fd);
	return NULL;
}

/* Why the kmod backend cannot be used here, or NULL. */
static const char *kmod_problem(void)
{
	static char why[160];
	struct rewire_dev_info info;
	struct stat st;
	int fd;

	if (stat("/dev/rewire", &st)) {
		if (access("/sys/module/rewire", F_OK) == 0)
			return "rewire.ko is loaded but /dev/rewire is missing (udev?)";
		return "module not loaded (no /dev/rewire; see rewire(4))";
	}
	fd = open("/dev/rewire", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, sizeof(why), "/dev/rewire cannot be opened: %s", strerror(errno));
		return why;
	}
	if (ioctl(fd, REWIRE_IOC_INFO, &info)) {
		close(fd);
		return "/dev/rewire does not answer REWIRE_IOC_INFO";
	}
	close(fd);
	if (info.version != REWIRE_DEV_VERSION) {
		snprintf(why, sizeof(why), "rewire.ko speaks interface %u, this library %d",
			 info.version, REWIRE_DEV_VERSION);
		return why;
	}
	return NULL;
}

/* Try an arena on backend; on failure, a reason. */
static const char *try_backend(const char *name, const struct utsname *u, char *picked)
{
	static char why[160];
	struct rewire_options o;
	struct rewire_arena *a;
	int ret;

	rewire_options_init(&o);
	o.reserve = 1 << 20;
	o.backend = name;
	ret = rewire_arena_create(&o, &a);
	if (!ret) {
		if (picked)
			snprintf(picked, 32, "%s", rewire_backend_name(a));
		rewire_arena_destroy(a);
		return NULL;
	}
	if (!strcmp(name, "kmod") && kmod_problem())
		return kmod_problem();
	if (!strcmp(name, "uffd") && uffd_problem(u))
		return uffd_problem(u);
	if (!strcmp(name, "mremap") && ret == -EOPNOTSUPP)
		return "MREMAP_DONTUNMAP does not work here (Linux 5.7 or later needed)";
	snprintf(why, sizeof(why), "arena creation fails: %s", strerror(-ret));
	return why;
}

/* Whether a huge arena gets a huge page here now: tried, with one. */
static const char *huge_arena_answer(const char *enabled)
{
	struct rewire_options o;
	struct rewire_arena *a;
	struct rewire_stats st;
	int ret;

	if (!strcmp(enabled, "unknown"))
		return "made of base pages: no /sys/kernel/mm/transparent_hugepage "
		       "(a kernel without transparent huge pages, or /sys not mounted)";
	if (strstr(enabled, "[never]"))
		return "made of base pages: transparent huge pages are off (enabled: never)";
	rewire_options_init(&o);
	o.reserve = o.page_size = REWIRE_HUGE_PAGE_SIZE;
	ret = rewire_arena_create(&o, &a);
	if (ret)
		return strerror(-ret);
	ret = rewire_alloc(a, REWIRE_HUGE_PAGE_SIZE, 0) && !rewire_arena_stats(a, &st) &&
	      st.huge_backed == REWIRE_HUGE_PAGE_SIZE;
	if (!ret) {
		/* the kernel may have had none free at the fault */
		rewire_purge(a);
		ret = !rewire_arena_stats(a, &st) && st.huge_backed == REWIRE_HUGE_PAGE_SIZE;
	}
	rewire_arena_destroy(a);
	return ret ? "get huge pages here (one tried)" :
	       "made of base pages now: the kernel gave no huge page (memory fragmented?)";
}

/* Whether backend takes an arena of huge pages here. */
static int huge_arena_on(const char *backend)
{
	struct rewire_options o;
	struct rewire_arena *a;

	rewire_options_init(&o);
	o.reserve = o.page_size = REWIRE_HUGE_PAGE_SIZE;
	o.backend = backend;
	if (rewire_arena_create(&o, &a))
		return 0;
	rewire_arena_destroy(a);
	return 1;
}

static void limit(const char *what, rlim_t v)
{
	if (v == RLIM_INFINITY)
		printf("%s unlimited", what);
	else
		printf("%s %llu KiB", what, (unsigned long long)v / 1024);
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "kmod", "uffd", "mremap", "copy" };
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = { { 0, 0, 0 }, { 0, 0, 0 } };
	char buf[128], picked[32] = "none";
	struct rlimit rl;
	struct utsname u;

	if (argc > 1) {
		fprintf(stderr, "usage: rewire-info\n");
		return strcmp(argv[1], "--help") ? 2 : 0;
	}
	uname(&u);
	printf("rewire %s\n", rewire_version());
	printf("kernel: Linux %s %s\n", u.release, u.machine);
	printf("page size: %ld bytes\n", sysconf(_SC_PAGESIZE));

	printf("backends (auto tries them in this order):\n");
	for (int i = 0; i < 4; i++) {
		const char *why = try_backend(names[i], &u, NULL);

		printf("  %-7s %s%s\n", names[i], why ? "unusable: " : "usable", why ? why : "");
	}
	if (try_backend("auto", &u, picked))
		printf("  auto    cannot create an arena here\n");
	else
		printf("  auto    chooses %s\n", picked);

	read_line("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf));
	printf("huge pages: %zu KiB (rewire_options.page_size)\n", (size_t)REWIRE_HUGE_PAGE_SIZE >> 10);
	printf("  huge arenas %s\n", huge_arena_answer(buf));
	printf("  transparent_hugepage/enabled: %s\n", buf);
	read_line("/sys/kernel/mm/transparent_hugepage/defrag", buf, sizeof(buf));
	printf("  transparent_hugepage/defrag: %s (madvise or always: faults compact for one)\n", buf);
	read_line("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", buf, sizeof(buf));
	printf("  khugepaged/max_ptes_none: %s (khugepaged never fills a hole: none of its entries is present)\n", buf);
	printf("  backends for huge arenas:");
	for (int i = 0; i < 4; i++)
		if (huge_arena_on(names[i]))
			printf(" %s", names[i]);
	printf("\n");

	printf("NUMA:");
#ifdef HAVE_NUMA
	if (numa_available() < 0) {
		printf(" not available\n");
	} else {
		printf(" %d node(s)\n", numa_max_node() + 1);
		for (int n = 0; n <= numa_max_node(); n++) {
			long long free_b, size = numa_node_size64(n, &free_b);

			if (size > 0)
				printf("  node %d: %lld MiB, %lld MiB free\n", n, size >> 20, free_b >> 20);
		}
	}
#else
	printf(" not built in (configure --with-numa)\n");
#endif

	getrlimit(RLIMIT_MEMLOCK, &rl);
	limit("RLIMIT_MEMLOCK: soft", rl.rlim_cur);
	limit(", hard", rl.rlim_max);
	syscall(SYS_capget, &h, d);
	printf("%s\n", d[0].effective & (1u << CAP_IPC_LOCK) ?
	       " (ignored: this process has CAP_IPC_LOCK)" :
	       " (an arena's whole reserve counts against it)");
	read_line("/proc/sys/vm/max_map_count", buf, sizeof(buf));
	printf("vm.max_map_count: %s (this process uses %ld)\n", buf,
	       count_lines("/proc/self/maps"));
	read_line("/proc/sys/vm/compact_unevictable_allowed", buf, sizeof(buf));
	printf("vm.compact_unevictable_allowed: %s%s\n", buf,
	       !strcmp(buf, "1") ? " (compaction may migrate locked pages)" : "");
	read_line("/proc/sys/vm/unprivileged_userfaultfd", buf, sizeof(buf));
	printf("vm.unprivileged_userfaultfd: %s (rewire needs only user-mode faults)\n", buf);
	return 0;
}
