/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Replays store changes through the mount, so that inotify watchers of the files see them. */
#ifndef CFGFS_REPLAY_H
#define CFGFS_REPLAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tree.h"

/*
 * A change that arrives from the store never passes through the VFS, so
 * inotify (and everything built on it: inotifywait, systemd .path units,
 * fsnotify-based reloaders) would not see it. For each file whose content
 * the store changed, a thread of cfgfs opens it for writing on the mount,
 * truncates it to its own size and closes it: the kernel reports IN_OPEN,
 * IN_MODIFY and IN_CLOSE_WRITE to watchers of the file and of its
 * directory, as for a local save. The truncate reaches cfgfs as a request
 * from that thread, which fs.c recognizes (replay_is_own) and answers
 * without changing anything: the change is already applied.
 */
struct replay;

/* Start the thread for the mount at mountpoint (absolute). 0 or an errno. */
int replay_start(const char *mountpoint, struct tree *t, struct replay **out);

/* The content of file ino changed in the store (already applied). Never blocks on I/O. */
void replay_push(struct replay *r, uint64_t ino);

/* Whether a request comes from the replay thread (tid: the request's pid, a thread id). */
bool replay_is_own(const struct replay *r, pid_t tid);

/*
 * Stop replaying (what is queued is dropped; later pushes are kept, not
 * replayed) and wait a little for the thread. NULL is ignored.
 */
void replay_halt(struct replay *r);

/* Halt, then free: call once nothing pushes any more. NULL is ignored. */
void replay_free(struct replay *r);

#endif
