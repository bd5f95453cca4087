/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keys as a store reports them, and batches of them (a snapshot or one watch response). */
#ifndef CFGFS_KV_H
#define CFGFS_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "blob.h"

/* Store metadata of one key. Consul maps ModifyIndex/CreateIndex to the revisions. */
struct kv_meta {
	int64_t mod_rev;
	int64_t create_rev;
	int64_t version; /* etcd: number of puts since creation; Consul: LockIndex */
	uint64_t flags;	 /* Consul flags; 0 for etcd */
};

/* One key: a put when val is set, a delete when val is NULL. */
struct kv {
	char *key; /* owned, NUL-terminated, may contain NUL bytes before klen */
	size_t klen;
	struct blob *val; /* owned reference */
	struct kv_meta meta;
};

/*
 * A batch is applied to the mirror as a unit: either a full snapshot, or the
 * events of one watch response, which always holds complete store revisions.
 */
struct kv_batch {
	struct kv *v;
	size_t n, cap;
	int64_t revision; /* store revision the batch brings the mirror to; 0 if unknown */
};

void kv_batch_init(struct kv_batch *b);

/* Free every key and value and empty the batch (it stays usable). */
void kv_batch_clear(struct kv_batch *b);

/*
 * Append a key; copies key[0..klen) and takes ownership of val (which may be
 * NULL for a delete; it is released on failure too). Returns 0 or -ENOMEM.
 */
int kv_batch_push(struct kv_batch *b, const char *key, size_t klen, struct blob *val,
		  const struct kv_meta *meta);

/* Drop the entries from the n-th on (a parse that gave up). */
void kv_batch_truncate(struct kv_batch *b, size_t n);

/* One change inside a store transaction. */
enum kv_op_kind {
	KV_PUT,		  /* key = val */
	KV_DELETE,	  /* key */
	KV_DELETE_PREFIX, /* every key starting with key (directory renames) */
	KV_CHECK,	  /* no change: only the expectation on key must hold */
};

/* What a change requires of the key's current state, checked atomically. */
#define KV_ANY (-1) /* nothing */
#define KV_ABSENT 0 /* the key must not exist */
/* > 0: the key's mod revision must be exactly this */
#define KV_VERSION_UNKNOWN (-2)

struct kv_op {
	enum kv_op_kind kind;
	const char *key;
	size_t klen;
	const void *val; /* KV_PUT */
	size_t vlen;
	int64_t expect; /* KV_ANY, KV_ABSENT, or a mod revision */
	/*
	 * With expect a mod revision: the key's version at that revision, for
	 * stores whose compare-and-swap is on a per-key version (ZooKeeper's
	 * dataVersion); KV_VERSION_UNKNOWN when the mirror no longer holds that
	 * revision (the key changed since: such a compare must fail).
	 */
	int64_t expect_version;
	uint64_t flags; /* KV_PUT: Consul's flags to keep (0 for etcd) */
};

#endif
