/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The key <-> file name codec: pure functions, no state. */
#include <errno.h>
#include <string.h>

#include "names.h"

static const char hexdig[] = "0123456789ABCDEF";
static const char hexlow[] = "0123456789abcdef";

/* FNV-1a, then a finalizer so every input bit reaches every output bit. */
static uint64_t seg_hash(const char *s, size_t len, uint32_t salt)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ salt;

	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

static bool needs_escape(char c)
{
	return c == '%' || c == '\0';
}

/* The escaped name of seg, at most max bytes (hashed beyond). */
static size_t encode_escaped(const char *seg, size_t len, uint32_t salt, char *out, size_t max,
			     bool *hashed)
{
	/* Room for the escaped prefix of a long name, so the hash suffix fits. */
	const size_t keep_max = max - NAMES_HASH_LEN;
	size_t o = 0, cut;
	bool too_long = false;

	*hashed = false;
	if (len == 0) {
		out[0] = '%';
		out[1] = '\0';
		return 1;
	}
	if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.')) {
		for (size_t i = 0; i < len; i++) {
			memcpy(out + o, "%2E", 3);
			o += 3;
		}
		out[o] = '\0';
		return o;
	}
	/*
	 * Remember where a long name may be cut: never inside an escape, and
	 * not inside a UTF-8 sequence when one is nearby, so the shortened name
	 * stays readable text when the key is text.
	 */
	size_t cut_any = 0, cut_char = 0;
	for (size_t i = 0; i < len; i++) {
		size_t w = needs_escape(seg[i]) ? 3 : 1;

		if (o <= keep_max) {
			cut_any = o;
			if (((unsigned char)seg[i] & 0xC0) != 0x80)
				cut_char = o;
		}
		if (o + w > max) {
			too_long = true;
			break;
		}
		if (w == 3) {
			out[o++] = '%';
			out[o++] = hexdig[(unsigned char)seg[i] >> 4];
			out[o++] = hexdig[(unsigned char)seg[i] & 15];
		} else {
			out[o++] = seg[i];
		}
	}
	if (!too_long) {
		out[o] = '\0';
		return o;
	}
	cut = cut_any - cut_char <= 3 ? cut_char : cut_any;
	uint64_t h = seg_hash(seg, len, salt);
	o = cut;
	out[o++] = '%';
	out[o++] = '#';
	for (int i = 15; i >= 0; i--)
		out[o++] = hexlow[(h >> (i * 4)) & 15];
	out[o] = '\0';
	*hashed = true;
	return o;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* lower case is not canonical */
}

static ssize_t decode_escaped(const char *name, size_t len, char *out)
{
	size_t o = 0;

	if (len == 1 && name[0] == '%')
		return 0;
	if (len == 3 && memcmp(name, "%2E", 3) == 0) {
		out[0] = '.';
		return 1;
	}
	if (len == 6 && memcmp(name, "%2E%2E", 6) == 0) {
		out[0] = out[1] = '.';
		return 2;
	}
	for (size_t i = 0; i < len; i++) {
		/* Only "%00" stands for NUL: no file name holds one as it is. */
		if (name[i] == '\0')
			return -EINVAL;
		if (name[i] != '%') {
			out[o++] = name[i];
			continue;
		}
		if (i + 2 >= len)
			return -EINVAL;
		int hi = hexval(name[i + 1]), lo = hexval(name[i + 2]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		char c = (char)(hi << 4 | lo);
		if (!needs_escape(c))
			return -EINVAL;
		out[o++] = c;
		i += 2;
	}
	/* A plain name spelled "." or ".." never reaches us; the VFS owns those. */
	return o;
}

size_t names_max(enum names_style st)
{
	return st == NAMES_PLAIN ? NAMES_MAX : NAMES_ESCAPED_MAX;
}

/* Whether a plain name can be seg itself. */
static bool plain_as_is(const char *seg, size_t len)
{
	if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
		return false;
	if (memchr(seg, '\0', len) || memchr(seg, '/', len))
		return false;
	/* Reserved, or what escapes a segment that cannot be itself. */
	if (len >= 2 && seg[0] == '%' && (seg[1] == '!' || seg[1] == '#'))
		return false;
	/* The tail of a hashed name. */
	if (len >= NAMES_HASH_LEN && seg[len - NAMES_HASH_LEN] == '%' &&
	    seg[len - NAMES_HASH_LEN + 1] == '#') {
		size_t hex = 0;
		while (hex < 16 && memchr(hexlow, seg[len - 16 + hex], 16))
			hex++;
		if (hex == 16)
			return false;
	}
	return !names_is_value(seg, len);
}

size_t names_encode(enum names_style st, const char *seg, size_t len, uint32_t salt, char *out,
		    bool *hashed)
{
	if (st == NAMES_ESCAPED)
		return encode_escaped(seg, len, salt, out, NAMES_ESCAPED_MAX, hashed);
	*hashed = false;
	if (plain_as_is(seg, len)) {
		if (len <= NAMES_MAX) {
			memcpy(out, seg, len);
			out[len] = '\0';
			return len;
		}
		return encode_escaped(seg, len, salt, out, NAMES_MAX, hashed);
	}
	out[0] = '%';
	out[1] = '!';
	size_t n = encode_escaped(seg, len, salt, out + 2, NAMES_MAX - 2, hashed);
	return n + 2;
}

ssize_t names_decode(enum names_style st, const char *name, size_t len, char *out)
{
	/*
	 * The empty segment is "%", and a segment whose name would be longer
	 * than the style allows has a hashed name: neither "" nor a name that
	 * long is the name of any key, and taking them would give one key two
	 * names. Callers check the length too, but the codec must not rely on it.
	 */
	if (len == 0 || len > names_max(st))
		return -EINVAL;
	if (st == NAMES_ESCAPED)
		return decode_escaped(name, len, out);
	if (len >= 2 && name[0] == '%' && name[1] == '!') {
		char again[NAMES_MAX + 1];
		bool hashed;
		ssize_t n = decode_escaped(name + 2, len - 2, out);
		/* Canonical only: the name this segment encodes to, and no other. */
		if (n < 0 || names_encode(NAMES_PLAIN, out, (size_t)n, 0, again, &hashed) != len ||
		    hashed || memcmp(again, name, len) != 0)
			return -EINVAL;
		return n;
	}
	if (!plain_as_is(name, len))
		return -EINVAL;
	memcpy(out, name, len);
	return (ssize_t)len;
}

bool names_is_value(const char *name, size_t len)
{
	return len == NAMES_VALUE_LEN && memcmp(name, NAMES_VALUE, NAMES_VALUE_LEN) == 0;
}

size_t names_segment_len(const char *key, size_t len)
{
	const char *slash = memchr(key, '/', len);

	return slash ? (size_t)(slash - key) : len;
}
