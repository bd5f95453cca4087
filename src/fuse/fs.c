/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The FUSE request handlers over the mirror: the only code that answers the kernel. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "fs_gate.h"
#include "fs_int.h"
#include "fs_perms.h"
#include "log.h"
#include "replay.h"
#include "writer.h"

void fs_attr_to_stat(const struct fs *fs, const struct node_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	if (a->kind == NODE_DIR)
		st->st_mode = S_IFDIR |
			      (a->mode & TREE_MODE_SET ? a->mode & 07777 : 0777 & ~fs->opts->umask);
	else if (a->kind == NODE_LINK)
		st->st_mode = S_IFLNK | 0777;
	else
		st->st_mode = S_IFREG |
			      (a->mode & TREE_MODE_SET ? a->mode & 07777 : 0666 & ~fs->opts->umask);
	if (a->owned)
		st->st_mode &= ~0222;
	st->st_nlink = a->nlink;
	st->st_uid = fs->opts->uid;
	st->st_gid = fs->opts->gid;
	st->st_size = a->size;
	st->st_blksize = 4096;
	st->st_blocks = (a->size + 511) / 512;
	st->st_atim = a->mtime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

/*
 * The stat of a at path (below the mount root; NULL: looked up), with the
 * permission rules applied. A node that has no path any more (unlinked,
 * still open) keeps the default: no name leads to it.
 */
static void stat_at(struct fs *fs, const struct node_attr *a, const char *path, struct stat *st)
{
	char *mine = NULL;

	fs_attr_to_stat(fs, a, st);
	if (!fs->perms)
		return;
	if (!path && tree_path(fs->tree, a->ino, NULL, &mine))
		return;
	fs_perms_apply(fs->perms, path ? path : mine, a->owned, st, NULL);
	free(mine);
}

void fs_reply_slice(fuse_req_t req, const struct blob *b, size_t size, off_t off)
{
	if (off < 0 || (size_t)off >= b->len) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		size_t left = b->len - (size_t)off;
		fuse_reply_buf(req, b->data + off, left < size ? left : size);
	}
}

static void reply_entry(fuse_req_t req, struct fs *fs, const struct node_attr *a)
{
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	e.ino = a->ino;
	e.attr_timeout = a->transient ? 0 : fs->timeout;
	e.entry_timeout = fs->timeout;
	stat_at(fs, a, NULL, &e.attr);
	/* If the kernel never got the reply, it will never forget the lookup either. */
	if (fuse_reply_entry(req, &e))
		tree_forget(fs->tree, a->ino, 1);
}

/* ------------------------------------------------------------ lifecycle */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	fs->no_open = conn->capable & FUSE_CAP_NO_OPEN_SUPPORT;
	fs->no_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
	/*
	 * With zero-message opens the kernel would apply O_TRUNC by itself and
	 * never tell us; without this capability it sends the truncation as a
	 * SETATTR we can act on.
	 */
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;

	if (!fs->no_open)
		log_warn("the kernel lacks zero-message open: every open costs a request");
}

/* ------------------------------------------------------------ lookups */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node_attr a;
	int err = tree_lookup(fs->tree, parent, name, &a);

	if (err == -ENOENT) {
		/* Cached too: a key created later invalidates this negative entry. */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (fs->fault_lookup_name && strcmp(name, fs->fault_lookup_name) == 0) {
		log_warn("fault injection: the answer to a lookup of %s waits %u ms", name,
			 fs->fault_lookup_ms);
		usleep(fs->fault_lookup_ms * 1000u);
	}
	reply_entry(req, fs, &a);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	tree_forget(fs_of(req)->tree, ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++)
		tree_forget(fs->tree, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/*
 * Tests: hold the answer, read from the mirror, to a getattr made for an open
 * file (the size check before a read) while a change overtakes it.
 */
static void fault_getattr(struct fs *fs, fuse_ino_t ino)
{
	char *path;

	if (tree_path(fs->tree, ino, "", &path))
		return;
	const char *slash = strrchr(path, '/');
	if (strcmp(slash ? slash + 1 : path, fs->fault_getattr_name) == 0) {
		log_warn("fault injection: the answer to a getattr of %s waits %u ms",
			 fs->fault_getattr_name, fs->fault_getattr_ms);
		usleep(fs->fault_getattr_ms * 1000u);
	}
	free(path);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct node_attr a;
	struct stat st;
	int err = tree_getattr(fs->tree, ino, &a);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	stat_at(fs, &a, NULL, &st);
	if (fs->fault_getattr_name && fi)
		fault_getattr(fs, ino);
	fuse_reply_attr(req, &st, a.transient ? 0 : fs->timeout);
}

/* ------------------------------------------------------------ files */

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);

	if (fs->no_open) {
		/* "Success, and do not ask again": the kernel opens by itself from now on. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct read_check chk;
	struct blob *b;
	int err = tree_read(fs->tree, ino, &b, &chk);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (chk.need && gates_wait_read(fs->gates, ino, &chk)) {
		tree_served_prev(fs->tree, ino, &chk);
		blob_unref(b);
		b = blob_ref(chk.prev);
	}
	blob_unref(chk.prev);
	/* The reference keeps these bytes alive even if the watcher replaces the value now. */
	fs_reply_slice(req, b, size, off);
	blob_unref(b);
}

/* ------------------------------------------------------------ directories */

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);

	if (fs->no_opendir) {
		/* The kernel then also caches listings (FOPEN_CACHE_DIR) until invalidated. */
		fuse_reply_err(req, ENOSYS);
		return;
	}
	fi->cache_readdir = 1;
	fi->keep_cache = 1;
	fuse_reply_open(req, fi);
}

struct dirbuf {
	fuse_req_t req;
	struct fs *fs;
	char *buf;
	size_t size, pos;
	bool plus;
	char *dir;  /* the directory's path, with rules in force and plus */
	char *path; /* an entry's path, grown as needed */
	size_t path_cap;
	bool oom;
};

/* The path of entry name of d->dir; NULL when out of memory. */
static const char *entry_path(struct dirbuf *d, const char *name)
{
	size_t dl = strlen(d->dir), nl = strlen(name);

	if (strcmp(name, ".") == 0)
		return d->dir;
	if (strcmp(name, "..") == 0) {
		const char *slash = strrchr(d->dir, '/');
		nl = 0;
		dl = slash ? (size_t)(slash - d->dir) : 0;
	}
	if (dl + nl + 2 > d->path_cap) {
		char *p = realloc(d->path, dl + nl + 2);
		if (!p)
			return NULL;
		d->path = p;
		d->path_cap = dl + nl + 2;
	}
	memcpy(d->path, d->dir, dl);
	size_t at = dl;
	if (nl) {
		if (dl)
			d->path[at++] = '/';
		memcpy(d->path + at, name, nl);
		at += nl;
	}
	d->path[at] = '\0';
	return d->path;
}

static bool add_dirent(void *ctx, const char *name, const struct node_attr *a, uint64_t next_off)
{
	struct dirbuf *d = ctx;
	size_t room = d->size - d->pos, need;
	struct fuse_entry_param e;

	memset(&e, 0, sizeof(e));
	fs_attr_to_stat(d->fs, a, &e.attr);
	if (d->dir) {
		/* Under the tree's read lock: the path is built, never looked up. */
		const char *path = entry_path(d, name);
		if (!path) {
			d->oom = true;
			return false;
		}
		fs_perms_apply(d->fs->perms, path, a->owned, &e.attr, NULL);
	}
	if (d->plus) {
		/* The kernel takes no lookup reference for "." and "..". */
		bool dot = strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
		if (!dot) {
			e.ino = a->ino;
			e.attr_timeout = a->transient ? 0 : d->fs->timeout;
			e.entry_timeout = d->fs->timeout;
		}
		need = fuse_add_direntry_plus(d->req, d->buf + d->pos, room, name, &e, next_off);
	} else {
		need = fuse_add_direntry(d->req, d->buf + d->pos, room, name, &e.attr, next_off);
	}
	if (need > room)
		return false;
	d->pos += need;
	return true;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct dirbuf d = {.req = req, .fs = fs_of(req), .size = size, .plus = plus};
	int err;

	d.buf = malloc(size);
	if (!d.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* Without plus the kernel takes only the type from an entry's attributes. */
	if (plus && d.fs->perms) {
		err = tree_path(d.fs->tree, ino, NULL, &d.dir);
		if (err) {
			fuse_reply_err(req, -err);
			free(d.buf);
			return;
		}
	}
	err = tree_readdir(d.fs->tree, ino, off < 0 ? 0 : (uint64_t)off, plus, add_dirent, &d);
	if (err)
		fuse_reply_err(req, -err);
	else if (d.pos == 0 && d.oom)
		fuse_reply_err(req, ENOMEM);
	else
		fuse_reply_buf(req, d.buf, d.pos);
	free(d.buf);
	free(d.dir);
	free(d.path);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = fs_of(req);
	struct tree_stats ts;
	struct statvfs sv;
	/* A nominal capacity (etcd's default quota) so df and tools see free space. */
	const uint64_t capacity = 2ULL << 30;

	tree_stats(fs->tree, &ts);
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	uint64_t used = (ts.bytes + 4095) / 4096;
	sv.f_blocks = used + capacity / 4096;
	sv.f_bfree = sv.f_bavail = capacity / 4096;
	sv.f_files = ts.files + ts.dirs + 1000000;
	sv.f_ffree = sv.f_favail = 1000000;
	sv.f_namemax = ts.name_max;
	fuse_reply_statfs(req, &sv);
}

/* ------------------------------------------------------------ changes */

/*
 * Every change lands in the mirror's local state at once and reaches the
 * store through the writer (see writer.h for when). Handlers block on the
 * network only where the caller waits for the store's answer: fsync,
 * rename, mkdir and rmdir; never with the tree lock held.
 */

static bool read_only(fuse_req_t req)
{
	if (!fs_of(req)->opts->read_only)
		return false;
	fuse_reply_err(req, EROFS);
	return true;
}

static void publish_now(struct fs *fs, struct change_list *l)
{
	bus_publish(fs->bus, l);
}

/* The kernel holds pages of a session that was just abandoned: let the notifier drop them. */
static void drop_pages(struct fs *fs, fuse_ino_t ino)
{
	struct change_list l;
	struct inval v = {.kind = INVAL_INODE, .ino = ino};

	change_list_init(&l);
	l.v = &v;
	l.n = l.cap = 1;
	struct change_list q;
	change_list_init(&q);
	if (change_list_splice(&q, &l) == 0)
		bus_publish(fs->bus, &q);
}

/*
 * The rules decide the owner and mode of what they cover: a chmod or chown
 * there that asks for what they give is done already (cp -p, install -m,
 * an editor restoring a mode), any other is EPERM. 0 when a rule covers
 * ino and agrees, EPERM when it does not, -1 when no rule covers ino.
 */
static int rules_refuse(struct fs *fs, fuse_ino_t ino, const struct stat *want, int to_set)
{
	struct node_attr a;
	struct perms_grant g;
	struct stat st;
	char *path;

	if (tree_getattr(fs->tree, ino, &a) || tree_path(fs->tree, ino, NULL, &path))
		return -1;
	fs_attr_to_stat(fs, &a, &st);
	bool hit = fs_perms_apply(fs->perms, path, a.owned, &st, &g);
	free(path);
	if (!hit)
		return -1;
	if (((to_set & FUSE_SET_ATTR_MODE) && (want->st_mode & 07777) != (st.st_mode & 07777)) ||
	    ((to_set & FUSE_SET_ATTR_UID) && want->st_uid != g.uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && want->st_gid != g.gid)) {
		log_debug("chmod or chown of inode %llu refused: the rule of line %u decides",
			  (unsigned long long)ino, g.line);
		return EPERM;
	}
	return 0;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct tree_setattr sa = {0};
	struct node_attr a;
	struct stat st;
	bool arm;
	int err;

	/* The replay of a store change (see replay.h): already applied, nothing to do. */
	if (replay_is_own(fs->replay, fuse_req_ctx(req)->pid)) {
		op_getattr(req, ino, fi);
		return;
	}
	if (read_only(req))
		return;
	if (fs->perms && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		err = rules_refuse(fs, ino, attr, to_set);
		if (err > 0) {
			fuse_reply_err(req, err);
			return;
		}
		/* What the rules give already: nothing to keep. */
		if (err == 0)
			to_set &= ~FUSE_SET_ATTR_MODE;
	}
	sa.set_size = to_set & FUSE_SET_ATTR_SIZE;
	sa.size = attr->st_size;
	sa.set_mode = to_set & FUSE_SET_ATTR_MODE;
	sa.mode = attr->st_mode;
	sa.set_ctime = to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_CTIME);
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		sa.set_mtime = true;
		clock_gettime(CLOCK_REALTIME, &sa.mtime);
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		sa.set_mtime = true;
		sa.mtime = attr->st_mtim;
	}
	err = tree_setattr(fs->tree, ino, &sa, writer_max_value(fs->writer), &a, &arm);
	if (err == -EFBIG)
		drop_pages(fs, ino);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (arm)
		writer_changed(fs->writer, ino, false);
	stat_at(fs, &a, NULL, &st);
	if (fs->fault_getattr_name && fi)
		fault_getattr(fs, ino);
	fuse_reply_attr(req, &st, a.transient ? 0 : fs->timeout);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	bool arm, update;

	if (read_only(req))
		return;
	ssize_t n = tree_write(fs->tree, ino, buf, size, off, writer_max_value(fs->writer), &arm,
			       &update);
	if (n == -EFBIG)
		drop_pages(fs, ino);
	if (n < 0) {
		fuse_reply_err(req, (int)-n);
		return;
	}
	if (arm)
		writer_changed(fs->writer, ino, update);
	fuse_reply_write(req, n);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	/* vim, nano and emacs report a failed fsync: the place for a refused commit. */
	fuse_reply_err(req, -writer_fsync(fs_of(req)->writer, ino));
}

/* A name just unlinked here is still a key until its delete is sent: send it now. */
static int clear_hidden(struct fs *fs, fuse_ino_t dir, const char *name)
{
	uint64_t *hidden;
	size_t n;
	int err = tree_hidden_in(fs->tree, dir, name, &hidden, &n);

	if (!err && n)
		err = writer_delete_now(fs->writer, hidden, n);
	free(hidden);
	return err;
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	/* Deletes of names unlinked here are what a directory's fsync makes durable. */
	fuse_reply_err(req, -clear_hidden(fs_of(req), ino, NULL));
}

static void do_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct fuse_entry_param e;
	struct node_attr a;
	bool arm;
	int err;

	if (read_only(req))
		return;
	bool excl = fi && (fi->flags & O_EXCL);
	err = tree_create(fs->tree, parent, name, excl, mode, &a, &arm);
	if (err == -EINPROGRESS) {
		/* The name's key is being deleted: its answer settles under the fence. */
		writer_lock(fs->writer);
		err = tree_create(fs->tree, parent, name, excl, mode, &a, &arm);
		writer_unlock(fs->writer);
	}
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	if (arm)
		writer_changed(fs->writer, a.ino, false);
	memset(&e, 0, sizeof(e));
	e.ino = a.ino;
	e.attr_timeout = fs->timeout;
	e.entry_timeout = fs->timeout;
	stat_at(fs, &a, NULL, &e.attr);
	if (fi) {
		fi->keep_cache = 1;
		fi->noflush = 1;
		if (fuse_reply_create(req, &e, fi))
			tree_forget(fs->tree, a.ino, 1);
	} else if (fuse_reply_entry(req, &e)) {
		tree_forget(fs->tree, a.ino, 1);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	do_create(req, parent, name, mode, fi);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	if (!S_ISREG(mode)) {
		/* A key holds bytes: no devices, fifos or sockets. */
		fuse_reply_err(req, EPERM);
		return;
	}
	do_create(req, parent, name, mode, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct node_attr a;

	if (read_only(req))
		return;
	int err = clear_hidden(fs, parent, name);
	/* Emacs locks files with a dangling symlink; it stays on this host. */
	if (!err)
		err = tree_symlink(fs->tree, parent, name, link, &a);
	if (err)
		fuse_reply_err(req, -err);
	else
		reply_entry(req, fs, &a);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char *target;
	int err = tree_readlink(fs_of(req)->tree, ino, &target);

	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	fuse_reply_readlink(req, target);
	free(target);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct change_list l;
	uint64_t pending;

	if (read_only(req))
		return;
	change_list_init(&l);
	int err = tree_unlink(fs->tree, parent, name, &pending, &l);
	publish_now(fs, &l);
	/*
	 * The key is deleted a moment later (unlink + create, as install does,
	 * is one update); whether the store would take it is asked now, so that
	 * rm fails while the store is unreachable rather than the file coming
	 * back later.
	 */
	if (!err && pending)
		err = writer_check(fs->writer, pending);
	if (!err && pending)
		writer_unlinked(fs->writer, pending);
	fuse_reply_err(req, -err);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fs *fs = fs_of(req);
	struct tree_txn x;
	struct node_attr a;

	if (read_only(req))
		return;
	int err = clear_hidden(fs, parent, name);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	writer_lock(fs->writer);
	err = tree_mkdir_begin(fs->tree, parent, name, mode, &x);
	if (!err)
		err = writer_send(fs->writer, &x, &a);
	writer_unlock(fs->writer);
	tree_txn_clear(&x);
	if (err)
		fuse_reply_err(req, -err);
	else
		reply_entry(req, fs, &a);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	struct tree_txn x;

	if (read_only(req))
		return;
	/*
	 * rm -r unlinked the entries a moment ago; their deletes go first, each
	 * on its own, so any number of them fits (a transaction holds 128).
	 */
	uint64_t *hidden;
	size_t nhidden = 0;
	if (tree_hidden_children(fs->tree, parent, name, &hidden, &nhidden) == 0) {
		writer_delete_now(fs->writer, hidden, nhidden);
		free(hidden);
	}
	writer_lock(fs->writer);
	int err = tree_rmdir_begin(fs->tree, parent, name, &x);
	if (!err)
		err = writer_send(fs->writer, &x, NULL);
	writer_unlock(fs->writer);
	tree_txn_clear(&x);
	/* A directory implied by the keys just deleted went with them: that is the rmdir. */
	if (err == -ENOENT && nhidden)
		err = 0;
	fuse_reply_err(req, -err);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct fs *fs = fs_of(req);
	struct change_list l;
	struct tree_txn x;
	uint64_t pending;
	bool arm;
	int err;

	if (read_only(req))
		return;
	if (flags & ~RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	change_list_init(&l);
	writer_lock(fs->writer);
	err = tree_rename_begin(fs->tree, parent, name, newparent, newname,
				flags & RENAME_NOREPLACE, &x, &pending, &arm, &l);
	/* A rename of one transaction: the store moves the key(s) or nothing happens. */
	if (!err && x.nops)
		err = writer_send(fs->writer, &x, NULL);
	writer_unlock(fs->writer);
	publish_now(fs, &l);
	if (!err && pending)
		writer_detached(fs->writer, pending);
	if (!err && arm)
		writer_changed(fs->writer, x.ino, false);
	tree_txn_clear(&x);
	fuse_reply_err(req, -err);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	/* A key has one name; vim checks the link count and would copy instead anyway. */
	fuse_reply_err(req, EPERM);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.readlink = op_readlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.statfs = op_statfs,
	.setxattr = fs_setxattr,
	.getxattr = fs_getxattr,
	.listxattr = fs_listxattr,
	.removexattr = fs_removexattr,
	.create = op_create,
	.fsync = op_fsync,
	.fsyncdir = op_fsyncdir,
};
