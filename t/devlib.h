/* Helpers of the module's own programs (t/kmod.c, t/fuzz.c): the calls of
 * /dev/rewire (rewire(4)) and a model of what a batch does to the pages. */
#ifndef REWIRE_DEVLIB_H
#define REWIRE_DEVLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rewire_uapi.h"

/* REWIRE_IOC_ATTACH of [p, p + len): 0 or -errno. Of huge pages
 * (REWIRE_IOC_ATTACH_HUGE) while the tests' page_size is a huge page. */
int attach(int fd, const void *p, size_t len);
/* REWIRE_IOC_BATCH of n operations: 0 or -errno; *done (if done is not
 * NULL) gets the operations applied. */
int batch(int fd, const struct rewire_dev_op *ops, uint32_t n, uint32_t *done);
/* Apply an operation the module reports done to the model m of the npages
 * pages at base (HOLE: no data); false, and m unchanged, if the operation
 * reaches outside them. */
bool model_apply(uint64_t *m, size_t npages, const struct rewire_dev_op *op, const char *base);

/* Write s to a file of /proc or /sys: whether it was all written. */
bool write_file(const char *path, const char *s);
/* The NUMA nodes the machine has. */
int node_count(void);
/* move_pages(2) of this process's n pages to nodes[]: its result. */
int move_pages_to(size_t n, void **pages, const int *nodes, int *status);

#endif
