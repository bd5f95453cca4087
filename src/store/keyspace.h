/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keys as points of a line: where to cut a range of keys, and how far a step of keys reaches. */
#ifndef CFGFS_KEYSPACE_H
#define CFGFS_KEYSPACE_H

#include <stddef.h>

/*
 * A key read as a base-256 fraction, its first byte the most significant:
 * etcd's key order (bytewise, a prefix first) is the order of these
 * numbers, so a range of keys is an interval, and the keys of a page cover
 * a width of it. Results go to out (at most cap bytes); 0 means there is
 * no answer in that room. Trailing zero bytes make a different key but the
 * same point, and bounds built here are only ever used as range ends.
 */

/* A key strictly between lo and hi (hi NULL: past every key), near their middle. */
size_t keyspace_mid(const char *lo, size_t lolen, const char *hi, size_t hilen, char *out,
		    size_t cap);

/* The width from a to b (a before b), times num / den; never 0 when a != b. */
size_t keyspace_width(const char *a, size_t alen, const char *b, size_t blen, unsigned num,
		      unsigned den, char *out, size_t cap);

/* w times num / den in place (wlen bytes, cap room); the new length, never 0 for a width > 0. */
size_t keyspace_scale(char *w, size_t wlen, unsigned num, unsigned den, size_t cap);

/* The point a width w past a; 0 when that is past every key. */
size_t keyspace_add(const char *a, size_t alen, const char *w, size_t wlen, char *out, size_t cap);

#endif
