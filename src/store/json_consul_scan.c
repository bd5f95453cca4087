/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Consul's recursive listing read in one pass, without building a DOM.
 *
 * A listing of 100k keys is some 15 MB of JSON; parsed by jansson it costs
 * about half a second of CPU, mostly in allocating and freeing the tree, and
 * Consul sends it again on every change under the prefix. This scanner takes
 * only what Consul writes (an array of flat objects; strings, unsigned
 * integers and null in the fields cfgfs reads) and decodes keys and values
 * straight into the batch. Anything else, malformed or only unusual, it
 * hands back untouched, and jansson (json_consul_list) judges it and says
 * what is wrong: the two never disagree on what a well-formed listing holds
 * (fuzz_json_consul checks that).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json_int.h"

struct scan {
	const char *p, *end;
	char *kbuf; /* the current key, unescaped */
	size_t kcap;
	char *vbuf; /* the values checked, not kept */
	size_t vcap;
};

/* Not handled here: jansson decides. */
#define PUNT 1

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static bool eat(struct scan *s, char c)
{
	skip_ws(s);
	if (s->p < s->end && *s->p == c) {
		s->p++;
		return true;
	}
	return false;
}

static int hex4(const char *p, unsigned *out)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* Length of the valid UTF-8 sequence at p (not overlong, no surrogates, <= U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	size_t n;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		n = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		n = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 4, cp = c & 0x07;
	else
		return 0;
	if ((size_t)(end - p) < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * A JSON string at s->p (past any space), unescaped into s->kbuf when want
 * (else only checked); *len its length. 0, PUNT or -ENOMEM.
 */
static int string(struct scan *s, bool want, size_t *len)
{
	size_t n = 0;

	skip_ws(s);
	if (s->p >= s->end || *s->p != '"')
		return PUNT;
	s->p++;
	/* Unescaping only shortens: the raw length bounds the key. */
	const char *q = memchr(s->p, '"', (size_t)(s->end - s->p));
	if (!q)
		return PUNT;
	if (want && s->kcap < (size_t)(q - s->p) + 1) {
		size_t cap = (size_t)(q - s->p) + 1;
		char *k;
		/* An escaped quote moves the true end further: grow for all that is left. */
		if (memchr(s->p, '\\', (size_t)(q - s->p)))
			cap = (size_t)(s->end - s->p) + 1;
		k = realloc(s->kbuf, cap);
		if (!k)
			return -ENOMEM;
		s->kbuf = k, s->kcap = cap;
	}
	for (;;) {
		if (s->p >= s->end)
			return PUNT;
		unsigned char c = (unsigned char)*s->p;
		if (c == '"') {
			s->p++;
			break;
		}
		if (c < 0x20)
			return PUNT;
		if (want && n + 4 >= s->kcap) {
			size_t cap = s->kcap * 2 + 8;
			char *k = realloc(s->kbuf, cap);
			if (!k)
				return -ENOMEM;
			s->kbuf = k, s->kcap = cap;
		}
		if (c != '\\') {
			size_t l = utf8_len((const unsigned char *)s->p,
					    (const unsigned char *)s->end);
			if (!l)
				return PUNT;
			if (want)
				memcpy(s->kbuf + n, s->p, l);
			n += l;
			s->p += l;
			continue;
		}
		if (s->end - s->p < 2)
			return PUNT;
		char e = s->p[1], out;
		s->p += 2;
		switch (e) {
		case '"':
			out = '"';
			break;
		case '\\':
			out = '\\';
			break;
		case '/':
			out = '/';
			break;
		case 'b':
			out = '\b';
			break;
		case 'f':
			out = '\f';
			break;
		case 'n':
			out = '\n';
			break;
		case 'r':
			out = '\r';
			break;
		case 't':
			out = '\t';
			break;
		case 'u': {
			unsigned cp, lo;
			if (s->end - s->p < 4 || hex4(s->p, &cp))
				return PUNT;
			s->p += 4;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return PUNT;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (s->end - s->p < 6 || s->p[0] != '\\' || s->p[1] != 'u' ||
				    hex4(s->p + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
					return PUNT;
				s->p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			if (want)
				n += put_utf8(s->kbuf + n, cp);
			else
				n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
			continue;
		}
		default:
			return PUNT;
		}
		if (want)
			s->kbuf[n] = out;
		n++;
	}
	if (want)
		s->kbuf[n] = '\0';
	*len = n;
	return 0;
}

/* An unsigned integer that fits in uint64, written as Consul writes it. 0 or PUNT. */
static int u64(struct scan *s, uint64_t *out)
{
	uint64_t v = 0;
	const char *start;

	skip_ws(s);
	start = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9') {
		unsigned d = (unsigned)(*s->p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return PUNT;
		v = v * 10 + d;
		s->p++;
	}
	if (s->p == start || (s->p - start > 1 && *start == '0'))
		return PUNT;
	if (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E'))
		return PUNT;
	*out = v;
	return 0;
}

static bool literal(struct scan *s, const char *word)
{
	size_t n = strlen(word);

	skip_ws(s);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return false;
	s->p += n;
	return true;
}

/* A field cfgfs does not read: strings, integers, literals only (Consul's other fields). */
static int skip_value(struct scan *s)
{
	size_t n;
	uint64_t u;

	skip_ws(s);
	if (s->p >= s->end)
		return PUNT;
	if (*s->p == '"')
		return string(s, false, &n);
	if (*s->p >= '0' && *s->p <= '9')
		return u64(s, &u);
	if (literal(s, "null") || literal(s, "true") || literal(s, "false"))
		return 0;
	return PUNT;
}

enum field { F_KEY, F_VALUE, F_MODIFY, F_CREATE, F_LOCK, F_FLAGS, F_OTHER };

static enum field field_of(const char *name, size_t n)
{
#define IS(lit) (n == sizeof(lit) - 1 && memcmp(name, lit, n) == 0)
	switch (n) {
	case 3:
		return IS("Key") ? F_KEY : F_OTHER;
	case 5:
		return IS("Value") ? F_VALUE : IS("Flags") ? F_FLAGS : F_OTHER;
	case 9:
		return IS("LockIndex") ? F_LOCK : F_OTHER;
	case 11:
		return IS("ModifyIndex") ? F_MODIFY : IS("CreateIndex") ? F_CREATE : F_OTHER;
	default:
		return F_OTHER;
	}
#undef IS
}

/* One entry of the listing into b. 0, PUNT or -ENOMEM. */
static int entry(struct scan *s, int64_t since, struct kv_batch *b, struct consul_count *cnt)
{
	struct kv_meta meta = {0};
	const char *value = NULL;
	size_t vlen = 0, klen = 0;
	unsigned seen = 0;
	int err;

	if (!eat(s, '{'))
		return PUNT;
	if (eat(s, '}'))
		return PUNT; /* no key */
	do {
		skip_ws(s);
		if (s->p >= s->end || *s->p != '"')
			return PUNT;
		/* Consul's field names: plain ASCII, no escapes. */
		const char *name = ++s->p;
		while (s->p < s->end && *s->p >= 0x20 && *s->p < 0x7f && *s->p != '"' &&
		       *s->p != '\\')
			s->p++;
		if (s->p >= s->end || *s->p != '"')
			return PUNT;
		enum field f = field_of(name, (size_t)(s->p - name));
		s->p++;
		if (!eat(s, ':'))
			return PUNT;
		if (f != F_OTHER && (seen & (1u << f)))
			return PUNT; /* twice: jansson's rule (the last wins) applies */
		seen |= 1u << f;
		uint64_t u;
		switch (f) {
		case F_KEY:
			err = string(s, true, &klen);
			if (err)
				return err;
			break;
		case F_VALUE:
			if (literal(s, "null"))
				break;
			skip_ws(s);
			if (s->p >= s->end || *s->p != '"')
				return PUNT;
			value = ++s->p;
			const char *q = memchr(value, '"', (size_t)(s->end - value));
			/* Base64 has no character JSON must escape: a backslash is not ours. */
			if (!q || memchr(value, '\\', (size_t)(q - value)))
				return PUNT;
			vlen = (size_t)(q - value);
			s->p = q + 1;
			break;
		case F_MODIFY:
		case F_CREATE:
		case F_LOCK:
			if (u64(s, &u) || u > INT64_MAX)
				return PUNT;
			*(f == F_MODIFY	  ? &meta.mod_rev
			  : f == F_CREATE ? &meta.create_rev
					  : &meta.version) = (int64_t)u;
			break;
		case F_FLAGS:
			if (literal(s, "null"))
				break;
			if (u64(s, &meta.flags))
				return PUNT;
			break;
		default:
			err = skip_value(s);
			if (err)
				return err;
		}
	} while (eat(s, ','));
	if (!eat(s, '}') || !(seen & (1u << F_KEY)) || klen == 0)
		return PUNT;
	cnt->total++;
	cnt->created += since && meta.create_rev > since;
	if (!json_consul_handed(since, &meta)) {
		/* Not kept, still checked: a store that sends garbage is told so. */
		size_t need = base64_decoded_max(vlen) + 1;
		if (need > s->vcap) {
			char *v = realloc(s->vbuf, need);
			if (!v)
				return -ENOMEM;
			s->vbuf = v, s->vcap = need;
		}
		return base64_decode(value ? value : "", vlen, s->vbuf) < 0 ? PUNT : 0;
	}
	struct blob *v = blob_new(base64_decoded_max(vlen));
	if (!v)
		return -ENOMEM;
	ssize_t len = base64_decode(value ? value : "", vlen, v->data);
	if (len < 0) {
		blob_unref(v);
		return PUNT;
	}
	v->len = (size_t)len;
	v->data[len] = '\0';
	return kv_batch_push(b, s->kbuf, klen, v, &meta) ? -ENOMEM : 0;
}

int json_consul_list_scan(const char *buf, size_t len, int64_t since, struct kv_batch *out,
			  struct consul_count *cnt)
{
	struct scan s = {.p = buf, .end = buf + len};
	size_t n0 = out->n;
	int err = PUNT;

	cnt->total = cnt->created = 0;
	if (!eat(&s, '['))
		return PUNT;
	if (eat(&s, ']')) {
		err = 0;
	} else {
		do {
			err = entry(&s, since, out, cnt);
		} while (!err && eat(&s, ','));
		if (!err && !eat(&s, ']'))
			err = PUNT;
	}
	skip_ws(&s);
	if (!err && s.p != s.end)
		err = PUNT;
	free(s.kbuf);
	free(s.vbuf);
	if (err)
		kv_batch_truncate(out, n0);
	return err;
}
