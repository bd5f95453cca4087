/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one thread that tells the kernel which cached entries and pages are stale. */
#ifndef CFGFS_FS_NOTIFY_H
#define CFGFS_FS_NOTIFY_H

#include <fuse_lowlevel.h>

#include "bus.h"
#include "fs_gate.h"
#include "tree.h"

struct notifier;

/*
 * Start the thread for session se: the sink of bus (see bus.h). A change
 * with a gate is handed to gates at its INVAL_READS; the files of one
 * without are reported delivered once its invalidations are sent. NULL on
 * failure.
 */
struct notifier *notifier_new(struct fuse_session *se, struct tree *t, struct bus *bus,
			      struct gates *gates);

/* The bus sink: queue l's entries (l is left empty); never blocks on the kernel. */
void notifier_take(void *ctx, struct change_list *l);

/* Queue one more invalidation of file ino (attributes and pages); never blocks on the kernel. */
void notifier_reinvalidate(void *ctx, uint64_t ino);

/* Queue an invalidation of the attributes (not the pages) of each of inos. */
void notifier_attrs(struct notifier *n, const uint64_t *inos, size_t count);

/* Stop the thread (dropping what is still queued), open every gate, free it. */
void notifier_free(struct notifier *n);

#endif
