/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: hash tables by inode and by name, directory slots, node lifecycle. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "tree_int.h"

int ti_vec_push(struct ino_vec *iv, uint64_t ino)
{
	if (iv->n == iv->cap) {
		size_t cap = iv->cap ? iv->cap * 2 : 64;
		uint64_t *v = realloc(iv->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		iv->v = v;
		iv->cap = cap;
	}
	iv->v[iv->n++] = ino;
	return 0;
}

/* ------------------------------------------------------------ invalidations */

/*
 * A failed allocation here loses one invalidation, which leaves the kernel's
 * cache stale for that name; log it loudly rather than fail the whole batch.
 */
void ti_push(struct change_list *l, enum inval_kind kind, uint64_t parent, uint64_t ino,
	     const char *name, size_t namelen)
{
	struct inval *e;

	if (change_list_reserve(l, 1))
		goto nomem;
	e = &l->v[l->n];
	e->kind = kind;
	e->parent = parent;
	e->ino = ino;
	e->name = NULL;
	e->namelen = namelen;
	if (name) {
		e->name = malloc(namelen + 1);
		if (!e->name)
			goto nomem;
		memcpy(e->name, name, namelen);
		e->name[namelen] = '\0';
	}
	l->n++;
	return;
nomem:
	log_err("out of memory: a kernel cache invalidation was lost");
}

/* The kernel can only cache what it has looked up: skip the rest. */
bool ti_knows(const struct tree *t, const struct node *n)
{
	/* Lookups count under the read lock too: an atomic read. */
	return n == t->root || __atomic_load_n(&n->nlookup, __ATOMIC_RELAXED) > 0;
}

/* Record that file n is about to get new content (n->val is still the old one, or NULL). */
void ti_q_file(struct changes *ch, struct node *n)
{
	if (!ch || !ch->report)
		return;
	if (ch->nfiles == ch->cap) {
		size_t cap = ch->cap ? ch->cap * 2 : 16;
		struct change *v = realloc(ch->files, cap * sizeof(*v));
		if (!v) {
			log_err("out of memory: a kernel cache invalidation was lost");
			return;
		}
		ch->files = v;
		ch->cap = cap;
	}
	struct change *c = &ch->files[ch->nfiles];
	c->order = ch->nfiles++;
	c->ino = n->ino;
	c->old = n->val ? blob_ref(n->val) : NULL;
	c->old_mtime = n->mtime;
	c->old_rev = n->meta.mod_rev;
}

void ti_q_dir(struct changes *ch, struct node *dir)
{
	if (ti_vec_push(&ch->dirs, dir->ino))
		log_err("out of memory: a kernel cache invalidation was lost");
}

void ti_q_entry(struct tree *t, struct changes *ch, struct node *parent, const char *name,
		size_t len)
{
	if (ch && ch->report && ti_knows(t, parent)) {
		ti_push(&ch->entries, INVAL_ENTRY, parent->ino, 0, name, len);
		ti_q_dir(ch, parent);
	}
}

void ti_q_delete(struct tree *t, struct changes *ch, struct node *parent, struct node *child)
{
	if (ch && ch->report && ti_knows(t, parent)) {
		ti_push(&ch->entries, INVAL_DELETE, parent->ino, child->ino, child->name,
			child->name_len);
		ti_q_dir(ch, parent);
	}
}

/* ------------------------------------------------------------ hash tables */

static uint32_t name_hash(uint64_t parent, const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ (parent * 0x9E3779B97F4A7C15ULL);

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 0x100000001b3ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static size_t ino_slot(const struct tree *t, uint64_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ULL) >> 17) & t->ino_mask;
}

struct node *ti_find(const struct tree *t, uint64_t ino)
{
	for (struct node *n = t->by_ino[ino_slot(t, ino)]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

int tree_known(struct tree *t, uint64_t **out, size_t *n)
{
	struct ino_vec iv = {0};
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	for (size_t b = 0; !err && b <= t->ino_mask; b++)
		for (struct node *x = t->by_ino[b]; !err && x; x = x->ino_next)
			if (x == t->root || __atomic_load_n(&x->nlookup, __ATOMIC_RELAXED))
				err = ti_vec_push(&iv, x->ino);
	pthread_rwlock_unlock(&t->lock);
	if (err) {
		free(iv.v);
		return -ENOMEM;
	}
	*out = iv.v;
	*n = iv.n;
	return 0;
}

/*
 * Grow a chained table to twice its size; on failure keep the old one
 * (longer chains). Tables grow at two entries per bucket: chains stay short
 * and the bucket arrays cost half as much memory per key.
 */
static void ino_grow(struct tree *t)
{
	size_t nb = (t->ino_mask + 1) * 2;
	struct node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	struct node **old = t->by_ino;
	size_t oldn = t->ino_mask + 1;
	t->by_ino = b;
	t->ino_mask = nb - 1;
	for (size_t i = 0; i < oldn; i++) {
		struct node *n = old[i], *next;
		for (; n; n = next) {
			next = n->ino_next;
			size_t s = ino_slot(t, n->ino);
			n->ino_next = b[s];
			b[s] = n;
		}
	}
	free(old);
}

static void ino_insert(struct tree *t, struct node *n)
{
	if (t->ino_count >= 2 * (t->ino_mask + 1))
		ino_grow(t);
	size_t s = ino_slot(t, n->ino);
	n->ino_next = t->by_ino[s];
	t->by_ino[s] = n;
	t->ino_count++;
}

static void ino_remove(struct tree *t, struct node *n)
{
	struct node **pp = &t->by_ino[ino_slot(t, n->ino)];

	for (; *pp; pp = &(*pp)->ino_next) {
		if (*pp == n) {
			*pp = n->ino_next;
			t->ino_count--;
			return;
		}
	}
}

struct node *ti_child(const struct tree *t, const struct node *dir, const char *name, size_t len)
{
	uint32_t h = name_hash(dir->ino, name, len);

	for (struct node *n = t->by_name[h & t->name_mask]; n; n = n->name_next)
		if (n->name_hash == h && n->parent == dir && n->name_len == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
}

struct node_ext *ti_ext(struct node *n)
{
	if (!n->ext)
		n->ext = calloc(1, sizeof(*n->ext));
	return n->ext;
}

void ti_set_raw(struct node *n, char *raw, size_t len)
{
	if (!raw && !n->ext)
		return;
	if (!raw || ti_ext(n)) {
		free(n->ext->raw);
		n->ext->raw = raw;
		n->ext->raw_len = raw ? len : 0;
		return;
	}
	free(raw);
}

static void name_grow(struct tree *t)
{
	size_t nb = (t->name_mask + 1) * 2;
	struct node **b = calloc(nb, sizeof(*b));

	if (!b)
		return;
	struct node **old = t->by_name;
	size_t oldn = t->name_mask + 1;
	t->by_name = b;
	t->name_mask = nb - 1;
	for (size_t i = 0; i < oldn; i++) {
		struct node *n = old[i], *next;
		for (; n; n = next) {
			next = n->name_next;
			n->name_next = b[n->name_hash & t->name_mask];
			b[n->name_hash & t->name_mask] = n;
		}
	}
	free(old);
}

static void name_insert(struct tree *t, struct node *n)
{
	if (t->name_count >= 2 * (t->name_mask + 1))
		name_grow(t);
	n->name_hash = name_hash(n->parent->ino, n->name, n->name_len);
	n->name_next = t->by_name[n->name_hash & t->name_mask];
	t->by_name[n->name_hash & t->name_mask] = n;
	t->name_count++;
}

static void name_remove(struct tree *t, struct node *n)
{
	struct node **pp = &t->by_name[n->name_hash & t->name_mask];

	for (; *pp; pp = &(*pp)->name_next) {
		if (*pp == n) {
			*pp = n->name_next;
			t->name_count--;
			return;
		}
	}
}

/* ------------------------------------------------------------ directories */

size_t ti_dir_seek(const struct dir *d, uint64_t ino)
{
	size_t lo = 0, hi = d->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (d->slot[mid].ino < ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void dir_compact(struct dir *d)
{
	uint32_t o = 0;

	for (uint32_t i = 0; i < d->n; i++)
		if (d->slot[i].node)
			d->slot[o++] = d->slot[i];
	d->n = o;
}

static int dir_add(struct dir *d, struct node *c)
{
	if (d->n == d->cap) {
		if (d->n > d->live)
			dir_compact(d);
		if (d->n == d->cap) {
			uint32_t cap = d->cap ? d->cap * 2 : 4;
			struct dslot *s = realloc(d->slot, cap * sizeof(*s));
			if (!s)
				return -ENOMEM;
			d->slot = s;
			d->cap = cap;
		}
	}
	size_t at = (d->n == 0 || d->slot[d->n - 1].ino < c->ino) ? d->n : ti_dir_seek(d, c->ino);
	memmove(&d->slot[at + 1], &d->slot[at], (d->n - at) * sizeof(*d->slot));
	d->slot[at].ino = c->ino;
	d->slot[at].node = c;
	d->n++;
	d->live++;
	if (c->kind == NODE_DIR)
		d->nsubdirs++;
	return 0;
}

static void dir_del(struct dir *d, struct node *c)
{
	size_t at = ti_dir_seek(d, c->ino);

	if (at >= d->n || d->slot[at].node != c)
		return;
	d->slot[at].node = NULL;
	d->live--;
	if (c->kind == NODE_DIR)
		d->nsubdirs--;
	if (d->n > 32 && d->n - d->live > d->live)
		dir_compact(d);
}

/* ------------------------------------------------------------ walking */

int ti_walk_dirs(struct node *top, ti_dir_fn fn, void *ctx)
{
	struct node **stack = malloc(sizeof(*stack) * 64);
	size_t sp = 0, cap = 64;
	int err = 0;

	if (!stack)
		return -ENOMEM;
	stack[sp++] = top;
	while (sp && !err) {
		struct node *dir = stack[--sp];
		err = fn(dir, ctx);
		for (uint32_t i = 0; i < dir->dir->n && !err; i++) {
			struct node *c = dir->dir->slot[i].node;
			if (!c || c->kind != NODE_DIR || (c->flags & (NF_NEW | NF_LOCAL)))
				continue;
			if (sp == cap) {
				struct node **s = realloc(stack, sizeof(*s) * cap * 2);
				if (!s) {
					err = -ENOMEM;
					break;
				}
				stack = s;
				cap *= 2;
			}
			stack[sp++] = c;
		}
	}
	free(stack);
	return err;
}

/* ------------------------------------------------------------ sessions */

void ti_loc_free(struct local *l)
{
	if (l) {
		free(l->buf);
		free(l);
	}
}

int ti_loc_reserve(struct local *l, size_t len)
{
	if (len <= l->cap)
		return 0;
	size_t cap = l->cap ? l->cap : 256;
	while (cap < len)
		cap *= 2;
	char *b = realloc(l->buf, cap);
	if (!b)
		return -ENOMEM;
	l->buf = b;
	l->cap = cap;
	return 0;
}

/* ------------------------------------------------------------ nodes */

struct node *ti_node_new(struct tree *t, enum node_kind kind, const char *name, size_t len,
			 const struct timespec *now)
{
	size_t room = (len > NAMES_VALUE_LEN ? len : NAMES_VALUE_LEN) + 1;
	struct node *n = calloc(1, sizeof(*n) + room);

	if (!n)
		return NULL;
	if (kind == NODE_DIR) {
		n->dir = calloc(1, sizeof(*n->dir));
		if (!n->dir) {
			free(n);
			return NULL;
		}
		t->ndirs++;
	} else {
		t->nfiles++;
	}
	n->kind = kind;
	n->ino = t->next_ino++;
	n->name = n->iname;
	n->name_room = room;
	memcpy(n->name, name, len);
	n->name_len = len;
	n->mtime = ti_ns(now);
	ino_insert(t, n);
	return n;
}

void ti_node_destroy(struct tree *t, struct node *n)
{
	ino_remove(t, n);
	if (n->kind == NODE_DIR) {
		free(n->dir->slot);
		free(n->dir);
		t->ndirs--;
	} else {
		if (n->val)
			t->bytes -= n->val->len;
		blob_unref(n->val);
		ti_loc_free(n->loc);
		t->nfiles--;
	}
	if (n->ext) {
		blob_unref(n->ext->prev);
		free(n->ext->raw);
		free(n->ext->link);
		free(n->ext);
	}
	if (n->name != n->iname)
		free(n->name);
	free(n);
}

int ti_attach(struct tree *t, struct node *parent, struct node *n, const struct timespec *now)
{
	if (dir_add(parent->dir, n))
		return -ENOMEM;
	n->parent = parent;
	name_insert(t, n);
	parent->mtime = ti_ns(now);
	ti_view_touch(t, n);
	return 0;
}

void ti_detach(struct tree *t, struct node *n, const struct timespec *now)
{
	ti_view_touch(t, n);
	name_remove(t, n);
	dir_del(n->parent->dir, n);
	n->parent->mtime = ti_ns(now);
	n->parent = NULL;
}

/* The node left the tree: free it now unless the kernel still refers to it. */
void ti_release(struct tree *t, struct node *n)
{
	n->flags |= NF_ORPHAN;
	if (n->nlookup == 0)
		ti_node_destroy(t, n);
}

/*
 * Rename in place. A file created as NAMES_VALUE can later take its
 * directory's (longer) name, so a name that does not fit the inline room
 * moves to the heap. -ENOMEM leaves the node as it was.
 */
int ti_set_name(struct node *n, const char *name, size_t len)
{
	char *dst = n->iname;

	if (len + 1 > n->name_room) {
		dst = malloc(len + 1);
		if (!dst)
			return -ENOMEM;
	}
	memcpy(dst, name, len);
	dst[len] = '\0';
	if (n->name != n->iname && n->name != dst)
		free(n->name);
	n->name = dst;
	n->name_len = len;
	return 0;
}

void ti_set_value(struct tree *t, struct node *n, struct blob *val)
{
	if (n->val)
		t->bytes -= n->val->len;
	blob_unref(n->val);
	n->val = blob_ref(val);
	t->bytes += val->len;
	ti_view_touch(t, n);
}
