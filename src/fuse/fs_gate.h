/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The gates' last steps: making the kernel take a new size, and reads that wait for it. */
#ifndef CFGFS_FS_GATE_H
#define CFGFS_FS_GATE_H

#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "tree.h"

/*
 * A thread that takes each gate from its reads phase to open (see tree.h):
 * for each of the gate's files it asks the kernel, through the mount, to
 * take the new size and time, then opens the gate and reports the gate's
 * files delivered on the bus. Nothing it waits for is held by the reads that wait for it.
 */
struct gates;

/* Start the thread for the mount at mountpoint (absolute). NULL on failure. */
struct gates *gates_start(struct tree *t, const char *mountpoint, struct bus *bus,
			  bool single_thread);

/*
 * The notifier reached INVAL_READS of gate seq: unit holds its probes and
 * INVAL_GATE, and the change's files; taken, unit is left empty. Never
 * blocks on the kernel.
 */
void gates_reads(struct gates *g, uint64_t seq, struct change_list *unit);

/* The notifier sent gate seq's second page invalidation: its sizes phase may begin. */
void gates_invalidated(struct gates *g, uint64_t seq);

/*
 * A read is about to return a value whose gate is in its reads or sizes
 * phase: wait (bounded) until the kernel holds chk's size and time.
 */
bool gates_wait_read(struct gates *g, uint64_t ino, const struct read_check *chk);

/*
 * How the prober asks the one thread that tells the kernel (fs_notify.c) to
 * drop file ino's attributes and pages once more; set before any change.
 */
void gates_set_reinvalidate(struct gates *g, void (*fn)(void *ctx, uint64_t ino), void *ctx);

/* Tests: every gate stays this long in its reads phase, the mirror changed, the kernel not told. */
void gates_hold_for_tests(struct gates *g, unsigned ms);

/* The mount is no longer served: stop asking it (gates still open). */
void gates_halt(struct gates *g);

/* Open what is queued, stop the thread, free. NULL is ignored. */
void gates_stop(struct gates *g);

#endif
