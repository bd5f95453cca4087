/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What views show of a directory: its subtree's keys from one moment, and when that changed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "tree_int.h"

/*
 * Stamps: every change that can alter a view takes a new number from the
 * tree and writes it into each ancestor of the node it changed. A view
 * rendered when its directory had stamp s is current while the stamp is s.
 * Stamp and content are read under the same hold of the lock, so a view
 * never pairs one moment's content with another's stamp. Only directories
 * carry a stamp: files cost no memory for it.
 */
void ti_view_touch(struct tree *t, const struct node *n)
{
	uint64_t s = ++t->view_gen;

	for (struct node *p = n->parent; p; p = p->parent)
		p->dir->vstamp = s;
}

void tree_view_stamps(struct tree *t, const uint64_t *dirs, uint64_t *stamps, size_t n)
{
	pthread_rwlock_rdlock(&t->lock);
	for (size_t i = 0; i < n; i++) {
		struct node *d;
		stamps[i] = ti_find_dir(t, dirs[i], &d) == 0 ? d->dir->vstamp : TREE_NO_STAMP;
	}
	pthread_rwlock_unlock(&t->lock);
}

void tree_items_clear(struct tree_items *it)
{
	for (size_t i = 0; i < it->n; i++)
		blob_unref(it->v[i].val);
	free(it->v);
	free(it->paths);
	memset(it, 0, sizeof(*it));
}

/* Append an entry for n, whose parent's path is paths[poff..poff+plen). */
static int add_item(struct tree_items *it, const struct node *n, size_t poff, size_t plen)
{
	size_t need = it->plen + plen + 1 + n->name_len;

	if (it->n == it->cap) {
		size_t cap = it->cap ? it->cap * 2 : 256;
		struct tree_item *v = realloc(it->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		it->v = v;
		it->cap = cap;
	}
	if (need > it->pcap) {
		size_t cap = it->pcap ? it->pcap : 4096;
		while (cap < need)
			cap *= 2;
		char *p = realloc(it->paths, cap);
		if (!p)
			return -ENOMEM;
		it->paths = p;
		it->pcap = cap;
	}
	struct tree_item *x = &it->v[it->n++];
	x->off = it->plen;
	if (plen) {
		memmove(it->paths + it->plen, it->paths + poff, plen);
		it->paths[it->plen + plen] = '/';
		plen++;
	}
	memcpy(it->paths + it->plen + plen, n->name, n->name_len);
	x->len = plen + n->name_len;
	it->plen += x->len;
	x->val = n->kind == NODE_FILE ? blob_ref(n->val) : NULL;
	return 0;
}

struct pending {
	const struct node *dir;
	size_t item; /* its entry in it->v, or SIZE_MAX for the top */
};

/* Every key and directory below top that the store has, depth first. */
static int collect(const struct node *top, struct tree_items *it, int64_t *mtime)
{
	size_t sp = 0, cap = 64;
	struct pending *stack = malloc(cap * sizeof(*stack));
	int err = 0;

	if (!stack)
		return -ENOMEM;
	stack[sp++] = (struct pending){top, SIZE_MAX};
	while (sp && !err) {
		struct pending p = stack[--sp];
		size_t poff = 0, plen = 0;
		if (p.item != SIZE_MAX) {
			poff = it->v[p.item].off;
			plen = it->v[p.item].len;
		}
		if (p.dir->mtime > *mtime)
			*mtime = p.dir->mtime;
		for (uint32_t i = 0; i < p.dir->dir->n && !err; i++) {
			const struct node *c = p.dir->dir->slot[i].node;
			/* Not (yet) in the store; symlinks never are. */
			if (!c || (c->flags & (NF_LOCAL | NF_NEW)))
				continue;
			if (!(c->kind == NODE_DIR || (c->kind == NODE_FILE && c->val)))
				continue;
			err = add_item(it, c, poff, plen);
			if (err)
				break;
			if (c->mtime > *mtime)
				*mtime = c->mtime;
			if (c->kind != NODE_DIR)
				continue;
			if (sp == cap) {
				struct pending *st = realloc(stack, 2 * cap * sizeof(*st));
				if (!st) {
					err = -ENOMEM;
					break;
				}
				stack = st;
				cap *= 2;
			}
			stack[sp++] = (struct pending){c, it->n - 1};
		}
	}
	free(stack);
	return err;
}

int tree_collect(struct tree *t, uint64_t ino, struct tree_items *out)
{
	struct node *d;
	int64_t mtime = 0;

	memset(out, 0, sizeof(*out));
	pthread_rwlock_rdlock(&t->lock);
	int err = ti_find_dir(t, ino, &d);
	if (!err) {
		out->stamp = d->dir->vstamp;
		err = collect(d, out, &mtime);
	}
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_items_clear(out);
	out->mtime = ti_ts(mtime);
	return err;
}
