/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The background thread that keeps the mirror current from the store's change stream. */
#ifndef CFGFS_WATCHER_H
#define CFGFS_WATCHER_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "store.h"
#include "tree.h"

struct watcher;

/*
 * Start watching s from start_rev + 1 (the revision of the snapshot the
 * tree was filled from). With reread, the tree came from somewhere else
 * (the cache file): read the whole prefix first and apply the differences.
 * Every change it applies is published on bus. 0 or a negative errno.
 */
int watcher_start(struct store *s, struct tree *t, int64_t start_rev, bool reread, struct bus *bus,
		  struct watcher **out);

/* Stop the thread, wait for it, free everything. */
void watcher_stop(struct watcher *w);

/* Whether the change stream is established right now. */
bool watcher_connected(const struct watcher *w);

/* For cfgfs status: the newest revision the store reported (0: none yet). */
int64_t watcher_store_revision(const struct watcher *w);

/* For cfgfs status: the wall-clock second the stream was lost, 0 while it is up. */
int64_t watcher_disconnected_since(const struct watcher *w);

/* For cfgfs status: why the stream last failed, into buf; its wall-clock second, 0: never. */
int64_t watcher_last_error(struct watcher *w, char *buf, size_t len);

#endif
