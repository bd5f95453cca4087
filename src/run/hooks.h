/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reload hooks: a command or a signal, run once changes under the mount are readable. */
#ifndef CFGFS_HOOKS_H
#define CFGFS_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "change.h"
#include "tree.h"

/*
 * A bus observer (run/bus.h). Its callbacks only queue inode numbers and
 * names; its own thread turns them into paths (tree_path takes the tree
 * lock), waits out the debounce, and runs the hook with no lock held, so
 * a hook that reads the mount, or hangs, never holds up the mirror.
 */
struct hooks;

struct hooks_cfg {
	const char *command;	/* for /bin/sh -c; or "signal:SIG:PIDFILE" */
	const char *mountpoint; /* absolute; CFGFS_MOUNTPOINT */
	const char *subtree;	/* only changes at or below this path (relative), or NULL */
	unsigned wait_min_ms;	/* quiet period after the last change */
	unsigned wait_max_ms;	/* longest delay after the first change */
	unsigned timeout_ms;	/* then the hook's process group gets SIGTERM, later SIGKILL */
	struct tree *tree;
};

/*
 * When a run is due, for changes first seen at first_ms and last seen at
 * last_ms (monotonic milliseconds): min_ms after the last one, but no later
 * than max_ms after the first one (consul-template's "wait = min:max").
 */
int64_t hooks_due(int64_t first_ms, int64_t last_ms, unsigned min_ms, unsigned max_ms);

/* What "signal:SIG:PIDFILE" names: the signal number and where PIDFILE starts; false if not
 * that form or SIG is unknown. */
bool hooks_parse_signal(const char *command, int *sig, const char **pidfile);

/* Start the thread. 0 or a negative errno. The strings in cfg are copied. */
int hooks_start(const struct hooks_cfg *cfg, struct hooks **out);

/* Bus observer callbacks (ctx: the struct hooks). Never block on I/O. */
void hooks_changed(void *ctx, const struct change_list *l);
void hooks_delivered(void *ctx, const uint64_t *inos, size_t n);

/*
 * Stop the thread, ending a hook that still runs (SIGTERM, then SIGKILL),
 * and free everything once nothing publishes any more. NULL is ignored.
 */
void hooks_free(struct hooks *h);

#endif
