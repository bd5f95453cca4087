/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A store held in memory, behind the same vtable: for testing what sits above the stores. */
#ifndef CFGFS_MEM_H
#define CFGFS_MEM_H

#include "store.h"

/*
 * Keys with values, a revision that every transaction advances by one, a
 * change log that watches replay from any revision it still holds, and
 * compare-and-swap on a key's mod revision (or version, with
 * expect_version). Several keys in one transaction are one revision, as on
 * etcd; caps are etcd's. Thread-safe.
 */

/* A new empty store for cfg (cfg->url's prefix is what snapshots and watches cover). */
int mem_store_new(const struct store_cfg *cfg, struct store **out);

/* Another host's write: put (val != NULL) or delete key, as one revision. Returns it. */
int64_t mem_store_set(struct store *s, const char *key, const char *val, size_t vlen);

/* Forget the history up to rev: a watch from an older revision gets -ESTALE. */
void mem_store_compact(struct store *s, int64_t rev);

/*
 * Hold watches back (hold true): a running one ends with -ECONNRESET, as a
 * dropped connection would, and new ones wait until released.
 */
void mem_store_hold_watches(struct store *s, bool hold);

/* The next n transactions fail with err (a store that stopped answering: -ECONNREFUSED). */
void mem_store_fail_next(struct store *s, int err, unsigned n);

/* A copy of key's value and metadata: 0, or -ENOENT. */
int mem_store_get(struct store *s, const char *key, struct blob **val, struct kv_meta *meta);

/* How many transactions were committed (refused ones not counted). */
unsigned mem_store_commits(struct store *s);

#endif
