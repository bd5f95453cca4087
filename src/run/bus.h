/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The one place an applied change of the mirror fans out from. */
#ifndef CFGFS_BUS_H
#define CFGFS_BUS_H

#include <stddef.h>
#include <stdint.h>

#include "change.h"

/*
 * Whoever applies a change to the mirror (the watcher, the writer, a FUSE
 * handler) publishes what tree_* reported, after the tree lock was dropped.
 * Two kinds of subscribers:
 *
 * - one sink, which takes the list and delivers it to the kernel in order
 *   (invalidations and gates: fuse/fs_notify.c), then reports the files as
 *   delivered;
 * - observers, told of every change before the sink takes it (the cache
 *   file: something to save; status counters) and of every delivery (the
 *   inotify replay, reload hooks: the new bytes are readable now).
 *
 * Subscribers are registered before anything is published and never leave;
 * their callbacks must not block for long (queue and return).
 */
struct bus;

struct bus_observer {
	/* A change was applied (l is read-only here). May be NULL. */
	void (*changed)(void *ctx, const struct change_list *l);
	/* The kernel holds the new content of these files. May be NULL. */
	void (*delivered)(void *ctx, const uint64_t *inos, size_t n);
	void *ctx;
};

struct bus *bus_new(void);
void bus_free(struct bus *b);

/* The sink takes l's entries (l is left empty); without one they are dropped. */
void bus_set_sink(struct bus *b, void (*take)(void *ctx, struct change_list *l), void *ctx);

/* 0 or -ENOMEM. */
int bus_observe(struct bus *b, const struct bus_observer *o);

/* Publish l (it is left empty). Also when l holds nothing: the tree still changed. */
void bus_publish(struct bus *b, struct change_list *l);

/* For the sink: these files' new content is what the kernel shows now. */
void bus_delivered(struct bus *b, const uint64_t *inos, size_t n);

#endif
