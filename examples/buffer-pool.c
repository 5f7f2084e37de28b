/*
 * A buffer pool that keeps its hot pages together: frames live in one run
 * of the arena, a page table maps page ids to frames, and every so often the
 * frames are reordered by how often they were used, with one
 * rewire_permute. Scans of the hot set then touch a contiguous range.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <rewire.h>

#define FRAMES 1024

struct pool {
	struct rewire_arena *arena;
	char *frames;			/* FRAMES pages */
	size_t page_size;
	size_t frame_of[FRAMES];	/* page id -> frame */
	size_t page_in[FRAMES];		/* frame -> page id */
	unsigned hits[FRAMES];		/* per frame, since the last reorder */
};

static char *get(struct pool *p, size_t page_id)
{
	size_t f = p->frame_of[page_id];

	p->hits[f]++;
	return p->frames + f * p->page_size;
}

static const unsigned *heat;	/* for the comparison below */

static int by_heat_desc(const void *a, const void *b)
{
	unsigned ha = heat[*(const size_t *)a], hb = heat[*(const size_t *)b];

	return (ha < hb) - (ha > hb);
}

/* Move the hottest frames to the front: frame order[k] goes to k. */
static int reorder(struct pool *p)
{
	size_t order[FRAMES], perm[FRAMES], page_in[FRAMES];

	for (size_t f = 0; f < FRAMES; f++)
		order[f] = f;
	heat = p->hits;
	qsort(order, FRAMES, sizeof(*order), by_heat_desc);
	for (size_t k = 0; k < FRAMES; k++) {
		perm[order[k]] = k;		/* page at frame order[k] goes to k */
		page_in[k] = p->page_in[order[k]];
	}
	if (rewire_permute(p->arena, p->frames, perm, FRAMES))
		return -1;
	for (size_t k = 0; k < FRAMES; k++) {
		p->page_in[k] = page_in[k];
		p->frame_of[page_in[k]] = k;
		p->hits[k] = 0;
	}
	return 0;
}

int main(void)
{
	static struct pool p;
	struct rewire_options opts;
	size_t hot = 0;

	p.page_size = (size_t)sysconf(_SC_PAGESIZE);
	rewire_options_init(&opts);
	opts.reserve = 2 * FRAMES * p.page_size;
	if (rewire_arena_create(&opts, &p.arena))
		return 1;
	p.frames = rewire_alloc(p.arena, FRAMES * p.page_size, 0);
	if (!p.frames)
		return 1;
	for (size_t id = 0; id < FRAMES; id++) {
		p.frame_of[id] = p.page_in[id] = id;
		*(size_t *)(p.frames + id * p.page_size) = id;	/* the page's content */
	}

	/* A workload where one page in eight is hot. */
	srand(1);
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < 100000; i++) {
			size_t id = rand() % 8 ? (size_t)(rand() % (FRAMES / 8)) * 8 : (size_t)rand() % FRAMES;

			if (*(size_t *)get(&p, id) != id)
				return 1;
		}
		if (reorder(&p))
			return 1;
	}
	/* The hot pages (ids divisible by 8) now fill the first frames. */
	for (size_t f = 0; f < FRAMES / 8; f++)
		hot += p.page_in[f] % 8 == 0;
	for (size_t id = 0; id < FRAMES; id++)
		if (*(size_t *)(p.frames + p.frame_of[id] * p.page_size) != id)
			return 1;
	printf("buffer pool on %s: %zu of the first %d frames hold hot pages\n",
	       rewire_backend_name(p.arena), hot, FRAMES / 8);
	rewire_arena_destroy(p.arena);
	return hot > FRAMES / 8 * 9 / 10 ? 0 : 1;
}
