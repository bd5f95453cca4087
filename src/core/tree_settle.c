/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: what the store answered to a local change, applied. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "editors.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

/* Keep the bytes of l next to file n as a local-only NAME.rejected file; l is copied. */
static int keep_copy(struct tree *t, struct node *n, const struct local *l,
		     const struct timespec *now, char **saved, struct change_list *out)
{
	char name[NAMES_MAX + 1];
	struct node *dir = n->parent;

	if (!dir)
		return -ENOENT;
	for (int i = 1; i < 1000; i++) {
		int len = i == 1 ? snprintf(name, sizeof(name), "%s.rejected", n->name)
				 : snprintf(name, sizeof(name), "%s.rejected.%d", n->name, i);
		if (len < 0 || (size_t)len > t->name_max)
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
		if (ti_loc_start(r) || ti_loc_reserve(r->loc, l->len) ||
		    ti_attach(t, dir, r, now)) {
			ti_node_destroy(t, r);
			return -ENOMEM;
		}
		if (l->len) /* an empty session may have no buffer at all */
			memcpy(r->loc->buf, l->buf, l->len);
		r->loc->len = l->len;
		ti_push(out, INVAL_ENTRY, dir->ino, 0, name, len);
		ti_push(out, INVAL_INODE, 0, dir->ino, NULL, 0);
		*saved = ti_node_path(r, NULL);
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
		   struct change_list *out)
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
		ti_tidy(t, dir, now, out);
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
		n->meta.version = create_rev ? version + 1 : t->first_version;
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

struct settled {
	struct tree *t;
	int64_t rev;
};

/* One directory of a renamed subtree: its keys are new at the rename's revision. */
static int settle_dir(struct node *dir, void *ctx)
{
	struct settled *c = ctx;

	if (dir->flags & NF_MARKER)
		dir->meta = (struct kv_meta){.mod_rev = c->rev,
					     .create_rev = c->rev,
					     .version = c->t->counts_versions ? c->t->first_version
									      : 0};
	for (uint32_t i = 0; i < dir->dir->n; i++) {
		struct node *f = dir->dir->slot[i].node;
		/* Hidden ones: their delete went with the old prefix; dropped after. */
		if (!f || f->kind == NODE_DIR || (f->flags & (NF_NEW | NF_LOCAL | NF_HIDDEN)))
			continue;
		struct blob *v = ti_session_blob(f);
		if (v)
			settle_put(c->t, f, v, c->rev, 0, 0, f->meta.flags,
				   f->loc ? f->loc->gen : 0);
		blob_unref(v);
	}
	return 0;
}

int tree_txn_end(struct tree *t, struct tree_txn *x, int err, int64_t rev, char **saved,
		 struct node_attr *attr, struct change_list *out)
{
	struct timespec now;

	*saved = NULL;
	ti_real_now(&now);
	ti_write_lock(t);
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
			ti_tidy(t, dir, &now, out);
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
		d->mode = x->mode;
		d->flags |= NF_MARKER;
		d->meta = (struct kv_meta){.mod_rev = rev,
					   .create_rev = rev,
					   .version = t->counts_versions ? t->first_version : 0};
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
			ti_tidy(t, dir, &now, out);
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
			ti_view_touch(t, n);
			break;
		}
		if (err)
			break;
		if (d && d != n) {
			ti_detach(t, d, &now);
			ti_release(t, d);
		}
		if (ti_move_node(t, n, ndir, x->name, &now, out)) {
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
		struct settled c = {t, rev};
		if (ti_walk_dirs(n, settle_dir, &c))
			log_err("out of memory: keys moved under %s show their old revisions",
				n->name);
		drop_hidden(t, n, &now);
		break;
	}
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}
