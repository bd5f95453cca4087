/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: the transactions local changes become (commit, delete, mkdir, rmdir). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "editors.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

void ti_begin(struct tree *t, struct tree_txn *x)
{
	memset(x, 0, sizeof(*x));
	ti_write_lock(t);
}

int ti_begun(struct tree *t, struct tree_txn *x, int err)
{
	pthread_rwlock_unlock(&t->lock);
	if (err)
		tree_txn_clear(x);
	return err;
}

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
int ti_add_op(struct tree_txn *x, enum kv_op_kind kind, char *key, size_t klen, struct blob *val,
	      int64_t expect)
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
	op->expect_version = KV_VERSION_UNKNOWN;
	op->flags = 0;
	x->keys[x->nops] = key;
	x->vals[x->nops] = val ? blob_ref(val) : NULL;
	x->nops++;
	return 0;
}

int ti_add_guarded(struct tree_txn *x, enum kv_op_kind kind, char *key, size_t klen,
		   struct blob *val, const struct node *n, int64_t expect)
{
	int err = ti_add_op(x, kind, key, klen, val, expect);

	if (!err && expect > 0 && expect == n->meta.mod_rev)
		x->ops[x->nops - 1].expect_version = n->meta.version;
	return err;
}

/* The content a commit of n sends. */
struct blob *ti_session_blob(const struct node *n)
{
	return n->loc ? blob_from(n->loc->buf, n->loc->len) : blob_ref(n->val);
}

int tree_commit_begin(struct tree *t, uint64_t ino, struct tree_txn *x)
{
	char *key;
	size_t klen;
	int err;

	ti_begin(t, x);
	struct node *n = ti_find(t, ino);
	if (!n || (n->flags & NF_ORPHAN)) {
		err = -ENOENT;
		goto out;
	}
	err = -ENODATA;
	if (n->kind != NODE_FILE || !n->loc || n->loc->gen == n->loc->committed ||
	    (n->flags & (NF_LOCAL | NF_HIDDEN)))
		goto out;
	if ((n->flags & NF_NEW) && editors_is_swap(n->loc->buf, n->loc->len)) {
		/* An editor's swap or lock file: it stays on this host, whatever its name. */
		n->flags |= NF_LOCAL;
		goto out;
	}
	err = ti_build_key(t, n, &key, &klen);
	if (err)
		goto out;
	struct blob *val = ti_session_blob(n);
	if (!val || ti_add_guarded(x, KV_PUT, key, klen, val, n, n->loc->base)) {
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
	return ti_begun(t, x, err);
}

int tree_delete_begin(struct tree *t, uint64_t ino, bool check, struct tree_txn *x)
{
	char *key;
	size_t klen;
	int err;

	ti_begin(t, x);
	struct node *n = ti_find(t, ino);
	if (!n || !(n->flags & NF_HIDDEN) || (n->flags & (NF_ORPHAN | NF_SENDING))) {
		err = -ENODATA;
		goto out;
	}
	err = ti_build_key(t, n, &key, &klen);
	if (!err &&
	    ti_add_guarded(x, check ? KV_CHECK : KV_DELETE, key, klen, NULL, n, n->seen_rev))
		err = -ENOMEM;
	x->kind = check ? TX_CHECK : TX_DELETE;
	x->ino = ino;
	/* A create of the name waits for the answer rather than take over a key now going. */
	if (!err && !check)
		n->flags |= NF_SENDING;
out:
	return ti_begun(t, x, err);
}

int tree_mkdir_begin(struct tree *t, uint64_t parent, const char *name, uint32_t mode,
		     struct tree_txn *x)
{
	struct node *dir;
	char *key;
	size_t klen;
	int err;

	ti_begin(t, x);
	err = ti_find_dir(t, parent, &dir);
	if (err)
		goto out;
	if (ti_child(t, dir, name, strlen(name))) {
		err = -EEXIST;
		goto out;
	}
	if (!ti_creatable(t, dir, name) || names_is_value(name, strlen(name))) {
		err = strlen(name) > t->name_max ? -ENAMETOOLONG : -EINVAL;
		goto out;
	}
	err = ti_child_key(t, dir, name, &key, &klen, true);
	if (err)
		goto out;
	struct blob *empty = blob_new(0);
	if (!empty || ti_add_op(x, KV_PUT, key, klen, empty, KV_ABSENT))
		err = -ENOMEM;
	blob_unref(empty);
	x->kind = TX_MKDIR;
	x->parent = parent;
	x->mode = (mode & 07777) | TREE_MODE_SET;
	x->name = strdup(name);
	if (!x->name)
		err = -ENOMEM;
out:
	return ti_begun(t, x, err);
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
	err = ti_find_dir(t, parent, &dir);
	struct node *d = err ? NULL : ti_visible(t, dir, name);
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
	err = ti_find_dir(t, dir, &d);
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

	ti_begin(t, x);
	err = ti_find_dir(t, parent, &dir);
	if (err)
		goto out;
	struct node *d = ti_visible(t, dir, name);
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
		if (!err && ti_add_guarded(x, KV_DELETE, key, klen, NULL, c, c->seen_rev))
			err = -ENOMEM;
	}
	if (!err && (d->flags & NF_MARKER)) {
		err = ti_build_key(t, d, &key, &klen);
		if (!err && ti_add_guarded(x, KV_DELETE, key, klen, NULL, d, d->meta.mod_rev))
			err = -ENOMEM;
	}
	x->kind = TX_RMDIR;
	x->ino = d->ino;
out:
	return ti_begun(t, x, err);
}
