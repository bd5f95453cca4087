/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one thread that tells the kernel which cached entries and pages are stale. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fs_notify.h"
#include "log.h"

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
	struct notifier_hooks hooks;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work;	 /* queue non-empty, or stop */
	struct inval_list queue; /* protected by mu */
	bool stop;		 /* protected by mu */
	bool warned_nosys;	 /* notifier thread only */
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
		/* Handled in run(): they go to the hook with what follows them. */
		return;
	case INVAL_GATE:
		n->hooks.open_gate(n->hooks.ctx, v->ino);
		return;
	case INVAL_REPLAY:
		if (n->hooks.replay)
			n->hooks.replay(n->hooks.ctx, v->ino);
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

static void *run(void *arg)
{
	struct notifier *n = arg;
	struct inval_list batch;

	inval_list_init(&batch);
	pthread_mutex_lock(&n->mu);
	for (;;) {
		while (!n->stop && n->queue.n == 0)
			pthread_cond_wait(&n->work, &n->mu);
		if (n->stop)
			break;
		struct inval_list tmp = n->queue;
		n->queue = batch;
		batch = tmp;
		pthread_mutex_unlock(&n->mu);
		for (size_t i = 0; i < batch.n; i++) {
			struct inval *v = &batch.v[i];
			if (v->kind != INVAL_READS) {
				send_one(n, v);
				free(v->name);
				continue;
			}
			/*
			 * The gate's probes, the gate and the replays after it go to the
			 * hook first: the invalidations between may wait for reads that
			 * wait for the hook's work.
			 */
			size_t inodes = i + 1;
			while (inodes < batch.n && batch.v[inodes].kind == INVAL_INODE)
				inodes++;
			size_t end = inodes;
			while (end < batch.n && batch.v[end].kind == INVAL_PROBE)
				end++;
			if (end < batch.n && batch.v[end].kind == INVAL_GATE)
				end++;
			while (end < batch.n && batch.v[end].kind == INVAL_REPLAY)
				end++;
			struct inval_list gate = {
				.v = batch.v + inodes, .n = end - inodes, .cap = end - inodes};
			struct inval_list mine;
			inval_list_init(&mine);
			if (inval_list_splice(&mine, &gate)) {
				log_err("out of memory: a change may be read before the kernel "
					"drops the "
					"old size");
				for (size_t k = inodes; k < end; k++)
					send_one(n, &batch.v[k]);
			} else {
				n->hooks.reads(n->hooks.ctx, v->ino, &mine);
			}
			inval_list_clear(&mine);
			for (size_t k = i + 1; k < inodes; k++)
				send_one(n, &batch.v[k]);
			i = end - 1;
		}
		batch.n = 0;
		pthread_mutex_lock(&n->mu);
	}
	pthread_mutex_unlock(&n->mu);
	inval_list_clear(&batch);
	return NULL;
}

struct notifier *notifier_new(struct fuse_session *se, const struct notifier_hooks *hooks)
{
	struct notifier *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->se = se;
	n->hooks = *hooks;
	inval_list_init(&n->queue);
	pthread_mutex_init(&n->mu, NULL);
	pthread_cond_init(&n->work, NULL);
	if (pthread_create(&n->thread, NULL, run, n)) {
		pthread_mutex_destroy(&n->mu);
		pthread_cond_destroy(&n->work);
		free(n);
		return NULL;
	}
	return n;
}

void notifier_push(struct notifier *n, struct inval_list *l)
{
	if (!l->n)
		return;
	pthread_mutex_lock(&n->mu);
	if (inval_list_splice(&n->queue, l))
		log_err("out of memory: %zu kernel cache invalidations were lost", l->n);
	pthread_cond_signal(&n->work);
	pthread_mutex_unlock(&n->mu);
	inval_list_clear(l);
}

void notifier_free(struct notifier *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->mu);
	n->stop = true;
	pthread_cond_broadcast(&n->work);
	pthread_mutex_unlock(&n->mu);
	pthread_join(n->thread, NULL);
	/* Nothing will open the remaining gates now: open them all. */
	n->hooks.open_gate(n->hooks.ctx, UINT64_MAX);
	inval_list_clear(&n->queue);
	pthread_mutex_destroy(&n->mu);
	pthread_cond_destroy(&n->work);
	free(n);
}
