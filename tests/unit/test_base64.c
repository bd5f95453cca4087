/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the strict RFC 4648 base64 codec (base64.c) that carries every etcd key and value. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "base64.h"
#include "util.h"

#define GUARD_BYTE 0x5A

static const struct {
	const char *raw;
	size_t len;
	const char *b64;
} vectors[] = {
	/* RFC 4648, section 10 */
	{S(""), ""},
	{S("f"), "Zg=="},
	{S("fo"), "Zm8="},
	{S("foo"), "Zm9v"},
	{S("foob"), "Zm9vYg=="},
	{S("fooba"), "Zm9vYmE="},
	{S("foobar"), "Zm9vYmFy"},
	/* both ends of the alphabet and NUL bytes */
	{S("\0"), "AA=="},
	{S("\0\0\0"), "AAAA"},
	{S("\xff\xff\xff"), "////"},
	{S("\xfb\xef\xbe"), "++++"},
	{S("\xff"), "/w=="},
	{S("app/db/host"), "YXBwL2RiL2hvc3Q="},
};

static void test_encode_vectors(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
		size_t want = strlen(vectors[i].b64);
		size_t sz = base64_encoded_size(vectors[i].len);
		char *out = malloc(sz + 8);

		assert_non_null(out);
		memset(out, GUARD_BYTE, sz + 8);
		assert_int_equal(sz, want + 1);
		assert_int_equal(base64_encode(vectors[i].raw, vectors[i].len, out), want);
		assert_string_equal(out, vectors[i].b64);
		for (size_t j = sz; j < sz + 8; j++)
			assert_int_equal((unsigned char)out[j], GUARD_BYTE);
		free(out);
	}
}

static void test_decode_vectors(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(vectors); i++) {
		size_t n = strlen(vectors[i].b64);
		char out[32];

		memset(out, GUARD_BYTE, sizeof(out));
		ssize_t len = base64_decode(vectors[i].b64, n, out);
		assert_int_equal(len, (ssize_t)vectors[i].len);
		assert_memory_equal(out, vectors[i].raw, vectors[i].len);
		assert_true((size_t)len <= base64_decoded_max(n));
		/* Nothing written past the bound the caller sized the buffer with. */
		for (size_t j = base64_decoded_max(n); j < sizeof(out); j++)
			assert_int_equal((unsigned char)out[j], GUARD_BYTE);
	}
}

static void test_sizes(void **state)
{
	static const struct {
		size_t n, enc, dec;
	} t[] = {
		{0, 1, 0}, {1, 5, 3}, {2, 5, 3},  {3, 5, 3},  {4, 9, 3},
		{5, 9, 6}, {6, 9, 6}, {7, 13, 6}, {8, 13, 6},
	};

	for (size_t i = 0; i < ARRAY_SIZE(t); i++) {
		assert_int_equal(base64_encoded_size(t[i].n), t[i].enc);
		assert_int_equal(base64_decoded_max(t[i].n), t[i].dec);
	}
}

/* Every length, random bytes: decode(encode(x)) == x, and the size helpers are exact bounds. */
static void test_roundtrip_binary(void **state)
{
	struct rng r = {0xb64b64b64ULL};
	unsigned char in[1100], back[1100 + 8];
	char enc[1500];

	for (size_t n = 0; n < sizeof(in); n += (n < 70 ? 1 : 97)) {
		for (int rep = 0; rep < 8; rep++) {
			for (size_t i = 0; i < n; i++)
				in[i] = (unsigned char)rng_below(&r, 256);
			if (rep == 0)
				memset(in, 0, n);
			if (rep == 1)
				memset(in, 0xff, n);
			size_t len = base64_encode(in, n, enc);
			assert_int_equal(len + 1, base64_encoded_size(n));
			assert_int_equal(len % 4, 0);
			assert_int_equal(strlen(enc), len);
			memset(back, GUARD_BYTE, sizeof(back));
			ssize_t got = base64_decode(enc, len, back);
			assert_int_equal(got, (ssize_t)n);
			assert_memory_equal(back, in, n);
			assert_true(base64_decoded_max(len) >= n);
			assert_true(base64_decoded_max(len) < n + 3);
			assert_int_equal(back[base64_decoded_max(len)], GUARD_BYTE);
		}
	}
	/* All 256 byte values in every position of a quad. */
	for (size_t shift = 0; shift < 3; shift++) {
		for (int i = 0; i < 256; i++)
			in[shift + i] = (unsigned char)i;
		memset(in, 'x', shift);
		size_t len = base64_encode(in, shift + 256, enc);
		assert_int_equal(base64_decode(enc, len, back), (ssize_t)(shift + 256));
		assert_memory_equal(back, in, shift + 256);
	}
}

static void test_decode_rejects(void **state)
{
	static const char *const bad[] = {
		/* not whole quads */
		"A",
		"AB",
		"ABC",
		"ABCDE",
		"ABCDEF",
		"ABCDEFG",
		/* misplaced padding */
		"A===",
		"====",
		"=AAA",
		"A=AA",
		"AB=C",
		"AB=A",
		/* padding before the last quad */
		"AA==AAAA",
		"AAA=AAAA",
		"Zg==Zg==",
		/* characters outside the standard alphabet (no whitespace, no URL-safe set) */
		"AB$D",
		"AB D",
		"ABC\n",
		"\nABC",
		"AB-_",
		"Zm9v Yg==",
		"Zm9v\r\nYg==",
		"AA.A",
		"AA,A",
		"\x80"
		"AAA",
		"AAA\xff",
		"Zg=\"",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		unsigned char out[64];
		ssize_t n = base64_decode(bad[i], strlen(bad[i]), out);

		if (n != -EINVAL)
			fail_msg("base64_decode(\"%s\") = %zd, expected -EINVAL", bad[i], n);
	}
	/* A NUL is a bad character too, not an end marker. */
	unsigned char out[8];
	assert_int_equal(base64_decode("AA\0A", 4, out), -EINVAL);
	assert_int_equal(base64_decode("\0AAA", 4, out), -EINVAL);
	assert_int_equal(base64_decode("Zg==\0\0\0\0", 8, out), -EINVAL);
}

/* Corrupting any one character of a valid encoding with a non-alphabet byte is caught. */
static void test_decode_rejects_every_position(void **state)
{
	const char *good = "YXBwL2RiL2hvc3Q=";
	size_t n = strlen(good);

	for (size_t pos = 0; pos < n; pos++) {
		for (int c = 0; c < 256; c++) {
			char buf[32];
			unsigned char out[32];

			if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			    (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=')
				continue;
			memcpy(buf, good, n);
			buf[pos] = (char)c;
			assert_int_equal(base64_decode(buf, n, out), -EINVAL);
		}
	}
}

static void test_decode_only_n(void **state)
{
	unsigned char out[8];

	/* Only n characters count: bytes after them are not examined. */
	assert_int_equal(base64_decode("Zg==garbage!", 4, out), 1);
	assert_int_equal(out[0], 'f');
	assert_int_equal(base64_decode("", 0, out), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_vectors),
		cmocka_unit_test(test_decode_vectors),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_roundtrip_binary),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_decode_rejects_every_position),
		cmocka_unit_test(test_decode_only_n),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
