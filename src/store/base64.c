/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Standard base64 (RFC 4648, with padding), as the etcd gateway and Consul use. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "base64.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t base64_encoded_size(size_t n)
{
	return (n + 2) / 3 * 4 + 1;
}

size_t base64_encode(const void *in, size_t n, char *out)
{
	const uint8_t *p = in;
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

size_t base64_decoded_max(size_t n)
{
	return (n + 3) / 4 * 3;
}

static int sextet(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t base64_decode(const char *in, size_t n, void *out)
{
	uint8_t *o = out;
	size_t len = 0;

	/* Strict: whole quads only, padding only at the very end. */
	if (n % 4)
		return -EINVAL;
	for (size_t i = 0; i < n; i += 4) {
		int a = sextet(in[i]), b = sextet(in[i + 1]);
		int c = in[i + 2] == '=' ? -2 : sextet(in[i + 2]);
		int d = in[i + 3] == '=' ? -2 : sextet(in[i + 3]);
		bool last = i + 4 == n;

		if (a < 0 || b < 0 || c == -1 || d == -1)
			return -EINVAL;
		if ((c == -2 || d == -2) && !last)
			return -EINVAL;
		if (c == -2 && d != -2)
			return -EINVAL;
		uint32_t v = (uint32_t)a << 18 | (uint32_t)b << 12;
		o[len++] = v >> 16;
		if (c >= 0) {
			v |= (uint32_t)c << 6;
			o[len++] = (v >> 8) & 0xff;
		}
		if (d >= 0) {
			v |= (uint32_t)d;
			o[len++] = v & 0xff;
		}
	}
	return len;
}
