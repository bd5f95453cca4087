/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The tree as the store has it, as a batch of keys (the cache file's content), without stalling. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "clock.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

/*
 * Why in two steps: building 1M keys (a name decoded per segment, two
 * allocations per key) under the read lock took 1.5 s, and the watcher
 * could not apply a change meanwhile. Under the lock only what a key is
 * made of is copied, into memory taken and touched before: each node's
 * value (a reference) and metadata into the batch that is the result, its
 * name as it is into one buffer, its parent beside. Keys are built after.
 *
 * And while that copy runs, every EXPORT_CHUNK nodes it looks whether a
 * writer waits; if one does, it drops what it has, lets the writer in and
 * starts over: a copy whose parts came from two moments would not be the
 * store at any revision. The EXPORT_YIELDS-th start holds on to the end,
 * so a steady stream of changes delays a save but cannot starve it.
 */
#define EXPORT_CHUNK 4096
#define EXPORT_YIELDS 16
#define EXPORT_WRITER_WAIT_MS 1000

/* What a key is made of, beside its batch entry (same index). */
struct xnode {
	uint64_t ino, parent; /* parent 0: none (an orphan) */
	uint32_t name_off;    /* in the names buffer */
	uint32_t name_len : 29;
	uint32_t dir : 1;
	uint32_t raw : 1;    /* the name is the segment already (hashed names keep theirs) */
	uint32_t export : 1; /* a key of its own: a file, or a directory with a "dir/" key */
};

/* After the lock: a directory's key up to and with its final '/'. */
struct xdir {
	uint64_t ino;
	size_t at; /* its xnode */
	char *path;
	size_t plen;
};

struct xcopy {
	struct kv *kv; /* val and meta under the lock; key after it */
	struct xnode *v;
	size_t n, cap;
	char *names;
	size_t nlen, ncap;
	struct xdir *dirs;
	size_t ndirs;
	char buf[NAMES_MAX + 1]; /* a decoded segment, copied at once */
	bool oom;		 /* a directory's path could not be kept */
};

static void xcopy_clear(struct xcopy *x)
{
	for (size_t i = 0; i < x->n; i++) {
		free(x->kv[i].key);
		blob_unref(x->kv[i].val);
	}
	for (size_t i = 0; i < x->ndirs; i++)
		free(x->dirs[i].path);
	free(x->kv);
	free(x->v);
	free(x->names);
	free(x->dirs);
	x->kv = NULL;
	x->v = NULL;
	x->names = NULL;
	x->dirs = NULL;
	x->n = x->cap = x->nlen = x->ncap = x->ndirs = 0;
}

/* Room for n nodes and names bytes, touched: no page faults in while the lock is held. */
static int xcopy_reserve(struct xcopy *x, size_t n, size_t names)
{
	x->kv = malloc(n * sizeof(*x->kv));
	x->v = malloc(n * sizeof(*x->v));
	x->names = malloc(names);
	if (!x->kv || !x->v || !x->names)
		return -ENOMEM;
	memset(x->kv, 0, n * sizeof(*x->kv));
	memset(x->v, 0, n * sizeof(*x->v));
	memset(x->names, 0, names);
	x->cap = n;
	x->ncap = names;
	return 0;
}

static int xcopy_add(struct xcopy *x, const struct node *n)
{
	const char *name = n_raw(n) ? n_raw(n) : n->name;
	size_t len = n_raw(n) ? n_raw_len(n) : n->name_len;

	if (len >= (1u << 29) || x->nlen + len > UINT32_MAX)
		return -ENOMEM; /* no store has such names: a copy this large is not kept */
	if (x->n == x->cap) {
		/* More nodes than counted before the lock: the tree grew between. */
		size_t cap = x->cap * 2 + 1024;
		struct kv *kv = realloc(x->kv, cap * sizeof(*kv));
		if (kv)
			x->kv = kv;
		struct xnode *v = kv ? realloc(x->v, cap * sizeof(*v)) : NULL;
		if (!v)
			return -ENOMEM;
		x->v = v;
		x->cap = cap;
	}
	if (x->nlen + len > x->ncap) {
		size_t cap = x->ncap * 2 + 16384;
		while (cap < x->nlen + len)
			cap *= 2;
		char *p = realloc(x->names, cap);
		if (!p)
			return -ENOMEM;
		x->names = p;
		x->ncap = cap;
	}
	memcpy(x->names + x->nlen, name, len);
	bool file = n->kind == NODE_FILE;
	x->kv[x->n] = (struct kv){.val = file ? blob_ref(n->val) : NULL, .meta = n->meta};
	x->v[x->n++] = (struct xnode){
		.ino = n->ino,
		.parent = n->parent ? n->parent->ino : 0,
		.name_off = (uint32_t)x->nlen,
		.name_len = (uint32_t)len,
		.dir = !file,
		.raw = n_raw(n) != NULL,
		.export = file || (n->flags & NF_MARKER),
	};
	x->nlen += len;
	return 0;
}

/* What the store has: not the root, nor what was created or changed here and not committed. */
static bool is_stores(const struct tree *t, const struct node *n)
{
	return n != t->root && !(n->flags & (NF_ORPHAN | NF_NEW | NF_LOCAL)) &&
	       !(n->kind == NODE_FILE && !n->val);
}

/*
 * Under the read lock (taken here unless the tree is frozen: see
 * tree_export_frozen): 0, -EAGAIN when it gave way to a writer, or -ENOMEM.
 */
static int copy_once(struct tree *t, struct xcopy *x, int64_t *rev, bool yield, bool frozen)
{
	size_t visited = 0;
	int err = 0;

	if (!frozen)
		pthread_rwlock_rdlock(&t->lock);
	*rev = t->revision;
	for (size_t i = 0; i <= t->ino_mask && !err; i++) {
		for (struct node *n = t->by_ino[i]; n && !err; n = n->ino_next) {
			if (yield && ++visited % EXPORT_CHUNK == 0 &&
			    __atomic_load_n(&t->writers_waiting, __ATOMIC_RELAXED)) {
				err = -EAGAIN;
				break;
			}
			if (is_stores(t, n))
				err = xcopy_add(x, n);
		}
	}
	if (!frozen)
		pthread_rwlock_unlock(&t->lock);
	return err;
}

/* The segment of x (decoded into c->buf when it is a name), or -1 when no key maps to it. */
static ssize_t segment(const struct tree *t, struct xcopy *c, const struct xnode *x,
		       const char **seg)
{
	const char *name = c->names + x->name_off;

	if (x->raw) {
		*seg = name;
		return x->name_len;
	}
	*seg = c->buf;
	return names_decode(t->names, name, x->name_len, c->buf);
}

static int xdir_by_ino(const void *a, const void *b)
{
	const struct xdir *x = a, *y = b;

	return (x->ino > y->ino) - (x->ino < y->ino);
}

/*
 * The key of directory ino up to and with its final '/': the prefix for the
 * root. NULL: out of memory, or a directory not under the root.
 */
static const char *dir_path(const struct tree *t, struct xcopy *c, uint64_t ino, size_t *len,
			    unsigned depth)
{
	const char *seg;

	if (ino == t->root->ino) {
		*len = t->plen;
		return t->prefix;
	}
	struct xdir key = {.ino = ino}, *d;
	d = bsearch(&key, c->dirs, c->ndirs, sizeof(*c->dirs), xdir_by_ino);
	if (!d || depth > 4096)
		return NULL;
	if (!d->path) {
		size_t pl;
		const struct xnode *x = &c->v[d->at];
		const char *p = x->parent ? dir_path(t, c, x->parent, &pl, depth + 1) : NULL;
		ssize_t sl = p ? segment(t, c, x, &seg) : -1;
		if (sl < 0)
			return NULL;
		if (!(d->path = malloc(pl + (size_t)sl + 1))) {
			c->oom = true;
			return NULL;
		}
		memcpy(d->path, p, pl);
		memcpy(d->path + pl, seg, (size_t)sl);
		d->path[pl + (size_t)sl] = '/';
		d->plen = pl + (size_t)sl + 1;
	}
	*len = d->plen;
	return d->path;
}

/*
 * The key of entry i into *key: 0, 1 when it has none a store lists (out of
 * the tree, a name no key maps to), or -ENOMEM.
 */
static int key_of(const struct tree *t, struct xcopy *c, size_t i, char **key, size_t *klen)
{
	const struct xnode *x = &c->v[i];
	const char *seg = NULL, *p;
	size_t pl;
	ssize_t sl = 0;

	*key = NULL;
	/* A directory's key is its path; a file's, its directory's and its name. */
	p = dir_path(t, c, x->dir ? x->ino : x->parent, &pl, 0);
	if (!p)
		return c->oom ? -ENOMEM : 1;
	if (x->dir) {
		*klen = pl;
	} else if (!x->raw && names_is_value(c->names + x->name_off, x->name_len)) {
		if (pl == 0)
			return 1;
		*klen = pl - 1; /* the value of its directory's key: the path without its '/' */
	} else {
		sl = segment(t, c, x, &seg);
		if (sl < 0)
			return 1;
		*klen = pl + (size_t)sl;
	}
	char *k = malloc(*klen + 1);
	if (!k)
		return -ENOMEM;
	memcpy(k, p, *klen - (size_t)sl);
	if (sl)
		memcpy(k + pl, seg, (size_t)sl);
	k[*klen] = '\0';
	*key = k;
	return 0;
}

/* After the lock: the keys, in place; entries without one leave. The batch is then out's. */
static int build(const struct tree *t, struct xcopy *c, struct kv_batch *out)
{
	size_t nd = 0, kept = 0;

	for (size_t i = 0; i < c->n; i++)
		nd += c->v[i].dir;
	if (!(c->dirs = calloc(nd ? nd : 1, sizeof(*c->dirs))))
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++)
		if (c->v[i].dir)
			c->dirs[c->ndirs++] = (struct xdir){.ino = c->v[i].ino, .at = i};
	if (c->ndirs > 1)
		qsort(c->dirs, c->ndirs, sizeof(*c->dirs), xdir_by_ino);
	for (size_t i = 0; i < c->n; i++) {
		struct kv *e = &c->kv[i];
		int rc = c->v[i].export ? key_of(t, c, i, &e->key, &e->klen) : 1;
		if (rc < 0)
			return rc;
		if (rc) {
			/* Not the store's (out of the tree, or a directory without a key): dropped.
			 */
			blob_unref(e->val);
			e->val = NULL;
			continue;
		}
		if (!e->val && !(e->val = blob_new(0))) {
			free(e->key);
			e->key = NULL;
			return -ENOMEM;
		}
		if (kept != i) {
			c->kv[kept] = *e;
			*e = (struct kv){0};
		}
		kept++;
	}
	kv_batch_clear(out);
	out->v = c->kv;
	out->n = kept;
	out->cap = c->cap;
	c->kv = NULL;
	c->n = 0;
	return 0;
}

static int by_key(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;
	size_t n = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, n);

	return c ? c : (x->klen > y->klen) - (x->klen < y->klen);
}

static int export(struct tree *t, struct kv_batch *out, bool frozen)
{
	struct xcopy *c = calloc(1, sizeof(*c));
	int64_t rev = 0, held = 0;
	unsigned attempt;
	int err;

	if (!c)
		return -ENOMEM;
	if (!frozen)
		pthread_rwlock_rdlock(&t->lock);
	size_t nodes = t->nfiles + t->ndirs + 16;
	if (!frozen)
		pthread_rwlock_unlock(&t->lock);
	for (attempt = 0;; attempt++) {
		/* Names: about what a key's last segment takes, grown if need be. */
		err = xcopy_reserve(c, nodes + nodes / 64, nodes * 16);
		if (err)
			break;
		int64_t t0 = mono_us();
		err = copy_once(t, c, &rev, !frozen && attempt < EXPORT_YIELDS, frozen);
		held = mono_us() - t0;
		if (err != -EAGAIN)
			break;
		xcopy_clear(c);
		/* The lock prefers readers: wait until the writer holds it, or a bound. */
		for (unsigned ms = 0; ms < EXPORT_WRITER_WAIT_MS &&
				      __atomic_load_n(&t->writers_waiting, __ATOMIC_ACQUIRE);
		     ms++)
			usleep(1000);
	}
	if (!frozen)
		log_debug("tree copied under its read lock in %lld ms, after giving way %u time%s",
			  (long long)held / 1000, attempt, attempt == 1 ? "" : "s");
	if (!err)
		err = build(t, c, out);
	xcopy_clear(c);
	free(c);
	if (err) {
		kv_batch_clear(out);
		return err;
	}
	out->revision = rev;
	/* In key order, as a store lists them: a tree loaded from it numbers its files alike. */
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), by_key);
	return 0;
}

int tree_export(struct tree *t, struct kv_batch *out)
{
	return export(t, out, false);
}

int tree_export_frozen(struct tree *t, struct kv_batch *out)
{
	return export(t, out, true);
}

void tree_freeze(struct tree *t)
{
	pthread_rwlock_rdlock(&t->lock);
}

void tree_thaw(struct tree *t)
{
	pthread_rwlock_unlock(&t->lock);
}

size_t tree_count_keys(struct tree *t)
{
	size_t n = 0;

	pthread_rwlock_rdlock(&t->lock);
	for (size_t i = 0; i <= t->ino_mask; i++)
		for (struct node *x = t->by_ino[i]; x; x = x->ino_next)
			n += is_stores(t, x) && (x->kind == NODE_FILE || (x->flags & NF_MARKER));
	pthread_rwlock_unlock(&t->lock);
	return n;
}
