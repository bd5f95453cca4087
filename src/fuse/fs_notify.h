/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one thread that tells the kernel which cached entries and pages are stale. */
#ifndef CFGFS_FS_NOTIFY_H
#define CFGFS_FS_NOTIFY_H

#include <fuse_lowlevel.h>

#include "tree.h"

struct notifier;

/* What the notifier does for the entries that are not kernel invalidations. */
struct notifier_hooks {
	/*
	 * INVAL_READS: the gate enters its reads phase; gate holds the entries
	 * that follow it in its batch up to its INVAL_GATE and the replays after
	 * that (the hook takes them, leaving gate empty). The notifier goes on
	 * at once: the hook must not wait for the kernel.
	 */
	void (*reads)(void *ctx, uint64_t seq, struct inval_list *gate);
	/* INVAL_GATE reached by the notifier itself: at the end (UINT64_MAX). */
	void (*open_gate)(void *ctx, uint64_t seq);
	/* INVAL_REPLAY outside a gate; NULL: none. */
	void (*replay)(void *ctx, uint64_t ino);
	void *ctx;
};

/* Start the thread for session se. NULL on failure. */
struct notifier *notifier_new(struct fuse_session *se, const struct notifier_hooks *hooks);

/* Queue the entries of l (l is left empty); never blocks on the kernel. */
void notifier_push(struct notifier *n, struct inval_list *l);

/* Stop the thread (dropping what is still queued), open every gate, free it. */
void notifier_free(struct notifier *n);

#endif
