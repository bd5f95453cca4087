/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The key <-> file name codec: pure functions, no state. */
#ifndef CFGFS_NAMES_H
#define CFGFS_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * A key is split at '/' into segments; each segment becomes one file name.
 * The mapping is injective and documented in README ("Names"). How depends
 * on what the store's keys may hold:
 *
 * NAMES_ESCAPED (etcd, Consul: a segment may be any bytes)
 *   '%'  -> "%25"      always, so any other '%' in a name is unambiguous
 *   NUL  -> "%00"      the only byte besides '/' a file name cannot hold
 *   "."  -> "%2E"      ".." -> "%2E%2E"
 *   ""   -> "%"        empty segment: "a//b", a leading '/', "dir/"
 *   longer than 255 bytes after escaping: a prefix of the escaped name,
 *   then "%#" and 16 hex digits of a hash of the whole segment.
 *
 * NAMES_PLAIN (ZooKeeper: a znode name holds no '/' or NUL, is never empty,
 * "." or ".."): a segment is its own name, '%' and all, so URL-encoded
 * names (dubbo's providers) read as they are; up to NAMES_MAX bytes, the
 * longest name FUSE carries. A segment a name cannot be as it is (a
 * reserved name, one starting with "%!", or one holding what a plain name
 * cannot) is "%!" followed by its NAMES_ESCAPED name; a longer one is cut
 * and hashed as above.
 *
 * Two names are reserved and never produced by encoding a segment:
 * NAMES_VALUE, the value of a key that is also a prefix ("a" next to "a/b"
 * shows as directory "a" holding "b" and "%value"), and the hashed form.
 */
enum names_style {
	NAMES_ESCAPED,
	NAMES_PLAIN,
};

#define NAMES_MAX 1024	      /* the longest name of any style (FUSE_NAME_MAX) */
#define NAMES_ESCAPED_MAX 255 /* the longest NAMES_ESCAPED name (NAME_MAX) */
#define NAMES_VALUE "%value"
#define NAMES_VALUE_LEN 6
#define NAMES_HASH_LEN 18 /* "%#" + 16 hex digits */

/* The longest name style st produces. */
size_t names_max(enum names_style st);

/*
 * Encode one raw segment into out (NAMES_MAX + 1 bytes, NUL-terminated).
 * salt is 0 except to resolve a collision between two hashed names.
 * Returns the name length; *hashed tells whether the name was shortened.
 */
size_t names_encode(enum names_style st, const char *seg, size_t len, uint32_t salt, char *out,
		    bool *hashed);

/*
 * Decode a file name into out (at least len bytes). Only canonical encodings
 * are accepted, so decoding and encoding again gives back the same name.
 * Returns the segment length, or -EINVAL for a name that no key maps to
 * (reserved names, hashed names, non-canonical escapes such as "%41").
 */
ssize_t names_decode(enum names_style st, const char *name, size_t len, char *out);

/* True for NAMES_VALUE. */
bool names_is_value(const char *name, size_t len);

/* Split point helper: the length of the first segment of key[0..len). */
size_t names_segment_len(const char *key, size_t len);

#endif
