/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Views (-o views): read-only files in every directory that render its subtree in one format. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "blob.h"
#include "fs_int.h"
#include "fs_notify.h"
#include "fs_perms.h"
#include "log.h"
#include "render.h"

/*
 * How a view stays exact while the kernel caches it.
 *
 * A view inode never changes: its bytes are one rendering of one moment of
 * the mirror (one store revision), made when the view is looked up after a
 * change. When anything below the directory changes, the view's name
 * points at a new inode with the new rendering, the way a file replaced by
 * rename does. So the kernel may keep a view inode's size and pages as long
 * as it likes: they always belong together, and a reader never sees the size
 * of one revision with bytes of another, nor half a transaction; a reader
 * that keeps the file open keeps reading the revision it opened.
 *
 * The name is what must not stay stale. Its entry is given with a zero
 * timeout: every open or stat of the view by path asks cfgfs again (one
 * lookup, answered from the mirror's stamps without rendering while nothing
 * changed), so no answer overtaken by a change can stay in the kernel's
 * cache (unlike the files, whose long-lived entries need the gates). The
 * invalidations fs_view_changed queues only let the kernel drop the old
 * inodes, so their renderings can be freed.
 *
 * Why not the simpler routes: direct_io is out, because the kernel opens
 * files without asking cfgfs (zero-message open, see fs_int.h), so no open
 * reply could ask for it; and rendering anew into the same inode would
 * need the files' gates (change.h) on every view of every ancestor of each
 * changed key.
 */

/* View inode numbers: far above the mirror's counter, never reused either. */
#define VIEW_INO_BASE (1ULL << 62)
/* Readdir offsets of the views' entries: above every offset of the mirror (inode + 2). */
#define VIEW_OFF_BASE (1ULL << 62)

/* One rendering of one view: an inode the kernel may hold. */
struct vgen {
	uint64_t ino;
	uint64_t dir;
	enum render_format fmt;
	uint64_t stamp;	    /* the directory's stamp it was rendered at */
	struct blob *bytes; /* the rendering */
	struct timespec mtime;
	uid_t uid; /* owner and mode: the strictest of what it renders (view_perms) */
	gid_t gid;
	mode_t mode;
	unsigned rules_gen; /* fs_perms_generation when they were found */
	uint64_t nlookup;   /* the kernel's references */
	bool current;	    /* what a lookup of (dir, fmt) answers while the stamp holds */
	struct vgen *ino_next, *key_next;
};

/*
 * Every vgen the kernel holds or that is current, by inode number (all)
 * and by (dir, fmt) (current ones). A vgen leaves when it is neither.
 */
struct views {
	struct fs *fs;
	pthread_mutex_t mu; /* protects everything below; never held across a tree call */
	uint64_t next_ino;
	struct vgen **by_ino, **by_key;
	size_t mask; /* both tables: mask + 1 buckets */
	size_t count;
};

struct views *fs_view_new(struct fs *fs)
{
	struct views *v = calloc(1, sizeof(*v));

	if (!v)
		return NULL;
	v->mask = 255;
	v->by_ino = calloc(v->mask + 1, sizeof(*v->by_ino));
	v->by_key = calloc(v->mask + 1, sizeof(*v->by_key));
	if (!v->by_ino || !v->by_key) {
		free(v->by_ino);
		free(v->by_key);
		free(v);
		return NULL;
	}
	v->fs = fs;
	v->next_ino = VIEW_INO_BASE;
	pthread_mutex_init(&v->mu, NULL);
	return v;
}

static void gen_free(struct vgen *g)
{
	blob_unref(g->bytes);
	free(g);
}

void fs_view_free(struct views *v)
{
	if (!v)
		return;
	for (size_t i = 0; i <= v->mask; i++) {
		for (struct vgen *g = v->by_ino[i], *next; g; g = next) {
			next = g->ino_next;
			gen_free(g);
		}
	}
	free(v->by_ino);
	free(v->by_key);
	pthread_mutex_destroy(&v->mu);
	free(v);
}

static bool is_view_ino(uint64_t ino)
{
	return ino >= VIEW_INO_BASE;
}

static size_t ino_slot(const struct views *v, uint64_t ino)
{
	return (size_t)(ino * 0x9E3779B97F4A7C15ULL >> 40) & v->mask;
}

static size_t key_slot(const struct views *v, uint64_t dir, enum render_format fmt)
{
	return (size_t)((dir * RENDER_NFORMATS + fmt) * 0x9E3779B97F4A7C15ULL >> 40) & v->mask;
}

/* Callers hold v->mu. */
static struct vgen *find_ino(const struct views *v, uint64_t ino)
{
	struct vgen *g = v->by_ino[ino_slot(v, ino)];

	while (g && g->ino != ino)
		g = g->ino_next;
	return g;
}

static struct vgen *find_current(const struct views *v, uint64_t dir, enum render_format fmt)
{
	struct vgen *g = v->by_key[key_slot(v, dir, fmt)];

	while (g && (g->dir != dir || g->fmt != fmt))
		g = g->key_next;
	return g;
}

static void unlink_key(struct views *v, struct vgen *g)
{
	struct vgen **p = &v->by_key[key_slot(v, g->dir, g->fmt)];

	while (*p && *p != g)
		p = &(*p)->key_next;
	if (*p)
		*p = g->key_next;
	g->key_next = NULL;
	g->current = false;
}

static void unlink_ino(struct views *v, struct vgen *g)
{
	struct vgen **p = &v->by_ino[ino_slot(v, g->ino)];

	while (*p && *p != g)
		p = &(*p)->ino_next;
	if (*p)
		*p = g->ino_next;
	v->count--;
}

/* Twice the buckets when there are more entries than buckets; without memory, longer chains. */
static void grow(struct views *v)
{
	size_t mask = v->mask * 2 + 1;
	struct vgen **bi = calloc(mask + 1, sizeof(*bi)), **bk = calloc(mask + 1, sizeof(*bk));

	if (!bi || !bk) {
		free(bi);
		free(bk);
		return;
	}
	struct views old = *v;
	v->mask = mask;
	v->by_ino = bi;
	v->by_key = bk;
	for (size_t i = 0; i <= old.mask; i++) {
		for (struct vgen *g = old.by_ino[i], *next; g; g = next) {
			next = g->ino_next;
			size_t s = ino_slot(v, g->ino);
			g->ino_next = bi[s];
			bi[s] = g;
			if (!g->current)
				continue;
			s = key_slot(v, g->dir, g->fmt);
			g->key_next = bk[s];
			bk[s] = g;
		}
	}
	free(old.by_ino);
	free(old.by_key);
}

/* g is no longer what a lookup answers; it goes once the kernel does not hold it. */
static void retire(struct views *v, struct vgen *g)
{
	unlink_key(v, g);
	if (g->nlookup == 0) {
		unlink_ino(v, g);
		gen_free(g);
	}
}

static void install(struct views *v, struct vgen *g)
{
	if (v->count >= v->mask + 1)
		grow(v);
	size_t s = ino_slot(v, g->ino);
	g->ino_next = v->by_ino[s];
	v->by_ino[s] = g;
	s = key_slot(v, g->dir, g->fmt);
	g->key_next = v->by_key[s];
	v->by_key[s] = g;
	g->current = true;
	v->count++;
}

/* ------------------------------------------------------------ rendering */

/* The stat of a view: read-only, owner and mode found when it was rendered (view_perms). */
static void view_attr(const struct fs *fs, uint64_t dir, enum render_format fmt,
		      const struct vgen *g, struct stat *st)
{
	(void)fs;
	(void)dir;
	(void)fmt;
	memset(st, 0, sizeof(*st));
	st->st_ino = g->ino;
	st->st_mode = S_IFREG | g->mode;
	st->st_nlink = 1;
	st->st_uid = g->uid;
	st->st_gid = g->gid;
	st->st_size = g->bytes->len;
	st->st_blksize = 4096;
	st->st_blocks = (g->bytes->len + 511) / 512;
	st->st_atim = g->mtime;
	st->st_mtim = g->mtime;
	st->st_ctim = g->mtime;
}

/* A view is no more readable than what it shows (fs_perms_of_items); 0444 without rules. */
static void view_perms(struct fs *fs, uint64_t dir, const struct tree_items *it, struct vgen *g)
{
	g->uid = fs->opts->uid;
	g->gid = fs->opts->gid;
	g->mode = 0444;
	if (!fs->perms)
		return;
	g->rules_gen = fs_perms_generation(fs->perms);
	fs_perms_of_items(fs->perms, fs->tree, dir, it, fs->opts->umask, &g->uid, &g->gid,
			  &g->mode);
}

/* A new rendering of (dir, fmt), not yet installed; 0 or an errno. */
static int render_view(struct fs *fs, uint64_t dir, enum render_format fmt, struct vgen **out)
{
	struct tree_items it;
	struct render_entry *ents = NULL;
	char *buf = NULL;
	size_t len;
	int err = tree_collect(fs->tree, dir, &it);

	if (err)
		return err;
	/* The mirror's lock is released: rendering holds up no one. */
	ents = malloc((it.n ? it.n : 1) * sizeof(*ents));
	struct vgen *g = calloc(1, sizeof(*g));
	if (!ents || !g) {
		err = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < it.n; i++) {
		const struct tree_item *x = &it.v[i];
		ents[i] = (struct render_entry){
			.path = it.paths + x->off,
			.plen = x->len,
			.val = x->val ? x->val->data : NULL,
			.vlen = x->val ? x->val->len : 0,
			.dir = !x->val,
		};
	}
	err = render(fmt, ents, it.n, &buf, &len);
	if (!err && len > UINT32_MAX)
		err = -EFBIG;
	if (!err && !(g->bytes = blob_from(buf, len)))
		err = -ENOMEM;
	if (err)
		goto out;
	view_perms(fs, dir, &it, g);
	g->dir = dir;
	g->fmt = fmt;
	g->stamp = it.stamp;
	g->mtime = it.mtime;
	if (g->mtime.tv_sec == 0 && g->mtime.tv_nsec == 0)
		clock_gettime(CLOCK_REALTIME, &g->mtime);
	*out = g;
	g = NULL;
out:
	free(g);
	free(buf);
	free(ents);
	tree_items_clear(&it);
	return err;
}

/*
 * The current rendering of (dir, fmt), rendered now if the directory
 * changed since the last one; counts one kernel lookup and fills *st.
 */
static int view_get(struct fs *fs, uint64_t dir, enum render_format fmt, struct stat *st)
{
	struct views *v = fs->views;
	uint64_t stamp;
	struct vgen *g, *fresh = NULL;

	tree_view_stamps(fs->tree, &dir, &stamp, 1);
	if (stamp == TREE_NO_STAMP)
		return -ENOENT;
	pthread_mutex_lock(&v->mu);
	g = find_current(v, dir, fmt);
	unsigned gen = fs_perms_generation(fs->perms);
	if (!g || g->stamp != stamp || (fs->perms && g->rules_gen != gen)) {
		pthread_mutex_unlock(&v->mu);
		int err = render_view(fs, dir, fmt, &fresh);
		if (err && err != -ENOENT && err != -ENOTDIR)
			log_warn("view %s of inode %llu not rendered: %s", render_view_name(fmt),
				 (unsigned long long)dir, strerror(-err));
		if (err)
			return err;
		pthread_mutex_lock(&v->mu);
		/* Another lookup may have rendered it meanwhile, as new or newer: take that. */
		g = find_current(v, dir, fmt);
		if (!g || g->stamp < fresh->stamp ||
		    (fs->perms && g->rules_gen != fresh->rules_gen)) {
			if (g)
				retire(v, g);
			fresh->ino = v->next_ino++;
			install(v, fresh);
			g = fresh;
			fresh = NULL;
		}
	}
	g->nlookup++;
	view_attr(fs, dir, fmt, g, st);
	pthread_mutex_unlock(&v->mu);
	if (fresh)
		gen_free(fresh);
	return 0;
}

static void view_forget(struct views *v, uint64_t ino, uint64_t n)
{
	pthread_mutex_lock(&v->mu);
	struct vgen *g = find_ino(v, ino);
	if (g) {
		g->nlookup = g->nlookup > n ? g->nlookup - n : 0;
		if (g->nlookup == 0 && !g->current) {
			unlink_ino(v, g);
			gen_free(g);
		}
	}
	pthread_mutex_unlock(&v->mu);
}

void fs_view_changed(void *ctx, const struct change_list *l)
{
	struct fs *fs = ctx;
	struct views *v = fs->views;
	struct change_list out;
	uint64_t *dirs = NULL, *stamps = NULL;
	size_t n = 0;

	(void)l; /* the stamps say which directories changed, whatever the list holds */
	pthread_mutex_lock(&v->mu);
	size_t cap = v->count;
	if (cap) {
		dirs = malloc(cap * sizeof(*dirs));
		stamps = malloc(cap * sizeof(*stamps));
	}
	for (size_t i = 0; dirs && stamps && i <= v->mask; i++)
		for (struct vgen *g = v->by_key[i]; g && n < cap; g = g->key_next)
			dirs[n++] = g->dir;
	pthread_mutex_unlock(&v->mu);
	if (n == 0)
		goto out;
	tree_view_stamps(fs->tree, dirs, stamps, n);
	change_list_init(&out);
	pthread_mutex_lock(&v->mu);
	for (size_t i = 0; i < n; i++) {
		for (int f = 0; f < RENDER_NFORMATS; f++) {
			struct vgen *g = find_current(v, dirs[i], f);
			if (!g || g->stamp == stamps[i])
				continue;
			/* Stale: the kernel's entry for it goes, then the inode, then the bytes. */
			const char *name = render_view_name(f);
			char *copy = g->nlookup ? strdup(name) : NULL;
			if (copy && change_list_reserve(&out, 1) == 0)
				out.v[out.n++] = (struct inval){.kind = INVAL_ENTRY,
								.parent = g->dir,
								.name = copy,
								.namelen = strlen(name)};
			else
				free(copy);
			retire(v, g);
		}
	}
	pthread_mutex_unlock(&v->mu);
	if (out.n)
		notifier_take(fs->notifier, &out);
	change_list_clear(&out);
out:
	free(dirs);
	free(stamps);
}

/* ------------------------------------------------------------ handlers */

/* Views are read-only: every change of one, or of its name, gets this. */
#define VIEW_ERR EACCES

static bool view_name(const char *name)
{
	return render_view_format(name, strlen(name)) >= 0;
}

static void vop_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = fs_of(req);
	int fmt = render_view_format(name, strlen(name));
	struct fuse_entry_param e;

	if (fmt < 0) {
		fs_ops.lookup(req, parent, name);
		return;
	}
	memset(&e, 0, sizeof(e));
	int err = view_get(fs, parent, fmt, &e.attr);
	if (err) {
		fuse_reply_err(req, -err);
		return;
	}
	e.ino = e.attr.st_ino;
	e.attr_timeout = fs->timeout; /* the inode's content never changes */
	e.entry_timeout = 0;	      /* the name's does: see the top of this file */
	if (fuse_reply_entry(req, &e))
		view_forget(fs->views, e.ino, 1);
}

static void vop_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	if (!is_view_ino(ino)) {
		fs_ops.forget(req, ino, nlookup);
		return;
	}
	view_forget(fs_of(req)->views, ino, nlookup);
	fuse_reply_none(req);
}

static void vop_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct fs *fs = fs_of(req);

	for (size_t i = 0; i < count; i++) {
		if (is_view_ino(forgets[i].ino))
			view_forget(fs->views, forgets[i].ino, forgets[i].nlookup);
		else
			tree_forget(fs->tree, forgets[i].ino, forgets[i].nlookup);
	}
	fuse_reply_none(req);
}

static void vop_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	struct views *v = fs->views;
	struct stat st;

	if (!is_view_ino(ino)) {
		fs_ops.getattr(req, ino, fi);
		return;
	}
	pthread_mutex_lock(&v->mu);
	struct vgen *g = find_ino(v, ino);
	if (g)
		view_attr(fs, g->dir, g->fmt, g, &st);
	pthread_mutex_unlock(&v->mu);
	if (g)
		fuse_reply_attr(req, &st, fs->timeout);
	else
		fuse_reply_err(req, ENOENT);
}

static void vop_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct views *v = fs_of(req)->views;
	struct blob *b = NULL;

	if (!is_view_ino(ino)) {
		fs_ops.read(req, ino, size, off, fi);
		return;
	}
	pthread_mutex_lock(&v->mu);
	struct vgen *g = find_ino(v, ino);
	if (g)
		b = blob_ref(g->bytes);
	pthread_mutex_unlock(&v->mu);
	if (!b) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fs_reply_slice(req, b, size, off);
	blob_unref(b);
}

static void vop_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
			struct fuse_file_info *fi)
{
	if (is_view_ino(ino))
		fuse_reply_err(req, VIEW_ERR);
	else
		fs_ops.setattr(req, ino, attr, to_set, fi);
}

static void vop_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		      struct fuse_file_info *fi)
{
	if (is_view_ino(ino))
		fuse_reply_err(req, VIEW_ERR);
	else
		fs_ops.write(req, ino, buf, size, off, fi);
}

static void vop_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	/* Nothing of a view is ever pending. */
	if (is_view_ino(ino))
		fuse_reply_err(req, 0);
	else
		fs_ops.fsync(req, ino, datasync, fi);
}

static void vop_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	/* A view has no store metadata; the same answers as fs_getxattr's for unknown names. */
	if (is_view_ino(ino))
		fuse_reply_err(req, strncmp(name, "user.", 5) == 0 ? ENODATA : ENOTSUP);
	else
		fs_ops.getxattr(req, ino, name, size);
}

static void vop_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       struct fuse_file_info *fi)
{
	if (view_name(name))
		fuse_reply_err(req, EEXIST);
	else
		fs_ops.create(req, parent, name, mode, fi);
}

static void vop_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	if (view_name(name))
		fuse_reply_err(req, EEXIST);
	else
		fs_ops.mknod(req, parent, name, mode, rdev);
}

static void vop_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	if (view_name(name))
		fuse_reply_err(req, EEXIST);
	else
		fs_ops.mkdir(req, parent, name, mode);
}

static void vop_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	if (view_name(name))
		fuse_reply_err(req, EEXIST);
	else
		fs_ops.symlink(req, link, parent, name);
}

static void vop_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (view_name(name))
		fuse_reply_err(req, VIEW_ERR);
	else
		fs_ops.unlink(req, parent, name);
}

static void vop_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (view_name(name))
		fuse_reply_err(req, VIEW_ERR);
	else
		fs_ops.rmdir(req, parent, name);
}

static void vop_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		       const char *newname, unsigned int flags)
{
	if (view_name(name) || view_name(newname))
		fuse_reply_err(req, VIEW_ERR);
	else
		fs_ops.rename(req, parent, name, newparent, newname, flags);
}

/* The views' entries from offset off on, into buf (room bytes); returns the bytes used. */
static size_t view_dirents(struct fs *fs, fuse_req_t req, uint64_t dir, uint64_t off, bool plus,
			   char *buf, size_t room)
{
	struct views *v = fs->views;
	size_t used = 0;

	for (int f = 0; f < RENDER_NFORMATS; f++) {
		uint64_t next = VIEW_OFF_BASE + (uint64_t)f + 1;
		if (off >= next)
			continue;
		/*
		 * The inode number shown is the current rendering's, or one
		 * never used; in readdirplus no inode is given (ino 0), so
		 * listing a directory renders nothing and counts no lookup.
		 */
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		pthread_mutex_lock(&v->mu);
		struct vgen *g = find_current(v, dir, f);
		e.attr.st_ino = g ? g->ino : v->next_ino++;
		pthread_mutex_unlock(&v->mu);
		e.attr.st_mode = S_IFREG | 0444;
		const char *name = render_view_name(f);
		size_t need = plus ? fuse_add_direntry_plus(req, buf + used, room - used, name, &e,
							    (off_t)next)
				   : fuse_add_direntry(req, buf + used, room - used, name, &e.attr,
						       (off_t)next);
		if (need > room - used)
			break;
		used += need;
	}
	return used;
}

static bool any_entry(void *ctx, const char *name, const struct node_attr *attr, uint64_t next_off)
{
	*(bool *)ctx = true;
	return false; /* one is enough */
}

/*
 * The views come after the directory's own entries: once the mirror has
 * none left from off (the listing of fs_ops is over), this answers with
 * the views instead. An entry that appears meanwhile is missed by this
 * listing, as readdir allows; its directory's listing is invalidated anyway.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus,
		       struct fuse_file_info *fi)
{
	struct fs *fs = fs_of(req);
	uint64_t from = off < 0 ? 0 : (uint64_t)off;
	bool more = false;

	if (from < VIEW_OFF_BASE) {
		int err = tree_readdir(fs->tree, ino, from, false, any_entry, &more);
		if (err) {
			fuse_reply_err(req, -err);
			return;
		}
	}
	if (more) {
		if (plus)
			fs_ops.readdirplus(req, ino, size, off, fi);
		else
			fs_ops.readdir(req, ino, size, off, fi);
		return;
	}
	char *buf = malloc(size);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	fuse_reply_buf(req, buf, view_dirents(fs, req, ino, from, plus, buf, size));
	free(buf);
}

static void vop_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, false, fi);
}

static void vop_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			    struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, true, fi);
}

const struct fuse_lowlevel_ops *fs_view_ops(void)
{
	static struct fuse_lowlevel_ops ops;

	ops = fs_ops;
	ops.lookup = vop_lookup;
	ops.forget = vop_forget;
	ops.forget_multi = vop_forget_multi;
	ops.getattr = vop_getattr;
	ops.setattr = vop_setattr;
	ops.read = vop_read;
	ops.write = vop_write;
	ops.fsync = vop_fsync;
	ops.getxattr = vop_getxattr;
	ops.create = vop_create;
	ops.mknod = vop_mknod;
	ops.mkdir = vop_mkdir;
	ops.symlink = vop_symlink;
	ops.unlink = vop_unlink;
	ops.rmdir = vop_rmdir;
	ops.rename = vop_rename;
	ops.readdir = vop_readdir;
	ops.readdirplus = vop_readdirplus;
	return &ops;
}
