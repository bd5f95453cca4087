/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: write sessions and files that live only here, and what names mean to editors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "editors.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

/* Scratch files never go to the store, so they may be larger than a value. */
#define LOCAL_MAX (64u << 20)

void ti_real_now(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* Start a session on file n if it has none: a copy of what it shows, based on what was served. */
int ti_loc_start(struct node *n)
{
	struct local *l;

	if (n->loc)
		return 0;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	size_t len = n->val ? n->val->len : 0;
	if (ti_loc_reserve(l, len)) {
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

void ti_loc_touch(struct node *n)
{
	n->loc->gen++;
	n->loc->last_ms = mono_ms();
	struct timespec now;
	ti_real_now(&now);
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

struct sibling_ctx {
	struct tree *t;
	struct node *dir;
};

static bool sibling(void *ctx, const char *name, size_t len)
{
	struct sibling_ctx *c = ctx;

	return len > 0 && len <= c->t->name_max && ti_child(c->t, c->dir, name, len) != NULL;
}

/* Whether a new file called name in dir is editor scratch (see editors.h). */
bool ti_scratch_name(struct tree *t, struct node *dir, const char *name)
{
	struct sibling_ctx c = {t, dir};

	return editors_scratch_name(name, sibling, &c);
}

/*
 * A name a user may create in dir: one a key maps to, or the value of its directory. The
 * mount's root has no value file: its key would be the prefix itself, which the mirror
 * (keys under PREFIX/) never shows, so a %value there would vanish at the next mount.
 */
bool ti_creatable(const struct tree *t, const struct node *dir, const char *name)
{
	char seg[NAMES_MAX + 1];
	size_t len = strlen(name);

	if (len > t->name_max)
		return false;
	if (names_is_value(name, len))
		return dir != t->root;
	return names_decode(t->names, name, len, seg) >= 0;
}

/*
 * Collapse dir after a local change emptied it, telling the kernel about
 * directories that vanish: it did not remove them itself.
 */
void ti_tidy(struct tree *t, struct node *dir, const struct timespec *now, struct change_list *out)
{
	struct changes ch;

	memset(&ch, 0, sizeof(ch));
	ch.report = true;
	ti_collapse(t, dir, now, &ch);
	ti_flush_changes(t, &ch, out);
}

/* Move n to name in dir; the only step that can fail (a longer name) goes first. */
int ti_move_node(struct tree *t, struct node *n, struct node *dir, const char *name,
		 const struct timespec *now, struct change_list *out)
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
		ti_tidy(t, from, now, out);
	ti_touch_ctime(n);
	return 0;
}

void ti_touch_ctime(struct node *n)
{
	struct timespec now;

	/* Without memory for it the status change time stays the mtime: nothing breaks. */
	ti_real_now(&now);
	if (ti_ext(n))
		n->ext->ctime = ti_ns(&now);
}

int ti_find_dir(struct tree *t, uint64_t ino, struct node **out)
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
struct node *ti_visible(struct tree *t, struct node *dir, const char *name)
{
	struct node *c = ti_child(t, dir, name, strlen(name));

	return c && !(c->flags & NF_HIDDEN) ? c : NULL;
}

/* n takes over the store binding of hidden h (h leaves the tree). */
void ti_take_binding(struct tree *t, struct node *n, struct node *h, const struct timespec *now)
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
	ti_real_now(&now);
	ti_write_lock(t);
	err = ti_find_dir(t, parent, &dir);
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
	if (!ti_creatable(t, dir, name)) {
		err = len > t->name_max ? -ENAMETOOLONG : -EINVAL;
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
		ti_take_binding(t, n, c, &now);
	} else {
		n->flags |= NF_NEW;
		if (ti_scratch_name(t, dir, name))
			n->flags |= NF_LOCAL;
	}
	n->mode = (mode & 07777) | TREE_MODE_SET;
	if (ti_loc_start(n) || ti_attach(t, dir, n, &now)) {
		ti_node_destroy(t, n);
		err = -ENOMEM;
		goto out;
	}
	/* A created file is a change even while empty ("touch newkey"). */
	n->loc->len = 0;
	ti_loc_touch(n);
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

	ti_real_now(&now);
	ti_write_lock(t);
	err = ti_find_dir(t, parent, &dir);
	if (err)
		goto out;
	if (ti_visible(t, dir, name)) {
		err = -EEXIST;
		goto out;
	}
	if (ti_child(t, dir, name, len) || len > t->name_max) {
		/* A hidden key holds the name: a link cannot take its place. */
		err = len > t->name_max ? -ENAMETOOLONG : -EPERM;
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
	if (ti_loc_reserve(n->loc, size))
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
	ti_write_lock(t);
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
	if (ti_loc_start(n) || ((size_t)off + len > n->loc->len && resize(n, off + len))) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(n->loc->buf + off, buf, len);
	ti_loc_touch(n);
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
	ti_write_lock(t);
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
		if (ti_loc_start(n) || resize(n, sa->size)) {
			err = -ENOMEM;
			goto out;
		}
		ti_loc_touch(n);
		*arm = !(n->flags & (NF_LOCAL | NF_HIDDEN | NF_ORPHAN));
	}
	/* Owner changes are accepted and not kept: every file shows the mount's owner. */
	if (sa->set_mode)
		n->mode = (sa->mode & 07777) | TREE_MODE_SET;
	if (sa->set_mtime)
		n->mtime = ti_ns(&sa->mtime);
	if (sa->set_mode || sa->set_ctime || sa->set_mtime || sa->set_size)
		ti_touch_ctime(n);
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
char *ti_node_path(const struct node *n, const char *base)
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
	else if (!(*out = ti_node_path(n, base)))
		err = -ENOMEM;
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_unlink(struct tree *t, uint64_t parent, const char *name, uint64_t *pending,
		struct change_list *out)
{
	struct timespec now;
	struct node *dir;
	int err;

	*pending = 0;
	ti_real_now(&now);
	ti_write_lock(t);
	err = ti_find_dir(t, parent, &dir);
	if (err)
		goto out;
	struct node *n = ti_visible(t, dir, name);
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
		ti_tidy(t, dir, &now, out);
		goto out;
	}
	/*
	 * rm deletes what the mirror holds, whatever this host last read of it;
	 * a change that arrives after this moment survives (as if it came after
	 * the delete). An edit in progress is never committed now (hidden files
	 * are not), but descriptors still open on the file keep reading and
	 * writing it until their last close, as POSIX has it.
	 */
	n->flags |= NF_HIDDEN;
	n->seen_rev = n->meta.mod_rev;
	dir->mtime = ti_ns(&now);
	*pending = n->ino;
out:
	pthread_rwlock_unlock(&t->lock);
	return err;
}
