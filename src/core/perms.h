/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Permission rules (-o perms=FILE): owner, group and mode by path glob; pure functions. */
#ifndef CFGFS_PERMS_H
#define CFGFS_PERMS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * A rules file holds one rule per line, "GLOB UID:GID MODE", and '#'
 * comments. GLOB is a path below the mount root whose segments are shell
 * patterns (fnmatch: '*', '?', '[...]', a leading '.' not special) or "**",
 * any number of segments, none included; so the segments "secrets" and
 * "**" stand for secrets itself and everything below it. UID and GID are numbers or names, MODE is
 * octal (at most 0777) and is a file's mode; a directory gets x wherever the mode gives r. The last
 * rule that matches a path decides; a path no rule matches keeps cfgfs's default.
 *
 * A rule set is immutable once parsed: readers share it without locks.
 */
struct perms;

struct perms_grant {
	uid_t uid;
	gid_t gid;
	mode_t mode; /* the file mode of the rule; perms_dir_mode for directories */
	unsigned line;
};

/*
 * Parse text (len bytes, '#' comments, blank lines) into *out. An empty
 * rule set is valid. On error: -1 and one line in err naming the line
 * number (and file, when file is not NULL).
 */
int perms_parse(const char *text, size_t len, const char *file, struct perms **out, char *err,
		size_t errlen);

/* Read and parse the rules file at path; errors as perms_parse, and the file's own. */
int perms_load(const char *path, struct perms **out, char *err, size_t errlen);

void perms_free(struct perms *p);

size_t perms_count(const struct perms *p);

/*
 * The rule that decides path (below the mount root, '/'-separated, "" for
 * the root itself), if any.
 */
bool perms_match(const struct perms *p, const char *path, struct perms_grant *g);

/* The mode a directory gets from a rule's mode: x where r is given. */
static inline mode_t perms_dir_mode(mode_t mode)
{
	return mode | ((mode & 0444) >> 2);
}

#endif
