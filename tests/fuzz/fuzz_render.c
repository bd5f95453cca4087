/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes the views' renderer (render.c) against what each format promises, whatever the bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const char *out, size_t len)
{
	fprintf(stderr, "render: %s\n--- output (%zu bytes):\n%.*s\n", what, len,
		(int)(len < 4000 ? len : 4000), out);
	abort();
}

static bool is_ident(const char *s, size_t len)
{
	if (len == 0 || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			return false;
	return true;
}

/*
 * .env: comment lines, and NAME='...' where the quoted part is closed only
 * by a quote followed by the end of the line ('\'' inside).
 */
static void check_env(const char *o, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (o[i] == '#') {
			const char *nl = memchr(o + i, '\n', n - i);
			if (!nl)
				fail("env: comment without a line end", o, n);
			i = (size_t)(nl - o) + 1;
			continue;
		}
		const char *eq = memchr(o + i, '=', n - i);
		if (!eq || !is_ident(o + i, (size_t)(eq - o) - i) || eq + 1 >= o + n ||
		    eq[1] != '\'')
			fail("env: a line that is not NAME='", o, n);
		i = (size_t)(eq - o) + 2;
		for (;;) {
			const char *q = memchr(o + i, '\'', n - i);
			if (!q)
				fail("env: unclosed quote", o, n);
			i = (size_t)(q - o) + 1;
			if (i < n && o[i] == '\n') {
				i++;
				break;
			}
			if (n - i >= 3 && memcmp(o + i, "\\''", 3) == 0) {
				i += 3;
				continue;
			}
			fail("env: a quote that neither ends the value nor is '\\''", o, n);
		}
	}
}

/* .properties: printable ASCII lines; a line ends in a backslash only if that is escaped. */
static void check_properties(const char *o, size_t n)
{
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)o[i];
		if (c == '\n') {
			if (run % 2)
				fail("properties: a line continues", o, n);
			run = 0;
			continue;
		}
		if (c < 0x20 || c > 0x7E)
			fail("properties: not printable ASCII", o, n);
		run = c == '\\' ? run + 1 : 0;
	}
}

/* YAML: one line per name, each starting with indentation and a double quote. */
static void check_yaml(const char *o, size_t n)
{
	if (n == 3 && memcmp(o, "{}\n", 3) == 0)
		return;
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(o + i, '\n', n - i);
		if (!nl)
			fail("yaml: no line end", o, n);
		size_t k = i;
		while (k < (size_t)(nl - o) && o[k] == ' ')
			k++;
		if ((k - i) % 2 || k == (size_t)(nl - o) || o[k] != '"')
			fail("yaml: a line that is not a quoted name", o, n);
		i = (size_t)(nl - o) + 1;
	}
}

/*
 * Input: entries separated by '\n', each PATH '\t' VALUE, or PATH alone for
 * a directory; VALUE may hold anything but '\n' (NUL included).
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct render_entry v[64];
	size_t n = 0, depth = 0;

	while (p < end && n < 64) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		const char *tab = memchr(p, '\t', (size_t)(e - p));
		if (tab)
			v[n++] = (struct render_entry){p, (size_t)(tab - p), tab + 1,
						       (size_t)(e - tab - 1), false};
		else
			v[n++] = (struct render_entry){p, (size_t)(e - p), NULL, 0, true};
		size_t d = 1;
		for (size_t i = 0; i < v[n - 1].plen; i++)
			d += v[n - 1].path[i] == '/';
		depth = d > depth ? d : depth;
		p = nl ? nl + 1 : end;
	}
	for (int f = 0; f < RENDER_NFORMATS; f++) {
		char *out;
		size_t len;
		if (render(f, v, n, &out, &len))
			continue;
		if (out[len] != '\0')
			fail("no NUL after the output", out, len);
		/* render_is_json checks 128 levels, the renderer writes more. */
		if (f == RENDER_JSON && depth < 120 && !render_is_json(out, len))
			fail("json: the output is not JSON", out, len);
		if (f != RENDER_ENV && memchr(out, '\0', len))
			fail("a NUL byte in the output", out, len);
		if (f == RENDER_ENV)
			check_env(out, len);
		if (f == RENDER_PROPERTIES)
			check_properties(out, len);
		if (f == RENDER_YAML)
			check_yaml(out, len);
		free(out);
	}
	return 0;
}
