/* Helpers the tests share: arenas on the backend under test, page tags, a
 * model of where every tagged page should be, and leak measurements. */
#ifndef REWIRE_TESTLIB_H
#define REWIRE_TESTLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rewire.h"
#include "tap.h"

#define HOLE 0	/* model value of a page that must hold no data */
#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))	/* of an array, not a pointer */

/* The arenas' page size: the base page size, or with
 * REWIRE_TEST_PAGE_SIZE=huge the huge one (the t/...-huge.t scripts); and the base one. */
extern size_t page_size, base_page_size;
extern bool huge_pages;

/* Sets page_size; true when the test runs under valgrind (t/valgrind.sh). */
bool test_init(void);

/* rewire_options_init() with page_size set as the test runs. */
void test_options_init(struct rewire_options *o);

/* Whether the process's mappings and locked memory are the program's own
 * to count: valgrind and AddressSanitizer map memory as it runs. */
bool maps_are_ours(void);

/* An arena on $REWIRE_BACKEND (or auto); bails out if it cannot be made. */
struct rewire_arena *test_arena(size_t reserve_pages, size_t budget_pages,
				unsigned int flags);
/* The same on the backend named (NULL: as test_arena). */
struct rewire_arena *test_arena_on(const char *backend, size_t reserve_pages,
				   size_t budget_pages, unsigned int flags);

void tag_page(void *page, uint64_t tag);
bool page_has_tag(const void *page, uint64_t tag);
bool page_resident(const void *page);
/* 1 if all of the page is resident, 0 if none of it, -1 if part. */
int page_residency(const void *page);
/* Whether the kernel maps [p, p + len) of this process with huge pages, in
 * bytes (AnonHugePages of /proc/self/smaps); with show, a diag line for each
 * mapping counted. */
size_t huge_mapped(const void *p, size_t len, bool show);

/* Check npages pages at base against model[]: a tag's data, or HOLE (not
 * resident). Prints the first mismatch. */
bool check_pages(const char *base, const uint64_t *model, size_t npages);

/* Deterministic random numbers; the seed comes from $REWIRE_SEED or time. */
uint64_t test_seed(void);
uint64_t rnd(void);
size_t rnd_below(size_t n);
/* The next of a sequence of one's own (state not 0), for threads. */
uint64_t rnd_next(uint64_t *state);
void shuffle(size_t *v, size_t n);

/* Swap on a loop device backed by a file in /tmp (root, loop.ko): NULL, or
 * why there is none. test_swap_off() undoes what test_swap_on() did. */
struct test_swap {
	char dev[32];
	int ctl, loop;
};
const char *test_swap_on(struct test_swap *s, size_t pages);
void test_swap_off(struct test_swap *s);

long vm_locked_kb(void);
long map_count(void);
/* The number a file such as /proc/sys/vm/max_map_count holds, or -1. */
long read_long(const char *path);
/* Whether the kernel gives transparent huge pages here: enabled is not
 * "never" (rewire-info(1) reports it). */
bool thp_enabled(void);

#endif
