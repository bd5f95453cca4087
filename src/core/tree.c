/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror: the mounted key space as a tree of nodes with inode numbers; no FUSE, no network. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "names.h"
#include "tree_int.h"

/* ------------------------------------------------------------ public: changes */

void tree_set_model(struct tree *t, const struct tree_model *m)
{
	t->counts_versions = m->counts_versions;
	t->first_version = m->first_version;
	t->names = m->names;
	t->name_max = names_max(m->names);
	t->owner_flags = m->owner_flags;
}

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
	t->counts_versions = true;
	t->first_version = 1;
	t->names = NAMES_ESCAPED;
	t->name_max = names_max(NAMES_ESCAPED);
	t->next_ino = TREE_ROOT_INO;
	t->root = ti_node_new(t, NODE_DIR, "", 0, &zero);
	if (!t->root)
		goto fail;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	t->root->mtime = ti_ns(&ts);
	/* Updates must not starve behind a steady stream of readers. */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&t->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	mono_cond_init(&t->gate_cv);
	pthread_mutex_init(&t->gate_mu, NULL);
	pthread_mutex_init(&t->fence, NULL);
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
	for (size_t i = 0; i <= t->ino_mask; i++)
		while (t->by_ino[i])
			ti_node_destroy(t, t->by_ino[i]);
	pthread_rwlock_destroy(&t->lock);
	pthread_mutex_destroy(&t->gate_mu);
	pthread_mutex_destroy(&t->fence);
	pthread_cond_destroy(&t->gate_cv);
	free(t->gated.v);
	ti_tomb_prune(t, true);
	free(t->tombs);
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
	change_list_init(&ch->entries);
}

static uint64_t gate_open_now(struct tree *t)
{
	return __atomic_load_n(&t->gate_open, __ATOMIC_ACQUIRE);
}

static uint64_t gate_reads_now(struct tree *t)
{
	return __atomic_load_n(&t->gate_reads, __ATOMIC_ACQUIRE);
}

static uint64_t gate_sizes_now(struct tree *t)
{
	return __atomic_load_n(&t->gate_sizes, __ATOMIC_ACQUIRE);
}

/* Close gate seq on file n, which showed old (at old_mtime) before this batch. */
static void close_gate(struct tree *t, struct node *n, uint64_t seq, struct change *c)
{
	/*
	 * If an earlier gate on n is still closed, readers keep seeing the value
	 * from before that one; otherwise what n showed before this batch.
	 */
	struct node_ext *x = ti_ext(n);
	if (!x) {
		log_err("out of memory: a change of %s may be seen before the rest of its revision",
			n->name);
		return;
	}
	if (x->gate <= gate_open_now(t)) {
		blob_unref(x->prev);
		x->prev = c->old;
		x->prev_mtime = c->old_mtime;
		x->prev_rev = c->old_rev;
		c->old = NULL;
	}
	x->gate = seq;
	/* The kernel holds no pages of a file it does not know: no invalidation will come. */
	x->clean = ti_knows(t, n) ? 0 : seq;
	if (ti_vec_push(&t->gated, n->ino))
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

/*
 * Whether a batch closes a gate: when it changes several files (a revision
 * is seen whole or not at all), and when it changes one the kernel may hold
 * pages or a size of. The kernel serves cached pages and reads a file's
 * size without asking us, and learns the new size only from a later
 * attribute reply; a read answered with the new bytes before the kernel has
 * dropped the old size would be cut off or padded to it.
 */
static bool needs_gate(struct tree *t, const struct changes *ch)
{
	if (!ch->report || ch->nfiles == 0)
		return false;
	if (ch->nfiles >= 2)
		return true;
	struct node *n = ti_find(t, ch->files[0].ino);
	return n && !(n->flags & NF_ORPHAN) && ti_knows(t, n);
}

/* One entry of kind for each changed file the kernel knows. */
static void push_known(struct tree *t, const struct changes *ch, enum inval_kind kind,
		       struct change_list *out)
{
	for (size_t i = 0; i < ch->nfiles; i++) {
		struct node *n = ti_find(t, ch->files[i].ino);
		if (n && ti_knows(t, n))
			ti_push(out, kind, 0, n->ino, NULL, 0);
	}
}

static void finish(struct tree *t, struct changes *ch, struct change_list *out)
{
	dedupe(ch);
	if (ch->dirs.n > 1)
		qsort(ch->dirs.v, ch->dirs.n, sizeof(*ch->dirs.v), cmp_u64);
	bool gated = needs_gate(t, ch);
	uint64_t seq = gated ? ++t->gate_next : 0;

	for (size_t i = 0; i < ch->nfiles; i++) {
		struct change *c = &ch->files[i];
		struct node *n = ti_find(t, c->ino);
		if (gated && n && !(n->flags & NF_ORPHAN))
			close_gate(t, n, seq, c);
	}
	if (!ch->report)
		goto done;
	/* Names and listings, then the files (see tree.h for the phases of a gate). */
	if (change_list_splice(out, &ch->entries))
		log_err("out of memory: kernel cache invalidations were lost");
	for (size_t i = 0; i < ch->dirs.n; i++) {
		if (i && ch->dirs.v[i] == ch->dirs.v[i - 1])
			continue;
		struct node *d = ti_find(t, ch->dirs.v[i]);
		if (d && ti_knows(t, d))
			ti_push(out, INVAL_INODE, 0, d->ino, NULL, 0);
	}
	push_known(t, ch, INVAL_INODE, out);
	if (gated) {
		ti_push(out, INVAL_READS, 0, seq, NULL, 0);
		/* Pages a read cached between the first invalidation and INVAL_READS. */
		push_known(t, ch, INVAL_INODE, out);
		/*
		 * Every file, known or not: one the kernel looks up while the gate
		 * is closed is given the previous size, and must hold the new one
		 * before the gate opens (the prober skips those it still does not
		 * know).
		 */
		for (size_t i = 0; i < ch->nfiles; i++) {
			struct node *n = ti_find(t, ch->files[i].ino);
			if (n && !(n->flags & NF_ORPHAN))
				ti_push(out, INVAL_PROBE, 0, n->ino, NULL, 0);
		}
		ti_push(out, INVAL_GATE, 0, seq, NULL, 0);
	}
	for (size_t i = 0; i < ch->nfiles; i++) {
		struct node *n = ti_find(t, ch->files[i].ino);
		if (n && !(n->flags & (NF_ORPHAN | NF_LOCAL)) && change_list_add_file(out, n->ino))
			log_err("out of memory: a change is not handed on to inotify watchers");
	}
done:
	for (size_t i = 0; i < ch->nfiles; i++)
		blob_unref(ch->files[i].old);
	change_list_clear(&ch->entries);
	free(ch->files);
	free(ch->dirs.v);
}

void ti_flush_changes(struct tree *t, struct changes *ch, struct change_list *out)
{
	if (change_list_splice(out, &ch->entries))
		log_err("out of memory: kernel cache invalidations were lost");
	if (ch->dirs.n > 1)
		qsort(ch->dirs.v, ch->dirs.n, sizeof(*ch->dirs.v), cmp_u64);
	for (size_t i = 0; i < ch->dirs.n; i++) {
		if (i && ch->dirs.v[i] == ch->dirs.v[i - 1])
			continue;
		struct node *d = ti_find(t, ch->dirs.v[i]);
		if (d && ti_knows(t, d))
			ti_push(out, INVAL_INODE, 0, d->ino, NULL, 0);
	}
	for (size_t i = 0; i < ch->nfiles; i++)
		blob_unref(ch->files[i].old);
	change_list_clear(&ch->entries);
	free(ch->files);
	free(ch->dirs.v);
}

static int apply(struct tree *t, const struct kv_batch *b, const uint64_t *epoch,
		 const struct timespec *now, struct change_list *out)
{
	struct changes ch;
	int err = 0;

	pthread_mutex_lock(&t->fence);
	/* Checked under the fence, which every local commit holds while it settles. */
	if (epoch && *epoch != t->local_epoch) {
		pthread_mutex_unlock(&t->fence);
		return 1;
	}
	changes_init(&ch, out != NULL);
	ti_write_lock(t);
	for (size_t i = 0; i < b->n && !err; i++) {
		const struct kv *kv = &b->v[i];
		if (!ti_in_prefix(t, kv))
			continue;
		if (kv->val)
			err = ti_put_key(t, kv, false, now, &ch);
		else
			ti_del_key(t, kv, now, &ch);
	}
	int64_t rev = batch_max_rev(b);
	if (!err && rev > t->revision)
		t->revision = rev;
	ti_tomb_prune(t, false);
	finish(t, &ch, out);
	pthread_rwlock_unlock(&t->lock);
	pthread_mutex_unlock(&t->fence);
	return err;
}

int tree_apply(struct tree *t, const struct kv_batch *b, const struct timespec *now,
	       struct change_list *out)
{
	return apply(t, b, NULL, now, out);
}

int tree_apply_since(struct tree *t, const struct kv_batch *b, uint64_t epoch,
		     const struct timespec *now, struct change_list *out)
{
	return apply(t, b, &epoch, now, out);
}

uint64_t tree_local_epoch(struct tree *t)
{
	return __atomic_load_n(&t->local_epoch, __ATOMIC_ACQUIRE);
}

static int resync(struct tree *t, const struct kv_batch *snap, const uint64_t *epoch,
		  const struct timespec *now, struct change_list *out);

int tree_resync(struct tree *t, const struct kv_batch *snap, const struct timespec *now,
		struct change_list *out)
{
	return resync(t, snap, NULL, now, out);
}

int tree_resync_since(struct tree *t, const struct kv_batch *snap, uint64_t epoch,
		      const struct timespec *now, struct change_list *out)
{
	return resync(t, snap, &epoch, now, out);
}

static int resync(struct tree *t, const struct kv_batch *snap, const uint64_t *epoch,
		  const struct timespec *now, struct change_list *out)
{
	struct ino_vec files = {0}, markers = {0};
	struct changes ch;
	int err = 0;

	changes_init(&ch, out != NULL);
	pthread_mutex_lock(&t->fence);
	/* Checked under the fence, which every local commit holds while it settles. */
	if (epoch && *epoch != t->local_epoch) {
		pthread_mutex_unlock(&t->fence);
		return 1;
	}
	ti_write_lock(t);
	t->epoch++;
	/* Another store, or one that lost history: this host's deletes say nothing about it. */
	if (snap->revision < t->revision)
		ti_tomb_prune(t, true);
	for (size_t i = 0; i < snap->n && !err; i++) {
		const struct kv *kv = &snap->v[i];
		if (ti_in_prefix(t, kv) && kv->val)
			err = ti_put_key(t, kv, true, now, &ch);
	}
	if (err)
		goto out;

	/* Whatever the snapshot did not confirm is gone from the store. */
	for (size_t i = 0; i <= t->ino_mask && !err; i++) {
		for (struct node *n = t->by_ino[i]; n && !err; n = n->ino_next) {
			if ((n->flags & (NF_ORPHAN | NF_NEW | NF_LOCAL)) || n->seen == t->epoch)
				continue;
			if (n->kind == NODE_FILE)
				err = ti_vec_push(&files, n->ino);
			else if (n->flags & NF_MARKER)
				err = ti_vec_push(&markers, n->ino);
		}
	}
	if (err)
		goto out;
	for (size_t i = 0; i < markers.n; i++)
		ti_find(t, markers.v[i])->flags &= ~NF_MARKER;
	/* Collapsing can free directories, so look every node up again by number. */
	for (size_t i = 0; i < files.n; i++) {
		struct node *f = ti_find(t, files.v[i]);
		if (f && !(f->flags & NF_ORPHAN))
			ti_store_gone(t, f, now, &ch);
	}
	for (size_t i = 0; i < markers.n; i++) {
		struct node *d = ti_find(t, markers.v[i]);
		if (d && !(d->flags & NF_ORPHAN))
			ti_collapse(t, d, now, &ch);
	}
	t->revision = snap->revision;
	ti_tomb_prune(t, false);
out:
	finish(t, &ch, out);
	pthread_rwlock_unlock(&t->lock);
	pthread_mutex_unlock(&t->fence);
	free(files.v);
	free(markers.v);
	return err;
}

static void raise(uint64_t *mark, uint64_t seq)
{
	if (seq > __atomic_load_n(mark, __ATOMIC_ACQUIRE))
		__atomic_store_n(mark, seq, __ATOMIC_RELEASE);
}

void tree_gate_reads(struct tree *t, uint64_t seq)
{
	raise(&t->gate_reads, seq);
}

void tree_gate_sizes(struct tree *t, uint64_t seq)
{
	raise(&t->gate_reads, seq);
	raise(&t->gate_sizes, seq);
	/*
	 * A barrier: a lookup still in its read-locked section may have read the
	 * previous size and counted its lookup; once this returns, either
	 * tree_is_known counts it or it gave the new size.
	 */
	ti_write_lock(t);
	pthread_rwlock_unlock(&t->lock);
}

bool tree_is_known(struct tree *t, uint64_t ino)
{
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	bool known = n && ti_knows(t, n);
	pthread_rwlock_unlock(&t->lock);
	return known;
}

bool tree_wait_gates(struct tree *t, unsigned ms)
{
	struct timespec until = mono_ts(mono_ms() + ms);
	bool ok = true;

	pthread_rwlock_rdlock(&t->lock);
	uint64_t want = t->gate_next;
	pthread_rwlock_unlock(&t->lock);
	pthread_mutex_lock(&t->gate_mu);
	while (ok && __atomic_load_n(&t->gate_open, __ATOMIC_ACQUIRE) < want)
		ok = pthread_cond_timedwait(&t->gate_cv, &t->gate_mu, &until) != ETIMEDOUT;
	pthread_mutex_unlock(&t->gate_mu);
	return ok;
}

void tree_open_gate(struct tree *t, uint64_t seq)
{
	tree_gate_sizes(t, seq);
	pthread_mutex_lock(&t->gate_mu);
	if (seq > t->gate_open)
		__atomic_store_n(&t->gate_open, seq, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&t->gate_cv);
	pthread_mutex_unlock(&t->gate_mu);

	/* Old values behind open gates are no longer shown: let them go. */
	ti_write_lock(t);
	size_t keep = 0;
	for (size_t i = 0; i < t->gated.n; i++) {
		struct node *n = ti_find(t, t->gated.v[i]);
		if (!n)
			continue;
		if (n_gate(n) > seq) {
			t->gated.v[keep++] = n->ino;
			continue;
		}
		if (n->ext) {
			blob_unref(n->ext->prev);
			n->ext->prev = NULL;
		}
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
	*seq = n_gate(n);
	return *seq > __atomic_load_n(&t->gate_open, __ATOMIC_ACQUIRE);
}

static void gate_wait(struct tree *t, uint64_t seq)
{
	struct timespec until = mono_ts(mono_ms() + GATE_WAIT_MS);

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
	ti_write_lock(t);
	if (rev > t->revision)
		t->revision = rev;
	ti_tomb_prune(t, false);
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

void ti_fill_attr(struct tree *t, const struct node *n, struct node_attr *a)
{
	bool gone = n->flags & (NF_ORPHAN | NF_HIDDEN);

	a->ino = n->ino;
	a->kind = n->kind;
	a->mtime = ti_ts(n->mtime);
	a->ctime = n->ext && n->ext->ctime > n->mtime ? ti_ts(n->ext->ctime) : a->mtime;
	a->mode = n->mode;
	a->transient = false;
	a->owned = t->owner_flags && n->kind == NODE_FILE && n->meta.flags != 0;
	if (n->kind == NODE_DIR) {
		a->size = n->dir->live;
		a->nlink = gone ? 0 : 2 + n->dir->nsubdirs;
		return;
	}
	a->nlink = gone ? 0 : 1;
	if (n->kind == NODE_LINK) {
		a->size = strlen(n->ext->link);
		return;
	}
	if (n->loc) {
		/* What was written here, committed or not, is what this host sees. */
		a->size = n->loc->len;
		return;
	}
	a->size = n->val ? n->val->len : 0;
	if (n_gate(n) > gate_sizes_now(t)) {
		/* Behind a closed gate: show the previous value, and let nobody cache it. */
		a->transient = true;
		if (n_prev(n)) {
			a->size = n->ext->prev->len;
			a->mtime = ti_ts(n->ext->prev_mtime);
		}
	}
}

int tree_lookup(struct tree *t, uint64_t parent, const char *name, struct node_attr *out)
{
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *p = ti_find(t, parent);
	if (!p) {
		err = -ENOENT;
	} else if (p->kind != NODE_DIR) {
		err = -ENOTDIR;
	} else {
		size_t len = strlen(name);
		struct node *c = ti_child(t, p, name, len);
		if (!c || (c->flags & NF_HIDDEN)) {
			/* No such name can exist here: say why, as a local filesystem does. */
			err = len > t->name_max ? -ENAMETOOLONG : -ENOENT;
		} else {
			__atomic_add_fetch(&c->nlookup, 1, __ATOMIC_RELAXED);
			ti_fill_attr(t, c, out);
		}
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}

int tree_getattr(struct tree *t, uint64_t ino, struct node_attr *out)
{
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n)
		err = -ENOENT;
	else
		ti_fill_attr(t, n, out);
	pthread_rwlock_unlock(&t->lock);
	return err;
}

void tree_forget(struct tree *t, uint64_t ino, uint64_t nlookup)
{
	ti_write_lock(t);
	struct node *n = ti_find(t, ino);
	if (n && n != t->root) {
		n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
		if (n->nlookup == 0 && (n->flags & NF_ORPHAN))
			ti_node_destroy(t, n);
	}
	pthread_rwlock_unlock(&t->lock);
}

int tree_read(struct tree *t, uint64_t ino, struct blob **out, struct read_check *chk)
{
	bool waited = false;
	uint64_t seq;
	int err = 0;

	chk->need = false;
	chk->prev = NULL;
again:
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n) {
		err = -ENOENT;
	} else if (n->kind != NODE_FILE) {
		err = -EISDIR;
	} else if (n->loc) {
		/* Written here: the session is what this host reads. */
		*out = blob_from(n->loc->buf, n->loc->len);
		if (!*out)
			err = -ENOMEM;
	} else if (!waited && gate_closed(t, n, &seq) &&
		   (seq > gate_reads_now(t) || (n_prev(n) && n->ext->clean < seq))) {
		if (n_prev(n)) {
			/*
			 * Never wait here: a page invalidation may be waiting for
			 * this read. The count tells the notifier that one more is
			 * needed if this page came after its invalidation looked.
			 */
			__atomic_add_fetch(&n->ext->prev_served, 1, __ATOMIC_RELAXED);
			*out = blob_ref(n->ext->prev);
		} else {
			/* A new file: no invalidation of it can be queued before its gate. */
			pthread_rwlock_unlock(&t->lock);
			gate_wait(t, seq);
			waited = true;
			goto again;
		}
	} else {
		*out = blob_ref(n->val);
		if (gate_closed(t, n, &seq)) {
			/* The reads or sizes phase: the kernel must hold this size first. */
			chk->need = true;
			chk->size = n->val->len;
			chk->mtime = ti_ts(n->mtime);
			if (n_prev(n)) {
				chk->prev = blob_ref(n_prev(n));
				chk->prev_mtime = ti_ts(n->ext->prev_mtime);
				chk->prev_rev = n->ext->prev_rev;
			}
		}
		/*
		 * What the kernel was given is what a later edit starts from: the
		 * base its commit is checked against. Readers race here only to
		 * store the same revision.
		 */
		__atomic_store_n(&n->seen_rev, n->meta.mod_rev, __ATOMIC_RELAXED);
		__atomic_store_n(&n->served, 1, __ATOMIC_RELAXED);
	}
	pthread_rwlock_unlock(&t->lock);
	return err;
}

void tree_served_prev(struct tree *t, uint64_t ino, const struct read_check *chk)
{
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (n && n->kind == NODE_FILE)
		__atomic_store_n(&n->seen_rev, chk->prev_rev, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&t->lock);
}

uint32_t tree_prev_served(struct tree *t, uint64_t ino)
{
	uint32_t served = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (n && n->ext)
		served = __atomic_load_n(&n->ext->prev_served, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&t->lock);
	return served;
}

bool tree_pages_dropped(struct tree *t, uint64_t ino, uint64_t seq, uint32_t served, bool force)
{
	bool done = true;

	/* The write lock: no read decides between the count's check and the mark. */
	ti_write_lock(t);
	struct node *n = ti_find(t, ino);
	if (n && n->ext && n->ext->gate == seq) {
		if (!force && n->ext->prev_served != served)
			done = false;
		else
			n->ext->clean = seq;
	}
	pthread_rwlock_unlock(&t->lock);
	return done;
}

/* Offsets: 1 is ".", 2 is "..", a child is its inode number + 2 (always > 2). */
int tree_readdir(struct tree *t, uint64_t ino, uint64_t off, bool plus, tree_dirent_fn fn,
		 void *ctx)
{
	struct node_attr a;
	int err = 0;

	pthread_rwlock_rdlock(&t->lock);
	struct node *d = ti_find(t, ino);
	if (!d) {
		err = -ENOENT;
		goto out;
	}
	if (d->kind != NODE_DIR) {
		err = -ENOTDIR;
		goto out;
	}
	if (off < 1) {
		ti_fill_attr(t, d, &a);
		if (!fn(ctx, ".", &a, 1))
			goto out;
	}
	if (off < 2) {
		ti_fill_attr(t, d->parent ? d->parent : d, &a);
		if (!fn(ctx, "..", &a, 2))
			goto out;
	}
	struct dir *dir = d->dir;
	size_t i = off <= 2 ? 0 : ti_dir_seek(dir, off - 2 + 1);
	for (; i < dir->n; i++) {
		struct node *c = dir->slot[i].node;
		if (!c || (c->flags & NF_HIDDEN))
			continue;
		ti_fill_attr(t, c, &a);
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
int tree_info(struct tree *t, uint64_t ino, struct node_info *info)
{
	int err;

	memset(info, 0, sizeof(*info));
	pthread_rwlock_rdlock(&t->lock);
	struct node *n = ti_find(t, ino);
	if (!n) {
		err = -ENOENT;
		goto out;
	}
	info->kind = n->kind;
	if (n->flags & NF_ORPHAN) {
		info->state = TREE_LOCAL;
		err = 0;
		goto out;
	}
	info->has_meta = (n->kind == NODE_FILE && !(n->flags & (NF_NEW | NF_LOCAL))) ||
			 (n->flags & NF_MARKER);
	if (n->flags & NF_LOCAL)
		info->state = TREE_LOCAL;
	else if ((n->flags & (NF_NEW | NF_HIDDEN)) || (n->loc && n->loc->gen != n->loc->committed))
		info->state = TREE_PENDING; /* new bytes, a new file, or a delete on its way */
	else
		info->state = TREE_SYNCED;
	info->meta = n->meta;
	err = ti_build_key(t, n, &info->key, &info->klen);
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
	st->name_max = t->name_max;
	pthread_rwlock_unlock(&t->lock);
}
