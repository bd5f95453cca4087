/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The permission rules in force (-o perms=FILE): applied to attributes, re-read on SIGHUP. */
#ifndef CFGFS_FS_PERMS_H
#define CFGFS_FS_PERMS_H

#include <stdbool.h>
#include <sys/stat.h>

#include "fs_notify.h"
#include "perms.h"
#include "tree.h"

struct fs_perms;

/*
 * Put *rules (read from file) in force, taking it (*rules is left NULL), and
 * re-read file on every SIGHUP: a file that no longer parses is one log
 * line and the rules in force stay; new ones take effect at once, the
 * kernel being told to drop the attributes it holds. Without a file (file
 * and rules NULL) SIGHUP only says there is nothing to re-read: a reload
 * (systemctl reload) never stops a mount. 0 or a negative errno.
 */
int fs_perms_start(const char *file, struct perms **rules, struct tree *t, struct notifier *n,
		   struct fs_perms **out);

/* SIGHUP is ignored from now on; the rules are freed. No handler may be running. */
void fs_perms_stop(struct fs_perms *p);

/*
 * Give st (a stat of path, below the mount root) the owner, group and mode
 * of the rule for path, if one matches; owned (read-only, see node_attr)
 * keeps its write bits off. Returns whether a rule matched; g, when not
 * NULL, receives it.
 */
bool fs_perms_apply(struct fs_perms *p, const char *path, bool owned, struct stat *st,
		    struct perms_grant *g);

/*
 * A number that changes whenever the rules in force change (a reload): what
 * was derived from the rules before (a view's mode) must be derived again.
 */
unsigned fs_perms_generation(struct fs_perms *p);

/*
 * The owner and mode of a view of directory dir showing it (files and
 * directories below dir, as tree_collect gives them): the strictest of those
 * files and of the directories between them and the view (whose x bits
 * decide who reaches the files) under the rules in force, the mount's
 * defaults (*uid, *gid on entry, umask) where no rule matches; owners that
 * differ become root; the mode is at most 0444. A file's mode set by chmod
 * is not consulted. Out of memory, or dir gone: root's alone.
 */
void fs_perms_of_items(struct fs_perms *p, struct tree *t, uint64_t dir,
		       const struct tree_items *it, mode_t umask, uid_t *uid, gid_t *gid,
		       mode_t *mode);

#endif
