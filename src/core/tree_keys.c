/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: where each key lives in the tree (escaping, "%value", markers), and back. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "names.h"
#include "tree_int.h"

/* ------------------------------------------------------------ key -> node */

/*
 * The child name for a raw segment. Encoding is injective except for hashed
 * long names, where two segments could share a hash: the later one then gets
 * a salted hash, so each key still has its own entry.
 */
static size_t child_name(struct tree *t, struct node *dir, const char *seg, size_t slen, char *out,
			 bool *hashed)
{
	for (uint32_t salt = 0;; salt++) {
		size_t len = names_encode(t->names, seg, slen, salt, out, hashed);
		if (!*hashed)
			return len;
		struct node *c = ti_child(t, dir, out, len);
		if (!c || (n_raw_len(c) == slen && memcmp(n_raw(c), seg, slen) == 0))
			return len;
	}
}

static int set_raw(struct node *n, const char *seg, size_t slen)
{
	char *raw = malloc(slen ? slen : 1);

	if (!raw || !ti_ext(n)) {
		free(raw);
		return -ENOMEM;
	}
	memcpy(raw, seg, slen);
	ti_set_raw(n, raw, slen);
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
	struct node *c = ti_child(t, dir, name, len);

	if (c && c->kind == NODE_DIR)
		return c;
	struct node *nd = ti_node_new(t, NODE_DIR, name, len, now);
	if (!nd)
		return NULL;
	if (hashed && set_raw(nd, seg, slen))
		goto fail;
	if (c)
		ti_detach(t, c, now);
	if (ti_attach(t, dir, nd, now))
		goto fail_reattach;
	if (c) {
		ti_set_name(c, NAMES_VALUE, NAMES_VALUE_LEN);
		ti_set_raw(c, NULL, 0);
		if (ti_attach(t, nd, c, now)) {
			/* Keep the value reachable by putting it back where it was. */
			ti_detach(t, nd, now);
			if (ti_set_name(c, name, len) == 0)
				ti_attach(t, dir, c, now);
			goto fail;
		}
	}
	ti_q_entry(t, ch, dir, name, len);
	return nd;
fail_reattach:
	if (c)
		ti_attach(t, dir, c, now);
fail:
	ti_node_destroy(t, nd);
	return NULL;
}

/*
 * After dir lost an entry: an implied directory with nothing left goes away
 * (and so may its parent), and one left holding only NAMES_VALUE turns back
 * into the plain file it was.
 */
void ti_collapse(struct tree *t, struct node *d, const struct timespec *now, struct changes *ch)
{
	while (d != t->root && !(d->flags & NF_MARKER) && !(d->flags & NF_ORPHAN)) {
		struct node *p = d->parent;

		if (d->dir->live == 0) {
			ti_q_delete(t, ch, p, d);
			ti_detach(t, d, now);
			ti_release(t, d);
			d = p;
			continue;
		}
		if (d->dir->live == 1) {
			struct node *v = ti_child(t, d, NAMES_VALUE, NAMES_VALUE_LEN);
			if (v) {
				/* The only step that can fail goes first; hash removal uses the
				 * stored hash. */
				if (ti_set_name(v, d->name, d->name_len)) {
					log_err("out of memory: %s stays a directory", d->name);
					return;
				}
				ti_detach(t, v, now);
				ti_detach(t, d, now);
				if (n_raw(d)) {
					ti_set_raw(v, d->ext->raw, d->ext->raw_len);
					d->ext->raw = NULL;
				}
				if (ti_attach(t, p, v, now))
					log_err("out of memory: key %s is not shown", v->name);
				ti_q_entry(t, ch, p, v->name, v->name_len);
				ti_release(t, d);
			}
		}
		return;
	}
}

/* Remove file f from the tree. */
void ti_remove_file(struct tree *t, struct node *f, const struct timespec *now, struct changes *ch)
{
	struct node *d = f->parent;

	ti_q_delete(t, ch, d, f);
	ti_detach(t, f, now);
	ti_release(t, f);
	ti_collapse(t, d, now, ch);
}

struct walk {
	struct node *dir; /* directory holding the key's last segment */
	const char *last; /* the last segment */
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
			d = ti_child(t, d, name, len);
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
	struct node *c = ti_child(t, w->dir, name, len);

	*dir = w->dir;
	if (c && c->kind == NODE_DIR) {
		*dir = c;
		c = ti_child(t, c, NAMES_VALUE, NAMES_VALUE_LEN);
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
void ti_tomb_add(struct tree *t, const struct kv_op *op, int64_t rev)
{
	if (t->ntombs == t->tombs_cap) {
		size_t cap = t->tombs_cap ? t->tombs_cap * 2 : 8;
		struct tomb *v = realloc(t->tombs, cap * sizeof(*v));
		if (!v)
			return; /* the echo may show the key again for a moment */
		t->tombs = v;
		t->tombs_cap = cap;
	}
	char *key = malloc(op->klen + 1);
	if (!key)
		return;
	memcpy(key, op->key, op->klen);
	key[op->klen] = '\0';
	t->tombs[t->ntombs++] = (struct tomb){
		.key = key, .klen = op->klen, .prefix = op->kind == KV_DELETE_PREFIX, .rev = rev};
}

/* Drop the deletes the mirror has caught up with (nothing older can come any more), or all. */
void ti_tomb_prune(struct tree *t, bool all)
{
	size_t k = 0;

	for (size_t i = 0; i < t->ntombs; i++) {
		if (all || t->tombs[i].rev <= t->revision)
			free(t->tombs[i].key);
		else
			t->tombs[k++] = t->tombs[i];
	}
	t->ntombs = k;
}

static bool buried(const struct tree *t, const struct kv *kv)
{
	for (size_t i = 0; i < t->ntombs; i++) {
		const struct tomb *b = &t->tombs[i];
		if (kv->meta.mod_rev >= b->rev || kv->klen < b->klen ||
		    (!b->prefix && kv->klen != b->klen) || memcmp(kv->key, b->key, b->klen))
			continue;
		return true;
	}
	return false;
}

int ti_put_key(struct tree *t, const struct kv *kv, bool resync, const struct timespec *now,
	       struct changes *ch)
{
	const char *rel = kv->key + t->plen;
	size_t rlen = kv->klen - t->plen;
	struct walk w;

	if (buried(t, kv))
		return 0;
	int err = walk_dirs(t, rel, rlen, true, now, ch, &w);
	if (err)
		return err;

	/* "dir/" with an empty value only says the directory exists. */
	if (w.last_len == 0 && kv->val->len == 0) {
		struct node *d = w.dir, *stale;
		bool newer =
			!(d->flags & NF_MARKER) || (resync ? d->meta.mod_rev != kv->meta.mod_rev
							   : d->meta.mod_rev < kv->meta.mod_rev);
		if (newer) {
			d->flags |= NF_MARKER;
			d->meta = kv->meta;
		}
		d->seen = t->epoch;
		/* The same key may have had a value before, shown as file "%". */
		stale = ti_child(t, d, "%", 1);
		if (stale && stale->kind == NODE_FILE && newer)
			ti_remove_file(t, stale, now, ch);
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
		ti_remove_file(t, f, now, ch);
		walk_dirs(t, rel, rlen, true, now, ch, &w);
		f = NULL;
	}
	if (f && (f->flags & NF_LOCAL)) {
		/* A key arrived where this host keeps scratch of the same name: the store wins. */
		log_warn(
			"key for %s arrived over a local-only file of that name: its local content "
			"is dropped",
			f->name);
		ti_loc_free(f->loc);
		f->loc = NULL;
		f->flags &= ~(NF_LOCAL | NF_NEW);
		memset(&f->meta, 0, sizeof(f->meta));
		ti_view_touch(t, f);
	}
	if (f && (f->flags & NF_NEW)) {
		/*
		 * Created here and, meanwhile, in the store: the file shows what was
		 * written here until its commit, which expects no key and is refused.
		 */
		f->flags &= ~NF_NEW;
		ti_set_value(t, f, kv->val);
		f->meta = kv->meta;
		f->seen_rev = kv->meta.mod_rev;
		f->seen = t->epoch;
		return 0;
	}
	if (f) {
		bool changed = resync ? (f->meta.mod_rev != kv->meta.mod_rev ||
					 f->val->len != kv->val->len ||
					 memcmp(f->val->data, kv->val->data, kv->val->len))
				      : f->meta.mod_rev < kv->meta.mod_rev;
		f->seen = t->epoch;
		if (!changed) {
			/*
			 * Same content; the store's own word on this revision (the echo
			 * of a commit from here, or a full read) replaces what this host
			 * set when it settled that commit.
			 */
			if (resync || f->meta.mod_rev == kv->meta.mod_rev)
				f->meta = kv->meta;
			return 0;
		}
		/* A session keeps showing what was written here: nothing for the kernel to drop. */
		if (!f->loc)
			ti_q_file(ch, f);
		ti_set_value(t, f, kv->val);
		f->meta = kv->meta;
		if (!f->loc)
			f->mtime = ti_ns(now);
		/*
		 * The base a later edit is checked against: unchanged if the kernel
		 * read the old content (someone may be editing it), else this one. A
		 * hidden file keeps its base, so its pending delete is refused.
		 */
		if (!f->served && !(f->flags & NF_HIDDEN))
			f->seen_rev = kv->meta.mod_rev;
		f->served = 0;
		return 0;
	}

	char name[NAMES_MAX + 1];
	bool hashed;
	size_t len = child_name(t, w.dir, w.last, w.last_len, name, &hashed);
	dir = w.dir;
	struct node *c = ti_child(t, dir, name, len);
	if (c) {
		/* A directory holds the name: the value lives inside it. */
		dir = c;
		memcpy(name, NAMES_VALUE, NAMES_VALUE_LEN);
		len = NAMES_VALUE_LEN;
		hashed = false;
	}
	f = ti_node_new(t, NODE_FILE, name, len, now);
	if (!f)
		return -ENOMEM;
	if (hashed && set_raw(f, w.last, w.last_len))
		goto fail;
	ti_q_file(ch, f);
	ti_set_value(t, f, kv->val);
	f->meta = kv->meta;
	f->seen_rev = kv->meta.mod_rev;
	f->seen = t->epoch;
	if (ti_attach(t, dir, f, now))
		goto fail;
	ti_q_entry(t, ch, dir, name, len);
	return 0;
fail:
	ti_node_destroy(t, f);
	return -ENOMEM;
}

/* Store a delete in the mirror; older than what the mirror holds means nothing. */
void ti_del_key(struct tree *t, const struct kv *kv, const struct timespec *now, struct changes *ch)
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
			ti_collapse(t, w.dir, now, ch);
		}
		return;
	}
	struct node *dir, *f = find_file(t, &w, &dir);
	/* Files only here were never in the store: a delete there is not about them. */
	if (f && !(f->flags & (NF_NEW | NF_LOCAL)) && f->meta.mod_rev < rev)
		ti_store_gone(t, f, now, ch);
}

void ti_store_gone(struct tree *t, struct node *f, const struct timespec *now, struct changes *ch)
{
	if (f->loc && f->loc->gen != f->loc->committed) {
		/*
		 * Edited here, deleted there: the edit stays, as a new file whose
		 * commit (still based on the deleted revision) will be refused and
		 * its bytes kept aside.
		 */
		f->flags |= NF_NEW;
		f->flags &= ~NF_HIDDEN;
		memset(&f->meta, 0, sizeof(f->meta));
		ti_view_touch(t, f);
		return;
	}
	ti_remove_file(t, f, now, ch);
}

int ti_child_key(const struct tree *t, const struct node *dir, const char *name, char **key,
		 size_t *klen, bool as_dir)
{
	char seg[NAMES_MAX + 1];
	size_t len = strlen(name);
	char *dk;
	size_t dklen;
	int err = ti_build_key(t, dir, &dk, &dklen);

	if (err)
		return err;
	if (names_is_value(name, len)) {
		/* The value of dir itself: its key without the '/'. */
		if (dir == t->root || dklen == 0) {
			free(dk);
			return -EINVAL;
		}
		dk[--dklen] = '\0';
		*key = dk;
		*klen = dklen;
		return 0;
	}
	ssize_t sl = names_decode(t->names, name, len, seg);
	if (sl < 0) {
		free(dk);
		return -EINVAL;
	}
	char *k = malloc(dklen + sl + 2);
	if (!k) {
		free(dk);
		return -ENOMEM;
	}
	memcpy(k, dk, dklen);
	memcpy(k + dklen, seg, sl);
	*klen = dklen + sl;
	if (as_dir)
		k[(*klen)++] = '/';
	k[*klen] = '\0';
	free(dk);
	*key = k;
	return 0;
}

bool ti_in_prefix(const struct tree *t, const struct kv *kv)
{
	return kv->klen >= t->plen && memcmp(kv->key, t->prefix, t->plen) == 0;
}

static size_t seg_ptr(const struct tree *t, const struct node *n, char *buf, const char **seg)
{
	if (n_raw(n)) {
		*seg = n_raw(n);
		return n_raw_len(n);
	}
	ssize_t len = names_decode(t->names, n->name, n->name_len, buf);
	*seg = buf;
	return len < 0 ? 0 : (size_t)len;
}

/*
 * The full store key of n: the prefix, then each segment followed by '/'.
 * A directory keeps the final '/', a file drops it. NAMES_VALUE contributes
 * no segment: it is the value of its directory's key.
 */
int ti_build_key(const struct tree *t, const struct node *n, char **key, size_t *klen)
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
			len += seg_ptr(t, x, buf, &seg) + 1;
	char *k = malloc(len + 1);
	if (!k)
		return -ENOMEM;
	size_t pos = len;
	for (x = n; x != t->root; x = x->parent) {
		if (x == skip)
			continue;
		k[--pos] = '/';
		size_t sl = seg_ptr(t, x, buf, &seg);
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

/* ------------------------------------------------------------ keys under a prefix */

struct under {
	const struct tree *t;
	const char *sub; /* below the mount's prefix */
	size_t slen;
	tree_key_fn fn;
	void *ctx;
};

static int keys_below(struct under *u, const struct node *n)
{
	if (n->flags & (NF_ORPHAN | NF_NEW | NF_LOCAL))
		return 0;
	if ((n->kind == NODE_FILE && n->val) || (n->flags & NF_MARKER)) {
		char *key;
		size_t klen;
		int err = ti_build_key(u->t, n, &key, &klen);
		if (err)
			return err;
		size_t plen = u->t->plen;
		if (klen >= plen + u->slen && memcmp(key + plen, u->sub, u->slen) == 0)
			err = u->fn(u->ctx, key, klen);
		free(key);
		if (err)
			return err;
	}
	if (n->kind != NODE_DIR)
		return 0;
	for (uint32_t i = 0; i < n->dir->n; i++) {
		const struct node *c = n->dir->slot[i].node;
		int err = c ? keys_below(u, c) : 0;
		if (err)
			return err;
	}
	return 0;
}

int tree_keys_under(struct tree *t, const char *sub, size_t slen, tree_key_fn fn, void *ctx)
{
	struct under u = {t, sub, slen, fn, ctx};
	char buf[NAMES_MAX + 1];
	const char *seg;
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	/* Only the top-level entries whose segment agrees with sub as far as both go. */
	const struct dir *root = t->root->dir;
	for (uint32_t i = 0; i < root->n && !err; i++) {
		const struct node *c = root->slot[i].node;
		if (!c)
			continue;
		size_t len = seg_ptr(t, c, buf, &seg);
		if (memcmp(seg, sub, len < slen ? len : slen) == 0)
			err = keys_below(&u, c);
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}
