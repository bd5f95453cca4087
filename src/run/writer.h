/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Sends local changes to the store: commits, deletes, renames; the only writer of the store. */
#ifndef CFGFS_WRITER_H
#define CFGFS_WRITER_H

#include <stdint.h>

#include "bus.h"
#include "store.h"
#include "tree.h"

/*
 * When changes go to the store. The kernel sends no request when a file is
 * closed (that is what keeps reads free of requests), so a session ends by
 * itself: fsync commits an existing key at once and reports the result;
 * rename onto a key commits at once; new bytes for an existing key are
 * committed when inotify reports that the last writer closed the file; a
 * new file or a bare truncate once it has also been quiet for
 * commit_delay_ms. Nothing is acknowledged to a caller before the store
 * committed it.
 */
struct writer_cfg {
	struct tree *tree;
	struct store *store;
	const char *mountpoint;
	unsigned commit_delay_ms; /* quiet period before an unsynced change is committed */
	unsigned delete_delay_ms; /* grace before an unlink deletes the key */
	unsigned
		detach_delay_ms; /* grace for an editor to recreate a file it renamed to a backup */
	struct bus *bus;	 /* where the changes it settles are published */
};

struct writer;

int writer_start(const struct writer_cfg *cfg, struct writer **out);

/* Commit what is still pending (no more waiting), stop the thread, free. */
void writer_stop(struct writer *w);

/*
 * File ino changed: commit it when its session ends. update: the change was
 * a write of new bytes for a key the store has (see tree_write).
 */
void writer_changed(struct writer *w, uint64_t ino, bool update);

/* Key ino was unlinked here: delete it after the grace period unless it is recreated. */
void writer_unlinked(struct writer *w, uint64_t ino);

/* Key ino was renamed to an editor backup: delete it if it is not recreated in time. */
void writer_detached(struct writer *w, uint64_t ino);

/*
 * Send the pending deletes of inos now, one transaction each (before an
 * rmdir, a mkdir or symlink over the name, for fsync of their directory).
 * Returns the first error.
 */
int writer_delete_now(struct writer *w, const uint64_t *inos, size_t n);

/*
 * Key ino was just unlinked: check with the store that it is still what the
 * mirror showed, so that an unreachable store or a key that moved on fails
 * the unlink (the name comes back). 0 or the errno for the unlink.
 */
int writer_check(struct writer *w, uint64_t ino);

/* fsync: commit file ino now if it is a key of the store; 0 or an errno. */
int writer_fsync(struct writer *w, uint64_t ino);

/*
 * For changes prepared by a FUSE handler (mkdir, rmdir, rename): hold the
 * lock from before tree_*_begin until the transaction is settled, so no store
 * batch lands in between. writer_send sends x and settles it; attr receives
 * a new entry (mkdir). Returns the answer for the request.
 */
void writer_lock(struct writer *w);
void writer_unlock(struct writer *w);
int writer_send(struct writer *w, struct tree_txn *x, struct node_attr *attr);

/* For cfgfs status: how many NAME.rejected paths writer_refused remembers, newest ones. */
#define WRITER_KEPT_MAX 16

/* For cfgfs status: changes queued for the store and not sent yet. */
size_t writer_pending(struct writer *w);

/*
 * For cfgfs status: how many changes the store refused as conflicts since
 * the mount, and in *kept (malloc'd; NULL when out of memory) the paths,
 * relative to the mountpoint, of the files that kept refused or failed
 * bytes, one a line, oldest first.
 */
uint64_t writer_refused(struct writer *w, char **kept);

/* For cfgfs status: the last change that failed, into buf; its wall-clock second, 0: never. */
int64_t writer_last_error(struct writer *w, char *buf, size_t len);

/* The largest value a write may produce. */
size_t writer_max_value(const struct writer *w);

#endif
