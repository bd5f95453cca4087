/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one thread that tells the kernel which cached entries and pages are stale. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs_notify.h"
#include "log.h"
#include "worker.h"

/*
 * Why a thread of its own: a notify call can wait for the kernel to finish a
 * request on the same directory (inval_entry takes the parent's lock) or for
 * pages being read, and it can make the kernel send FORGET. Called from a
 * request handler, or with a lock a handler needs, that deadlocks the mount.
 * This thread holds no lock while it notifies, and works through one FIFO
 * queue, so each batch's gate opens after exactly the invalidations tree.h
 * orders before it.
 */
struct notifier {
	struct fuse_session *se;
	struct tree *tree;
	struct bus *bus;
	struct gates *gates;
	struct worker w;	   /* its cv: queue non-empty, or stop */
	struct change_list *queue; /* protected by w.mu: one list per change, in order */
	size_t n, cap;
	bool warned_nosys; /* notifier thread only */
};

/*
 * ENOENT means the kernel did not have the entry or inode cached, which is
 * the common, harmless case; ENOTCONN/ENODEV/EBADF happen around unmount.
 */
static bool benign(int err)
{
	return err == 0 || err == -ENOENT || err == -ENOTCONN || err == -ENODEV || err == -EBADF;
}

static void send_one(struct notifier *n, const struct inval *v)
{
	int err = 0;

	switch (v->kind) {
	case INVAL_INODE:
		err = fuse_lowlevel_notify_inval_inode(n->se, v->ino, 0, 0);
		break;
	case INVAL_ATTR:
		/* A negative offset: the attributes only, the pages stay. */
		err = fuse_lowlevel_notify_inval_inode(n->se, v->ino, -1, 0);
		break;
	case INVAL_ENTRY:
		err = fuse_lowlevel_notify_inval_entry(n->se, v->parent, v->name, v->namelen);
		break;
	case INVAL_DELETE:
		/*
		 * delete also tells inotify watchers of the file (IN_DELETE_SELF),
		 * but only works while the name still points at that inode and a
		 * directory has no cached children; otherwise drop the entry.
		 */
		err = fuse_lowlevel_notify_delete(n->se, v->parent, v->ino, v->name, v->namelen);
		if (err && err != -ENOSYS && err != -ENOTCONN)
			err = fuse_lowlevel_notify_inval_entry(n->se, v->parent, v->name,
							       v->namelen);
		break;
	case INVAL_READS:
	case INVAL_PROBE:
	case INVAL_GATE:
		/* Handled in deliver(): they go to the gates with what follows them. */
		return;
	}
	if (benign(err))
		return;
	if (err == -ENOSYS) {
		if (!n->warned_nosys)
			log_err("the kernel does not support cache invalidation: files may stay "
				"stale");
		n->warned_nosys = true;
		return;
	}
	log_debug("invalidation (kind %d, ino %llu) failed: %s", v->kind,
		  (unsigned long long)(v->ino ? v->ino : v->parent), strerror(-err));
}

/*
 * Reads after this point serve the previous value so as not to hold a
 * page this invalidation may wait for; one whose page the kernel added
 * after it looked would leave a page of the previous value behind, to meet
 * the new size later (cut short or padded). tree_pages_dropped tells, and
 * the invalidation is sent again. Each round needs a read to fall inside
 * the syscall; the bound is for a host where that never stops happening.
 */
#define DROP_ROUNDS_MAX 64

static void drop_pages(struct notifier *n, const struct inval *v, uint64_t seq)
{
	for (unsigned round = 0;; round++) {
		uint32_t served = tree_prev_served(n->tree, v->ino);
		send_one(n, v);
		if (tree_pages_dropped(n->tree, v->ino, seq, served, false))
			return;
		if (round == DROP_ROUNDS_MAX) {
			log_warn("inode %llu: reads kept caching its previous value while its "
				 "pages were dropped: a reader may see it cut or padded",
				 (unsigned long long)v->ino);
			tree_pages_dropped(n->tree, v->ino, seq, served, true);
			return;
		}
	}
}

/*
 * Send one change's invalidations in order. A gate goes to the gates thread
 * at its INVAL_READS, with its probes, the gate itself and the change's
 * files (reported delivered once it opens): the invalidations after it may
 * wait for reads that wait for that thread's work.
 */
static void deliver(struct notifier *n, struct change_list *l)
{
	bool gated = false;

	for (size_t i = 0; i < l->n; i++) {
		struct inval *v = &l->v[i];
		if (v->kind != INVAL_READS) {
			send_one(n, v);
			continue;
		}
		size_t inodes = i + 1;
		while (inodes < l->n && l->v[inodes].kind == INVAL_INODE)
			inodes++;
		size_t end = inodes;
		while (end < l->n && l->v[end].kind == INVAL_PROBE)
			end++;
		if (end < l->n && l->v[end].kind == INVAL_GATE)
			end++;
		struct change_list unit;
		change_list_init(&unit);
		int err = change_list_reserve(&unit, end - inodes);
		for (size_t k = inodes; !err && k < end; k++)
			unit.v[unit.n++] = l->v[k]; /* no names: nothing is owned twice */
		for (size_t k = 0; !err && !gated && k < l->nfiles; k++)
			err = change_list_add_file(&unit, l->files[k]);
		if (err) {
			log_err("out of memory: a change may be read before the kernel holds its "
				"size");
			tree_open_gate(n->tree, v->ino);
		} else {
			gates_reads(n->gates, v->ino, &unit);
			gated = true;
		}
		change_list_clear(&unit);
		for (size_t k = i + 1; k < inodes; k++)
			drop_pages(n, &l->v[k], v->ino);
		gates_invalidated(n->gates, v->ino);
		i = end - 1;
	}
	if (!gated)
		bus_delivered(n->bus, l->files, l->nfiles);
}

static void *run(void *arg)
{
	struct notifier *n = arg;
	struct change_list *batch = NULL;
	size_t nbatch = 0, capbatch = 0;

	pthread_mutex_lock(&n->w.mu);
	for (;;) {
		while (!n->w.stop && n->n == 0)
			worker_wait(&n->w, 0);
		if (n->w.stop)
			break;
		/* Take the whole queue; changes queued meanwhile go to the other array. */
		struct change_list *tmp = n->queue;
		size_t tcap = n->cap;
		nbatch = n->n;
		n->queue = batch;
		n->cap = capbatch;
		n->n = 0;
		batch = tmp;
		capbatch = tcap;
		pthread_mutex_unlock(&n->w.mu);
		for (size_t i = 0; i < nbatch; i++) {
			deliver(n, &batch[i]);
			change_list_clear(&batch[i]);
		}
		pthread_mutex_lock(&n->w.mu);
	}
	pthread_mutex_unlock(&n->w.mu);
	free(batch);
	return NULL;
}

struct notifier *notifier_new(struct fuse_session *se, struct tree *t, struct bus *bus,
			      struct gates *gates)
{
	struct notifier *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->se = se;
	n->tree = t;
	n->bus = bus;
	n->gates = gates;
	if (worker_start(&n->w, "cfgfs-notify", run, n)) {
		free(n);
		return NULL;
	}
	return n;
}

void notifier_take(void *ctx, struct change_list *l)
{
	struct notifier *n = ctx;

	pthread_mutex_lock(&n->w.mu);
	if (n->n == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 16;
		struct change_list *q = realloc(n->queue, cap * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&n->w.mu);
			log_err("out of memory: %zu kernel cache invalidations were lost", l->n);
			change_list_clear(l);
			return;
		}
		n->queue = q;
		n->cap = cap;
	}
	/* The list's arrays move to the queue: l is left empty. */
	n->queue[n->n++] = *l;
	change_list_init(l);
	pthread_cond_signal(&n->w.cv);
	pthread_mutex_unlock(&n->w.mu);
}

void notifier_reinvalidate(void *ctx, uint64_t ino)
{
	struct change_list l;

	change_list_init(&l);
	if (change_list_reserve(&l, 1)) {
		log_err("out of memory: inode %llu may keep a stale size", (unsigned long long)ino);
		return;
	}
	l.v[l.n++] = (struct inval){.kind = INVAL_INODE, .ino = ino};
	notifier_take(ctx, &l);
}

void notifier_attrs(struct notifier *n, const uint64_t *inos, size_t count)
{
	struct change_list l;

	change_list_init(&l);
	if (change_list_reserve(&l, count)) {
		log_err("out of memory: the kernel keeps the owners and modes it has");
		return;
	}
	for (size_t i = 0; i < count; i++)
		l.v[l.n++] = (struct inval){.kind = INVAL_ATTR, .ino = inos[i]};
	notifier_take(n, &l);
}

void notifier_free(struct notifier *n)
{
	if (!n)
		return;
	worker_stop(&n->w, 0);
	worker_release(&n->w);
	/* Nothing will open the remaining gates now: open them all. */
	tree_open_gate(n->tree, UINT64_MAX);
	for (size_t i = 0; i < n->n; i++)
		change_list_clear(&n->queue[i]);
	free(n->queue);
	free(n);
}
