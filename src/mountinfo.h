/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef CFGFS_MOUNTINFO_H
#define CFGFS_MOUNTINFO_H

#include <stdbool.h>

/* One line of /proc/self/mountinfo, unescaped; valid during the callback only. */
struct mountinfo_entry {
	const char *dir;    /* the mountpoint */
	const char *fstype; /* "fuse.cfgfs" for ours */
	const char *source; /* for cfgfs, the store URL */
};

/*
 * Call fn for every mount this process sees, in mount order (a later line is
 * mounted later: of mounts stacked on one directory, the last is the one a
 * path reaches); fn returns false to stop. 0, or -errno if mountinfo cannot
 * be read.
 */
int mountinfo_each(bool (*fn)(void *ctx, const struct mountinfo_entry *e), void *ctx);

#endif
