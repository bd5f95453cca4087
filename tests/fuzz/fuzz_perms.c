/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes the rules file parser and the glob matcher (perms.c): any text, then paths. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "perms.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Layout: the rules text, then a 0xff byte, then paths separated by NUL
 * (each is matched). Parsing must fail with one line or succeed, and a
 * match must name a rule's line within the text.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, 0xff, size);
	size_t tlen = sep ? (size_t)(sep - data) : size;
	struct perms *p;
	char err[256];

	if (perms_parse((const char *)data, tlen, NULL, &p, err, sizeof(err))) {
		if (p || !err[0] || strchr(err, '\n'))
			abort();
		return 0;
	}
	size_t lines = 1;
	for (size_t i = 0; i < tlen; i++)
		lines += data[i] == '\n';
	if (perms_count(p) > lines)
		abort();
	const uint8_t *q = sep ? sep + 1 : data + size;
	size_t left = (size_t)(data + size - q);
	char *paths = malloc(left + 1);
	if (!paths)
		abort();
	memcpy(paths, q, left);
	paths[left] = '\0';
	for (char *path = paths; path <= paths + left; path += strlen(path) + 1) {
		struct perms_grant g;
		if (perms_match(p, path, &g) && (g.line == 0 || g.line > lines || g.mode > 0777))
			abort();
	}
	free(paths);
	perms_free(p);
	return 0;
}
