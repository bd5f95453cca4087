/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes the name codec (names.c) against what names.h promises, in both styles. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, enum names_style st, const char *p, size_t n)
{
	fprintf(stderr, "names (%s): %s: '%.*s' (%zu bytes)\n",
		st == NAMES_PLAIN ? "plain" : "escaped", what, (int)n, p, n);
	abort();
}

/*
 * Every segment (no '/': a key is split there) gets a name the VFS takes -
 * not empty, no '/' or NUL, not "." or "..", not the reserved value name,
 * within the style's limit - and decoding that name gives the segment back,
 * unless the name was shortened, which no key decodes from.
 */
static void check_encode(enum names_style st, const char *seg, size_t len, uint32_t salt)
{
	char name[NAMES_MAX + 1], back[NAMES_MAX + 1];
	bool hashed;
	size_t n = names_encode(st, seg, len, salt, name, &hashed);

	if (n == 0 || n > names_max(st) || name[n] != '\0')
		fail("bad name length", st, seg, len);
	if (memchr(name, '/', n) || memchr(name, '\0', n))
		fail("name holds '/' or NUL", st, seg, len);
	if ((n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
		fail("name is . or ..", st, seg, len);
	if (names_is_value(name, n))
		fail("name is the reserved value name", st, seg, len);
	ssize_t m = names_decode(st, name, n, back);
	if (hashed) {
		if (m != -EINVAL)
			fail("a shortened name decodes", st, seg, len);
		if (n < NAMES_HASH_LEN || name[n - NAMES_HASH_LEN] != '%' ||
		    name[n - NAMES_HASH_LEN + 1] != '#')
			fail("a shortened name without its hash", st, seg, len);
		return;
	}
	if (m < 0 || (size_t)m != len || memcmp(back, seg, len) != 0)
		fail("decode(encode(x)) != x", st, seg, len);
}

/*
 * Any name decodes without harm, and one that decodes is the name its
 * segment encodes to ("only canonical encodings are accepted"). "." and ".."
 * are the VFS's own and never asked about.
 */
static void check_decode(enum names_style st, const char *name, size_t len)
{
	char *seg = malloc(len ? len : 1), again[NAMES_MAX + 1];
	bool hashed;

	if (!seg)
		return;
	ssize_t m = names_decode(st, name, len, seg);
	if (m >= 0 && !(len == 1 && name[0] == '.') &&
	    !(len == 2 && name[0] == '.' && name[1] == '.')) {
		if ((size_t)m > len)
			fail("decoded segment longer than its name", st, name, len);
		size_t n = names_encode(st, seg, (size_t)m, 0, again, &hashed);
		if (hashed || n != len || memcmp(again, name, len) != 0)
			fail("a name decodes that is not canonical", st, name, len);
	}
	free(seg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Long segments matter: the shortening happens past 255 and 1024 bytes. */
	if (size > 4096)
		return 0;
	const char *p = (const char *)data;
	uint32_t salt = size ? data[0] % 3 : 0;

	/* As a key: each segment between slashes. */
	for (size_t at = 0;;) {
		size_t sl = names_segment_len(p + at, size - at);
		check_encode(NAMES_ESCAPED, p + at, sl, salt);
		/* A ZooKeeper name never holds NUL; the codec must cope anyway. */
		check_encode(NAMES_PLAIN, p + at, sl, salt);
		at += sl;
		if (at >= size)
			break;
		at++; /* the '/' */
	}
	/* As a file name someone typed. */
	check_decode(NAMES_ESCAPED, p, size);
	check_decode(NAMES_PLAIN, p, size);
	return 0;
}
