/* The copy backend: every page moves by memcpy (see plan.c). Always
 * available, and the executable specification the other backends match. */
#include "config.h"

#include "internal.h"

static int copy_init(struct rewire_arena *a)
{
	rw_copy_costs(&a->costs);
	return 0;
}

const struct backend rw_backend_copy = {
	.name = "copy",
	.init = copy_init,
	.fini = NULL,
	.remap = NULL,
	.apply = NULL,
};
