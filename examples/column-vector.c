/*
 * Growable columns for a column store: a table of two columns takes rows,
 * and a full column doubles with rewire_realloc. The columns sit next to
 * each other in the arena, so growing one usually means moving it; on a
 * page-table backend its pages move instead of its bytes, so growth costs
 * no copy and never needs room for an old and a new copy at once.
 */
#include <stdint.h>
#include <stdio.h>

#include <rewire.h>

struct column {
	struct rewire_arena *arena;
	int64_t *values;
	size_t len, cap;
};

static int append(struct column *c, int64_t v)
{
	if (c->len == c->cap) {
		int64_t *grown = rewire_realloc(c->arena, c->values, 2 * c->cap * sizeof(v));

		if (!grown)
			return -1;	/* errno says why; the column is intact */
		c->values = grown;
		c->cap *= 2;
	}
	c->values[c->len++] = v;
	return 0;
}

static int check(const struct column *c, int64_t mul)
{
	for (size_t i = 0; i < c->len; i++)
		if (c->values[i] != (int64_t)i * mul) {
			fprintf(stderr, "value %zu is wrong\n", i);
			return -1;
		}
	return 0;
}

int main(void)
{
	struct rewire_options opts;
	struct rewire_stats st;
	struct column id = { 0 }, price = { 0 };
	size_t rows = 4 << 20;	/* 4 Mi rows, 32 MiB per column */

	rewire_options_init(&opts);
	opts.reserve = 512 << 20;
	if (rewire_arena_create(&opts, &id.arena))
		return 1;
	price.arena = id.arena;
	id.cap = price.cap = 4096 / sizeof(int64_t);
	id.values = rewire_alloc(id.arena, id.cap * sizeof(int64_t), 0);
	price.values = rewire_alloc(price.arena, price.cap * sizeof(int64_t), 0);
	if (!id.values || !price.values)
		return 1;

	for (size_t i = 0; i < rows; i++)
		if (append(&id, (int64_t)i) || append(&price, (int64_t)i * 3))
			return 1;
	if (check(&id, 1) || check(&price, 3))
		return 1;

	rewire_arena_stats(id.arena, &st);
	printf("two columns of %zu rows (%zu MiB each) on %s: %llu pages moved by remapping, "
	       "%llu by copying\n", rows, id.cap * sizeof(int64_t) >> 20,
	       rewire_backend_name(id.arena), (unsigned long long)st.pages_remapped,
	       (unsigned long long)st.pages_copied);
	rewire_arena_destroy(id.arena);
	return 0;
}
