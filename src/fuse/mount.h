/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Mounting and serving: where the threads of a mount are started, wired and stopped. */
#ifndef CFGFS_MOUNT_H
#define CFGFS_MOUNT_H

#include <stdbool.h>
#include <stdint.h>

#include "options.h"
#include "store.h"
#include "tree.h"

/*
 * Mount o->mountpoint, detach from the terminal unless in the foreground,
 * start the watcher (from start_rev; with from_cache, after reading the
 * whole prefix again), the invalidation thread and, with -o cache_file, the
 * thread that saves the tree, and serve requests until unmounted. Returns
 * the process exit status.
 */
int mount_serve(struct cfgfs_opts *o, struct tree *t, struct store *s, int64_t start_rev,
		bool from_cache);

#endif
