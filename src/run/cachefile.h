/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The last known tree on disk (-o cache_file): lets cfgfs mount while the store is down. */
#ifndef CFGFS_CACHEFILE_H
#define CFGFS_CACHEFILE_H

#include <stddef.h>
#include <stdint.h>

#include "kv.h"

struct tree;

/* What a cache file says about itself. */
struct cachefile_hdr {
	const char *store; /* "etcd", "consul": a tree of one store never stands in for another */
	const char *prefix;
	size_t plen;
	int64_t revision; /* the store revision the tree is complete at */
	int64_t saved_at; /* seconds since the epoch */
};

/*
 * Encode b (every key of the tree, with its value and metadata) under h into
 * a malloc'd buffer: a fixed little-endian layout that ends in a checksum, so
 * a damaged or truncated file is recognized. 0 or -ENOMEM.
 */
int cachefile_encode(const struct cachefile_hdr *h, const struct kv_batch *b, char **out,
		     size_t *outlen);

/*
 * Decode buf into b (empty on entry) and *saved_at, b->revision. The file must
 * be for h->store and h->prefix. 0, or -EINVAL with a one-line reason in why.
 */
int cachefile_decode(const char *buf, size_t len, const struct cachefile_hdr *h, struct kv_batch *b,
		     int64_t *saved_at, char *why, size_t whylen);

/*
 * Replace the file at path with buf, atomically and durably: a temporary
 * file next to it (mode 0600: values may be secrets), fsync, rename, fsync
 * of the directory. 0 or a negative errno; a failure leaves the old file.
 */
int cachefile_write(const char *path, const void *buf, size_t len);

/*
 * Encode b under h into the file at path, replaced as cachefile_write does,
 * through a small buffer: no second copy of the values in memory.
 */
int cachefile_save(const char *path, const struct cachefile_hdr *h, const struct kv_batch *b);

/* Load path into b as cachefile_decode does; -ENOENT, another errno, or -EINVAL with why. */
int cachefile_load(const char *path, const struct cachefile_hdr *h, struct kv_batch *b,
		   int64_t *saved_at, char *why, size_t whylen);

/*
 * The thread that keeps the file current: after the mirror changed
 * (cachefile_changed), it exports the store's view of the tree and writes it,
 * at most once per few seconds, never while holding the tree lock.
 */
struct cachefile;

/* Start the thread for the tree of store (its name) and prefix, saved to path. 0 or an errno. */
int cachefile_start(const char *path, struct tree *t, const char *store, const char *prefix,
		    size_t plen, struct cachefile **out);

/* The mirror changed: save it soon. Cheap; any thread. */
void cachefile_changed(struct cachefile *c);

/* Save what is not saved yet, stop the thread, free. NULL is ignored. */
void cachefile_stop(struct cachefile *c);

#endif
