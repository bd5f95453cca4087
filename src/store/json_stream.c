/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Splits a stream of concatenated JSON values into whole values, without parsing them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void json_framer_init(struct json_framer *f, size_t max)
{
	memset(f, 0, sizeof(*f));
	f->max = max;
}

void json_framer_free(struct json_framer *f)
{
	free(f->buf);
	json_framer_init(f, f->max);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

int json_framer_feed(struct json_framer *f, const char *p, size_t n, json_value_fn fn, void *ctx)
{
	if (n == 0)
		return 0; /* nothing new to scan; and memcpy must not see a NULL buffer */
	if (f->len + n > f->cap) {
		size_t cap = f->cap ? f->cap : 4096;
		while (cap < f->len + n)
			cap *= 2;
		char *b = realloc(f->buf, cap);
		if (!b)
			return -ENOMEM;
		f->buf = b;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, p, n);
	f->len += n;

	for (size_t i = f->scan; i < f->len; i++) {
		char c = f->buf[i];

		if (f->depth > 0 && i + 1 - f->start > f->max)
			return -EMSGSIZE;
		if (f->depth == 0) {
			if (is_space(c)) {
				f->start = i + 1;
				continue;
			}
			if (c != '{' && c != '[')
				return -EINVAL;
			f->start = i;
			f->depth = 1;
			continue;
		}
		if (f->in_str) {
			if (f->esc)
				f->esc = false;
			else if (c == '\\')
				f->esc = true;
			else if (c == '"')
				f->in_str = false;
			continue;
		}
		if (c == '"') {
			f->in_str = true;
		} else if (c == '{' || c == '[') {
			f->depth++;
		} else if (c == '}' || c == ']') {
			if (--f->depth == 0) {
				int rc = fn(ctx, f->buf + f->start, i + 1 - f->start);
				f->start = i + 1;
				if (rc) {
					/* The caller abandons the stream: keep nothing. */
					f->len = f->scan = f->start = 0;
					return rc;
				}
			}
		}
	}
	f->scan = f->len;
	/* Drop consumed bytes so the buffer only ever holds one partial value. */
	memmove(f->buf, f->buf + f->start, f->len - f->start);
	f->len -= f->start;
	f->scan -= f->start;
	f->start = 0;
	return 0;
}
