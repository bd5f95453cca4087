/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one thread that tells the kernel which cached entries and pages are stale. */
#ifndef CFGFS_FS_NOTIFY_H
#define CFGFS_FS_NOTIFY_H

#include <fuse_lowlevel.h>

#include "tree.h"

struct notifier;

/* Start the thread for session se. NULL on failure. */
struct notifier *notifier_new(struct fuse_session *se);

/* Queue the entries of l (l is left empty); never blocks on the kernel. */
void notifier_push(struct notifier *n, struct inval_list *l);

/* Block until everything queued before this call has been sent. */
void notifier_drain(struct notifier *n);

/* Stop the thread (dropping what is still queued) and free it. */
void notifier_free(struct notifier *n);

#endif
