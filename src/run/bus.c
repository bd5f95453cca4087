/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one place an applied change of the mirror fans out from. */
#include <errno.h>
#include <stdlib.h>

#include "bus.h"

struct bus {
	void (*take)(void *ctx, struct change_list *l);
	void *take_ctx;
	struct bus_observer *obs; /* set up before publishing starts; read-only after */
	size_t nobs;
};

struct bus *bus_new(void)
{
	return calloc(1, sizeof(struct bus));
}

void bus_free(struct bus *b)
{
	if (b) {
		free(b->obs);
		free(b);
	}
}

void bus_set_sink(struct bus *b, void (*take)(void *ctx, struct change_list *l), void *ctx)
{
	b->take = take;
	b->take_ctx = ctx;
}

int bus_observe(struct bus *b, const struct bus_observer *o)
{
	struct bus_observer *v = realloc(b->obs, (b->nobs + 1) * sizeof(*v));

	if (!v)
		return -ENOMEM;
	b->obs = v;
	b->obs[b->nobs++] = *o;
	return 0;
}

void bus_publish(struct bus *b, struct change_list *l)
{
	for (size_t i = 0; i < b->nobs; i++)
		if (b->obs[i].changed)
			b->obs[i].changed(b->obs[i].ctx, l);
	if (b->take && !change_list_empty(l))
		b->take(b->take_ctx, l);
	change_list_clear(l);
}

void bus_delivered(struct bus *b, const uint64_t *inos, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = 0; i < b->nobs; i++)
		if (b->obs[i].delivered)
			b->obs[i].delivered(b->obs[i].ctx, inos, n);
}
