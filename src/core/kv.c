/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keys as a store reports them, and batches of them (a snapshot or one watch response). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

void kv_batch_init(struct kv_batch *b)
{
	memset(b, 0, sizeof(*b));
}

void kv_batch_clear(struct kv_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->v[i].key);
		blob_unref(b->v[i].val);
	}
	free(b->v);
	kv_batch_init(b);
}

int kv_batch_push(struct kv_batch *b, const char *key, size_t klen, struct blob *val,
		  const struct kv_meta *meta)
{
	struct kv *e;

	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		struct kv *v = realloc(b->v, cap * sizeof(*v));
		if (!v)
			goto nomem;
		b->v = v;
		b->cap = cap;
	}
	e = &b->v[b->n];
	e->key = malloc(klen + 1);
	if (!e->key)
		goto nomem;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	e->klen = klen;
	e->val = val;
	e->meta = *meta;
	b->n++;
	return 0;
nomem:
	blob_unref(val);
	return -ENOMEM;
}

void kv_batch_truncate(struct kv_batch *b, size_t n)
{
	while (b->n > n) {
		b->n--;
		free(b->v[b->n].key);
		blob_unref(b->v[b->n].val);
	}
}
