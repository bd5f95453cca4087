/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The gates' last steps: making the kernel take a new size, and reads that wait for it. */
#ifndef CFGFS_FS_GATE_H
#define CFGFS_FS_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "replay.h"
#include "tree.h"

/*
 * A thread that takes each gate from its reads phase to open (see tree.h):
 * for each of the gate's files it asks the kernel, through the mount, to
 * take the new size and time, then opens the gate and hands the gate's
 * replays on. Nothing it waits for is held by the reads that wait for it.
 */
struct gates;

/* Start the thread for the mount at mountpoint (absolute); replay may be NULL. NULL on failure. */
struct gates *gates_start(struct tree *t, const char *mountpoint, struct replay *replay,
			  bool single_thread);

/*
 * The notifier reached INVAL_READS of gate seq: unit holds what followed
 * it (INVAL_PROBE..., INVAL_GATE, INVAL_REPLAY...); taken, unit is left
 * empty. Never blocks on the kernel.
 */
void gates_reads(struct gates *g, uint64_t seq, struct inval_list *unit);

/*
 * A read is about to return a value whose gate is in its reads or sizes
 * phase: wait (bounded) until the kernel holds chk's size and time.
 */
void gates_wait_read(struct gates *g, uint64_t ino, const struct read_check *chk);

/* The mount is no longer served: stop asking it (gates still open). */
void gates_halt(struct gates *g);

/* Open what is queued, stop the thread, free. NULL is ignored. */
void gates_stop(struct gates *g);

#endif
