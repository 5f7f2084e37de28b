/* Fault injection, for the tests only: page attempts nth to nth + count - 1
 * of each batch fail with -err, wherever the planner tries them (a remap
 * moves the pages before the failing one first, like a short kernel move).
 * Not exported from the shared library. */
#ifndef REWIRE_FAULT_H
#define REWIRE_FAULT_H

#include <stdbool.h>

void rw_fault_inject(int err, long nth, long count);
long rw_fault_fired(void);
int rw_fault_armed(void);
/* Batches that mix discards and populates with moves are lowered to moves
 * as on kmod (rewire_batch(3)), whatever the arena's backend. */
struct rewire_arena;
void rw_test_lower_batches(struct rewire_arena *a, bool on);
/* The mremap backend's headroom of mappings, normally 1024 (64 to undo);
 * below zero, moves go on until the kernel refuses them. */
void rw_mremap_set_headroom(long maps);

#endif
