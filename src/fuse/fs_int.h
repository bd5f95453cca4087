/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the FUSE side: what the request handlers of fs.c and fs_xattr.c share. */
#ifndef CFGFS_FS_INT_H
#define CFGFS_FS_INT_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "bus.h"
#include "options.h"
#include "store.h"
#include "tree.h"

/*
 * How the kernel's caches are used: replies carry long entry and attribute
 * timeouts, negative lookups are cached too, opening a file or a directory
 * costs no request at all (open/opendir answer ENOSYS once, after which the
 * kernel opens by itself and keeps pages and directory listings cached), and
 * there is no flush handler, so closing costs nothing either. A warm
 * open/read/close is then served by the kernel alone. That is only correct
 * because every change the watcher applies is followed by exact
 * invalidations (fs_notify.c).
 *
 * Handlers never block on the network and never call fuse_lowlevel_notify_*.
 */
struct fs {
	struct tree *tree;
	struct store *store;
	struct bus *bus;
	struct gates *gates;
	struct views *views; /* NULL without -o views (fs_view.c) */
	struct watcher *watcher;
	struct notifier *notifier;
	struct writer *writer;
	struct cachefile *cache; /* NULL without -o cache_file */
	struct replay *replay;	 /* NULL on read-only mounts and with -o noinotify */
	struct fs_perms *perms;	 /* NULL without -o perms */
	const struct cfgfs_opts *opts;
	double timeout;
	bool no_open, no_opendir; /* set in init, read-only afterwards */
	/*
	 * Fault injection for the tests (CFGFS_FAULT_LOOKUP_DELAY=NAME:MS): a
	 * lookup of NAME holds its answer this long after reading the mirror,
	 * so that a change can overtake it.
	 */
	char *fault_lookup_name;
	unsigned fault_lookup_ms;
	/* CFGFS_FAULT_GETATTR_DELAY=NAME:MS: the same for a getattr of open file NAME. */
	char *fault_getattr_name;
	unsigned fault_getattr_ms;
};

/* The request handlers (fs.c), over the fs given to fuse_session_new. */
extern const struct fuse_lowlevel_ops fs_ops;

static inline struct fs *fs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

struct blob;

/* Reply to a read of size bytes at off with what b holds there (nothing past its end). */
void fs_reply_slice(fuse_req_t req, const struct blob *b, size_t size, off_t off);

/* The stat the kernel is given for a, with the mount's owner and modes. */
void fs_attr_to_stat(const struct fs *fs, const struct node_attr *a, struct stat *st);

/* Extended attributes (fs_xattr.c). */
void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size);
void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags);
void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

/* Views (-o views, fs_view.c): read-only files in every directory rendering its subtree. */
struct views;

/* The views of fs's mirror; NULL on ENOMEM. */
struct views *fs_view_new(struct fs *fs);

void fs_view_free(struct views *v);

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
