/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Immutable, reference-counted byte buffers holding key values. */
#include <stdlib.h>
#include <string.h>

#include "blob.h"

struct blob *blob_new(size_t len)
{
	struct blob *b;

	if (len > UINT32_MAX - sizeof(*b) - 1)
		return NULL;
	b = malloc(sizeof(*b) + len + 1);
	if (!b)
		return NULL;
	b->refs = 1;
	b->len = len;
	b->data[len] = '\0';
	return b;
}

struct blob *blob_from(const void *p, size_t len)
{
	struct blob *b = blob_new(len);

	if (b && len)
		memcpy(b->data, p, len);
	return b;
}

struct blob *blob_ref(struct blob *b)
{
	__atomic_add_fetch(&b->refs, 1, __ATOMIC_RELAXED);
	return b;
}

void blob_unref(struct blob *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}
