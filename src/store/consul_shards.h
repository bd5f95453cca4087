/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A large Consul prefix cut into sub-prefixes, so that a change is read from the one it is in. */
#ifndef CFGFS_CONSUL_SHARDS_H
#define CFGFS_CONSUL_SHARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"

/*
 * Consul answers a listing of a prefix with every entry under it, and the
 * X-Consul-Index of a key listing (?keys&separator=/) is the highest
 * ModifyIndex (or tombstone) under its prefix, for the price of a walk and a
 * few names. So a change is found by asking each shard for its index and
 * listing only those whose index moved.
 *
 * A shard is a prefix of the keys below the mount's prefix, never reaching
 * past their first '/': then every top-level name (what a key listing of the
 * mount's prefix with separator '/' shows) that is not inside a shard says
 * keys exist that no shard covers. No shard is a prefix of another.
 */
struct shard {
	char *pfx; /* below the mount's prefix; NUL-terminated, no NUL inside */
	size_t len;
	int64_t index; /* the index the mirror holds it at (0: none known) */
	size_t total;  /* entries it held then */
};

struct shards {
	struct shard *v; /* sorted by pfx */
	size_t n;
};

/*
 * Cut the keys of a whole listing (full keys, plen bytes of mount prefix
 * first) into shards of about per_shard keys, at most max_shards of them.
 * 0 (s->n may be 1: nothing to cut), or -ENOMEM. s is replaced.
 */
int shards_build(struct shards *s, const struct kv_batch *b, size_t plen, size_t per_shard,
		 size_t max_shards);

/*
 * A new shard for name (below the mount's prefix), index and total 0: a
 * top-level name no shard covers. 0, 1 when it would hold a shard (cut
 * the prefix again instead), or -ENOMEM.
 */
int shards_add(struct shards *s, const char *name, size_t len);

/* The shard covering a top-level name (below the mount's prefix), or -1. */
long shards_find(const struct shards *s, const char *name, size_t len);

void shards_clear(struct shards *s);

#endif
