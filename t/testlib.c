/* Helpers the tests share. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

size_t page_size, base_page_size;
bool huge_pages;
static uint64_t rnd_state;

bool test_init(void)
{
	const char *size = getenv("REWIRE_TEST_PAGE_SIZE");

	base_page_size = (size_t)sysconf(_SC_PAGESIZE);
	huge_pages = size && !strcmp(size, "huge");
	page_size = huge_pages ? REWIRE_HUGE_PAGE_SIZE : base_page_size;
	return getenv("REWIRE_UNDER_VALGRIND") != NULL;
}

void test_options_init(struct rewire_options *o)
{
	rewire_options_init(o);
	o->page_size = page_size;
}

bool maps_are_ours(void)
{
#if defined(__SANITIZE_ADDRESS__)
	return false;
#else
	return !test_init();
#endif
}

struct rewire_arena *test_arena_on(const char *backend, size_t reserve_pages,
				   size_t budget_pages, unsigned int flags)
{
	struct rewire_options o;
	struct rewire_arena *a;
	int ret;

	test_init();
	test_options_init(&o);
	o.reserve = reserve_pages * page_size;
	o.lock_budget = budget_pages * page_size;
	o.flags = flags;
	o.backend = backend;
	ret = rewire_arena_create(&o, &a);
	if (ret)
		bail("cannot create an arena on backend %s: %s", backend ? backend :
		     getenv("REWIRE_BACKEND") ? getenv("REWIRE_BACKEND") : "auto",
		     strerror(-ret));
	return a;
}

struct rewire_arena *test_arena(size_t reserve_pages, size_t budget_pages,
				unsigned int flags)
{
	return test_arena_on(NULL, reserve_pages, budget_pages, flags);
}

static uint64_t word_of(uint64_t tag, size_t i)
{
	return tag * 0x9e3779b97f4a7c15ull ^ i;
}

void tag_page(void *page, uint64_t tag)
{
	uint64_t *w = page;

	for (size_t i = 0; i < page_size / sizeof(*w); i++)
		w[i] = word_of(tag, i);
}

/* Every word of a base page; of a huge page, the first and last 64 bytes of
 * each base page in it, which is where a misplaced base page shows. */
bool page_has_tag(const void *page, uint64_t tag)
{
	const uint64_t *w = page;
	size_t words = page_size / sizeof(*w), per_base = base_page_size / sizeof(*w);

	for (size_t i = 0; i < words; i++) {
		if (w[i] != word_of(tag, i))
			return false;
		if (huge_pages && i % per_base == 7)
			i += per_base - 16;
	}
	return true;
}

int page_residency(const void *page)
{
	unsigned char v[512];
	size_t n = page_size / base_page_size, count = 0;

	if (n > sizeof(v) || mincore((void *)page, page_size, v))
		return -1;
	for (size_t i = 0; i < n; i++)
		count += v[i] & 1;
	return count == n ? 1 : count ? -1 : 0;
}

/* Any of its base pages resident: a hole holds none. */
bool page_resident(const void *page)
{
	return page_residency(page) != 0;
}

size_t huge_mapped(const void *p, size_t len, bool show)
{
	uintptr_t lo = (uintptr_t)p, hi = lo + len;
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	unsigned long long s = 0, e = 0, ls, le, v;
	bool inside = false;
	size_t kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		/* (a line such as "Anonymous:" parses as a hex number too) */
		if (sscanf(line, "%llx-%llx ", &ls, &le) == 2) {
			s = ls;
			e = le;
			inside = s >= lo && e <= hi;
		} else if (inside && sscanf(line, "AnonHugePages: %llu kB", &v) == 1) {
			kb += v;
			if (show)
				diag("mapping %llx-%llx: %llu kB huge", s, e, v);
		}
	}
	fclose(f);
	return kb << 10;
}

bool check_pages(const char *base, const uint64_t *model, size_t npages)
{
	for (size_t i = 0; i < npages; i++) {
		const char *p = base + i * page_size;

		if (model[i] == HOLE) {
			if (page_resident(p)) {
				diag("page %zu should be a hole but holds data", i);
				return false;
			}
		} else if (!page_has_tag(p, model[i])) {
			uint64_t found = ((const uint64_t *)p)[0];
			size_t j;

			for (j = 0; j < npages; j++)
				if (model[j] != HOLE && found == word_of(model[j], 0))
					break;
			diag("page %zu should hold tag %llu; holds %s %zu", i,
			     (unsigned long long)model[i],
			     j < npages ? "the data of model page" : "unknown data", j);
			return false;
		}
	}
	return true;
}

uint64_t test_seed(void)
{
	const char *s = getenv("REWIRE_SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;

	diag("seed %llu (replay with REWIRE_SEED=%llu)", (unsigned long long)seed,
	     (unsigned long long)seed);
	rnd_state = seed ? seed : 1;
	return seed;
}

uint64_t rnd(void)
{
	/* xorshift64* */
	rnd_state ^= rnd_state >> 12;
	rnd_state ^= rnd_state << 25;
	rnd_state ^= rnd_state >> 27;
	return rnd_state * 0x2545f4914f6cdd1dull;
}

uint64_t rnd_next(uint64_t *state)
{
	/* xorshift64, for a thread's own sequence */
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

void shuffle(size_t *v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = rnd_below(i), t = v[i - 1];

		v[i - 1] = v[j];
		v[j] = t;
	}
}

static long status_field(const char *name)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(name);

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, n) && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	fclose(f);
	return v;
}

long vm_locked_kb(void)
{
	return status_field("VmLck");
}

long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

bool thp_enabled(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128] = "";
	bool on;

	if (!f)
		return false;
	on = fgets(line, sizeof(line), f) && !strstr(line, "[never]");
	fclose(f);
	return on;
}

long map_count(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

#define SWAP_FILE "/tmp/rewire-swap"

const char *test_swap_on(struct test_swap *s, size_t pages)
{
	const char *why = NULL;
	char *hdr;
	int f, n = -1;

	s->loop = -1;
	s->ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (s->ctl >= 0)
		n = ioctl(s->ctl, 0x4C82 /* LOOP_CTL_GET_FREE */);
	if (n < 0)
		return "no loop device (loop.ko) for swap in this VM";
	f = open(SWAP_FILE, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	hdr = calloc(1, page_size);
	snprintf(s->dev, sizeof(s->dev), "/dev/loop%d", n);
	((uint32_t *)(hdr + 1024))[0] = 1;			/* version */
	((uint32_t *)(hdr + 1024))[1] = (uint32_t)pages - 1;	/* last page */
	memcpy(hdr + page_size - 10, "SWAPSPACE2", 10);
	if (f < 0 || ftruncate(f, (off_t)(pages * page_size)) ||
	    pwrite(f, hdr, page_size, 0) != (ssize_t)page_size)
		why = "cannot write a swap file in /tmp";
	else if ((s->loop = open(s->dev, O_RDWR | O_CLOEXEC)) < 0 ||
		 ioctl(s->loop, 0x4C00 /* LOOP_SET_FD */, f))
		why = "cannot set up a loop device";
	else if (syscall(SYS_swapon, s->dev, 0))
		why = "swapon failed";
	free(hdr);
	if (f >= 0)
		close(f);
	return why;
}

void test_swap_off(struct test_swap *s)
{
	if (s->loop >= 0) {
		syscall(SYS_swapoff, s->dev);
		ioctl(s->loop, 0x4C01 /* LOOP_CLR_FD */, 0);
		close(s->loop);
	}
	if (s->ctl >= 0)
		close(s->ctl);
	unlink(SWAP_FILE);
}
