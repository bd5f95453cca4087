/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Views: a subtree rendered as one JSON, YAML, .env or .properties file; pure functions. */
#ifndef CFGFS_RENDER_H
#define CFGFS_RENDER_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The input is a list of entries, each a path below the view's directory
 * (segments joined by '/', as file names: a segment never holds '/') with
 * the bytes of a value, or a directory (so that an empty one still shows).
 * A segment that is NAMES_VALUE ("%value") holds the value of its parent
 * path: JSON and YAML show it as a member of that name, the flat formats
 * (.env, .properties) give the value to the parent path itself.
 *
 * Every format is deterministic: entries are sorted by path, segment by
 * segment, bytewise. A name that two entries would both take (the same
 * path twice, a value where a directory is, two keys that map to one .env
 * or .properties name) goes to the first in that order; the others are
 * left out (the flat formats say so on a comment line).
 *
 * Text that is not valid UTF-8 shows each offending byte as U+FFFD in the
 * formats that carry text (JSON, YAML, .properties); .env is bytes, and
 * shows the bytes.
 */
enum render_format {
	RENDER_JSON,	   /* nested objects; a value that is valid JSON is embedded as it is */
	RENDER_YAML,	   /* nested mappings; every name and value a double-quoted string */
	RENDER_ENV,	   /* KEY='value' lines a shell can source */
	RENDER_PROPERTIES, /* key=value, keys dotted paths, escaped as java.util.Properties */
	RENDER_NFORMATS,
};

struct render_entry {
	const char *path; /* segments joined by '/', relative to the view's directory */
	size_t plen;
	const char *val; /* the value's bytes (unused for a directory) */
	size_t vlen;
	bool dir; /* a directory: no value */
};

/*
 * Render the n entries of v in format f into *out, malloc'd,
 * NUL-terminated, of *len bytes. 0 or -ENOMEM.
 */
int render(enum render_format f, struct render_entry *v, size_t n, char **out, size_t *len);

/*
 * The name of format f's view file in every directory: "%#json",
 * "%#yaml", "%#env", "%#properties". "%#" starts no name the key codec
 * makes from a segment, in either style (a shortened name ends in "%#" and
 * 16 hex digits; see names.h), so a view never hides a key.
 */
const char *render_view_name(enum render_format f);

/* The format whose view file is called name[0..len), or -1. */
int render_view_format(const char *name, size_t len);

/* Whether v[0..len) is one JSON text (RFC 8259, UTF-8), surrounding whitespace allowed. */
bool render_is_json(const char *v, size_t len);

#endif
