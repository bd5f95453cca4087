/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: rename, as editors do it and as one store transaction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "editors.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

struct plan {
	struct tree *t;
	struct tree_txn *x;
	const char *oldkey, *newkey;
	size_t oklen, nklen;
};

/* newkey, then key[oklen..klen): key moved from under oldkey to under newkey; malloc'd. */
static char *swap_prefix(const struct plan *p, const char *key, size_t klen, size_t *outlen)
{
	char *k = malloc(p->nklen + klen - p->oklen + 1);

	if (!k)
		return NULL;
	memcpy(k, p->newkey, p->nklen);
	memcpy(k + p->nklen, key + p->oklen, klen - p->oklen);
	*outlen = p->nklen + klen - p->oklen;
	k[*outlen] = '\0';
	return k;
}

/* The op of x on key, if any. */
static struct kv_op *same_key(struct tree_txn *x, const char *key, size_t klen)
{
	for (size_t i = 0; i < x->nops; i++)
		if (x->ops[i].klen == klen && memcmp(x->ops[i].key, key, klen) == 0)
			return &x->ops[i];
	return NULL;
}

/* The ops for one directory of the subtree: its "dir/" key, and its files. */
static int plan_dir(struct node *dir, void *ctx)
{
	struct plan *p = ctx;
	char *k, *dk;
	size_t klen, dklen;
	int err = 0;

	if (dir->flags & NF_MARKER) {
		err = ti_build_key(p->t, dir, &dk, &dklen);
		if (err)
			return err;
		/* A directory's key is under the old prefix: swap the prefix. */
		k = swap_prefix(p, dk, dklen, &klen);
		free(dk);
		struct blob *empty = k ? blob_new(0) : NULL;
		struct kv_op *same = k ? same_key(p->x, k, klen) : NULL;
		if (empty && same && same->kind == KV_DELETE) {
			/*
			 * Onto an empty directory: its "dir/" key is deleted and put again. A
			 * transaction may name a key once (etcd: "duplicate key given in txn
			 * request"), so the delete becomes the put, with the delete's guard.
			 */
			size_t i = (size_t)(same - p->x->ops);
			same->kind = KV_PUT;
			same->val = empty->data;
			same->vlen = 0;
			blob_unref(p->x->vals[i]);
			p->x->vals[i] = blob_ref(empty);
			free(k);
		} else {
			err = empty ? ti_add_op(p->x, KV_PUT, k, klen, empty, KV_ANY) : -ENOMEM;
			if (!empty)
				free(k);
		}
		blob_unref(empty);
	}
	for (uint32_t i = 0; i < dir->dir->n && !err; i++) {
		struct node *c = dir->dir->slot[i].node;
		if (!c || c->kind == NODE_DIR || (c->flags & (NF_NEW | NF_LOCAL | NF_HIDDEN)))
			continue;
		char *ck;
		size_t cklen;
		err = ti_build_key(p->t, c, &ck, &cklen);
		if (err)
			break;
		bool under = cklen >= p->oklen && memcmp(ck, p->oldkey, p->oklen) == 0;
		/* "%value" of d itself: its key is d's without the '/', outside the prefix. */
		if (under) {
			k = swap_prefix(p, ck, cklen, &klen);
		} else {
			klen = p->nklen - 1;
			k = malloc(klen + 1);
			if (k)
				memcpy(k, p->newkey, klen);
		}
		if (!k) {
			free(ck);
			return -ENOMEM;
		}
		/*
		 * A rename moves what the mirror holds (see tree_rename_begin);
		 * edits not committed yet move guarded by what they started from.
		 */
		int64_t base = c->loc ? c->loc->base : c->meta.mod_rev;
		err = ti_add_guarded(p->x, under ? KV_CHECK : KV_DELETE, ck, cklen, NULL, c, base);
		struct blob *val = err ? NULL : ti_session_blob(c);
		if (!err)
			err = val ? ti_add_op(p->x, KV_PUT, k, klen, val, KV_ANY) : -ENOMEM;
		else
			free(k);
		if (!err)
			p->x->ops[p->x->nops - 1].flags = c->meta.flags;
		blob_unref(val);
	}
	return err;
}

/* Every store key under directory d, as puts under the new prefix, plus deletes of the old. */
static int plan_dir_rename(struct tree *t, struct node *d, const char *newkey, size_t nklen,
			   struct tree_txn *x)
{
	char *oldkey;
	size_t oklen;
	int err = ti_build_key(t, d, &oldkey, &oklen);

	if (err)
		return err;
	struct plan p = {t, x, oldkey, newkey, oklen, nklen};
	err = ti_walk_dirs(d, plan_dir, &p);
	/* Everything under the old prefix goes in one operation; the checks above guard it. */
	if (!err)
		err = ti_add_op(x, KV_DELETE_PREFIX, oldkey, oklen, NULL, KV_ANY);
	else
		free(oldkey);
	return err;
}

int tree_rename_begin(struct tree *t, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, bool noreplace, struct tree_txn *x, uint64_t *pending,
		      bool *arm, struct change_list *out)
{
	struct timespec now;
	struct node *dir, *ndir;
	size_t len = strlen(name), nlen = strlen(newname);
	char *key = NULL, *nkey = NULL;
	size_t klen, nklen;
	int err;

	*pending = 0;
	*arm = false;
	ti_real_now(&now);
	ti_begin(t, x);
	err = ti_find_dir(t, parent, &dir);
	if (!err)
		err = ti_find_dir(t, newparent, &ndir);
	if (err)
		goto out;
	struct node *s = ti_visible(t, dir, name);
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
	if (nlen > t->name_max) {
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
	    editors_backup_of(name, len, newname, nlen)) {
		if (ti_move_node(t, s, ndir, newname, &now, out) == 0) {
			ti_loc_free(s->loc);
			s->loc = NULL;
			ti_take_binding(t, s, d, &now);
			ti_push(out, INVAL_INODE, 0, s->ino, NULL, 0);
		}
		goto out;
	}
	/* Files only here stay here, unless they land on a key of the store. */
	if (s_local && !(s->kind == NODE_FILE && d_bound)) {
		if (s->kind == NODE_FILE && !(s->flags & NF_LOCAL) &&
		    !ti_creatable(t, ndir, newname)) {
			err = -EINVAL;
			goto out;
		}
		if (d) {
			ti_detach(t, d, &now);
			ti_release(t, d);
		}
		err = ti_move_node(t, s, ndir, newname, &now, out);
		if (!err && s->kind == NODE_FILE) {
			/* A scratch file renamed to a real name becomes a new key, and back. */
			if (ti_scratch_name(t, ndir, newname))
				s->flags |= NF_LOCAL;
			else if (ti_creatable(t, ndir, newname))
				s->flags &= ~NF_LOCAL;
			*arm = !(s->flags & NF_LOCAL);
		}
		goto out;
	}
	/* The first step of vim's and emacs's backup dance: keep the key, hide its name. */
	if (s->kind == NODE_FILE && !s_local && !d && ndir == dir &&
	    editors_backup_of(newname, nlen, name, len)) {
		struct node *h = ti_node_new(t, NODE_FILE, name, len, &now);
		if (!h || ti_loc_start(s)) {
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
		err = ti_move_node(t, s, ndir, newname, &now, out);
		if (!err && ti_attach(t, dir, h, &now) == 0)
			*pending = h->ino;
		else if (!err) {
			ti_node_destroy(t, h);
			err = -ENOMEM;
		}
		goto out;
	}
	if (!ti_creatable(t, ndir, newname) && !(s->kind == NODE_FILE && d_bound)) {
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
				err = ti_add_guarded(x, KV_DELETE, dk, dklen, NULL, d,
						     d->meta.mod_rev);
			if (err)
				goto out;
		}
		err = plan_dir_rename(t, s, nkey, nklen, x);
		goto out;
	}
	struct blob *val = ti_session_blob(s);
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
	err = ti_add_guarded(x, KV_PUT, nkey, nklen, val, d, dguard);
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
			err = ti_add_guarded(x, KV_DELETE, key, klen, NULL, s,
					     s->loc ? s->loc->base : s->meta.mod_rev);
		key = NULL;
	}
out:
	free(key);
	free(nkey);
	return ti_begun(t, x, err);
}
