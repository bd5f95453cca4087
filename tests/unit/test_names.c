/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the key segment <-> file name codec (names.c): escaping, canonical decoding, long names. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "util.h"

/* Bytes after the NAMES_MAX + 1 output buffer, to catch an encoder writing past it. */
#define GUARD 32
#define GUARD_BYTE 0xA5

struct encoded {
	char buf[NAMES_MAX + 1 + GUARD];
	size_t len;
	bool hashed;
};

static void encode(const char *seg, size_t len, uint32_t salt, struct encoded *e)
{
	memset(e->buf, GUARD_BYTE, sizeof(e->buf));
	e->hashed = true; /* poisoned: the encoder must clear it for short names */
	e->len = names_encode(NAMES_ESCAPED, seg, len, salt, e->buf, &e->hashed);
	assert_true(e->len <= NAMES_ESCAPED_MAX);
	assert_int_equal(e->buf[e->len], '\0');
	assert_int_equal(strlen(e->buf), e->len); /* a file name cannot hold NUL */
	for (size_t i = NAMES_MAX + 1; i < sizeof(e->buf); i++)
		assert_int_equal((unsigned char)e->buf[i], GUARD_BYTE);
	assert_null(memchr(e->buf, '/', e->len));
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* The shape of a shortened name: at most NAMES_MAX, ending in "%#" and 16 lowercase hex digits. */
static void assert_hashed_shape(const struct encoded *e)
{
	assert_true(e->hashed);
	assert_true(e->len > NAMES_HASH_LEN);
	assert_true(e->len <= NAMES_ESCAPED_MAX);
	const char *tail = e->buf + e->len - NAMES_HASH_LEN;
	assert_int_equal(tail[0], '%');
	assert_int_equal(tail[1], '#');
	for (int i = 2; i < NAMES_HASH_LEN; i++)
		assert_true(is_lower_hex(tail[i]));
}

/* ------------------------------------------------------------ encoding table */

static const struct {
	const char *seg;
	size_t len;
	const char *name;
} enc_cases[] = {
	{S("%"), "%25"},
	{S("%%"), "%25%25"},
	{S("a%b"), "a%25b"},
	{S("100%"), "100%25"},
	{S("\0"), "%00"},
	{S("a\0b"), "a%00b"},
	{S("\0\0"), "%00%00"},
	{S("%\0"), "%25%00"},
	{S("."), "%2E"},
	{S(".."), "%2E%2E"},
	{S(""), "%"},
	{S("..."), "..."},
	{S(".a"), ".a"},
	{S("a."), "a."},
	{S("..a"), "..a"},
	{S(". "), ". "},
	{S("%2E"), "%252E"},
	{S("%value"), "%25value"},
	{S("value"), "value"},
	{S("h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac"), "h\xc3\xa9llo w\xc3\xb6rld \xe2\x82\xac"},
	{S(" "), " "},
	{S("  two  spaces "), "  two  spaces "},
	{S("\x01\x02\x1f\x7f\n\t\r"), "\x01\x02\x1f\x7f\n\t\r"},
	{S("\xff\xfe\x80"), "\xff\xfe\x80"},
	{S("#"), "#"},
	{S("%#0123456789abcdef"), "%25#0123456789abcdef"},
	{S("a b\\c:d*e?f\"g<h>i|"), "a b\\c:d*e?f\"g<h>i|"},
};

static void test_encode_table(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(enc_cases); i++) {
		struct encoded e;

		encode(enc_cases[i].seg, enc_cases[i].len, 0, &e);
		assert_string_equal(e.buf, enc_cases[i].name);
		assert_false(e.hashed);
		/* The salt only matters for hashed names. */
		struct encoded e2;
		encode(enc_cases[i].seg, enc_cases[i].len, 12345, &e2);
		assert_string_equal(e2.buf, enc_cases[i].name);
		assert_false(e2.hashed);
	}
}

/* Every byte except '%' and NUL is kept as is. */
static void test_encode_single_bytes(void **state)
{
	for (int c = 1; c < 256; c++) {
		char seg[1] = {(char)c};
		struct encoded e;

		if (c == '/' || c == '.')
			continue;
		encode(seg, 1, 0, &e);
		assert_false(e.hashed);
		if (c == '%') {
			assert_string_equal(e.buf, "%25");
		} else {
			assert_int_equal(e.len, 1);
			assert_int_equal((unsigned char)e.buf[0], c);
		}
	}
}

/* ------------------------------------------------------------ decoding */

static void test_decode_table(void **state)
{
	/* Every canonical name decodes to exactly the segment it came from. */
	for (size_t i = 0; i < ARRAY_SIZE(enc_cases); i++) {
		char out[NAMES_MAX + 1];
		const char *name = enc_cases[i].name;
		ssize_t n = names_decode(NAMES_ESCAPED, name, strlen(name), out);

		assert_int_equal(n, (ssize_t)enc_cases[i].len);
		assert_memory_equal(out, enc_cases[i].seg, enc_cases[i].len);
	}
}

static void test_decode_rejects(void **state)
{
	static const char *const bad[] = {
		NAMES_VALUE,	       /* reserved for a key's value next to its children */
		"%#0123456789abcdef",  /* the hashed form */
		"a%#0123456789abcdef", /* ... behind a prefix */
		"%41",		       /* 'A' needs no escape */
		"%2e",		       /* lower case is not canonical */
		"%2F",		       /* '/' can never be in a segment */
		"%2f",
		"%0a",
		"%0A", /* newline is kept as is, not escaped */
		"%20",
		"%E2%82%AC",
		"a%",
		"%%",
		"%%25",
		"%2",
		"a%2",
		"%ZZ",
		"%G0",
		"%-1",
		"% 25",
		"a%2Eb", /* "." is only escaped when it is the whole segment */
		"%2Ea",
		"a%2E",
		"%2E.",
		".%2E",
		"%2E%2E%2E",
		"%2E%2E.",
		"%2E%2",
		"%value2",
		"%VALUE",
		"%25%",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char out[NAMES_MAX + 1];
		ssize_t n = names_decode(NAMES_ESCAPED, bad[i], strlen(bad[i]), out);

		if (n != -EINVAL)
			fail_msg("names_decode(NAMES_ESCAPED, \"%s\") = %zd, expected -EINVAL",
				 bad[i], n);
	}
}

/*
 * Found by fuzzing: "" decoded to the empty segment, whose name is "%", and a
 * name past the style's limit decoded to a segment that encodes to a hashed
 * name; each gave one key a second name.
 */
static void test_decode_rejects_empty_and_long(void **state)
{
	static char name[NAMES_MAX + 2], out[NAMES_MAX + 2];

	assert_int_equal(names_decode(NAMES_ESCAPED, "", 0, out), -EINVAL);
	assert_int_equal(names_decode(NAMES_PLAIN, "", 0, out), -EINVAL);
	memset(name, 'a', sizeof(name));
	assert_int_equal(names_decode(NAMES_ESCAPED, name, NAMES_ESCAPED_MAX, out),
			 NAMES_ESCAPED_MAX);
	assert_int_equal(names_decode(NAMES_ESCAPED, name, NAMES_ESCAPED_MAX + 1, out), -EINVAL);
	assert_int_equal(names_decode(NAMES_PLAIN, name, NAMES_MAX, out), NAMES_MAX);
	assert_int_equal(names_decode(NAMES_PLAIN, name, NAMES_MAX + 1, out), -EINVAL);
}

/*
 * Found by fuzzing: a name holding a NUL byte as it is decoded, to a segment
 * whose name is "%00". No file name holds a NUL.
 */
static void test_decode_rejects_nul(void **state)
{
	char out[16];

	assert_int_equal(names_decode(NAMES_ESCAPED, S("a\0b"), out), -EINVAL);
	assert_int_equal(names_decode(NAMES_ESCAPED, S("\0"), out), -EINVAL);
	assert_int_equal(names_decode(NAMES_PLAIN, S("a\0b"), out), -EINVAL);
	assert_int_equal(names_decode(NAMES_PLAIN, S("%!a\0b"), out), -EINVAL);
	/* Its escape still decodes. */
	assert_int_equal(names_decode(NAMES_ESCAPED, S("a%00b"), out), 3);
	assert_memory_equal(out, "a\0b", 3);
}

/*
 * Decoding only accepts canonical names: every name it accepts encodes back
 * to itself. Exhaustive over short names from an alphabet rich in escapes.
 */
static void test_decode_canonical_exhaustive(void **state)
{
	static const char alpha[] = "%25E0Fe.a#";
	const size_t na = sizeof(alpha) - 1;
	size_t accepted = 0;

	for (size_t len = 1; len <= 5; len++) {
		size_t total = 1;
		for (size_t i = 0; i < len; i++)
			total *= na;
		for (size_t k = 0; k < total; k++) {
			char name[8], out[8];
			size_t x = k;

			for (size_t i = 0; i < len; i++, x /= na)
				name[i] = alpha[x % na];
			name[len] = '\0';
			/* The VFS handles these two itself; they never reach a decoder. */
			if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
				continue;
			ssize_t n = names_decode(NAMES_ESCAPED, name, len, out);
			if (n < 0) {
				assert_int_equal(n, -EINVAL);
				continue;
			}
			accepted++;
			assert_true((size_t)n <= len);
			struct encoded e;
			encode(out, (size_t)n, 0, &e);
			if (e.len != len || memcmp(e.buf, name, len) != 0)
				fail_msg("\"%s\" decodes but encodes back as \"%s\"", name, e.buf);
		}
	}
	/* Guards against a decoder that rejects everything. */
	assert_true(accepted > 1000);
}

static void test_is_value(void **state)
{
	assert_true(names_is_value(S("%value")));
	assert_true(names_is_value(NAMES_VALUE, NAMES_VALUE_LEN));
	assert_false(names_is_value(S("%valu")));
	assert_false(names_is_value(S("%values")));
	assert_false(names_is_value("%value", 5));
	assert_false(names_is_value(S("%VALUE")));
	assert_false(names_is_value(S("%25value")));
	assert_false(names_is_value(S("value")));
	assert_false(names_is_value(S("")));
	/* No segment may encode to the reserved name. */
	struct encoded e;
	encode(S("%value"), 0, &e);
	assert_false(names_is_value(e.buf, e.len));
}

static void test_segment_len(void **state)
{
	assert_int_equal(names_segment_len(S("a/b")), 1);
	assert_int_equal(names_segment_len(S("abc")), 3);
	assert_int_equal(names_segment_len(S("/x")), 0);
	assert_int_equal(names_segment_len(S("")), 0);
	assert_int_equal(names_segment_len(S("//")), 0);
	assert_int_equal(names_segment_len(S("abc/")), 3);
	/* A NUL byte is an ordinary key byte, not a terminator. */
	assert_int_equal(names_segment_len(S("a\0/b")), 2);
	assert_int_equal(names_segment_len(S("a\0b")), 3);
	/* Only len bytes are examined. */
	assert_int_equal(names_segment_len("ab/c", 2), 2);
}

/* ------------------------------------------------------------ round trips */

static void roundtrip(const char *seg, size_t len)
{
	struct encoded e;
	char out[NAMES_MAX + 1];

	encode(seg, len, 0, &e);
	ssize_t n = names_decode(NAMES_ESCAPED, e.buf, e.len, out);
	if (e.hashed) {
		/* A shortened name has lost bytes: no decoder can give them back. */
		assert_int_equal(n, -EINVAL);
		return;
	}
	assert_int_equal(n, (ssize_t)len);
	assert_memory_equal(out, seg, len);
}

static void test_roundtrip_table(void **state)
{
	char all[256];
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(enc_cases); i++)
		roundtrip(enc_cases[i].seg, enc_cases[i].len);
	/* Every byte value but '/', alone, doubled and all together. */
	for (int c = 0; c < 256; c++) {
		char two[2] = {(char)c, (char)c};
		if (c == '/')
			continue;
		roundtrip(two, 1);
		roundtrip(two, 2);
		all[n++] = (char)c;
	}
	roundtrip(all, n);	  /* 255 bytes with two escapes: hashed */
	roundtrip(all + 1, 80);	  /* binary, no NUL, fits */
	roundtrip(all + 20, 100); /* contains '%' */
}

static void test_roundtrip_random(void **state)
{
	struct rng r = {0x5eed5eed12345678ULL};
	char seg[301];
	size_t hashed = 0, plain = 0;

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rng_below(&r, 301);
		/* Alternate between any byte and a small alphabet dense in escapes. */
		bool dense = iter & 1;

		for (size_t i = 0; i < len; i++) {
			char c;
			do {
				c = dense ? "%\0.a\xc3\xa9"[rng_below(&r, 6)]
					  : (char)rng_below(&r, 256);
			} while (c == '/');
			seg[i] = c;
		}
		struct encoded e;
		encode(seg, len, 0, &e);
		if (e.hashed) {
			assert_hashed_shape(&e);
			hashed++;
		} else {
			plain++;
		}
		roundtrip(seg, len);
	}
	/* Both paths must have been exercised for the run to mean anything. */
	assert_true(hashed > 1000);
	assert_true(plain > 1000);
}

/* ------------------------------------------------------------ injectivity */

struct pair {
	char name[NAMES_MAX + 1];
	char seg[8];
	size_t slen;
};

static int pair_cmp(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	if (x->slen != y->slen)
		return x->slen < y->slen ? -1 : 1;
	return memcmp(x->seg, y->seg, x->slen);
}

/* Distinct segments never share a name: every short segment over an escape-heavy alphabet. */
static void test_injective(void **state)
{
	static const char alpha[] = {'%', '\0', '.', '2', '5', 'E', '0', 'a'};
	const size_t na = sizeof(alpha);
	size_t cap = 0, n = 0;

	for (size_t len = 0, total = 1; len <= 5; len++, total *= na)
		cap += total;
	cap += ARRAY_SIZE(enc_cases);
	struct pair *v = calloc(cap, sizeof(*v));
	assert_non_null(v);

	for (size_t len = 0, total = 1; len <= 5; len++, total *= na) {
		for (size_t k = 0; k < total; k++) {
			size_t x = k;
			for (size_t i = 0; i < len; i++, x /= na)
				v[n].seg[i] = alpha[x % na];
			v[n].slen = len;
			bool hashed;
			names_encode(NAMES_ESCAPED, v[n].seg, len, 0, v[n].name, &hashed);
			assert_false(hashed);
			n++;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(enc_cases); i++) {
		if (enc_cases[i].len > sizeof(v[n].seg))
			continue;
		memcpy(v[n].seg, enc_cases[i].seg, enc_cases[i].len);
		v[n].slen = enc_cases[i].len;
		bool hashed;
		names_encode(NAMES_ESCAPED, v[n].seg, v[n].slen, 0, v[n].name, &hashed);
		n++;
	}
	qsort(v, n, sizeof(*v), pair_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(v[i - 1].name, v[i].name) != 0)
			continue;
		/* Same name: only allowed for the same segment (tables overlap). */
		assert_int_equal(v[i - 1].slen, v[i].slen);
		assert_memory_equal(v[i - 1].seg, v[i].seg, v[i].slen);
	}
	/* Nothing a key can produce collides with the reserved name. */
	for (size_t i = 0; i < n; i++)
		assert_false(names_is_value(v[i].name, strlen(v[i].name)));
	free(v);
}

/* ------------------------------------------------------------ long segments */

static void test_long_threshold(void **state)
{
	char seg[400];
	struct encoded e;

	memset(seg, 'a', sizeof(seg));
	encode(seg, 255, 0, &e);
	assert_false(e.hashed);
	assert_int_equal(e.len, 255);
	encode(seg, 256, 0, &e);
	assert_hashed_shape(&e);

	/* The limit applies to the escaped form, not to the raw segment. */
	seg[252] = '%'; /* 252 + 3 = 255 escaped bytes */
	encode(seg, 253, 0, &e);
	assert_false(e.hashed);
	assert_int_equal(e.len, 255);
	assert_string_equal(e.buf + 252, "%25");
	encode(seg, 254, 0, &e); /* 256 escaped bytes */
	assert_hashed_shape(&e);

	memset(seg, 'a', sizeof(seg));
	seg[253] = '\0'; /* 253 + 3 = 256 */
	encode(seg, 254, 0, &e);
	assert_hashed_shape(&e);
	/* 85 '%' escape to exactly 255 bytes, 86 to 258. */
	memset(seg, '%', sizeof(seg));
	encode(seg, 85, 0, &e);
	assert_false(e.hashed);
	assert_int_equal(e.len, 255);
	encode(seg, 86, 0, &e);
	assert_hashed_shape(&e);
}

static void test_long_hash(void **state)
{
	char a[400], b[400];
	struct encoded ea, ea2, eb, es;

	memset(a, 'x', sizeof(a));
	encode(a, sizeof(a), 0, &ea);
	assert_hashed_shape(&ea);
	/* The readable part is the segment's own beginning. */
	assert_memory_equal(ea.buf, a, ea.len - NAMES_HASH_LEN);
	assert_true(ea.len - NAMES_HASH_LEN >= 200);

	/* Deterministic: the same key must keep the same name across restarts. */
	encode(a, sizeof(a), 0, &ea2);
	assert_string_equal(ea.buf, ea2.buf);

	/* Segments that differ only after the kept prefix get different names. */
	for (size_t pos = 250; pos < sizeof(a); pos += 37) {
		memcpy(b, a, sizeof(a));
		b[pos] = 'y';
		encode(b, sizeof(b), 0, &eb);
		assert_hashed_shape(&eb);
		assert_string_not_equal(ea.buf, eb.buf);
	}
	/* A shorter segment with the same prefix, too. */
	encode(a, sizeof(a) - 1, 0, &eb);
	assert_string_not_equal(ea.buf, eb.buf);

	/* The salt resolves collisions, so it must change the name. */
	for (uint32_t salt = 1; salt < 5; salt++) {
		encode(a, sizeof(a), salt, &es);
		assert_hashed_shape(&es);
		assert_string_not_equal(ea.buf, es.buf);
		assert_int_equal(es.len, ea.len); /* only the hash differs */
		assert_memory_equal(es.buf, ea.buf, ea.len - 16);
	}
}

/* The kept prefix of a hashed name holds only whole %XX escapes. */
static void test_long_never_splits_escape(void **state)
{
	char seg[300];

	for (size_t lead = 0; lead < 4; lead++) {
		for (size_t i = 0; i < sizeof(seg); i++)
			seg[i] = i < lead ? 'a' : (i % 2 ? '%' : '\0');
		struct encoded e;
		encode(seg, sizeof(seg), 0, &e);
		assert_hashed_shape(&e);
		size_t keep = e.len - NAMES_HASH_LEN;
		assert_true(keep >= lead);
		assert_int_equal((keep - lead) % 3, 0);
		for (size_t j = lead; j < keep; j += 3) {
			assert_int_equal(e.buf[j], '%');
			assert_true(memcmp(e.buf + j, "%25", 3) == 0 ||
				    memcmp(e.buf + j, "%00", 3) == 0);
		}
		/* Cut as late as possible: a wasted escape would be at most 2 bytes. */
		assert_true(keep + 2 >= NAMES_ESCAPED_MAX - NAMES_HASH_LEN);
	}
}

/* The kept prefix of a hashed UTF-8 name ends on a character boundary. */
static void test_long_never_splits_utf8(void **state)
{
	static const char *const chars[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};

	for (size_t c = 0; c < ARRAY_SIZE(chars); c++) {
		size_t clen = strlen(chars[c]);
		for (size_t lead = 0; lead < 4; lead++) {
			char seg[400];
			size_t len = 0;

			for (size_t i = 0; i < lead; i++)
				seg[len++] = 'a';
			while (len + clen <= sizeof(seg)) {
				memcpy(seg + len, chars[c], clen);
				len += clen;
			}
			struct encoded e;
			encode(seg, len, 0, &e);
			assert_hashed_shape(&e);
			size_t keep = e.len - NAMES_HASH_LEN;
			assert_memory_equal(e.buf, seg, keep);
			assert_true(keep > lead);
			/* The next raw byte starts a character: nothing was cut in half. */
			assert_true(((unsigned char)seg[keep] & 0xC0) != 0x80);
			assert_int_equal((keep - lead) % clen, 0);
			assert_true(keep + clen > NAMES_ESCAPED_MAX - NAMES_HASH_LEN);
		}
	}
	/* Mixed widths, with escapes in between. */
	struct rng r = {42};
	for (int iter = 0; iter < 500; iter++) {
		char seg[600];
		size_t len = 0;
		while (len < 500) {
			const char *ch = rng_below(&r, 5) == 0 ? "%" : chars[rng_below(&r, 3)];
			memcpy(seg + len, ch, strlen(ch));
			len += strlen(ch);
		}
		struct encoded e;
		encode(seg, len, 0, &e);
		assert_hashed_shape(&e);
		size_t keep = e.len - NAMES_HASH_LEN, raw = 0;
		/* Walk the kept prefix back to raw bytes; it must end between characters. */
		for (size_t j = 0; j < keep; raw++) {
			if (e.buf[j] == '%') {
				assert_int_equal(seg[raw], '%');
				assert_true(j + 3 <= keep);
				j += 3;
			} else {
				assert_int_equal(e.buf[j], seg[raw]);
				j++;
			}
		}
		assert_true(((unsigned char)seg[raw] & 0xC0) != 0x80);
	}
}

/* Binary data has no characters to respect: the cut is as late as an escape allows. */
static void test_long_binary(void **state)
{
	char seg[300];

	memset(seg, 0x80, sizeof(seg)); /* all continuation bytes */
	struct encoded e;
	encode(seg, sizeof(seg), 0, &e);
	assert_hashed_shape(&e);
	assert_int_equal(e.len, NAMES_ESCAPED_MAX);
}

/* NAMES_PLAIN: a znode name is its own file name, '%' and all; the rest round-trips. */
static void plain_roundtrip(const char *seg, size_t len, const char *want)
{
	char out[NAMES_MAX + 1], back[NAMES_MAX + 1];
	bool hashed;
	size_t n = names_encode(NAMES_PLAIN, seg, len, 0, out, &hashed);

	assert_false(hashed);
	assert_true(n <= NAMES_MAX);
	if (want)
		assert_string_equal(out, want);
	ssize_t b = names_decode(NAMES_PLAIN, out, n, back);
	if (b != (ssize_t)len || memcmp(back, seg, len) != 0)
		fail_msg("'%.*s' -> '%s' does not decode back (%zd)", (int)len, seg, out, b);
}

static void test_plain_names(void **state)
{
	char dubbo[900];
	char out[NAMES_MAX + 1];
	bool hashed;

	/* dubbo's providers: URL-encoded and long, shown as they are */
	int n = snprintf(dubbo, sizeof(dubbo),
			 "dubbo%%3A%%2F%%2F10.0.0.1%%3A20880%%2F"
			 "com.foo.BarService%%3Fanyhost%%3Dtrue%%26");
	while (n < 800)
		dubbo[n++] = 'x';
	plain_roundtrip(dubbo, (size_t)n, NULL);
	assert_int_equal(names_encode(NAMES_PLAIN, dubbo, n, 0, out, &hashed), n);
	assert_memory_equal(out, dubbo, n);
	plain_roundtrip(S("db.conf"), "db.conf");
	plain_roundtrip(S("100%"), "100%");
	plain_roundtrip(S("%41"), "%41");
	plain_roundtrip(S("%"), "%");
	/* what a name cannot be as it is: reserved names, "%!", NUL, '/', ".", "", the hash tail */
	plain_roundtrip(S("%value"), "%!%25value");
	plain_roundtrip(S("%!x"), "%!%25!x");
	plain_roundtrip(S("%#1"), "%!%25#1");
	plain_roundtrip(S("a\0b"), "%!a%00b");
	plain_roundtrip(S("a/b"), NULL);
	plain_roundtrip(S("."), "%!%2E");
	plain_roundtrip(S(".."), "%!%2E%2E");
	plain_roundtrip(S(""), "%!%");
	plain_roundtrip(S("x%#0123456789abcdef"), "%!x%25#0123456789abcdef");

	/* Names no segment maps to. */
	static const char *const bad[] = {"%value", "%#0123456789abcdef",  "%!",
					  "%!abc",  "x%#0123456789abcdef", "%!%zz"};
	char back[NAMES_MAX + 1];
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (names_decode(NAMES_PLAIN, bad[i], strlen(bad[i]), back) >= 0)
			fail_msg("'%s' decoded", bad[i]);

	/* Longer than FUSE carries: cut and hashed, and never decoded. */
	char big[2000];
	memset(big, 'y', sizeof(big));
	size_t len = names_encode(NAMES_PLAIN, big, sizeof(big), 0, out, &hashed);
	assert_true(hashed);
	assert_true(len <= NAMES_MAX);
	assert_true(names_decode(NAMES_PLAIN, out, len, back) < 0);
	assert_int_equal(names_max(NAMES_PLAIN), NAMES_MAX);
	assert_int_equal(names_max(NAMES_ESCAPED), 255);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_names),
		cmocka_unit_test(test_encode_table),
		cmocka_unit_test(test_encode_single_bytes),
		cmocka_unit_test(test_decode_table),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_decode_canonical_exhaustive),
		cmocka_unit_test(test_decode_rejects_empty_and_long),
		cmocka_unit_test(test_decode_rejects_nul),
		cmocka_unit_test(test_is_value),
		cmocka_unit_test(test_segment_len),
		cmocka_unit_test(test_roundtrip_table),
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_injective),
		cmocka_unit_test(test_long_threshold),
		cmocka_unit_test(test_long_hash),
		cmocka_unit_test(test_long_never_splits_escape),
		cmocka_unit_test(test_long_never_splits_utf8),
		cmocka_unit_test(test_long_binary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
