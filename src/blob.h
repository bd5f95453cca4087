/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Immutable, reference-counted byte buffers holding key values. */
#ifndef CFGFS_BLOB_H
#define CFGFS_BLOB_H

#include <stddef.h>
#include <stdint.h>

/*
 * A value is shared between the mirror and readers: a read takes a reference
 * under the tree lock and replies after dropping it, so a concurrent update
 * never frees bytes that are being sent to the kernel.
 */
struct blob {
	unsigned int refs; /* atomic */
	uint32_t len;	   /* values are far below 4 GiB; 8 bytes of header per key matter */
	char data[];	   /* len bytes, then a NUL so values can be used as strings */
};

/* New blob of len bytes (contents undefined) with one reference, or NULL. */
struct blob *blob_new(size_t len);

/* New blob holding a copy of p[0..len), or NULL. */
struct blob *blob_from(const void *p, size_t len);

/* Take another reference; returns b. */
struct blob *blob_ref(struct blob *b);

/* Drop a reference; frees on the last. NULL is ignored. */
void blob_unref(struct blob *b);

#endif
