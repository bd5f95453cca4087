/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one thread that tells the kernel which cached entries and pages are stale. */
#ifndef CFGFS_FS_NOTIFY_H
#define CFGFS_FS_NOTIFY_H

#include <fuse_lowlevel.h>

#include "tree.h"

struct notifier;

/* Called when the notifier reaches an INVAL_GATE entry (and with UINT64_MAX at the end). */
typedef void (*notifier_gate_fn)(void *ctx, uint64_t seq);

/* Called for each INVAL_REPLAY entry, in order, after what comes before it was sent. */
typedef void (*notifier_replay_fn)(void *ctx, uint64_t ino);

/* Start the thread for session se (replay may be NULL). NULL on failure. */
struct notifier *notifier_new(struct fuse_session *se, notifier_gate_fn open_gate, void *ctx,
			      notifier_replay_fn replay, void *replay_ctx);

/* Queue the entries of l (l is left empty); never blocks on the kernel. */
void notifier_push(struct notifier *n, struct inval_list *l);

/* Stop the thread (dropping what is still queued), open every gate, free it. */
void notifier_free(struct notifier *n);

#endif
