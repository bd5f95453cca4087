/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef CFGFS_MOUNTPOINT_H
#define CFGFS_MOUNTPOINT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Make path ready to mount on, or say in err (one line) why it is not: it must be a
 * directory, empty unless nonempty, and not a live cfgfs mount. The dead mount of a cfgfs
 * that was killed (stat fails with ENOTCONN) is detached, and the log says so; a dead
 * mount of another filesystem is left alone. *canon: path made absolute (malloc'd), which
 * stays right after the daemon changes its directory.
 */
int mountpoint_prepare(const char *path, bool nonempty, char **canon, char *err, size_t errlen);

#endif
