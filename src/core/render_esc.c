/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Views: the output buffer, UTF-8, and how each format quotes text (JSON, YAML, .properties). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "render_int.h"

/* ------------------------------------------------------------ output buffer */

bool rb_reserve(struct out *o, size_t more)
{
	if (o->oom)
		return false;
	if (o->n + more + 1 <= o->cap)
		return true;
	size_t cap = o->cap ? o->cap : 64;
	while (cap < o->n + more + 1)
		cap *= 2;
	char *p = realloc(o->p, cap);
	if (!p) {
		o->oom = true;
		return false;
	}
	o->p = p;
	o->cap = cap;
	return true;
}

void rb_put(struct out *o, const char *s, size_t len)
{
	if (rb_reserve(o, len)) {
		memcpy(o->p + o->n, s, len);
		o->n += len;
	}
}

void rb_puts(struct out *o, const char *s)
{
	rb_put(o, s, strlen(s));
}

void rb_putc(struct out *o, char c)
{
	if (rb_reserve(o, 1))
		o->p[o->n++] = c;
}

/* prefix, then v in `digits` upper-case hex digits. */
void rb_hex(struct out *o, const char *prefix, unsigned long v, int digits)
{
	static const char hex[] = "0123456789ABCDEF";

	rb_puts(o, prefix);
	for (int i = digits - 1; i >= 0; i--)
		rb_putc(o, hex[(v >> (4 * i)) & 15]);
}

void rb_indent(struct out *o, size_t depth)
{
	for (size_t i = 0; i < depth; i++)
		rb_put(o, "  ", 2);
}

/* ------------------------------------------------------------ UTF-8 */

/*
 * The code point at s[0..len) (len > 0) and its length in *adv; -1 with
 * *adv = 1 for a byte that does not start a well-formed sequence (overlong
 * forms, surrogates and code points above U+10FFFF are not well-formed).
 */
long rt_utf8_next(const unsigned char *s, size_t len, size_t *adv)
{
	unsigned char c = s[0];
	size_t need;
	long cp, min;

	*adv = 1;
	if (c < 0x80)
		return c;
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1, cp = c & 0x1F, min = 0x80;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2, cp = c & 0x0F, min = 0x800;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3, cp = c & 0x07, min = 0x10000;
	} else {
		return -1;
	}
	if (len < need + 1)
		return -1;
	for (size_t i = 1; i <= need; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return -1;
	*adv = need + 1;
	return cp;
}

static const char replacement[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* ------------------------------------------------------------ JSON */

/* v[0..len) as a JSON string: quoted, escaped, each ill-formed byte as U+FFFD. */
/* How many bytes from s on are printable ASCII other than '"' and '\\': the same in every format.
 */
static size_t plain_run(const unsigned char *s, size_t len)
{
	size_t n = 0;

	while (n < len && s[n] >= 0x20 && s[n] < 0x7F && s[n] != '"' && s[n] != '\\')
		n++;
	return n;
}

void rt_json_string(struct out *o, const char *v, size_t len)
{
	const unsigned char *s = (const unsigned char *)v;

	rb_putc(o, '"');
	for (size_t i = 0; i < len;) {
		size_t adv, run = plain_run(s + i, len - i);
		if (run) {
			rb_put(o, v + i, run);
			i += run;
			continue;
		}
		long cp = rt_utf8_next(s + i, len - i, &adv);
		if (cp < 0) {
			rb_put(o, replacement, 3);
		} else if (cp == '"' || cp == '\\') {
			rb_putc(o, '\\');
			rb_putc(o, (char)cp);
		} else if (cp == '\n') {
			rb_puts(o, "\\n");
		} else if (cp == '\t') {
			rb_puts(o, "\\t");
		} else if (cp == '\r') {
			rb_puts(o, "\\r");
		} else if (cp < 0x20 || cp == 0x7F || cp == 0x2028 || cp == 0x2029) {
			/* U+2028/9 are valid JSON but end a line in JavaScript. */
			rb_hex(o, "\\u", (unsigned long)cp, 4);
		} else {
			rb_put(o, v + i, adv);
		}
		i += adv;
	}
	rb_putc(o, '"');
}

struct scan {
	const unsigned char *s;
	size_t len, i;
};

static void skip_ws(struct scan *sc)
{
	while (sc->i < sc->len && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
				   sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
		sc->i++;
}

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool scan_string(struct scan *sc)
{
	sc->i++; /* the opening quote */
	while (sc->i < sc->len) {
		unsigned char c = sc->s[sc->i];
		if (c == '"') {
			sc->i++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (sc->i + 1 >= sc->len)
				return false;
			c = sc->s[sc->i + 1];
			if (c == 'u') {
				if (sc->i + 6 > sc->len)
					return false;
				for (size_t k = 2; k < 6; k++)
					if (!is_hex(sc->s[sc->i + k]))
						return false;
				sc->i += 6;
			} else if (strchr("\"\\/bfnrt", c) && c) {
				sc->i += 2;
			} else {
				return false;
			}
			continue;
		}
		size_t adv;
		if (rt_utf8_next(sc->s + sc->i, sc->len - sc->i, &adv) < 0)
			return false;
		sc->i += adv;
	}
	return false;
}

static bool scan_number(struct scan *sc)
{
	size_t start;

	if (sc->i < sc->len && sc->s[sc->i] == '-')
		sc->i++;
	if (sc->i >= sc->len)
		return false;
	if (sc->s[sc->i] == '0') {
		sc->i++;
	} else if (is_digit(sc->s[sc->i])) {
		while (sc->i < sc->len && is_digit(sc->s[sc->i]))
			sc->i++;
	} else {
		return false;
	}
	if (sc->i < sc->len && sc->s[sc->i] == '.') {
		start = ++sc->i;
		while (sc->i < sc->len && is_digit(sc->s[sc->i]))
			sc->i++;
		if (sc->i == start)
			return false;
	}
	if (sc->i < sc->len && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
		sc->i++;
		if (sc->i < sc->len && (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
			sc->i++;
		start = sc->i;
		while (sc->i < sc->len && is_digit(sc->s[sc->i]))
			sc->i++;
		if (sc->i == start)
			return false;
	}
	return true;
}

static bool scan_word(struct scan *sc, const char *w)
{
	size_t n = strlen(w);

	if (sc->len - sc->i < n || memcmp(sc->s + sc->i, w, n) != 0)
		return false;
	sc->i += n;
	return true;
}

/* Deeper values are shown as strings: the check recurses once per level. */
#define JSON_MAX_DEPTH 128

static bool scan_value(struct scan *sc, int depth)
{
	skip_ws(sc);
	if (sc->i >= sc->len || depth > JSON_MAX_DEPTH)
		return false;
	unsigned char c = sc->s[sc->i];
	if (c == '"')
		return scan_string(sc);
	if (c == '-' || is_digit(c))
		return scan_number(sc);
	if (c == 't')
		return scan_word(sc, "true");
	if (c == 'f')
		return scan_word(sc, "false");
	if (c == 'n')
		return scan_word(sc, "null");
	if (c != '{' && c != '[')
		return false;
	unsigned char close = c == '{' ? '}' : ']';
	sc->i++;
	skip_ws(sc);
	if (sc->i < sc->len && sc->s[sc->i] == close) {
		sc->i++;
		return true;
	}
	for (;;) {
		if (close == '}') {
			skip_ws(sc);
			if (sc->i >= sc->len || sc->s[sc->i] != '"' || !scan_string(sc))
				return false;
			skip_ws(sc);
			if (sc->i >= sc->len || sc->s[sc->i] != ':')
				return false;
			sc->i++;
		}
		if (!scan_value(sc, depth + 1))
			return false;
		skip_ws(sc);
		if (sc->i >= sc->len)
			return false;
		if (sc->s[sc->i] == close) {
			sc->i++;
			return true;
		}
		if (sc->s[sc->i] != ',')
			return false;
		sc->i++;
	}
}

bool render_is_json(const char *v, size_t len)
{
	struct scan sc = {(const unsigned char *)v, len, 0};

	if (!scan_value(&sc, 0))
		return false;
	skip_ws(&sc);
	return sc.i == len;
}

/* ------------------------------------------------------------ YAML */

/*
 * v[0..len) as a YAML double-quoted scalar on one line: every character
 * YAML would read as syntax, a line break or an unprintable is escaped, so
 * no value can end the scalar or add structure.
 */
void rt_yaml_string(struct out *o, const char *v, size_t len)
{
	const unsigned char *s = (const unsigned char *)v;

	rb_putc(o, '"');
	for (size_t i = 0; i < len;) {
		size_t adv, run = plain_run(s + i, len - i);
		if (run) {
			rb_put(o, v + i, run);
			i += run;
			continue;
		}
		long cp = rt_utf8_next(s + i, len - i, &adv);
		const char *e = NULL;
		switch (cp) {
		case '"':
			e = "\\\"";
			break;
		case '\\':
			e = "\\\\";
			break;
		case 0:
			e = "\\0";
			break;
		case '\t':
			e = "\\t";
			break;
		case '\n':
			e = "\\n";
			break;
		case '\r':
			e = "\\r";
			break;
		case 0x85:
			e = "\\N";
			break;
		case 0x2028:
			e = "\\L";
			break;
		case 0x2029:
			e = "\\P";
			break;
		default:
			break;
		}
		if (cp < 0) {
			rb_put(o, replacement, 3);
		} else if (e) {
			rb_puts(o, e);
		} else if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) {
			rb_hex(o, "\\x", (unsigned long)cp, 2);
		} else if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFEFF || cp == 0xFFFE ||
			   cp == 0xFFFF) {
			rb_hex(o, "\\u", (unsigned long)cp, 4);
		} else {
			rb_put(o, v + i, adv);
		}
		i += adv;
	}
	rb_putc(o, '"');
}

/*
 * s[0..len) as java.util.Properties writes it (store()): backslash escapes
 * for '\\', '=', ':', '#', '!', tab, line breaks and form feed, spaces in a
 * key and a value's leading space, and \uXXXX (UTF-16) for everything
 * outside printable ASCII, so the file is ASCII whatever the bytes.
 */
void rt_prop_escape(struct out *o, const char *v, size_t len, bool key)
{
	const unsigned char *s = (const unsigned char *)v;

	for (size_t i = 0; i < len;) {
		size_t adv;
		long cp = rt_utf8_next(s + i, len - i, &adv);
		if (cp < 0)
			cp = 0xFFFD;
		switch (cp) {
		case ' ':
			if (key || i == 0)
				rb_putc(o, '\\');
			rb_putc(o, ' ');
			break;
		case '\\':
		case '=':
		case ':':
		case '#':
		case '!':
			rb_putc(o, '\\');
			rb_putc(o, (char)cp);
			break;
		case '\t':
			rb_puts(o, "\\t");
			break;
		case '\n':
			rb_puts(o, "\\n");
			break;
		case '\r':
			rb_puts(o, "\\r");
			break;
		case '\f':
			rb_puts(o, "\\f");
			break;
		default:
			if (cp >= 0x20 && cp <= 0x7E) {
				rb_putc(o, (char)cp);
			} else if (cp <= 0xFFFF) {
				rb_hex(o, "\\u", (unsigned long)cp, 4);
			} else {
				unsigned long u = (unsigned long)cp - 0x10000;
				rb_hex(o, "\\u", 0xD800 + (u >> 10), 4);
				rb_hex(o, "\\u", 0xDC00 + (u & 0x3FF), 4);
			}
		}
		i += adv;
	}
}
