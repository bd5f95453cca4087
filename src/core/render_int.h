/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the views' renderer: what render.c and render_esc.c share. */
#ifndef CFGFS_RENDER_INT_H
#define CFGFS_RENDER_INT_H

#include <stdbool.h>
#include <stddef.h>

/* A growing output buffer. */
struct out {
	char *p;
	size_t n, cap;
	bool oom; /* a failed append: everything after it is dropped, render fails */
};

/* Room for more bytes and a NUL; false (and oom set) when there is none. */
bool rb_reserve(struct out *o, size_t more);
void rb_put(struct out *o, const char *s, size_t len);
void rb_puts(struct out *o, const char *s);
void rb_putc(struct out *o, char c);
/* prefix, then v in `digits` upper-case hex digits. */
void rb_hex(struct out *o, const char *prefix, unsigned long v, int digits);
/* Two spaces per level. */
void rb_indent(struct out *o, size_t depth);

/*
 * The code point at s[0..len) (len > 0) and its length in *adv; -1 with
 * *adv = 1 for a byte that does not start a well-formed sequence (overlong
 * forms, surrogates and code points above U+10FFFF are not well-formed).
 */
long rt_utf8_next(const unsigned char *s, size_t len, size_t *adv);

/* v[0..len) as a JSON string: quoted, escaped, each ill-formed byte as U+FFFD. */
void rt_json_string(struct out *o, const char *v, size_t len);

/* v[0..len) as a YAML double-quoted scalar on one line (see render_esc.c). */
void rt_yaml_string(struct out *o, const char *v, size_t len);

/* v[0..len) escaped as java.util.Properties stores a key (key) or a value. */
void rt_prop_escape(struct out *o, const char *v, size_t len, bool key);

#endif
