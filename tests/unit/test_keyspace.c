/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the key arithmetic (keyspace.c) that cuts an etcd range into spans read side by side. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keyspace.h"
#include "util.h"

static int cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

static void test_mid(void **state)
{
	char out[64];
	size_t n;

	(void)state;
	n = keyspace_mid(S("a"), S("c"), out, sizeof(out));
	assert_int_equal(n, 2);
	assert_memory_equal(out, "b\0", 2);
	/* Neighbours in the last byte: the middle is one byte further down. */
	n = keyspace_mid(S("t/d0"), S("t/d1"), out, sizeof(out));
	assert_true(n > 0);
	assert_true(cmp(out, n, S("t/d0")) > 0 && cmp(out, n, S("t/d1")) < 0);
	/* A prefix and what extends it by a zero byte: nothing lies between. */
	assert_int_equal(keyspace_mid(S("ab"), S("ab\0"), out, sizeof(out)), 0);
	/* Past every key. */
	n = keyspace_mid(S("\x7f"), NULL, 0, out, sizeof(out));
	assert_true(n > 0);
	assert_true(cmp(out, n, S("\x7f")) > 0);
	assert_true((unsigned char)out[0] >= 0xbf);
	/* All 0xff already: nothing after it fits. */
	n = keyspace_mid(S("\xff\xff"), NULL, 0, out, sizeof(out));
	assert_true(n == 0 || cmp(out, n, S("\xff\xff")) > 0);
	/* No room. */
	assert_int_equal(keyspace_mid(S("abc"), S("abd"), out, 3), 0);
}

static void test_width_scale_add(void **state)
{
	char w[64], p[64];
	size_t wn, pn;

	(void)state;
	/* "k10" - "k00" = 0x00 0x01 0x00: doubled, then added to "k10", reaches "k30". */
	wn = keyspace_width(S("k00"), S("k10"), 2, 1, w, sizeof(w));
	assert_true(wn > 0);
	pn = keyspace_add(S("k10"), w, wn, p, sizeof(p));
	assert_int_equal(pn, 3);
	assert_memory_equal(p, "k30", 3);
	/* Halved: "k10" + ("k10" - "k00") / 2 lies between "k10" and "k20". */
	wn = keyspace_width(S("k00"), S("k10"), 1, 2, w, sizeof(w));
	pn = keyspace_add(S("k10"), w, wn, p, sizeof(p));
	assert_true(cmp(p, pn, S("k10")) > 0 && cmp(p, pn, S("k20")) < 0);
	/* Shrunk to nothing: still a step. */
	wn = keyspace_width(S("a"), S("b"), 1, 255, w, 2);
	assert_true(wn > 0);
	pn = keyspace_add(S("a"), w, wn, p, sizeof(p));
	assert_true(pn > 0 && cmp(p, pn, S("a")) > 0);
	/* A key and its extension by zero bytes: the smallest step, not zero. */
	wn = keyspace_width(S("ab"), S("ab\0\0"), 1, 1, w, sizeof(w));
	assert_true(wn > 0);
	/* Not a width: b before a, or the same key. */
	assert_int_equal(keyspace_width(S("b"), S("a"), 1, 1, w, sizeof(w)), 0);
	assert_int_equal(keyspace_width(S("a"), S("a"), 1, 1, w, sizeof(w)), 0);
	/* Grown past every key: adding it leaves the key space. */
	wn = keyspace_width(S("\x10"), S("\xf0"), 4, 1, w, sizeof(w));
	assert_true(wn > 0);
	assert_int_equal(keyspace_add(S("\xf0"), w, wn, p, sizeof(p)), 0);
	/* Scaling in place keeps within cap. */
	memcpy(w, "\x01", 1);
	wn = keyspace_scale(w, 1, 3, 7, 1);
	assert_int_equal(wn, 1);
	assert_int_equal((unsigned char)w[0], 1); /* 3/7 of the smallest step: the smallest step */
}

/*
 * Walking a range in steps sized from what the last step held must cover
 * it in order and end: the property the span reader depends on.
 */
static void test_walk_ends(void **state)
{
	char cur[64] = "t/", next[64], w[64];
	size_t cn = 2, wn;

	(void)state;
	wn = keyspace_width(S("t/d000"), S("t/d001"), 1, 1, w, sizeof(w));
	unsigned steps = 0;
	for (;;) {
		size_t nn = keyspace_add(cur, cn, w, wn, next, sizeof(next));
		if (!nn || cmp(next, nn, S("t0")) >= 0)
			break;
		assert_true(cmp(next, nn, cur, cn) > 0);
		memcpy(cur, next, nn);
		cn = nn;
		wn = keyspace_scale(w, wn, 16, 1, sizeof(w)); /* empty steps grow fast */
		assert_true(++steps < 64);
	}
}

/* Random pairs of keys (a fixed seed: the same keys every run), short and over small alphabets
 * so that prefixes, zero bytes and 0xff meet often. */
static size_t random_key(unsigned *seed, char *out)
{
	static const char alphabet[] = {'\0', '\x01', '/', '0', '9', 'a', '\x7f', '\xfe', '\xff'};
	size_t n = 1 + (size_t)(rand_r(seed) % 6);

	for (size_t i = 0; i < n; i++)
		out[i] = alphabet[rand_r(seed) % sizeof(alphabet)];
	return n;
}

static size_t trimmed(const char *k, size_t n)
{
	while (n > 0 && k[n - 1] == 0)
		n--;
	return n;
}

static void test_random_pairs(void **state)
{
	unsigned seed = 14;
	char a[16], b[16], m[64], w[64], p[64];

	(void)state;
	for (int round = 0; round < 20000; round++) {
		size_t an = random_key(&seed, a), bn = random_key(&seed, b);
		int c = cmp(a, an, b, bn);
		if (c == 0)
			continue;
		if (c > 0) {
			char t[16];
			size_t tn = an;
			memcpy(t, a, an);
			memcpy(a, b, bn);
			an = bn;
			memcpy(b, t, tn);
			bn = tn;
		}
		/* A midpoint, when there is one, lies strictly between. */
		size_t mn = keyspace_mid(a, an, b, bn, m, sizeof(m));
		if (mn)
			assert_true(cmp(m, mn, a, an) > 0 && cmp(m, mn, b, bn) < 0);
		mn = keyspace_mid(a, an, NULL, 0, m, sizeof(m));
		if (mn)
			assert_true(cmp(m, mn, a, an) > 0);
		/* a + (b - a) is b as a point: b itself, or b and zero bytes. */
		size_t wn = keyspace_width(a, an, b, bn, 1, 1, w, sizeof(w));
		assert_true(wn > 0);
		size_t pn = keyspace_add(a, an, w, wn, p, sizeof(p));
		assert_true(pn > 0);
		assert_true(cmp(p, pn, a, an) > 0);
		/* Exactly, unless b only adds zero bytes to a (then: the smallest step). */
		size_t ta = trimmed(a, an), tb = trimmed(b, bn);
		if (ta != tb || memcmp(a, b, ta)) {
			assert_int_equal(trimmed(p, pn), tb);
			assert_memory_equal(p, b, tb);
		}
		/* Any scaled step still moves forward. */
		wn = keyspace_width(a, an, b, bn, 1 + (unsigned)(rand_r(&seed) % 300), 16, w,
				    sizeof(w));
		assert_true(wn > 0);
		pn = keyspace_add(a, an, w, wn, p, sizeof(p));
		if (pn)
			assert_true(cmp(p, pn, a, an) > 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mid),
		cmocka_unit_test(test_width_scale_add),
		cmocka_unit_test(test_walk_ends),
		cmocka_unit_test(test_random_pairs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
