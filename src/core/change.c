/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a change of the mirror means: kernel invalidations in order, and the files it changed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "change.h"

void change_list_init(struct change_list *l)
{
	memset(l, 0, sizeof(*l));
}

void change_list_clear(struct change_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	free(l->files);
	change_list_init(l);
}

int change_list_reserve(struct change_list *l, size_t more)
{
	if (l->n + more <= l->cap)
		return 0;
	size_t cap = l->cap ? l->cap : 16;
	while (cap < l->n + more)
		cap *= 2;
	struct inval *v = realloc(l->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	l->v = v;
	l->cap = cap;
	return 0;
}

static int files_reserve(struct change_list *l, size_t more)
{
	if (l->nfiles + more <= l->files_cap)
		return 0;
	size_t cap = l->files_cap ? l->files_cap : 16;
	while (cap < l->nfiles + more)
		cap *= 2;
	uint64_t *f = realloc(l->files, cap * sizeof(*f));
	if (!f)
		return -ENOMEM;
	l->files = f;
	l->files_cap = cap;
	return 0;
}

int change_list_splice(struct change_list *dst, struct change_list *src)
{
	if (change_list_reserve(dst, src->n) || files_reserve(dst, src->nfiles))
		return -ENOMEM;
	if (src->n)
		memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
	dst->n += src->n;
	src->n = 0;
	if (src->nfiles)
		memcpy(dst->files + dst->nfiles, src->files, src->nfiles * sizeof(*src->files));
	dst->nfiles += src->nfiles;
	src->nfiles = 0;
	return 0;
}

int change_list_add_file(struct change_list *l, uint64_t ino)
{
	if (files_reserve(l, 1))
		return -ENOMEM;
	l->files[l->nfiles++] = ino;
	return 0;
}

bool change_list_empty(const struct change_list *l)
{
	return l->n == 0 && l->nfiles == 0;
}
