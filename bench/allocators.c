/* Allocator comparisons: growing one buffer by doubling, and churning page
 * runs, on rewire, glibc and jemalloc (stock, and an arena whose extent
 * hooks mlock what they hand out: the fair pinned baseline). Each run is a
 * fresh child process, so peak memory is its own. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef HAVE_JEMALLOC
#include <jemalloc/jemalloc.h>

#include "rewire-jemalloc.h"
#endif

#include "common.h"
#include "rewire.h"

/* glibc's own allocator, whatever else is linked in. */
extern void *__libc_malloc(size_t size);
extern void *__libc_realloc(void *ptr, size_t size);
extern void __libc_free(void *ptr);

struct allocator {
	const char *name;
	int (*init)(size_t reserve);	/* nonzero: not available */
	void *(*alloc)(size_t len);
	void *(*resize)(void *p, size_t old_len, size_t len);
	void (*release)(void *p, size_t len);
};

static struct rewire_arena *arena;
static char rewire_name[64] = "rewire";

static int rewire_init(size_t reserve)
{
	struct rewire_options o;

	rewire_options_init(&o);
	o.reserve = reserve;
	return rewire_arena_create(&o, &arena);
}

static void *rewire_alloc_(size_t len)
{
	return rewire_alloc(arena, len, 0);
}

static void *rewire_realloc_(void *p, size_t old_len, size_t len)
{
	(void)old_len;
	return rewire_realloc(arena, p, len);
}

static void rewire_release(void *p, size_t len)
{
	(void)len;
	rewire_free(arena, p);
}

static int glibc_init(size_t reserve)
{
	(void)reserve;
	return 0;
}

static void *glibc_resize(void *p, size_t old_len, size_t len)
{
	(void)old_len;
	return __libc_realloc(p, len);
}

static void glibc_release(void *p, size_t len)
{
	(void)len;
	__libc_free(p);
}

#ifdef HAVE_JEMALLOC
static int je_flags;

static int je_init(size_t reserve)
{
	(void)reserve;
	je_flags = 0;
	return 0;
}

static void *je_alloc(size_t len)
{
	return mallocx(len, je_flags);
}

static void *je_resize(void *p, size_t old_len, size_t len)
{
	(void)old_len;
	return rallocx(p, len, je_flags);
}

static void je_release(void *p, size_t len)
{
	(void)len;
	dallocx(p, je_flags);
}

/* Extents for the pinned arena: mapped, aligned and locked. */
static void *pin_alloc(extent_hooks_t *h, void *new_addr, size_t size, size_t align,
		       bool *zero, bool *commit, unsigned ind)
{
	size_t len = new_addr ? size : size + align;
	char *p = mmap(new_addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (new_addr ? MAP_FIXED_NOREPLACE : 0), -1, 0);
	char *at;

	(void)h;
	(void)ind;
	if (p == MAP_FAILED)
		return NULL;
	if (new_addr && p != new_addr) {
		munmap(p, len);
		return NULL;
	}
	at = new_addr ? p : (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1));
	if (!new_addr) {
		if (at > p)
			munmap(p, (size_t)(at - p));
		if (p + len > at + size)
			munmap(at + size, (size_t)(p + len - (at + size)));
	}
	if (mlock(at, size)) {
		munmap(at, size);
		return NULL;
	}
	*zero = true;
	*commit = true;
	return at;
}

static bool pin_dalloc(extent_hooks_t *h, void *addr, size_t size, bool committed,
		       unsigned ind)
{
	(void)h;
	(void)committed;
	(void)ind;
	return munmap(addr, size) != 0;
}

static void pin_destroy(extent_hooks_t *h, void *addr, size_t size, bool committed,
			unsigned ind)
{
	(void)h;
	(void)committed;
	(void)ind;
	munmap(addr, size);
}

/* Extents are plain mappings: splitting and merging them needs nothing. */
static bool pin_split(extent_hooks_t *h, void *addr, size_t size, size_t a, size_t b,
		      bool committed, unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)a, (void)b, (void)committed, (void)ind;
	return false;
}

static bool pin_merge(extent_hooks_t *h, void *a, size_t as, void *b, size_t bs,
		      bool committed, unsigned ind)
{
	(void)h, (void)a, (void)as, (void)b, (void)bs, (void)committed, (void)ind;
	return false;
}

static extent_hooks_t pin_hooks = {
	pin_alloc, pin_dalloc, pin_destroy, NULL, NULL, NULL, NULL, pin_split, pin_merge,
};

/* jemalloc on rewire (librewire-jemalloc): an arena whose memory is a
 * rewire arena's, pinned and bound as rewire's is. */
static int on_rewire_init(size_t reserve)
{
	struct rewire_options o;
	struct rewire_arena *a;
	unsigned ind;

	/* Address space is free, and jemalloc keeps all it is given: four
	 * times the others' reserve; the same budget of memory. */
	rewire_options_init(&o);
	o.reserve = 4 * reserve;
	o.lock_budget = reserve;
	if (rewire_arena_create(&o, &a) || rewire_jemalloc_create(a, 4 * reserve, &ind))
		return -1;
	je_flags = rewire_jemalloc_flags(ind);
	return 0;
}

static int pinned_init(size_t reserve)
{
	extent_hooks_t *hooks = &pin_hooks;
	unsigned ind;
	size_t sz = sizeof(ind);

	(void)reserve;
	if (mallctl("arenas.create", &ind, &sz, &hooks, sizeof(hooks)))
		return -1;
	je_flags = MALLOCX_ARENA(ind) | MALLOCX_TCACHE_NONE;
	return 0;
}
#endif

static const struct allocator allocators[] = {
	{ rewire_name, rewire_init, rewire_alloc_, rewire_realloc_, rewire_release },
	{ "glibc", glibc_init, __libc_malloc, glibc_resize, glibc_release },
#ifdef HAVE_JEMALLOC
	{ "jemalloc", je_init, je_alloc, je_resize, je_release },
	{ "jemalloc pinned", pinned_init, je_alloc, je_resize, je_release },
	{ "jemalloc on rewire", on_rewire_init, je_alloc, je_resize, je_release },
#endif
};
#define NALLOC ((int)(sizeof(allocators) / sizeof(allocators[0])))

static void touch(char *p, size_t len)
{
	for (size_t i = 0; i < len; i += ps)
		p[i] = (char)(i >> 12);
}

/* What a child reports back. */
struct outcome {
	int ok;
	double ns, peak, value;
	int npoints;
	double x[32], y[32];
};

/* Run fn in a fresh child process. */
static struct outcome in_child(void (*fn)(const struct allocator *, size_t, struct outcome *),
			       const struct allocator *a, size_t arg, size_t reserve)
{
	struct outcome out = { 0 };
	int fd[2], status;
	pid_t pid;

	if (pipe(fd))
		return out;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		close(fd[0]);
		if (a->init(reserve) == 0)
			fn(a, arg, &out);
		if (write(fd[1], &out, sizeof(out)) != sizeof(out))
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	if (read(fd[0], &out, sizeof(out)) != sizeof(out))
		out.ok = 0;
	close(fd[0]);
	waitpid(pid, &status, 0);
	return out;
}

static void grow(const struct allocator *a, size_t max, struct outcome *out)
{
	size_t size = 64 << 10;
	double t0, base;
	char *p;

	reset_peak_rss();
	base = peak_rss();
	t0 = now_ns();
	p = a->alloc(size);
	if (!p)
		return;
	touch(p, size);
	p[0] = 42;
	while (size < max) {
		char *q = a->resize(p, size, 2 * size);

		if (!q || q[0] != 42)
			return;
		p = q;
		size *= 2;
		touch(p, size);
		p[0] = 42;
		out->x[out->npoints] = (double)size;
		out->y[out->npoints++] = (now_ns() - t0) / 1e6;
	}
	out->ns = now_ns() - t0;
	out->peak = peak_rss() - base;
	out->value = (double)size;
	out->ok = 1;
}

struct curve growth_curves[4], run_curves[4];
int ngrowth_curves, nrun_curves;

/*
 * The allocators take turns, run r of each in round r, each round led by
 * another one: backing a gigabyte of fresh pages costs 0.4 to 1 s here
 * depending on the moment (a virtual machine whose host takes freed pages
 * back), and an allocator whose runs all fell in a slow moment lost. The
 * "vs rewire" column and the goals are medians of the ratios within a
 * round.
 */
void bench_growth(size_t max)
{
	double t[NALLOC][32], rss[NALLOC][32], ratio[NALLOC][32], times[NALLOC], peaks[NALLOC];
	double vs[NALLOC];
	struct outcome last[NALLOC];
	const char *section = "growth";
	int good[NALLOC] = { 0 }, nratio[NALLOC] = { 0 }, n = 0;

	printf("\nrealloc growth: one buffer doubled from 64 KiB to %zu MiB, every page "
	       "written after each step\n", max >> 20);
	printf("  %-22s %10s %12s %10s %12s\n", "allocator", "time ms", "peak RSS MiB",
	       "RSS/size", "vs rewire");
	for (int r = 0; r < reps; r++) {
		double round[NALLOC] = { 0 };

		for (int k = 0; k < NALLOC; k++) {
			int i = (k + r) % NALLOC;
			struct outcome o;

			progress("growth: round %d of %d, %s", r + 1, reps, allocators[i].name);
			o = in_child(grow, &allocators[i], max, 2 * max + (64 << 20));
			if (!o.ok)
				continue;
			last[i] = o;
			round[i] = t[i][good[i]] = o.ns;
			rss[i][good[i]++] = o.peak;
		}
		for (int i = 0; i < NALLOC; i++)
			if (round[0] > 0 && round[i] > 0)
				ratio[i][nratio[i]++] = round[i] / round[0];
	}
	progress_done();
	for (int i = 0; i < NALLOC; i++) {
		const struct allocator *a = &allocators[i];

		vs[i] = nratio[i] ? median(ratio[i], nratio[i]) : 0;
		if (!good[i]) {
			printf("  %-22s %10s\n", a->name, "failed");
			times[i] = peaks[i] = 0;
			continue;
		}
		times[i] = median(t[i], good[i]);
		peaks[i] = median(rss[i], good[i]);
		printf("  %-22s %10.1f %12.1f %10.2f %12.2f\n", a->name, times[i] / 1e6,
		       peaks[i] / (1 << 20), peaks[i] / (double)max, vs[i]);
		record(section, a->name, "ms", times[i] / 1e6);
		record(section, a->name, "peak_rss_bytes", peaks[i]);
		if (n < 4) {
			struct curve *c = &growth_curves[n++];

			c->name = a->name;
			c->n = last[i].npoints;
			memcpy(c->x, last[i].x, sizeof(c->x));
			memcpy(c->y, last[i].y, sizeof(c->y));
		}
	}
	ngrowth_curves = n;
#ifndef HAVE_JEMALLOC
	printf("  (jemalloc columns left out: built without libjemalloc-dev)\n");
#endif
	printf("  goals\n");
	for (int i = 2; i < NALLOC; i++) {
		char what[80];

		/* both pay the kernel's populate of every new page: a floor */
		snprintf(what, sizeof(what), "%s time / rewire time", allocators[i].name);
		figure(what, vs[i]);
	}
	goal("glibc time / rewire time", vs[1], ">= 1", vs[1] >= 1);
	goal("rewire peak RSS / final size", peaks[0] / (double)max, "<= 1.1",
	     peaks[0] <= 1.1 * (double)max);
}

static void churn(const struct allocator *a, size_t ops, struct outcome *out)
{
	enum { SLOTS = 512 };
	static char *slot[SLOTS];
	static size_t len[SLOTS];
	double t0;
	long failed = 0;

	t0 = now_ns();
	for (size_t i = 0; i < ops; i++) {
		size_t s = rnd() % SLOTS, pages;

		if (slot[s]) {
			a->release(slot[s], len[s]);
			slot[s] = NULL;
			continue;
		}
		pages = (size_t)1 << (rnd() % 8);
		pages += rnd() % pages;
		len[s] = pages * ps;
		slot[s] = a->alloc(len[s]);
		if (slot[s])
			touch(slot[s], len[s]);
		else
			failed++;
	}
	out->ns = now_ns() - t0;
	out->value = (double)failed;
	out->ok = 1;
}

void bench_churn(long ops)
{
	double t[32], rate[NALLOC];
	const char *section = "churn";

	printf("\npage-run churn: %ld random allocations and frees of 4 KiB to 1 MiB, "
	       "every page touched\n", ops);
	printf("  %-22s %12s %10s %12s\n", "allocator", "ops/s", "failed", "vs rewire");
	for (int i = 0; i < NALLOC; i++) {
		const struct allocator *a = &allocators[i];
		struct outcome o = { 0 };
		int good = 0;

		for (int r = 0; r < reps; r++) {
			progress("churn: %s, run %d of %d", a->name, r + 1, reps);
			o = in_child(churn, a, (size_t)ops, (size_t)2 << 30);
			if (!o.ok)
				break;
			t[good++] = o.ns;
		}
		progress_done();
		rate[i] = good ? ops / (median(t, good) / 1e9) : 0;
		printf("  %-22s %12.0f %10.0f %12.2f\n", a->name, rate[i], o.value,
		       rate[0] ? rate[i] / rate[0] : 0);
		record(section, a->name, "ops_per_s", rate[i]);
	}
	printf("  goals\n");
	for (int i = 2; i < NALLOC; i++) {
		char what[80];

		if (!strcmp(allocators[i].name, "jemalloc on rewire")) {
			/* jemalloc's own work on both sides; what differs is
			 * what pinning and rewire's calls cost it */
			figure("jemalloc on rewire ops/s / jemalloc pinned ops/s",
			       rate[i - 1] ? rate[i] / rate[i - 1] : 0);
			continue;
		}
		snprintf(what, sizeof(what), "rewire ops/s / %s ops/s", allocators[i].name);
		goal(what, rate[i] ? rate[0] / rate[i] : 0, ">= 1", rate[0] >= rate[i]);
	}
}

/* The name rewire's column carries: its backend, chosen once here. */
__attribute__((constructor)) static void name_rewire(void)
{
	struct rewire_options o;
	struct rewire_arena *a;

	rewire_options_init(&o);
	o.reserve = 1 << 20;
	if (!rewire_arena_create(&o, &a)) {
		snprintf(rewire_name, sizeof(rewire_name), "rewire (%s)", rewire_backend_name(a));
		rewire_arena_destroy(a);
	}
}
