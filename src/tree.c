/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror: the mounted key space as a tree of nodes with inode numbers; no FUSE, no network. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "tree.h"

enum {
	NF_ORPHAN = 1, /* no longer in the tree; kept while the kernel holds it */
	NF_MARKER = 2, /* directory kept alive by a "dir/" key with an empty value */
};

/* A directory slot; node is NULL for a removed entry awaiting compaction. */
struct dslot {
	uint64_t ino;
	struct node *node;
};

/*
 * Children sorted by inode number. Numbers only grow, so a new key appends;
 * readdir offsets are derived from inode numbers and stay valid while the
 * directory changes. Removal leaves a hole that keeps its number, so binary
 * search still works; holes are squeezed out when they outnumber entries.
 */
struct dir {
	struct dslot *slot;
	uint32_t n, cap; /* slots in use, holes included */
	uint32_t live;	 /* entries */
	uint32_t nsubdirs;
};

struct node {
	uint64_t ino;
	struct node *parent;	/* NULL for the root and for orphans */
	struct node *ino_next;	/* chain in tree.by_ino */
	struct node *name_next; /* chain in tree.by_name */
	uint64_t nlookup; /* kernel references: atomic add under the read lock, else write lock */
	struct timespec mtime;
	struct kv_meta meta; /* file: its key's; directory: its "dir/" key's when NF_MARKER */
	union {
		struct blob *val; /* NODE_FILE */
		struct dir *dir;  /* NODE_DIR */
	};
	char *raw; /* the segment behind a hashed name, else NULL */
	size_t raw_len;
	uint64_t gate;	    /* the gate of the last batch that changed this file */
	struct blob *prev;  /* value shown while that gate is closed (NULL: new file) */
	struct timespec prev_mtime;
	uint32_t name_hash;
	uint32_t seen; /* resync epoch that last confirmed this key */
	uint16_t name_len;
	uint16_t name_room; /* bytes of iname, NUL included */
	uint8_t kind;
	uint8_t flags;
	char *name;   /* iname, or a heap copy when a longer name did not fit */
	char iname[]; /* room for max(first name, NAMES_VALUE) */
};

struct ino_vec {
	uint64_t *v;
	size_t n, cap;
};

struct tree {
	pthread_rwlock_t lock;
	char *prefix;
	size_t plen;
	struct node *root;
	uint64_t next_ino;	       /* protected by lock (write) */
	struct node **by_ino;	       /* protected by lock */
	size_t ino_mask, ino_count;
	struct node **by_name;	       /* (parent ino, name) -> node */
	size_t name_mask, name_count;
	int64_t revision;
	uint32_t epoch;
	uint64_t nfiles, ndirs, bytes;
	uint64_t gate_next;	 /* last gate handed out; protected by lock (write) */
	pthread_mutex_t gate_mu; /* protects gate_open for waiters; writes under it */
	pthread_cond_t gate_cv;
	uint64_t gate_open; /* gates up to this are open; atomic reads */
	struct ino_vec gated; /* files holding a prev value; protected by lock (write) */
};

/* A file whose content changed or appeared, and what it showed before. */
struct change {
	uint64_t ino;
	size_t order; /* position in the batch, for a stable sort */
	struct blob *old; /* reference; NULL for a new file */
	struct timespec old_mtime;
};

/* What one batch changed, gathered while applying it. */
struct changes {
	bool report;		   /* false while loading before mount: nobody to tell */
	struct inval_list entries; /* ENTRY and DELETE, in order */
	struct change *files;
	size_t nfiles, cap;
	/*
	 * Directories whose entries changed. inval_entry only reaches a cached
	 * listing through a dentry of the name, and a brand-new name has none:
	 * the listing itself (the directory's pages) must be dropped too.
	 */
	struct ino_vec dirs;
};

static int ino_vec_push(struct ino_vec *iv, uint64_t ino)
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

void inval_list_init(struct inval_list *l)
{
	memset(l, 0, sizeof(*l));
}

void inval_list_clear(struct inval_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].name);
	free(l->v);
	inval_list_init(l);
}

static int inval_reserve(struct inval_list *l, size_t more)
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

int inval_list_splice(struct inval_list *dst, struct inval_list *src)
{
	if (src->n == 0)
		return 0;
	if (inval_reserve(dst, src->n))
		return -ENOMEM;
	memcpy(dst->v + dst->n, src->v, src->n * sizeof(*src->v));
	dst->n += src->n;
	src->n = 0;
	return 0;
}

/*
 * A failed allocation here loses one invalidation, which leaves the kernel's
 * cache stale for that name; log it loudly rather than fail the whole batch.
 */
static void inval_push(struct inval_list *l, enum inval_kind kind, uint64_t parent, uint64_t ino,
		       const char *name, size_t namelen)
{
	struct inval *e;

	if (inval_reserve(l, 1))
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
static bool kernel_knows(const struct tree *t, const struct node *n)
{
	return n == t->root || n->nlookup > 0;
}

/* Record that file n is about to get new content (n->val is still the old one, or NULL). */
static void q_file(struct changes *ch, struct node *n)
{
	if (!ch->report)
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
}

static void q_dir(struct changes *ch, struct node *dir)
{
	if (ino_vec_push(&ch->dirs, dir->ino))
		log_err("out of memory: a kernel cache invalidation was lost");
}

static void q_entry(struct tree *t, struct changes *ch, struct node *parent, const char *name,
		    size_t len)
{
	if (ch->report && kernel_knows(t, parent)) {
		inval_push(&ch->entries, INVAL_ENTRY, parent->ino, 0, name, len);
		q_dir(ch, parent);
	}
}

static void q_delete(struct tree *t, struct changes *ch, struct node *parent, struct node *child)
{
	if (ch->report && kernel_knows(t, parent)) {
		inval_push(&ch->entries, INVAL_DELETE, parent->ino, child->ino, child->name,
			   child->name_len);
		q_dir(ch, parent);
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

static struct node *ino_find(const struct tree *t, uint64_t ino)
{
	for (struct node *n = t->by_ino[ino_slot(t, ino)]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

/* Grow a chained table to twice its size; on failure keep the old one (longer chains). */
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
	if (t->ino_count >= t->ino_mask + 1)
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

static struct node *name_find(const struct tree *t, const struct node *dir, const char *name,
			      size_t len)
{
	uint32_t h = name_hash(dir->ino, name, len);

	for (struct node *n = t->by_name[h & t->name_mask]; n; n = n->name_next)
		if (n->name_hash == h && n->parent == dir && n->name_len == len &&
		    memcmp(n->name, name, len) == 0)
			return n;
	return NULL;
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
	if (t->name_count >= t->name_mask + 1)
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

static size_t dir_search(const struct dir *d, uint64_t ino)
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
	size_t at = (d->n == 0 || d->slot[d->n - 1].ino < c->ino) ? d->n : dir_search(d, c->ino);
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
	size_t at = dir_search(d, c->ino);

	if (at >= d->n || d->slot[at].node != c)
		return;
	d->slot[at].node = NULL;
	d->live--;
	if (c->kind == NODE_DIR)
		d->nsubdirs--;
	if (d->n > 32 && d->n - d->live > d->live)
		dir_compact(d);
}

/* ------------------------------------------------------------ nodes */

static struct node *node_new(struct tree *t, enum node_kind kind, const char *name, size_t len,
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
	n->mtime = *now;
	ino_insert(t, n);
	return n;
}

static void node_destroy(struct tree *t, struct node *n)
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
		blob_unref(n->prev);
		t->nfiles--;
	}
	free(n->raw);
	if (n->name != n->iname)
		free(n->name);
	free(n);
}

static int node_attach(struct tree *t, struct node *parent, struct node *n,
		       const struct timespec *now)
{
	if (dir_add(parent->dir, n))
		return -ENOMEM;
	n->parent = parent;
	name_insert(t, n);
	parent->mtime = *now;
	return 0;
}

static void node_detach(struct tree *t, struct node *n, const struct timespec *now)
{
	name_remove(t, n);
	dir_del(n->parent->dir, n);
	n->parent->mtime = *now;
	n->parent = NULL;
}

/* The node left the tree: free it now unless the kernel still refers to it. */
static void node_release(struct tree *t, struct node *n)
{
	n->flags |= NF_ORPHAN;
	if (n->nlookup == 0)
		node_destroy(t, n);
}

/*
 * Rename in place. A file created as NAMES_VALUE can later take its
 * directory's (longer) name, so a name that does not fit the inline room
 * moves to the heap. -ENOMEM leaves the node as it was.
 */
static int node_set_name(struct node *n, const char *name, size_t len)
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

static void node_set_value(struct tree *t, struct node *n, struct blob *val)
{
	if (n->val)
		t->bytes -= n->val->len;
	blob_unref(n->val);
	n->val = blob_ref(val);
	t->bytes += val->len;
}

/* ------------------------------------------------------------ key -> node */

/*
 * The child name for a raw segment. Encoding is injective except for hashed
 * long names, where two segments could share a hash: the later one then gets
 * a salted hash, so each key still has its own entry.
 */
static size_t child_name(struct tree *t, struct node *dir, const char *seg, size_t slen,
			 char *out, bool *hashed)
{
	for (uint32_t salt = 0;; salt++) {
		size_t len = names_encode(seg, slen, salt, out, hashed);
		if (!*hashed)
			return len;
		struct node *c = name_find(t, dir, out, len);
		if (!c || (c->raw_len == slen && memcmp(c->raw, seg, slen) == 0))
			return len;
	}
}

static int set_raw(struct node *n, const char *seg, size_t slen)
{
	n->raw = malloc(slen ? slen : 1);
	if (!n->raw)
		return -ENOMEM;
	memcpy(n->raw, seg, slen);
	n->raw_len = slen;
	return 0;
}

/*
 * The directory for segment seg under dir, created if needed. A file that
 * holds the name becomes the new directory's NAMES_VALUE entry (same node,
 * same inode number).
 */
static struct node *ensure_dir(struct tree *t, struct node *dir, const char *seg, size_t slen,
			       const struct timespec *now, struct changes *ch)
{
	char name[NAMES_MAX + 1];
	bool hashed;
	size_t len = child_name(t, dir, seg, slen, name, &hashed);
	struct node *c = name_find(t, dir, name, len);

	if (c && c->kind == NODE_DIR)
		return c;
	struct node *nd = node_new(t, NODE_DIR, name, len, now);
	if (!nd)
		return NULL;
	if (hashed && set_raw(nd, seg, slen))
		goto fail;
	if (c)
		node_detach(t, c, now);
	if (node_attach(t, dir, nd, now))
		goto fail_reattach;
	if (c) {
		node_set_name(c, NAMES_VALUE, NAMES_VALUE_LEN);
		free(c->raw);
		c->raw = NULL;
		c->raw_len = 0;
		if (node_attach(t, nd, c, now)) {
			/* Keep the value reachable by putting it back where it was. */
			node_detach(t, nd, now);
			if (node_set_name(c, name, len) == 0)
				node_attach(t, dir, c, now);
			goto fail;
		}
	}
	q_entry(t, ch, dir, name, len);
	return nd;
fail_reattach:
	if (c)
		node_attach(t, dir, c, now);
fail:
	node_destroy(t, nd);
	return NULL;
}

/*
 * After dir lost an entry: an implied directory with nothing left goes away
 * (and so may its parent), and one left holding only NAMES_VALUE turns back
 * into the plain file it was.
 */
static void collapse(struct tree *t, struct node *d, const struct timespec *now,
		     struct changes *ch)
{
	while (d != t->root && !(d->flags & NF_MARKER) && !(d->flags & NF_ORPHAN)) {
		struct node *p = d->parent;

		if (d->dir->live == 0) {
			q_delete(t, ch, p, d);
			node_detach(t, d, now);
			node_release(t, d);
			d = p;
			continue;
		}
		if (d->dir->live == 1) {
			struct node *v = name_find(t, d, NAMES_VALUE, NAMES_VALUE_LEN);
			if (v) {
				/* The only step that can fail goes first; hash removal uses the stored hash. */
				if (node_set_name(v, d->name, d->name_len)) {
					log_err("out of memory: %s stays a directory", d->name);
					return;
				}
				node_detach(t, v, now);
				node_detach(t, d, now);
				v->raw = d->raw;
				v->raw_len = d->raw_len;
				d->raw = NULL;
				if (node_attach(t, p, v, now))
					log_err("out of memory: key %s is not shown", v->name);
				q_entry(t, ch, p, v->name, v->name_len);
				node_release(t, d);
			}
		}
		return;
	}
}

/* Remove file f from the tree. */
static void remove_file(struct tree *t, struct node *f, const struct timespec *now,
			struct changes *ch)
{
	struct node *d = f->parent;

	q_delete(t, ch, d, f);
	node_detach(t, f, now);
	node_release(t, f);
	collapse(t, d, now, ch);
}

struct walk {
	struct node *dir;  /* directory holding the key's last segment */
	const char *last;  /* the last segment */
	size_t last_len;
};

/* Walk (creating with create) the directories of a key relative to the prefix. */
static int walk_dirs(struct tree *t, const char *rel, size_t rlen, bool create,
		     const struct timespec *now, struct changes *ch, struct walk *w)
{
	struct node *d = t->root;

	for (;;) {
		size_t slen = names_segment_len(rel, rlen);
		if (slen == rlen)
			break;
		if (create) {
			d = ensure_dir(t, d, rel, slen, now, ch);
			if (!d)
				return -ENOMEM;
		} else {
			char name[NAMES_MAX + 1];
			bool hashed;
			size_t len = child_name(t, d, rel, slen, name, &hashed);
			d = name_find(t, d, name, len);
			if (!d || d->kind != NODE_DIR)
				return -ENOENT;
		}
		rel += slen + 1;
		rlen -= slen + 1;
	}
	w->dir = d;
	w->last = rel;
	w->last_len = rlen;
	return 0;
}

/* The file node holding the last segment of w, if any, and the directory it sits in. */
static struct node *find_file(struct tree *t, struct walk *w, struct node **dir)
{
	char name[NAMES_MAX + 1];
	bool hashed;
	size_t len = child_name(t, w->dir, w->last, w->last_len, name, &hashed);
	struct node *c = name_find(t, w->dir, name, len);

	*dir = w->dir;
	if (c && c->kind == NODE_DIR) {
		*dir = c;
		c = name_find(t, c, NAMES_VALUE, NAMES_VALUE_LEN);
	}
	return c && c->kind == NODE_FILE ? c : NULL;
}

static bool same_life(const struct kv_meta *a, const struct kv_meta *b)
{
	return !a->create_rev || !b->create_rev || a->create_rev == b->create_rev;
}

/*
 * Store a put in the mirror. With resync, any difference wins (a store whose
 * indexes were reset can go backwards); otherwise only a newer revision does.
 */
static int put_key(struct tree *t, const struct kv *kv, bool resync, const struct timespec *now,
		   struct changes *ch)
{
	const char *rel = kv->key + t->plen;
	size_t rlen = kv->klen - t->plen;
	struct walk w;
	int err = walk_dirs(t, rel, rlen, true, now, ch, &w);

	if (err)
		return err;

	/* "dir/" with an empty value only says the directory exists. */
	if (w.last_len == 0 && kv->val->len == 0) {
		struct node *d = w.dir, *stale;
		bool newer = !(d->flags & NF_MARKER) || (resync ? d->meta.mod_rev != kv->meta.mod_rev
							       : d->meta.mod_rev < kv->meta.mod_rev);
		if (newer) {
			d->flags |= NF_MARKER;
			d->meta = kv->meta;
		}
		d->seen = t->epoch;
		/* The same key may have had a value before, shown as file "%". */
		stale = name_find(t, d, "%", 1);
		if (stale && stale->kind == NODE_FILE && newer)
			remove_file(t, stale, now, ch);
		return 0;
	}
	if (w.last_len == 0 && (w.dir->flags & NF_MARKER)) {
		if (!resync && w.dir->meta.mod_rev >= kv->meta.mod_rev)
			return 0;
		w.dir->flags &= ~NF_MARKER;
	}

	struct node *dir, *f = find_file(t, &w, &dir);
	if (f && !same_life(&f->meta, &kv->meta)) {
		/* Deleted and created again while we were not watching: a new file. */
		remove_file(t, f, now, ch);
		walk_dirs(t, rel, rlen, true, now, ch, &w);
		f = NULL;
	}
	if (f) {
		bool changed = resync ? (f->meta.mod_rev != kv->meta.mod_rev ||
					 f->val->len != kv->val->len ||
					 memcmp(f->val->data, kv->val->data, kv->val->len))
				      : f->meta.mod_rev < kv->meta.mod_rev;
		f->seen = t->epoch;
		if (!changed)
			return 0;
		q_file(ch, f);
		node_set_value(t, f, kv->val);
		f->meta = kv->meta;
		f->mtime = *now;
		return 0;
	}

	char name[NAMES_MAX + 1];
	bool hashed;
	size_t len = child_name(t, w.dir, w.last, w.last_len, name, &hashed);
	dir = w.dir;
	struct node *c = name_find(t, dir, name, len);
	if (c) {
		/* A directory holds the name: the value lives inside it. */
		dir = c;
		memcpy(name, NAMES_VALUE, NAMES_VALUE_LEN);
		len = NAMES_VALUE_LEN;
		hashed = false;
	}
	f = node_new(t, NODE_FILE, name, len, now);
	if (!f)
		return -ENOMEM;
	if (hashed && set_raw(f, w.last, w.last_len))
		goto fail;
	q_file(ch, f);
	node_set_value(t, f, kv->val);
	f->meta = kv->meta;
	f->seen = t->epoch;
	if (node_attach(t, dir, f, now))
		goto fail;
	q_entry(t, ch, dir, name, len);
	return 0;
fail:
	node_destroy(t, f);
	return -ENOMEM;
}

/* Store a delete in the mirror; older than what the mirror holds means nothing. */
static void del_key(struct tree *t, const struct kv *kv, const struct timespec *now,
		    struct changes *ch)
{
	const char *rel = kv->key + t->plen;
	size_t rlen = kv->klen - t->plen;
	int64_t rev = kv->meta.mod_rev ? kv->meta.mod_rev : INT64_MAX;
	struct walk w;

	if (walk_dirs(t, rel, rlen, false, now, ch, &w))
		return;
	if (w.last_len == 0 && (w.dir->flags & NF_MARKER)) {
		if (w.dir->meta.mod_rev < rev) {
			w.dir->flags &= ~NF_MARKER;
			collapse(t, w.dir, now, ch);
		}
		return;
	}
	struct node *dir, *f = find_file(t, &w, &dir);
	if (f && f->meta.mod_rev < rev)
		remove_file(t, f, now, ch);
}

static bool in_prefix(const struct tree *t, const struct kv *kv)
{
	return kv->klen >= t->plen && memcmp(kv->key, t->prefix, t->plen) == 0;
}

/* ------------------------------------------------------------ public: changes */

struct tree *tree_new(const char *prefix, size_t plen)
{
	struct tree *t = calloc(1, sizeof(*t));
	struct timespec zero = {0, 0};
	pthread_rwlockattr_t ra;

	if (!t)
		return NULL;
	t->prefix = malloc(plen + 1);
	t->by_ino = calloc(1024, sizeof(*t->by_ino));
	t->by_name = calloc(1024, sizeof(*t->by_name));
	if (!t->prefix || !t->by_ino || !t->by_name)
		goto fail;
	memcpy(t->prefix, prefix, plen);
	t->prefix[plen] = '\0';
	t->plen = plen;
	t->ino_mask = t->name_mask = 1023;
	t->next_ino = TREE_ROOT_INO;
	t->root = node_new(t, NODE_DIR, "", 0, &zero);
	if (!t->root)
		goto fail;
	clock_gettime(CLOCK_REALTIME, &t->root->mtime);
	/* Updates must not starve behind a steady stream of readers. */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&t->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->gate_cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&t->gate_mu, NULL);
	return t;
fail:
	free(t->prefix);
	free(t->by_ino);
	free(t->by_name);
	free(t);
	return NULL;
}

void tree_free(struct tree *t)
{
	if (!t)
		return;
	/* At unmount every kernel reference is implicitly gone: free all nodes. */
	for (size_t i = 0; i <= t->ino_mask; i++) {
		struct node *n = t->by_ino[i], *next;
		for (; n; n = next) {
			next = n->ino_next;
			if (n->kind == NODE_DIR) {
				free(n->dir->slot);
				free(n->dir);
			} else {
				blob_unref(n->val);
				blob_unref(n->prev);
			}
			free(n->raw);
			if (n->name != n->iname)
				free(n->name);
			free(n);
		}
	}
	pthread_rwlock_destroy(&t->lock);
	pthread_mutex_destroy(&t->gate_mu);
	pthread_cond_destroy(&t->gate_cv);
	free(t->gated.v);
	free(t->by_ino);
	free(t->by_name);
	free(t->prefix);
	free(t);
}

static int64_t batch_max_rev(const struct kv_batch *b)
{
	int64_t rev = b->revision;

	for (size_t i = 0; i < b->n; i++)
		if (b->v[i].meta.mod_rev > rev)
			rev = b->v[i].meta.mod_rev;
	return rev;
}

static void changes_init(struct changes *ch, bool report)
{
	memset(ch, 0, sizeof(*ch));
	ch->report = report;
	inval_list_init(&ch->entries);
}

static uint64_t gate_open_now(struct tree *t)
{
	return __atomic_load_n(&t->gate_open, __ATOMIC_ACQUIRE);
}

/* Close gate seq on file n, which showed old (at old_mtime) before this batch. */
static void close_gate(struct tree *t, struct node *n, uint64_t seq, struct change *c)
{
	/*
	 * If an earlier gate on n is still closed, readers keep seeing the value
	 * from before that one; otherwise what n showed before this batch.
	 */
	if (n->gate <= gate_open_now(t)) {
		blob_unref(n->prev);
		n->prev = c->old;
		n->prev_mtime = c->old_mtime;
		c->old = NULL;
	}
	n->gate = seq;
	if (ino_vec_push(&t->gated, n->ino))
		log_err("out of memory: an old value stays in memory");
}

/*
 * Turn what a batch changed into the ordered list of invalidations (see
 * tree.h); runs under the write lock, so gates close before any reader can
 * see the new content.
 */
static int by_ino_then_order(const void *a, const void *b)
{
	const struct change *x = a, *y = b;

	if (x->ino != y->ino)
		return x->ino < y->ino ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* One entry per file, keeping what it showed before its first change in the batch. */
static void dedupe(struct changes *ch)
{
	size_t o = 0;

	/* qsort is not stable: ties go by order, so the first change of a file stays first. */
	if (ch->nfiles > 1)
		qsort(ch->files, ch->nfiles, sizeof(*ch->files), by_ino_then_order);
	for (size_t i = 0; i < ch->nfiles; i++) {
		if (o && ch->files[o - 1].ino == ch->files[i].ino) {
			blob_unref(ch->files[i].old);
			continue;
		}
		ch->files[o++] = ch->files[i];
	}
	ch->nfiles = o;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void finish(struct tree *t, struct changes *ch, struct inval_list *out)
{
	dedupe(ch);
	if (ch->dirs.n > 1)
		qsort(ch->dirs.v, ch->dirs.n, sizeof(*ch->dirs.v), cmp_u64);
	bool gated = ch->report && ch->nfiles >= 2;
	uint64_t seq = gated ? ++t->gate_next : 0;

	for (size_t i = 0; i < ch->nfiles; i++) {
		struct change *c = &ch->files[i];
		struct node *n = ino_find(t, c->ino);
		if (gated && n && !(n->flags & NF_ORPHAN))
			close_gate(t, n, seq, c);
	}
	if (!ch->report)
		goto done;
	for (int pass = gated ? 0 : 1; pass < 2; pass++) {
		/* Gated: pages go before names and the gate, and again after it. */
		if (pass == 1) {
			if (inval_list_splice(out, &ch->entries))
				log_err("out of memory: kernel cache invalidations were lost");
			for (size_t i = 0; i < ch->dirs.n; i++) {
				if (i && ch->dirs.v[i] == ch->dirs.v[i - 1])
					continue;
				struct node *d = ino_find(t, ch->dirs.v[i]);
				if (d && kernel_knows(t, d))
					inval_push(out, INVAL_INODE, 0, d->ino, NULL, 0);
			}
			if (gated)
				inval_push(out, INVAL_GATE, 0, seq, NULL, 0);
		}
		for (size_t i = 0; i < ch->nfiles; i++) {
			struct node *n = ino_find(t, ch->files[i].ino);
			if (n && kernel_knows(t, n))
				inval_push(out, INVAL_INODE, 0, n->ino, NULL, 0);
		}
	}
done:
	for (size_t i = 0; i < ch->nfiles; i++)
		blob_unref(ch->files[i].old);
	inval_list_clear(&ch->entries);
	free(ch->files);
	free(ch->dirs.v);
}

int tree_apply(struct tree *t, const struct kv_batch *b, const struct timespec *now,
	       struct inval_list *out)
{
	struct changes ch;
	int err = 0;

	changes_init(&ch, out != NULL);
	pthread_rwlock_wrlock(&t->lock);
	for (size_t i = 0; i < b->n && !err; i++) {
		const struct kv *kv = &b->v[i];
		if (!in_prefix(t, kv))
			continue;
		if (kv->val)
			err = put_key(t, kv, false, now, &ch);
		else
			del_key(t, kv, now, &ch);
	}
	int64_t rev = batch_max_rev(b);
	if (!err && rev > t->revision)
		t->revision = rev;
	finish(t, &ch, out);
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_resync(struct tree *t, const struct kv_batch *snap, const struct timespec *now,
		struct inval_list *out)
{
	struct ino_vec files = {0}, markers = {0};
	struct changes ch;
	int err = 0;

	changes_init(&ch, out != NULL);
	pthread_rwlock_wrlock(&t->lock);
	t->epoch++;
	for (size_t i = 0; i < snap->n && !err; i++) {
		const struct kv *kv = &snap->v[i];
		if (in_prefix(t, kv) && kv->val)
			err = put_key(t, kv, true, now, &ch);
	}
	if (err)
		goto out;

	/* Whatever the snapshot did not confirm is gone from the store. */
	for (size_t i = 0; i <= t->ino_mask && !err; i++) {
		for (struct node *n = t->by_ino[i]; n && !err; n = n->ino_next) {
			if ((n->flags & NF_ORPHAN) || n->seen == t->epoch)
				continue;
			if (n->kind == NODE_FILE)
				err = ino_vec_push(&files, n->ino);
			else if (n->flags & NF_MARKER)
				err = ino_vec_push(&markers, n->ino);
		}
	}
	if (err)
		goto out;
	for (size_t i = 0; i < markers.n; i++)
		ino_find(t, markers.v[i])->flags &= ~NF_MARKER;
	/* Collapsing can free directories, so look every node up again by number. */
	for (size_t i = 0; i < files.n; i++) {
		struct node *f = ino_find(t, files.v[i]);
		if (f && !(f->flags & NF_ORPHAN))
			remove_file(t, f, now, &ch);
	}
	for (size_t i = 0; i < markers.n; i++) {
		struct node *d = ino_find(t, markers.v[i]);
		if (d && !(d->flags & NF_ORPHAN))
			collapse(t, d, now, &ch);
	}
	t->revision = snap->revision;
out:
	finish(t, &ch, out);
	pthread_rwlock_unlock(&t->lock);
	free(files.v);
	free(markers.v);
	return err;
}

void tree_open_gate(struct tree *t, uint64_t seq)
{
	pthread_mutex_lock(&t->gate_mu);
	if (seq > t->gate_open)
		__atomic_store_n(&t->gate_open, seq, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&t->gate_cv);
	pthread_mutex_unlock(&t->gate_mu);

	/* Old values behind open gates are no longer shown: let them go. */
	pthread_rwlock_wrlock(&t->lock);
	size_t keep = 0;
	for (size_t i = 0; i < t->gated.n; i++) {
		struct node *n = ino_find(t, t->gated.v[i]);
		if (!n)
			continue;
		if (n->gate > seq) {
			t->gated.v[keep++] = n->ino;
			continue;
		}
		blob_unref(n->prev);
		n->prev = NULL;
	}
	t->gated.n = keep;
	pthread_rwlock_unlock(&t->lock);
}

/*
 * The longest a reader waits for a gate. The notifier opens gates within
 * microseconds; this bound only matters if it is stuck, and then a reader
 * gets the new content rather than hanging.
 */
#define GATE_WAIT_MS 250

/* Whether n's gate is closed; *seq tells which gate to wait for. Call with the lock held. */
static bool gate_closed(struct tree *t, const struct node *n, uint64_t *seq)
{
	*seq = n->gate;
	return n->gate > __atomic_load_n(&t->gate_open, __ATOMIC_ACQUIRE);
}

static void gate_wait(struct tree *t, uint64_t seq)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_nsec += GATE_WAIT_MS * 1000000L;
	until.tv_sec += until.tv_nsec / 1000000000L;
	until.tv_nsec %= 1000000000L;
	pthread_mutex_lock(&t->gate_mu);
	while (__atomic_load_n(&t->gate_open, __ATOMIC_ACQUIRE) < seq)
		if (pthread_cond_timedwait(&t->gate_cv, &t->gate_mu, &until) == ETIMEDOUT) {
			log_warn("gate %llu not opened after %d ms", (unsigned long long)seq,
				 GATE_WAIT_MS);
			break;
		}
	pthread_mutex_unlock(&t->gate_mu);
}

void tree_note_revision(struct tree *t, int64_t rev)
{
	pthread_rwlock_wrlock(&t->lock);
	if (rev > t->revision)
		t->revision = rev;
	pthread_rwlock_unlock(&t->lock);
}

int64_t tree_revision(struct tree *t)
{
	pthread_rwlock_rdlock(&t->lock);
	int64_t rev = t->revision;
	pthread_rwlock_unlock(&t->lock);
	return rev;
}

/* ------------------------------------------------------------ public: reads */

static void fill_attr(struct tree *t, const struct node *n, struct node_attr *a)
{
	bool gone = n->flags & NF_ORPHAN;

	a->ino = n->ino;
	a->kind = n->kind;
	a->mtime = n->mtime;
	a->transient = false;
	if (n->kind == NODE_DIR) {
		a->size = n->dir->live;
		a->nlink = gone ? 0 : 2 + n->dir->nsubdirs;
		return;
	}
	a->size = n->val ? n->val->len : 0;
	a->nlink = gone ? 0 : 1;
	if (n->gate > gate_open_now(t)) {
		/* Behind a closed gate: show what reads return now, and let nobody cache it. */
		a->transient = true;
		if (n->prev) {
			a->size = n->prev->len;
			a->mtime = n->prev_mtime;
		}
	}
}

int tree_lookup(struct tree *t, uint64_t parent, const char *name, struct node_attr *out)
{
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *p = ino_find(t, parent);
	if (!p) {
		err = -ENOENT;
	} else if (p->kind != NODE_DIR) {
		err = -ENOTDIR;
	} else {
		struct node *c = name_find(t, p, name, strlen(name));
		if (!c) {
			err = -ENOENT;
		} else {
			__atomic_add_fetch(&c->nlookup, 1, __ATOMIC_RELAXED);
			fill_attr(t, c, out);
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_getattr(struct tree *t, uint64_t ino, struct node_attr *out)
{
	bool waited = false;
	uint64_t seq;
	int err = 0;

again:
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ino_find(t, ino);
	if (!n) {
		err = -ENOENT;
	} else if (!waited && gate_closed(t, n, &seq)) {
		pthread_rwlock_unlock(&t->lock);
		gate_wait(t, seq);
		waited = true;
		goto again;
	} else {
		fill_attr(t, n, out);
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}

void tree_forget(struct tree *t, uint64_t ino, uint64_t nlookup)
{
	pthread_rwlock_wrlock(&t->lock);
	struct node *n = ino_find(t, ino);
	if (n && n != t->root) {
		n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
		if (n->nlookup == 0 && (n->flags & NF_ORPHAN))
			node_destroy(t, n);
	}
	pthread_rwlock_unlock(&t->lock);
}

int tree_read(struct tree *t, uint64_t ino, struct blob **out)
{
	bool waited = false;
	uint64_t seq;
	int err = 0;

again:
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ino_find(t, ino);
	if (!n) {
		err = -ENOENT;
	} else if (n->kind != NODE_FILE) {
		err = -EISDIR;
	} else if (!waited && gate_closed(t, n, &seq)) {
		if (n->prev) {
			/* Never wait here: a page invalidation may be waiting for this read. */
			*out = blob_ref(n->prev);
		} else {
			/* A new file: no invalidation of it can be queued before its gate. */
			pthread_rwlock_unlock(&t->lock);
			gate_wait(t, seq);
			waited = true;
			goto again;
		}
	} else {
		*out = blob_ref(n->val);
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}

/* Offsets: 1 is ".", 2 is "..", a child is its inode number + 2 (always > 2). */
int tree_readdir(struct tree *t, uint64_t ino, uint64_t off, bool plus, tree_dirent_fn fn,
		 void *ctx)
{
	struct node_attr a;
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *d = ino_find(t, ino);
	if (!d) {
		err = -ENOENT;
		goto out;
	}
	if (d->kind != NODE_DIR) {
		err = -ENOTDIR;
		goto out;
	}
	if (off < 1) {
		fill_attr(t, d, &a);
		if (!fn(ctx, ".", &a, 1))
			goto out;
	}
	if (off < 2) {
		fill_attr(t, d->parent ? d->parent : d, &a);
		if (!fn(ctx, "..", &a, 2))
			goto out;
	}
	struct dir *dir = d->dir;
	size_t i = off <= 2 ? 0 : dir_search(dir, off - 2 + 1);
	for (; i < dir->n; i++) {
		struct node *c = dir->slot[i].node;
		if (!c)
			continue;
		fill_attr(t, c, &a);
		if (!fn(ctx, c->name, &a, c->ino + 2))
			break;
		if (plus)
			__atomic_add_fetch(&c->nlookup, 1, __ATOMIC_RELAXED);
	}
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}

/*
 * The raw segment node n stands for in its key: a pointer to it and its
 * length. buf (NAMES_MAX + 1 bytes) receives decoded names; raw segments of
 * hashed names can be longer and are returned in place.
 */
static size_t seg_ptr(const struct node *n, char *buf, const char **seg)
{
	if (n->raw) {
		*seg = n->raw;
		return n->raw_len;
	}
	ssize_t len = names_decode(n->name, n->name_len, buf);
	*seg = buf;
	return len < 0 ? 0 : (size_t)len;
}

/*
 * The full store key of n: the prefix, then each segment followed by '/'.
 * A directory keeps the final '/', a file drops it. NAMES_VALUE contributes
 * no segment: it is the value of its directory's key.
 */
static int build_key(const struct tree *t, const struct node *n, char **key, size_t *klen)
{
	char buf[NAMES_MAX + 1];
	const struct node *x, *skip = NULL;
	const char *seg;
	size_t len = t->plen;

	if (n->flags & NF_ORPHAN)
		return -ENOENT;
	if (n->kind == NODE_FILE && names_is_value(n->name, n->name_len))
		skip = n;
	for (x = n; x != t->root; x = x->parent)
		if (x != skip)
			len += seg_ptr(x, buf, &seg) + 1;
	char *k = malloc(len + 1);
	if (!k)
		return -ENOMEM;
	size_t pos = len;
	for (x = n; x != t->root; x = x->parent) {
		if (x == skip)
			continue;
		k[--pos] = '/';
		size_t sl = seg_ptr(x, buf, &seg);
		pos -= sl;
		memcpy(k + pos, seg, sl);
	}
	memcpy(k, t->prefix, t->plen);
	if (n->kind == NODE_FILE)
		len--;
	k[len] = '\0';
	*key = k;
	*klen = len;
	return 0;
}

int tree_info(struct tree *t, uint64_t ino, struct node_info *info)
{
	int err;

	memset(info, 0, sizeof(*info));
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ino_find(t, ino);
	if (!n) {
		err = -ENOENT;
		goto out;
	}
	info->kind = n->kind;
	info->has_meta = n->kind == NODE_FILE || (n->flags & NF_MARKER);
	info->meta = n->meta;
	err = build_key(t, n, &info->key, &info->klen);
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}

void tree_stats(struct tree *t, struct tree_stats *st)
{
	pthread_rwlock_rdlock(&t->lock);
	st->files = t->nfiles;
	st->dirs = t->ndirs;
	st->bytes = t->bytes;
	pthread_rwlock_unlock(&t->lock);
}
