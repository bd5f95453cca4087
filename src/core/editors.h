/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the names and contents of editors' scratch files look like: pure functions. */
#ifndef CFGFS_EDITORS_H
#define CFGFS_EDITORS_H

#include <stdbool.h>
#include <stddef.h>

/* name (len bytes) is base followed by "~" or ".~N~": an editor's backup of base. */
bool editors_backup_of(const char *name, size_t len, const char *base, size_t blen);

/*
 * Whether a new file called name is editor scratch, by its name and its
 * siblings: a backup ("x~", "x.~3~"), an auto-save ("#x#") or a swap/lock
 * file (".x.swp" ... ".x.saa") of a file x for which exists(ctx, x, len)
 * says yes. Swap and lock files are also recognized by their content when
 * committed (editors_is_swap).
 */
bool editors_scratch_name(const char *name, bool (*exists)(void *ctx, const char *name, size_t len),
			  void *ctx);

/* Content that starts like vim's swap file or nano's lock file. */
bool editors_is_swap(const char *buf, size_t len);

#endif
