/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: local changes (write sessions, scratch files, renames) waiting for the store.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

/* Scratch files never go to the store, so they may be larger than a value. */
#define LOCAL_MAX (64u << 20)

/* Rename and commit kinds, for tree_txn_end. */
enum {
	TX_COMMIT = 1, /* put one file's session */
	TX_DELETE,     /* delete a hidden key */
	TX_MKDIR,      /* put "dir/" */
	TX_RMDIR,      /* delete "dir/" and hidden entries */
	TX_RENAME,     /* put the new key(s), delete the old */
	TX_REPLACE,    /* a local file's content replaces an existing key */
	TX_CHECK,      /* nothing written: a hidden key is still what the mirror showed */
};

static void real_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

void ti_loc_free(struct local *l)
{
	if (l) {
		free(l->buf);
		free(l);
	}
}

static int loc_reserve(struct local *l, size_t len)
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

/* Start a session on file n if it has none: a copy of what it shows, based on what was served. */
static int loc_start(struct node *n)
{
	struct local *l;

	if (n->loc)
		return 0;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	size_t len = n->val ? n->val->len : 0;
	if (loc_reserve(l, len)) {
		free(l);
		return -ENOMEM;
	}
	if (len)
		memcpy(l->buf, n->val->data, len);
	l->len = len;
	l->base = (n->flags & NF_NEW) ? KV_ABSENT : n->seen_rev;
	n->loc = l;
	return 0;
}

static void loc_touch(struct node *n)
{
	n->loc->gen++;
	n->loc->last_ms = mono_ms();
	struct timespec now;
	real_now(&now);
	n->mtime = ti_ns(&now);
}

bool tree_err_unanswered(int err)
{
	return err == -ECONNREFUSED || err == -EHOSTUNREACH || err == -ETIMEDOUT ||
	       err == -EAGAIN || err == -ECONNRESET || err == -EIO;
}

void tree_fence_lock(struct tree *t)
{
	pthread_mutex_lock(&t->fence);
}

void tree_fence_unlock(struct tree *t)
{
	pthread_mutex_unlock(&t->fence);
}

/* ------------------------------------------------------------ names */

/* name is base followed by "~" or ".~N~": an editor's backup of base. */
static bool backup_of(const char *name, size_t len, const char *base, size_t blen)
{
	if (len <= blen || memcmp(name, base, blen) != 0)
		return false;
	const char *rest = name + blen;
	size_t rlen = len - blen;
	if (rlen == 1 && rest[0] == '~')
		return true;
	if (rlen < 4 || rest[0] != '.' || rest[1] != '~' || rest[rlen - 1] != '~')
		return false;
	for (size_t i = 2; i < rlen - 1; i++)
		if (rest[i] < '0' || rest[i] > '9')
			return false;
	return true;
}

static bool sibling(struct tree *t, struct node *dir, const char *name, size_t len)
{
	return len > 0 && len <= NAMES_MAX && ti_child(t, dir, name, len) != NULL;
}

/*
 * Whether a new file in dir is editor scratch, by its name and its
 * siblings: a backup ("x~", "x.~3~"), an auto-save ("#x#") or a swap/lock
 * file (".x.swp" ... ".x.saa") of an existing file x. Swap and lock files are
 * also recognized by their content when committed (see is_swap).
 */
static bool scratch_name(struct tree *t, struct node *dir, const char *name)
{
	size_t len = strlen(name);

	if (len >= 2 && name[len - 1] == '~') {
		for (size_t b = len - 1; b > 0; b--)
			if (backup_of(name, len, name, b) && sibling(t, dir, name, b))
				return true;
	}
	if (len >= 3 && name[0] == '#' && name[len - 1] == '#' &&
	    sibling(t, dir, name + 1, len - 2))
		return true;
	if (len >= 6 && name[0] == '.' && name[len - 4] == '.' && name[len - 3] == 's' &&
	    name[len - 2] >= 'a' && name[len - 2] <= 'w' && name[len - 1] >= 'a' &&
	    name[len - 1] <= 'z' && sibling(t, dir, name + 1, len - 5))
		return true;
	return false;
}

/* vim's swap file and nano's lock file start with these. */
static bool is_swap(const struct local *l)
{
	return l->len >= 6 &&
	       (memcmp(l->buf, "b0VIM ", 6) == 0 || memcmp(l->buf, "b0nano", 6) == 0);
}

/* A name a user may create: one a key maps to, or the value of its directory. */
static bool creatable(const char *name)
{
	char seg[NAMES_MAX + 1];
	size_t len = strlen(name);

	if (len > NAMES_MAX)
		return false;
	return names_is_value(name, len) || names_decode(name, len, seg) >= 0;
}

/*
 * Collapse dir after a local change emptied it, telling the kernel about
 * directories that vanish: it did not remove them itself.
 */
static void tidy(struct tree *t, struct node *dir, const struct timespec *now,
		 struct inval_list *out)
{
	struct changes ch;

	memset(&ch, 0, sizeof(ch));
	ch.report = true;
	ti_collapse(t, dir, now, &ch);
	ti_flush_changes(t, &ch, out);
}

/* Move n to name in dir; the only step that can fail (a longer name) goes first. */
static int move_node(struct tree *t, struct node *n, struct node *dir, const char *name,
		     const struct timespec *now, struct inval_list *out)
{
	size_t len = strlen(name);
	struct node *from = n->parent;

	if (ti_set_name(n, name, len))
		return -ENOMEM;
	ti_detach(t, n, now);
	ti_set_raw(n, NULL, 0);
	if (ti_attach(t, dir, n, now)) {
		log_err("out of memory: %s is lost from the tree", name);
		ti_release(t, n);
		return -ENOMEM;
	}
	if (from != dir)
		tidy(t, from, now, out);
	return 0;
}

/* ------------------------------------------------------------ create, write, setattr */

static int find_dir(struct tree *t, uint64_t ino, struct node **out)
{
	struct node *d = ti_find(t, ino);

	if (!d || (d->flags & NF_ORPHAN))
		return -ENOENT;
	if (d->kind != NODE_DIR)
		return -ENOTDIR;
	*out = d;
	return 0;
}

/* A visible entry of dir; hidden ones are not there as far as the kernel knows. */
static struct node *visible(struct tree *t, struct node *dir, const char *name)
{
	struct node *c = ti_child(t, dir, name, strlen(name));

	return c && !(c->flags & NF_HIDDEN) ? c : NULL;
}

/* n takes over the store binding of hidden h (h leaves the tree). */
static void take_binding(struct tree *t, struct node *n, struct node *h, const struct timespec *now)
{
	n->meta = h->meta;
	n->seen_rev = h->seen_rev;
	if (h->val)
		ti_set_value(t, n, h->val);
	n->flags &= ~(NF_NEW | NF_LOCAL);
	ti_detach(t, h, now);
	ti_release(t, h);
}

int tree_create(struct tree *t, uint64_t parent, const char *name, bool excl, uint32_t mode,
		struct node_attr *out, bool *arm)
{
	struct timespec now;
	struct node *dir, *n;
	size_t len = strlen(name);
	int err;

	*arm = false;
	real_now(&now);
	pthread_rwlock_wrlock(&t->lock);
	err = find_dir(t, parent, &dir);
	if (err)
		goto out;
	struct node *c = ti_child(t, dir, name, len);
	if (c && (c->flags & NF_SENDING)) {
		err = -EINPROGRESS;
		goto out;
	}
	if (c && !(c->flags & NF_HIDDEN)) {
		if (excl) {
			err = -EEXIST;
		} else if (c->kind != NODE_FILE) {
			err = -EISDIR;
		} else {
			__atomic_add_fetch(&c->nlookup, 1, __ATOMIC_RELAXED);
			ti_fill_attr(t, c, out);
		}
		goto out;
	}
	if (!creatable(name)) {
		err = len > NAMES_MAX ? -ENAMETOOLONG : -EINVAL;
		goto out;
	}
	struct blob *empty = blob_new(0);
	n = empty ? ti_node_new(t, NODE_FILE, name, len, &now) : NULL;
	if (!n) {
		blob_unref(empty);
		err = -ENOMEM;
		goto out;
	}
	ti_set_value(t, n, empty);
	blob_unref(empty);
	if (c) {
		/* unlink + create, or a backup rename + create: the same key, one update. */
		take_binding(t, n, c, &now);
	} else {
		n->flags |= NF_NEW;
		if (scratch_name(t, dir, name))
			n->flags |= NF_LOCAL;
	}
	n->mode = mode & 07777;
	if (loc_start(n) || ti_attach(t, dir, n, &now)) {
		ti_node_destroy(t, n);
		err = -ENOMEM;
		goto out;
	}
	/* A created file is a change even while empty ("touch newkey"). */
	n->loc->len = 0;
	loc_touch(n);
	n->nlookup = 1;
	*arm = !(n->flags & NF_LOCAL);
	ti_fill_attr(t, n, out);
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_symlink(struct tree *t, uint64_t parent, const char *name, const char *target,
		 struct node_attr *out)
{
	struct timespec now;
	struct node *dir, *n;
	size_t len = strlen(name);
	int err;

	real_now(&now);
	pthread_rwlock_wrlock(&t->lock);
	err = find_dir(t, parent, &dir);
	if (err)
		goto out;
	if (visible(t, dir, name)) {
		err = -EEXIST;
		goto out;
	}
	if (ti_child(t, dir, name, len) || len > NAMES_MAX) {
		/* A hidden key holds the name: a link cannot take its place. */
		err = len > NAMES_MAX ? -ENAMETOOLONG : -EPERM;
		goto out;
	}
	n = ti_node_new(t, NODE_LINK, name, len, &now);
	if (!n) {
		err = -ENOMEM;
		goto out;
	}
	n->flags |= NF_LOCAL | NF_NEW;
	if (!ti_ext(n) || !(n->ext->link = strdup(target)) || ti_attach(t, dir, n, &now)) {
		ti_node_destroy(t, n);
		err = -ENOMEM;
		goto out;
	}
	n->nlookup = 1;
	ti_fill_attr(t, n, out);
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_readlink(struct tree *t, uint64_t ino, char **out)
{
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n)
		err = -ENOENT;
	else if (n->kind != NODE_LINK)
		err = -EINVAL;
	else if (!(*out = strdup(n->ext->link)))
		err = -ENOMEM;
	pthread_rwlock_unlock(&t->lock);
	return err;
}

static size_t limit_of(const struct node *n, size_t max)
{
	return (n->flags & NF_LOCAL) ? LOCAL_MAX : max;
}

/*
 * Drop n's uncommitted changes: it shows what the store has again. A file
 * not in the store yet keeps an empty, unchanged session, so it stays here
 * and nothing is committed unless it is written again.
 */
static void abandon(struct node *n)
{
	if (!n->loc)
		return;
	if (n->flags & NF_NEW) {
		n->loc->len = 0;
		n->loc->committed = n->loc->gen;
	} else {
		ti_loc_free(n->loc);
		n->loc = NULL;
	}
}

/* Resize n's session to size, zero-filling; the caller checked the limit. */
static int resize(struct node *n, size_t size)
{
	if (loc_reserve(n->loc, size))
		return -ENOMEM;
	if (size > n->loc->len)
		memset(n->loc->buf + n->loc->len, 0, size - n->loc->len);
	n->loc->len = size;
	return 0;
}

ssize_t tree_write(struct tree *t, uint64_t ino, const char *buf, size_t len, off_t off, size_t max,
		   bool *arm, bool *update)
{
	ssize_t ret = len;

	*update = false;
	*arm = false;
	pthread_rwlock_wrlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n) {
		ret = -ENOENT;
		goto out;
	}
	if (n->kind != NODE_FILE) {
		ret = n->kind == NODE_DIR ? -EISDIR : -EINVAL;
		goto out;
	}
	/*
	 * Refused before anything is sent: the store would not take it. The
	 * kernel cuts a large write() into pieces, so earlier pieces of this
	 * one may already be here: the whole session goes, nothing half-written
	 * is ever committed (the caller drops the kernel's pages of it).
	 */
	if (off < 0 || (size_t)off + len > limit_of(n, max)) {
		abandon(n);
		ret = -EFBIG;
		goto out;
	}
	if (loc_start(n) || ((size_t)off + len > n->loc->len && resize(n, off + len))) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(n->loc->buf + off, buf, len);
	loc_touch(n);
	*arm = !(n->flags & (NF_LOCAL | NF_HIDDEN | NF_ORPHAN));
	*update = *arm && !(n->flags & NF_NEW) && n->loc->len;
out:
	pthread_rwlock_unlock(&t->lock);
	return ret;
}

int tree_setattr(struct tree *t, uint64_t ino, const struct tree_setattr *sa, size_t max,
		 struct node_attr *out, bool *arm)
{
	int err = 0;

	*arm = false;
	pthread_rwlock_wrlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n) {
		err = -ENOENT;
		goto out;
	}
	if (sa->set_size) {
		if (n->kind != NODE_FILE) {
			err = n->kind == NODE_DIR ? -EISDIR : -EINVAL;
			goto out;
		}
		if (sa->size > limit_of(n, max)) {
			abandon(n);
			err = -EFBIG;
			goto out;
		}
		/* A bare truncate is a change like any other: it is committed after the quiet
		 * period. */
		if (loc_start(n) || resize(n, sa->size)) {
			err = -ENOMEM;
			goto out;
		}
		loc_touch(n);
		*arm = !(n->flags & (NF_LOCAL | NF_HIDDEN | NF_ORPHAN));
	}
	/* Owner changes are accepted and not kept: every file shows the mount's owner. */
	if (sa->set_mode)
		n->mode = sa->mode & 07777;
	if (sa->set_mtime)
		n->mtime = ti_ns(&sa->mtime);
	ti_fill_attr(t, n, out);
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_state(struct tree *t, uint64_t ino, enum tree_state *st, int64_t *last_ms, bool *update)
{
	int err = 0;

	*update = false;
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n) {
		err = -ENOENT;
	} else {
		*last_ms = n->loc ? n->loc->last_ms : 0;
		if (n->flags & NF_LOCAL)
			*st = TREE_LOCAL;
		else if (n->loc && n->loc->gen != n->loc->committed)
			*st = TREE_PENDING;
		else if ((n->flags & NF_HIDDEN) || (n->flags & NF_NEW))
			*st = TREE_PENDING;
		else
			*st = TREE_SYNCED;
		*update = *st == TREE_PENDING && n->kind == NODE_FILE && n->loc && n->loc->len &&
			  !(n->flags & (NF_NEW | NF_HIDDEN | NF_ORPHAN));
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}

/*
 * Path of n below the mount root ("" for the root), after base and a '/'
 * when base is not NULL; malloc'd, NULL on ENOMEM.
 */
static char *node_path(const struct node *n, const char *base)
{
	const struct node *x;
	size_t blen = base ? strlen(base) + 1 : 0, len = 0;

	for (x = n; x->parent; x = x->parent)
		len += x->name_len + 1;
	len = len ? len - 1 : 0;
	char *p = malloc(blen + len + 1);
	if (!p)
		return NULL;
	if (base) {
		memcpy(p, base, blen - 1);
		p[blen - 1] = '/';
	}
	len += blen;
	p[len] = '\0';
	for (x = n; x->parent; x = x->parent) {
		len -= x->name_len;
		memcpy(p + len, x->name, x->name_len);
		if (len > blen)
			p[--len] = '/';
	}
	return p;
}

int tree_path(struct tree *t, uint64_t ino, const char *base, char **out)
{
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n || (n->flags & (NF_ORPHAN | NF_HIDDEN)) || (n != t->root && !n->parent))
		err = -ENOENT;
	else if (!(*out = node_path(n, base)))
		err = -ENOMEM;
	pthread_rwlock_unlock(&t->lock);
	return err;
}

/* ------------------------------------------------------------ transactions */

void tree_txn_clear(struct tree_txn *x)
{
	for (size_t i = 0; i < x->nops; i++) {
		free(x->keys[i]);
		blob_unref(x->vals[i]);
	}
	free(x->ops);
	free(x->keys);
	free(x->vals);
	free(x->name);
	memset(x, 0, sizeof(*x));
}

const char *tree_txn_what(const struct tree_txn *x)
{
	switch (x->kind) {
	case TX_COMMIT:
	case TX_REPLACE:
		return "commit";
	case TX_DELETE:
	case TX_CHECK:
		return "delete";
	case TX_MKDIR:
		return "mkdir";
	case TX_RMDIR:
		return "rmdir";
	default:
		return "rename";
	}
}

/* Append an op; takes key (malloc'd) and a reference to val. */
static int add_op(struct tree_txn *x, enum kv_op_kind kind, char *key, size_t klen,
		  struct blob *val, int64_t expect)
{
	if (x->nops == x->cap) {
		size_t cap = x->cap ? x->cap * 2 : 4;
		struct kv_op *o = realloc(x->ops, cap * sizeof(*o));
		if (o)
			x->ops = o;
		char **k = o ? realloc(x->keys, cap * sizeof(*k)) : NULL;
		if (k)
			x->keys = k;
		struct blob **v = k ? realloc(x->vals, cap * sizeof(*v)) : NULL;
		if (!v) {
			free(key);
			return -ENOMEM;
		}
		x->vals = v;
		x->cap = cap;
	}
	struct kv_op *op = &x->ops[x->nops];
	op->kind = kind;
	op->key = key;
	op->klen = klen;
	op->val = val ? val->data : NULL;
	op->vlen = val ? val->len : 0;
	op->expect = expect;
	op->flags = 0;
	x->keys[x->nops] = key;
	x->vals[x->nops] = val ? blob_ref(val) : NULL;
	x->nops++;
	return 0;
}

/* The content a commit of n sends. */
static struct blob *session_blob(const struct node *n)
{
	return n->loc ? blob_from(n->loc->buf, n->loc->len) : blob_ref(n->val);
}

int tree_commit_begin(struct tree *t, uint64_t ino, bool only_existing, struct tree_txn *x)
{
	char *key;
	size_t klen;
	int err;

	memset(x, 0, sizeof(*x));
	pthread_rwlock_wrlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n || (n->flags & NF_ORPHAN)) {
		err = -ENOENT;
		goto out;
	}
	err = -ENODATA;
	if (n->kind != NODE_FILE || !n->loc || n->loc->gen == n->loc->committed ||
	    (n->flags & (NF_LOCAL | NF_HIDDEN)) || (only_existing && (n->flags & NF_NEW)))
		goto out;
	if ((n->flags & NF_NEW) && is_swap(n->loc)) {
		/* An editor's swap or lock file: it stays on this host, whatever its name. */
		n->flags |= NF_LOCAL;
		goto out;
	}
	err = ti_build_key(t, n, &key, &klen);
	if (err)
		goto out;
	struct blob *val = session_blob(n);
	if (!val || add_op(x, KV_PUT, key, klen, val, n->loc->base)) {
		blob_unref(val);
		err = -ENOMEM;
		goto out;
	}
	blob_unref(val);
	x->ops[0].flags = n->meta.flags;
	x->kind = TX_COMMIT;
	x->ino = n->ino;
	x->gen = n->loc->gen;
	x->create_rev = (n->flags & NF_NEW) ? 0 : n->meta.create_rev;
	x->version = n->meta.version;
	err = 0;
out:
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_txn_clear(x);
	return err;
}

int tree_unlink(struct tree *t, uint64_t parent, const char *name, uint64_t *pending,
		struct inval_list *out)
{
	struct timespec now;
	struct node *dir;
	int err;

	*pending = 0;
	real_now(&now);
	pthread_rwlock_wrlock(&t->lock);
	err = find_dir(t, parent, &dir);
	if (err)
		goto out;
	struct node *n = visible(t, dir, name);
	if (!n) {
		err = -ENOENT;
		goto out;
	}
	if (n->kind == NODE_DIR) {
		err = -EISDIR;
		goto out;
	}
	if (n->flags & (NF_NEW | NF_LOCAL)) {
		ti_detach(t, n, &now);
		ti_release(t, n);
		tidy(t, dir, &now, out);
		goto out;
	}
	/*
	 * The user deleted it: whatever was being edited goes too. rm deletes
	 * what the mirror holds, whatever this host last read of it; a change
	 * that arrives after this moment survives (as if it came after the
	 * delete).
	 */
	ti_loc_free(n->loc);
	n->loc = NULL;
	n->flags |= NF_HIDDEN;
	n->seen_rev = n->meta.mod_rev;
	dir->mtime = ti_ns(&now);
	*pending = n->ino;
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_delete_begin(struct tree *t, uint64_t ino, bool check, struct tree_txn *x)
{
	char *key;
	size_t klen;
	int err;

	memset(x, 0, sizeof(*x));
	pthread_rwlock_wrlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n || !(n->flags & NF_HIDDEN) || (n->flags & (NF_ORPHAN | NF_SENDING))) {
		err = -ENODATA;
		goto out;
	}
	err = ti_build_key(t, n, &key, &klen);
	if (!err && add_op(x, check ? KV_CHECK : KV_DELETE, key, klen, NULL, n->seen_rev))
		err = -ENOMEM;
	x->kind = check ? TX_CHECK : TX_DELETE;
	x->ino = ino;
	/* A create of the name waits for the answer rather than take over a key now going. */
	if (!err && !check)
		n->flags |= NF_SENDING;
out:
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_txn_clear(x);
	return err;
}

int tree_mkdir_begin(struct tree *t, uint64_t parent, const char *name, struct tree_txn *x)
{
	struct node *dir;
	char *key;
	size_t klen;
	int err;

	memset(x, 0, sizeof(*x));
	pthread_rwlock_wrlock(&t->lock);
	err = find_dir(t, parent, &dir);
	if (err)
		goto out;
	if (ti_child(t, dir, name, strlen(name))) {
		err = -EEXIST;
		goto out;
	}
	if (!creatable(name) || names_is_value(name, strlen(name))) {
		err = strlen(name) > NAMES_MAX ? -ENAMETOOLONG : -EINVAL;
		goto out;
	}
	err = ti_child_key(t, dir, name, &key, &klen, true);
	if (err)
		goto out;
	struct blob *empty = blob_new(0);
	if (!empty || add_op(x, KV_PUT, key, klen, empty, KV_ABSENT))
		err = -ENOMEM;
	blob_unref(empty);
	x->kind = TX_MKDIR;
	x->parent = parent;
	x->name = strdup(name);
	if (!x->name)
		err = -ENOMEM;
out:
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_txn_clear(x);
	return err;
}

/* The hidden entries of directory d, or the one named name (when not NULL). */
static int hidden_of(struct node *d, const char *name, struct ino_vec *v)
{
	int err = 0;

	for (uint32_t i = 0; i < d->dir->n && !err; i++) {
		struct node *c = d->dir->slot[i].node;
		if (c && (c->flags & NF_HIDDEN) && (!name || strcmp(c->name, name) == 0))
			err = ti_vec_push(v, c->ino);
	}
	return err;
}

int tree_hidden_children(struct tree *t, uint64_t parent, const char *name, uint64_t **inos,
			 size_t *n)
{
	struct ino_vec v = {0};
	struct node *dir;
	int err;

	pthread_rwlock_rdlock(&t->lock);
	err = find_dir(t, parent, &dir);
	struct node *d = err ? NULL : visible(t, dir, name);
	if (d && d->kind == NODE_DIR)
		err = hidden_of(d, NULL, &v);
	pthread_rwlock_unlock(&t->lock);
	*inos = v.v;
	*n = v.n;
	return err;
}

int tree_hidden_in(struct tree *t, uint64_t dir, const char *name, uint64_t **inos, size_t *n)
{
	struct ino_vec v = {0};
	struct node *d;
	int err;

	pthread_rwlock_rdlock(&t->lock);
	err = find_dir(t, dir, &d);
	if (!err)
		err = hidden_of(d, name, &v);
	pthread_rwlock_unlock(&t->lock);
	*inos = v.v;
	*n = v.n;
	return err;
}

int tree_rmdir_begin(struct tree *t, uint64_t parent, const char *name, struct tree_txn *x)
{
	struct node *dir;
	char *key;
	size_t klen;
	int err;

	memset(x, 0, sizeof(*x));
	pthread_rwlock_wrlock(&t->lock);
	err = find_dir(t, parent, &dir);
	if (err)
		goto out;
	struct node *d = visible(t, dir, name);
	if (!d) {
		err = -ENOENT;
		goto out;
	}
	if (d->kind != NODE_DIR) {
		err = -ENOTDIR;
		goto out;
	}
	/* Entries unlinked a moment ago (rm -r) go in the same transaction. */
	for (uint32_t i = 0; i < d->dir->n && !err; i++) {
		struct node *c = d->dir->slot[i].node;
		if (!c)
			continue;
		if (!(c->flags & NF_HIDDEN) || c->kind == NODE_DIR) {
			err = -ENOTEMPTY;
			break;
		}
		err = ti_build_key(t, c, &key, &klen);
		if (!err && add_op(x, KV_DELETE, key, klen, NULL, c->seen_rev))
			err = -ENOMEM;
	}
	if (!err && (d->flags & NF_MARKER)) {
		err = ti_build_key(t, d, &key, &klen);
		if (!err && add_op(x, KV_DELETE, key, klen, NULL, d->meta.mod_rev))
			err = -ENOMEM;
	}
	x->kind = TX_RMDIR;
	x->ino = d->ino;
out:
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_txn_clear(x);
	return err;
}

/* ------------------------------------------------------------ rename */

/* Every store key under directory d, as puts under the new prefix, plus deletes of the old. */
static int plan_dir_rename(struct tree *t, struct node *d, const char *newkey, size_t nklen,
			   struct tree_txn *x)
{
	char *oldkey, *k;
	size_t oklen, klen;
	int err = ti_build_key(t, d, &oldkey, &oklen);

	if (err)
		return err;
	/* Walk the subtree with an explicit stack of directories. */
	struct node **stack = malloc(sizeof(*stack) * 64);
	size_t sp = 0, cap = 64;
	if (!stack) {
		free(oldkey);
		return -ENOMEM;
	}
	stack[sp++] = d;
	while (sp && !err) {
		struct node *dir = stack[--sp];
		if (dir->flags & NF_MARKER) {
			char *dk;
			size_t dklen;
			err = ti_build_key(t, dir, &dk, &dklen);
			if (err)
				break;
			/* A directory's key is under the old prefix: swap the prefix. */
			klen = nklen + dklen - oklen;
			k = malloc(klen + 1);
			if (!k) {
				free(dk);
				err = -ENOMEM;
				break;
			}
			memcpy(k, newkey, nklen);
			memcpy(k + nklen, dk + oklen, dklen - oklen);
			free(dk);
			struct blob *empty = blob_new(0);
			err = empty ? add_op(x, KV_PUT, k, klen, empty, KV_ANY) : -ENOMEM;
			blob_unref(empty);
		}
		for (uint32_t i = 0; i < dir->dir->n && !err; i++) {
			struct node *c = dir->dir->slot[i].node;
			if (!c || (c->flags & (NF_NEW | NF_LOCAL | NF_HIDDEN)))
				continue;
			if (c->kind == NODE_DIR) {
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
				continue;
			}
			char *ck;
			size_t cklen;
			err = ti_build_key(t, c, &ck, &cklen);
			if (err)
				break;
			bool under = cklen >= oklen && memcmp(ck, oldkey, oklen) == 0;
			/* "%value" of d itself: its key is d's without the '/', outside the prefix.
			 */
			klen = under ? nklen + cklen - oklen : nklen - 1;
			k = malloc(klen + 1);
			if (!k) {
				free(ck);
				err = -ENOMEM;
				break;
			}
			memcpy(k, newkey, under ? nklen : klen);
			if (under)
				memcpy(k + nklen, ck + oklen, cklen - oklen);
			/*
			 * A rename moves what the mirror holds (see tree_rename_begin);
			 * edits not committed yet move guarded by what they started from.
			 */
			int64_t base = c->loc ? c->loc->base : c->meta.mod_rev;
			err = add_op(x, under ? KV_CHECK : KV_DELETE, ck, cklen, NULL, base);
			struct blob *val = err ? NULL : session_blob(c);
			if (!err)
				err = val ? add_op(x, KV_PUT, k, klen, val, KV_ANY) : -ENOMEM;
			else
				free(k);
			if (!err)
				x->ops[x->nops - 1].flags = c->meta.flags;
			blob_unref(val);
		}
	}
	free(stack);
	/* Everything under the old prefix goes in one operation; the checks above guard it. */
	if (!err)
		err = add_op(x, KV_DELETE_PREFIX, oldkey, oklen, NULL, KV_ANY);
	else
		free(oldkey);
	return err;
}

int tree_rename_begin(struct tree *t, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, bool noreplace, struct tree_txn *x, uint64_t *pending,
		      bool *arm, struct inval_list *out)
{
	struct timespec now;
	struct node *dir, *ndir;
	size_t len = strlen(name), nlen = strlen(newname);
	char *key = NULL, *nkey = NULL;
	size_t klen, nklen;
	int err;

	memset(x, 0, sizeof(*x));
	*pending = 0;
	*arm = false;
	real_now(&now);
	pthread_rwlock_wrlock(&t->lock);
	err = find_dir(t, parent, &dir);
	if (!err)
		err = find_dir(t, newparent, &ndir);
	if (err)
		goto out;
	struct node *s = visible(t, dir, name);
	struct node *d = ti_child(t, ndir, newname, nlen);
	bool d_hidden = d && (d->flags & NF_HIDDEN);
	if (!s) {
		err = -ENOENT;
		goto out;
	}
	if (s == d)
		goto out;
	x->ino = s->ino;
	if (d && !d_hidden) {
		if (noreplace) {
			err = -EEXIST;
			goto out;
		}
		if (d->kind == NODE_DIR && s->kind != NODE_DIR) {
			err = -EISDIR;
			goto out;
		}
		if (d->kind != NODE_DIR && s->kind == NODE_DIR) {
			err = -ENOTDIR;
			goto out;
		}
		if (d->kind == NODE_DIR && d->dir->live) {
			err = -ENOTEMPTY;
			goto out;
		}
	}
	if (nlen > NAMES_MAX) {
		err = -ENAMETOOLONG;
		goto out;
	}
	bool s_local = s->flags & (NF_NEW | NF_LOCAL);
	bool d_bound = d && !(d->flags & (NF_NEW | NF_LOCAL));

	/*
	 * The backup dance of vim and emacs, undone: vim renames the backup back
	 * over the name when its save failed. The key was never touched; the
	 * file shows what the store has again.
	 */
	if (s->kind == NODE_FILE && (s->flags & NF_LOCAL) && d_hidden && ndir == dir &&
	    backup_of(name, len, newname, nlen)) {
		if (move_node(t, s, ndir, newname, &now, out) == 0) {
			ti_loc_free(s->loc);
			s->loc = NULL;
			take_binding(t, s, d, &now);
			ti_push(out, INVAL_INODE, 0, s->ino, NULL, 0);
		}
		goto out;
	}
	/* Files only here stay here, unless they land on a key of the store. */
	if (s_local && !(s->kind == NODE_FILE && d_bound)) {
		if (s->kind == NODE_FILE && !(s->flags & NF_LOCAL) && !creatable(newname)) {
			err = -EINVAL;
			goto out;
		}
		if (d) {
			ti_detach(t, d, &now);
			ti_release(t, d);
		}
		err = move_node(t, s, ndir, newname, &now, out);
		if (!err && s->kind == NODE_FILE) {
			/* A scratch file renamed to a real name becomes a new key, and back. */
			if (scratch_name(t, ndir, newname))
				s->flags |= NF_LOCAL;
			else if (creatable(newname))
				s->flags &= ~NF_LOCAL;
			*arm = !(s->flags & NF_LOCAL);
		}
		goto out;
	}
	/* The first step of vim's and emacs's backup dance: keep the key, hide its name. */
	if (s->kind == NODE_FILE && !s_local && !d && ndir == dir &&
	    backup_of(newname, nlen, name, len)) {
		struct node *h = ti_node_new(t, NODE_FILE, name, len, &now);
		if (!h || loc_start(s)) {
			if (h)
				ti_node_destroy(t, h);
			err = -ENOMEM;
			goto out;
		}
		h->meta = s->meta;
		h->seen_rev = s->seen_rev;
		ti_set_value(t, h, s->val);
		h->flags |= NF_HIDDEN;
		/* The backup keeps what the file showed, local only from now on. */
		s->loc->committed = s->loc->gen;
		s->flags |= NF_LOCAL;
		memset(&s->meta, 0, sizeof(s->meta));
		err = move_node(t, s, ndir, newname, &now, out);
		if (!err && ti_attach(t, dir, h, &now) == 0)
			*pending = h->ino;
		else if (!err) {
			ti_node_destroy(t, h);
			err = -ENOMEM;
		}
		goto out;
	}
	if (!creatable(newname) && !(s->kind == NODE_FILE && d_bound)) {
		err = -EINVAL;
		goto out;
	}
	/* A change of the store: put the new key(s), delete the old, in one transaction. */
	x->ino = s->ino;
	x->parent = newparent;
	x->other = d ? d->ino : 0;
	x->name = strdup(newname);
	if (!x->name) {
		err = -ENOMEM;
		goto out;
	}
	err = d_bound ? ti_build_key(t, d, &nkey, &nklen)
		      : ti_child_key(t, ndir, newname, &nkey, &nklen, s->kind == NODE_DIR);
	if (err)
		goto out;
	if (s->kind == NODE_DIR) {
		x->kind = TX_RENAME;
		if (d && (d->flags & NF_MARKER)) {
			char *dk;
			size_t dklen;
			err = ti_build_key(t, d, &dk, &dklen);
			if (!err)
				err = add_op(x, KV_DELETE, dk, dklen, NULL, d->meta.mod_rev);
			if (err)
				goto out;
		}
		err = plan_dir_rename(t, s, nkey, nklen, x);
		goto out;
	}
	struct blob *val = session_blob(s);
	if (!val) {
		err = -ENOMEM;
		goto out;
	}
	/*
	 * What guards the key a rename replaces: bytes written here (a temp file
	 * renamed over the key: sed -i, an editor) were based on what this host
	 * read of it; a plain mv carries no bytes of the user's and replaces
	 * what the mirror holds.
	 */
	int64_t dguard = !d_bound ? KV_ABSENT : s_local ? d->seen_rev : d->meta.mod_rev;
	err = add_op(x, KV_PUT, nkey, nklen, val, dguard);
	nkey = NULL;
	blob_unref(val);
	if (err)
		goto out;
	/* The replaced key keeps its flags; a renamed one takes its own along. */
	x->ops[x->nops - 1].flags = d_bound ? d->meta.flags : s->meta.flags;
	if (s_local) {
		/* sed -i, perl -pi, a write-temp-then-rename: one update of the key. */
		if (s->loc && s->loc->refused_gen == s->loc->gen + 1 &&
		    s->loc->refused_ino == d->ino) {
			/* The kernel retries a rename refused with ESTALE once: same answer. */
			err = -ESTALE;
			goto out;
		}
		x->kind = TX_REPLACE;
		x->other = d->ino;
		x->create_rev = d->meta.create_rev;
		x->version = d->meta.version;
	} else {
		x->kind = TX_RENAME;
		err = ti_build_key(t, s, &key, &klen);
		if (!err)
			err = add_op(x, KV_DELETE, key, klen, NULL,
				     s->loc ? s->loc->base : s->meta.mod_rev);
		key = NULL;
	}
out:
	free(key);
	free(nkey);
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_txn_clear(x);
	return err;
}

/* ------------------------------------------------------------ settling */

/* Keep the bytes of l next to file n as a local-only NAME.rejected file; l is copied. */
static int keep_copy(struct tree *t, struct node *n, const struct local *l,
		     const struct timespec *now, char **saved, struct inval_list *out)
{
	char name[NAMES_MAX + 1];
	struct node *dir = n->parent;

	if (!dir)
		return -ENOENT;
	for (int i = 1; i < 1000; i++) {
		int len = i == 1 ? snprintf(name, sizeof(name), "%s.rejected", n->name)
				 : snprintf(name, sizeof(name), "%s.rejected.%d", n->name, i);
		if (len < 0 || (size_t)len > NAMES_MAX)
			return -ENAMETOOLONG;
		if (ti_child(t, dir, name, len))
			continue;
		struct node *r = ti_node_new(t, NODE_FILE, name, len, now);
		struct blob *empty = blob_new(0);
		if (!r || !empty) {
			blob_unref(empty);
			if (r)
				ti_node_destroy(t, r);
			return -ENOMEM;
		}
		ti_set_value(t, r, empty);
		blob_unref(empty);
		r->flags |= NF_LOCAL | NF_NEW;
		if (loc_start(r) || loc_reserve(r->loc, l->len) || ti_attach(t, dir, r, now)) {
			ti_node_destroy(t, r);
			return -ENOMEM;
		}
		memcpy(r->loc->buf, l->buf, l->len);
		r->loc->len = l->len;
		ti_push(out, INVAL_ENTRY, dir->ino, 0, name, len);
		ti_push(out, INVAL_INODE, 0, dir->ino, NULL, 0);
		*saved = node_path(r, NULL);
		return 0;
	}
	return -EEXIST;
}

/* Remove the hidden entries of dir (their deletes were committed); not while iterating slots. */
static void drop_hidden(struct tree *t, struct node *dir, const struct timespec *now)
{
	struct ino_vec gone = {0};

	for (uint32_t i = 0; i < dir->dir->n; i++) {
		struct node *c = dir->dir->slot[i].node;
		if (c && (c->flags & NF_HIDDEN) && ti_vec_push(&gone, c->ino))
			break;
	}
	for (size_t i = 0; i < gone.n; i++) {
		struct node *c = ti_find(t, gone.v[i]);
		if (c) {
			ti_detach(t, c, now);
			ti_release(t, c);
		}
	}
	free(gone.v);
}

/* A commit failed: the file shows what the store has again; its bytes are kept aside. */
static void revert(struct tree *t, struct node *n, const struct timespec *now, char **saved,
		   struct inval_list *out)
{
	if (n->loc && keep_copy(t, n, n->loc, now, saved, out))
		log_err("could not keep the rejected bytes of %s", n->name);
	ti_loc_free(n->loc);
	n->loc = NULL;
	if (n->flags & NF_NEW) {
		/* It never was in the store: it goes. */
		struct node *dir = n->parent;
		ti_push(out, INVAL_DELETE, dir->ino, n->ino, n->name, n->name_len);
		ti_push(out, INVAL_INODE, 0, dir->ino, NULL, 0);
		ti_detach(t, n, now);
		ti_release(t, n);
		tidy(t, dir, now, out);
	} else {
		ti_push(out, INVAL_INODE, 0, n->ino, NULL, 0);
	}
}

/*
 * The store now holds val for file n at rev. create_rev and version are
 * those of the key before this put (0 for a new key).
 */
static void settle_put(struct tree *t, struct node *n, struct blob *val, int64_t rev,
		       int64_t create_rev, int64_t version, uint64_t flags, uint64_t gen)
{
	n->flags &= ~NF_NEW;
	n->meta.flags = flags;
	n->meta.mod_rev = rev;
	n->meta.create_rev = create_rev ? create_rev : rev;
	if (!t->counts_versions)
		n->meta.version = create_rev ? version : 0;
	else
		n->meta.version = create_rev ? version + 1 : 1;
	n->seen_rev = rev;
	ti_set_value(t, n, val);
	if (n->loc) {
		n->loc->committed = gen;
		n->loc->base = rev;
		/* Nothing written since: the mirror value is the content again. */
		if (n->loc->gen == gen) {
			ti_loc_free(n->loc);
			n->loc = NULL;
		}
	}
}

int tree_txn_end(struct tree *t, struct tree_txn *x, int err, int64_t rev, char **saved,
		 struct node_attr *attr, struct inval_list *out)
{
	struct timespec now;

	*saved = NULL;
	real_now(&now);
	pthread_rwlock_wrlock(&t->lock);
	if (!err) {
		__atomic_add_fetch(&t->local_epoch, 1, __ATOMIC_RELEASE);
		for (size_t i = 0; i < x->nops; i++) {
			if (x->ops[i].kind == KV_DELETE || x->ops[i].kind == KV_DELETE_PREFIX)
				ti_tomb_add(t, &x->ops[i], rev);
		}
	}
	struct node *n = x->ino ? ti_find(t, x->ino) : NULL;
	switch (x->kind) {
	case TX_COMMIT:
		if (!n)
			break;
		if (err)
			revert(t, n, &now, saved, out);
		else
			settle_put(t, n, x->vals[0], rev, x->create_rev, x->version,
				   x->ops[0].flags, x->gen);
		break;
	case TX_DELETE:
	case TX_CHECK:
		if (!n || !(n->flags & NF_HIDDEN))
			break;
		n->flags &= ~NF_SENDING;
		if (!err && x->kind == TX_CHECK)
			break;
		if (err && x->kind == TX_DELETE && tree_err_unanswered(err)) {
			/* The store did not answer: the delete is sent again later. */
			break;
		}
		if (err) {
			/* Not deleted after all: the name is back. */
			n->flags &= ~NF_HIDDEN;
			if (n->parent) {
				ti_push(out, INVAL_ENTRY, n->parent->ino, 0, n->name, n->name_len);
				ti_push(out, INVAL_INODE, 0, n->parent->ino, NULL, 0);
			}
		} else if (n->parent) {
			struct node *dir = n->parent;
			ti_detach(t, n, &now);
			ti_release(t, n);
			tidy(t, dir, &now, out);
		}
		break;
	case TX_MKDIR: {
		struct node *dir = ti_find(t, x->parent);
		if (err || !dir)
			break;
		struct node *d = ti_child(t, dir, x->name, strlen(x->name));
		if (!d) {
			d = ti_node_new(t, NODE_DIR, x->name, strlen(x->name), &now);
			if (!d || ti_attach(t, dir, d, &now)) {
				if (d)
					ti_node_destroy(t, d);
				err = -ENOMEM;
				break;
			}
		}
		if (d->kind != NODE_DIR) {
			err = -EEXIST;
			break;
		}
		d->flags |= NF_MARKER;
		d->meta = (struct kv_meta){
			.mod_rev = rev, .create_rev = rev, .version = t->counts_versions};
		__atomic_add_fetch(&d->nlookup, 1, __ATOMIC_RELAXED);
		ti_fill_attr(t, d, attr);
		break;
	}
	case TX_RMDIR:
		if (err || !n)
			break;
		drop_hidden(t, n, &now);
		if (n->dir->live == 0 && n->parent) {
			struct node *dir = n->parent;
			n->flags &= ~NF_MARKER;
			ti_detach(t, n, &now);
			ti_release(t, n);
			tidy(t, dir, &now, out);
		}
		break;
	case TX_REPLACE:
	case TX_RENAME: {
		struct node *ndir = ti_find(t, x->parent);
		if (!n || !ndir)
			break;
		struct node *d = ti_child(t, ndir, x->name, strlen(x->name));
		if (err && x->kind == TX_REPLACE && n->kind == NODE_FILE) {
			/*
			 * The key changed since this host read it. The writer will
			 * remove its temp file: its bytes are kept next to the key,
			 * and the temp never becomes a key of its own.
			 */
			if (n->loc && d && keep_copy(t, d, n->loc, &now, saved, out) == 0)
				n->loc->refused_gen = n->loc->gen + 1;
			if (n->loc)
				n->loc->refused_ino = d ? d->ino : 0;
			n->flags |= NF_LOCAL;
			break;
		}
		if (err)
			break;
		if (d && d != n) {
			ti_detach(t, d, &now);
			ti_release(t, d);
		}
		if (move_node(t, n, ndir, x->name, &now, out)) {
			err = -ENOMEM;
			break;
		}
		if (n->kind == NODE_FILE) {
			n->flags &= ~(NF_LOCAL | NF_NEW);
			settle_put(t, n, x->vals[0], rev, x->kind == TX_REPLACE ? x->create_rev : 0,
				   x->version, x->ops[0].flags, n->loc ? n->loc->gen : 0);
			break;
		}
		/* A directory: every key under it is new at rev, with the same content. */
		struct node **stack = malloc(sizeof(*stack) * 64);
		size_t sp = 0, cap = 64;
		if (!stack)
			break;
		stack[sp++] = n;
		while (sp) {
			struct node *dir = stack[--sp];
			if (dir->flags & NF_MARKER)
				dir->meta = (struct kv_meta){.mod_rev = rev,
							     .create_rev = rev,
							     .version = t->counts_versions};
			for (uint32_t i = 0; i < dir->dir->n; i++) {
				struct node *c = dir->dir->slot[i].node;
				if (!c || (c->flags & (NF_NEW | NF_LOCAL)))
					continue;
				if (c->kind == NODE_DIR) {
					if (sp == cap) {
						struct node **s =
							realloc(stack, sizeof(*s) * cap * 2);
						if (!s)
							continue;
						stack = s;
						cap *= 2;
					}
					stack[sp++] = c;
				} else if (c->flags & NF_HIDDEN) {
					/* Its delete went with the old prefix; dropped below. */
				} else {
					struct blob *v = session_blob(c);
					if (v)
						settle_put(t, c, v, rev, 0, 0, c->meta.flags,
							   c->loc ? c->loc->gen : 0);
					blob_unref(v);
				}
			}
		}
		free(stack);
		drop_hidden(t, n, &now);
		break;
	}
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}
