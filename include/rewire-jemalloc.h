/* librewire-jemalloc: jemalloc arenas whose memory comes from a rewire
 * arena: pinned, NUMA-bound, bounded by its lock budget. See
 * rewire_jemalloc_create(3). Link with -lrewire-jemalloc -lrewire
 * -ljemalloc. */
#ifndef REWIRE_JEMALLOC_H
#define REWIRE_JEMALLOC_H

#include <rewire.h>

#ifdef __cplusplus
extern "C" {
#endif

int rewire_jemalloc_create(struct rewire_arena *arena, size_t size, unsigned *arena_index);
int rewire_jemalloc_flags(unsigned arena_index);
int rewire_jemalloc_destroy(unsigned arena_index);

#ifdef __cplusplus
}
#endif

#endif
