/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Extended attributes: what the store knows about a key, read-only. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_int.h"
#include "watcher.h"
#include "writer.h"

/* Read-only attributes that show what the store knows about a key. */
enum xattr_id {
	XA_KEY,
	XA_MOD_REV,
	XA_CREATE_REV,
	XA_VERSION,
	XA_STATE,
	XA_FLAGS,
	XA_URL,
	XA_REV,
	XA_CONNECTED,
	XA_ENDPOINT,
	XA_OWNER,
	/* The mount's root only, for cfgfs status (status.c): */
	XA_KEYS,
	XA_PENDING,
	XA_REFUSED,
	XA_REJECTED,
	XA_STORE_REV,
	XA_DISCONNECTED,
	XA_LAST_ERROR
};

static const char *const xattr_names[] = {
	[XA_KEY] = "user.cfgfs.key",
	[XA_MOD_REV] = "user.cfgfs.mod_revision",
	[XA_CREATE_REV] = "user.cfgfs.create_revision",
	[XA_VERSION] = "user.cfgfs.version",
	[XA_STATE] = "user.cfgfs.state",
	[XA_FLAGS] = "user.cfgfs.flags",
	[XA_URL] = "user.cfgfs.url",
	[XA_REV] = "user.cfgfs.revision",
	[XA_CONNECTED] = "user.cfgfs.connected",
	[XA_ENDPOINT] = "user.cfgfs.endpoint",
	[XA_OWNER] = "user.cfgfs.ephemeral_owner",
	[XA_KEYS] = "user.cfgfs.keys",
	[XA_PENDING] = "user.cfgfs.pending",
	[XA_REFUSED] = "user.cfgfs.refused",
	[XA_REJECTED] = "user.cfgfs.rejected",
	[XA_STORE_REV] = "user.cfgfs.store_revision",
	[XA_DISCONNECTED] = "user.cfgfs.disconnected_since",
	[XA_LAST_ERROR] = "user.cfgfs.last_error",
};
#define XATTR_COUNT (sizeof(xattr_names) / sizeof(xattr_names[0]))

/*
 * The newest failure of the watcher (the store's stream) and the writer (a
 * change sent to it), as "SECONDS TEXT" (wall clock); NULL when none.
 */
static char *last_error(struct fs *fs)
{
	char a[256] = "", b[256] = "", *out = NULL;
	int64_t ta = fs->watcher ? watcher_last_error(fs->watcher, a, sizeof(a)) : 0;
	int64_t tb = fs->writer ? writer_last_error(fs->writer, b, sizeof(b)) : 0;

	if (!ta && !tb)
		return NULL;
	if (asprintf(&out, "%lld %s", (long long)(tb > ta ? tb : ta), tb > ta ? b : a) < 0)
		return NULL;
	return out;
}

/* The status attributes of the root (status.c reads them); 0, -ENODATA or -ENOMEM. */
static int status_value(struct fs *fs, enum xattr_id id, char **val)
{
	long long n = 0;

	*val = NULL;
	switch (id) {
	case XA_KEYS: /* as the mirror has them, counted without a copy */
		n = (long long)tree_count_keys(fs->tree);
		break;
	case XA_PENDING:
		n = fs->writer ? (long long)writer_pending(fs->writer) : 0;
		break;
	case XA_REFUSED:
	case XA_REJECTED: {
		char *kept = NULL;
		n = fs->writer ? (long long)writer_refused(fs->writer, &kept) : 0;
		if (id == XA_REFUSED) {
			free(kept);
			break;
		}
		*val = fs->writer ? kept : strdup("");
		return *val ? 0 : -ENOMEM;
	}
	case XA_STORE_REV:
		n = fs->watcher ? watcher_store_revision(fs->watcher) : 0;
		if (n <= 0)
			return -ENODATA;
		break;
	case XA_DISCONNECTED:
		/* Absent while connected: there is no "since" to tell. */
		n = fs->watcher ? watcher_disconnected_since(fs->watcher) : 0;
		if (n <= 0 || (fs->watcher && watcher_connected(fs->watcher)))
			return -ENODATA;
		break;
	case XA_LAST_ERROR:
		*val = last_error(fs);
		return *val ? 0 : -ENODATA;
	default:
		return -ENODATA;
	}
	return asprintf(val, "%lld", n) < 0 ? -ENOMEM : 0;
}

/* The value of one attribute of ino into a malloc'd buffer; 0, -ENODATA or -ENOENT. */
static int xattr_value(struct fs *fs, fuse_ino_t ino, enum xattr_id id, char **val, size_t *len)
{
	struct node_info info;
	char num[32];
	int err;

	if (id >= XA_KEYS) {
		if (ino != TREE_ROOT_INO)
			return -ENODATA;
		err = status_value(fs, id, val);
		*len = err ? 0 : strlen(*val);
		return err;
	}
	if (id == XA_URL || id == XA_REV || id == XA_CONNECTED || id == XA_ENDPOINT) {
		if (ino != TREE_ROOT_INO)
			return -ENODATA;
		if (id == XA_URL)
			*val = strdup(fs->opts->store.url.text);
		else if (id == XA_ENDPOINT)
			*val = store_endpoint(fs->store);
		else if (id == XA_REV)
			*val = asprintf(val, "%" PRId64, tree_revision(fs->tree)) < 0 ? NULL : *val;
		else
			*val = strdup(fs->watcher && watcher_connected(fs->watcher) ? "1" : "0");
		if (!*val)
			return -ENOMEM;
		*len = strlen(*val);
		return 0;
	}
	err = tree_info(fs->tree, ino, &info);
	if (err)
		return err;
	if (id == XA_KEY) {
		if (!info.key)
			return -ENODATA; /* removed, still open: no key any more */
		*val = info.key;
		*len = info.klen;
		return 0;
	}
	free(info.key);
	if (id == XA_STATE) {
		/* synced: what the store has; pending: to be committed; local: never leaves this
		 * host. */
		static const char *const names[] = {"synced", "pending", "local"};
		if (info.kind == NODE_DIR)
			return -ENODATA;
		*val = strdup(names[info.state]);
		*len = *val ? strlen(*val) : 0;
		return *val ? 0 : -ENOMEM;
	}
	if (!info.has_meta)
		return -ENODATA;
	if (id == XA_OWNER) {
		/* The session that owns an ephemeral znode, in ZooKeeper's own notation. */
		if (!fs->store->caps.owner_flags || !info.meta.flags)
			return -ENODATA;
		snprintf(num, sizeof(num), "0x%" PRIx64, info.meta.flags);
		*val = strdup(num);
		*len = *val ? strlen(num) : 0;
		return *val ? 0 : -ENOMEM;
	}
	if (id == XA_FLAGS) {
		/* Consul's opaque flags; etcd has none. */
		if (!fs->store->caps.has_flags)
			return -ENODATA;
		snprintf(num, sizeof(num), "%" PRIu64, info.meta.flags);
		*val = strdup(num);
		*len = *val ? strlen(num) : 0;
		return *val ? 0 : -ENOMEM;
	}
	int64_t v = id == XA_MOD_REV	  ? info.meta.mod_rev
		    : id == XA_CREATE_REV ? info.meta.create_rev
					  : info.meta.version;
	snprintf(num, sizeof(num), "%" PRId64, v);
	*val = strdup(num);
	if (!*val)
		return -ENOMEM;
	*len = strlen(num);
	return 0;
}

static void reply_sized(fuse_req_t req, const char *val, size_t len, size_t size)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, val, len);
}

void fs_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct fs *fs = fs_of(req);
	char *val;
	size_t len;

	for (size_t i = 0; i < XATTR_COUNT; i++) {
		if (strcmp(name, xattr_names[i]) != 0)
			continue;
		int err = xattr_value(fs, ino, i, &val, &len);
		if (err) {
			fuse_reply_err(req, -err);
			return;
		}
		reply_sized(req, val, len, size);
		free(val);
		return;
	}
	/*
	 * There are no security, system (ACL) or trusted attributes here.
	 * "Not supported" rather than "no such attribute": ls -l asks every file
	 * for its SELinux label and ACLs, and stops asking for a whole device
	 * after the first ENOTSUP - one request per ls instead of two per file.
	 */
	fuse_reply_err(req, strncmp(name, "user.", 5) == 0 ? ENODATA : ENOTSUP);
}

void fs_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct fs *fs = fs_of(req);
	char list[1024];
	size_t len = 0;

	for (size_t i = 0; i < XATTR_COUNT; i++) {
		char *val;
		size_t vlen;
		/* Counting the keys costs a walk of the mirror: only the root has them. */
		if (i == XA_KEYS ? ino != TREE_ROOT_INO : xattr_value(fs, ino, i, &val, &vlen) != 0)
			continue;
		if (i != XA_KEYS)
			free(val);
		size_t n = strlen(xattr_names[i]) + 1;
		memcpy(list + len, xattr_names[i], n);
		len += n;
	}
	reply_sized(req, list, len, size);
}

void fs_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
		 int flags)
{
	/* Tools that copy ACLs (vim, sed, install) ignore this errno. */
	fuse_reply_err(req, ENOTSUP);
}

void fs_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	fuse_reply_err(req, ENOTSUP);
}
