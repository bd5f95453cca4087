/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Views (-o views): read-only files in every directory that render its subtree in one format. */
#ifndef CFGFS_FS_VIEW_H
#define CFGFS_FS_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fs_int.h"

struct views;

/* The views of fs's mirror; NULL on ENOMEM. */
struct views *views_new(struct fs *fs);

void views_free(struct views *v);

/*
 * The request handlers with views: fs_ops, with the handlers that meet a
 * view's name or inode number answering for it and passing everything
 * else on. Use instead of fs_ops when fs->views is set.
 */
const struct fuse_lowlevel_ops *fs_view_ops(void);

/*
 * A bus observer (ctx: the fs): drops the renderings whose directory
 * changed, and tells the kernel to drop its entries for those it still
 * holds (queued to the notifier, never sent from here).
 */
void fs_view_changed(void *ctx, const struct change_list *l);

#endif
