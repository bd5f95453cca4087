/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Keys as points of a line: where to cut a range of keys, and how far a step of keys reaches. */
#include <stdbool.h>
#include <string.h>

#include "keyspace.h"

static unsigned byte_at(const char *s, size_t len, size_t i)
{
	return i < len ? (unsigned char)s[i] : 0;
}

static int cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/* Drop zero bytes at the end (the same fraction), keeping at least one. */
static size_t trim(const char *w, size_t n)
{
	while (n > 1 && w[n - 1] == 0)
		n--;
	return n;
}

static bool is_zero(const char *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (w[i])
			return false;
	return true;
}

size_t keyspace_mid(const char *lo, size_t lolen, const char *hi, size_t hilen, char *out,
		    size_t cap)
{
	size_t n = (hi && hilen > lolen ? hilen : lolen) + 1;
	unsigned carry = 0;

	if (n > cap)
		return 0;
	/* lo + hi from the right, then halved from the left with the carry on top. */
	for (size_t i = n; i-- > 0;) {
		unsigned sum = byte_at(lo, lolen, i) + (hi ? byte_at(hi, hilen, i) : 0xff) + carry;
		out[i] = (char)(sum & 0xff);
		carry = sum >> 8;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned cur = carry << 8 | (unsigned char)out[i];
		out[i] = (char)(cur >> 1);
		carry = cur & 1;
	}
	if (cmp(out, n, lo, lolen) <= 0 || (hi && cmp(out, n, hi, hilen) >= 0))
		return 0;
	return n;
}

size_t keyspace_scale(char *w, size_t wlen, unsigned num, unsigned den, size_t cap)
{
	size_t n = wlen;
	unsigned long carry = 0;

	if (!wlen || !den || wlen > cap)
		return 0;
	/* One more byte of precision for the division, when there is room. */
	if (n < cap)
		w[n++] = 0;
	for (size_t i = n; i-- > 0;) {
		unsigned long x = (unsigned long)(unsigned char)w[i] * num + carry;
		w[i] = (char)(x & 0xff);
		carry = x >> 8;
	}
	if (carry) {
		/* Wider than all keys: the most there is. */
		memset(w, 0xff, n);
		return n;
	}
	unsigned long rem = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned long cur = rem << 8 | (unsigned char)w[i];
		w[i] = (char)(cur / den);
		rem = cur % den;
	}
	if (is_zero(w, n))
		w[n - 1] = 1; /* the smallest step, so that a walk always moves */
	return trim(w, n);
}

size_t keyspace_width(const char *a, size_t alen, const char *b, size_t blen, unsigned num,
		      unsigned den, char *out, size_t cap)
{
	size_t n = alen > blen ? alen : blen;
	int borrow = 0;

	if (n == 0 || n > cap || cmp(a, alen, b, blen) >= 0)
		return 0;
	for (size_t i = n; i-- > 0;) {
		int d = (int)byte_at(b, blen, i) - (int)byte_at(a, alen, i) - borrow;
		borrow = d < 0;
		out[i] = (char)(d + (borrow ? 256 : 0));
	}
	/* b after a by a prefix alone (b = a then zero bytes): the smallest step. */
	if (is_zero(out, n))
		out[n - 1] = 1;
	return keyspace_scale(out, trim(out, n), num, den, cap);
}

size_t keyspace_add(const char *a, size_t alen, const char *w, size_t wlen, char *out, size_t cap)
{
	size_t n = alen > wlen ? alen : wlen;
	unsigned carry = 0;

	if (n == 0 || n > cap)
		return 0;
	for (size_t i = n; i-- > 0;) {
		unsigned sum = byte_at(a, alen, i) + byte_at(w, wlen, i) + carry;
		out[i] = (char)(sum & 0xff);
		carry = sum >> 8;
	}
	return carry ? 0 : n;
}
