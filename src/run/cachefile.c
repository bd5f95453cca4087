/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The last known tree on disk: its format, durable replacement, and the thread that saves it. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cachefile.h"
#include "clock.h"
#include "log.h"
#include "tree.h"
#include "worker.h"

/*
 * Layout, all integers little-endian:
 *   "cfgfsLKG" u32 version u32 0  i64 revision  i64 saved_at  u64 count
 *   u32 len + store name   u32 len + prefix
 *   count x { u32 klen, key, u32 vlen, value, i64 mod, i64 create, i64 version, u64 flags }
 *   u64 FNV-1a of everything before
 */
static const char MAGIC[8] = {'c', 'f', 'g', 'f', 's', 'L', 'K', 'G'};
#define FORMAT_VERSION 1
#define RECORD_MIN (4 + 4 + 4 * 8)
/* A tree is kept in memory whole; a file far beyond any mirror is not a cache file. */
#define MAX_FILE ((size_t)4 << 30)

/* A change is saved this long after it, so a burst of changes costs one write... */
#define SAVE_DELAY_MS 500
/* ...and writes are this far apart at least, whatever the store does. */
#define SAVE_INTERVAL_MS 2000

#define FNV_OFFSET 14695981039346656037ULL

static uint64_t fnv1a_more(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static uint64_t fnv1a(const char *p, size_t n)
{
	return fnv1a_more(FNV_OFFSET, p, n);
}

/* ------------------------------------------------------------ encoding */

static int write_all(int fd, const char *p, size_t n);

/*
 * Where the encoding goes: a buffer sized for all of it (fd < 0), or a file
 * through a small buffer, so that saving a tree of 1M keys does not hold a
 * second copy of every value. hash covers what has left the buffer.
 */
struct wbuf {
	char *p;
	size_t len, cap;
	int fd;
	uint64_t hash;
	int err;
};

#define WBUF_FILE_CAP (256 * 1024)

static void w_flush(struct wbuf *w)
{
	if (w->fd < 0 || w->len == 0)
		return;
	w->hash = fnv1a_more(w->hash, w->p, w->len);
	if (!w->err)
		w->err = write_all(w->fd, w->p, w->len);
	w->len = 0;
}

/* Room for n more bytes (a file's buffer is flushed; a memory buffer has it). */
static void w_room(struct wbuf *w, size_t n)
{
	if (w->fd >= 0 && w->len + n > w->cap)
		w_flush(w);
}

static void put_le(struct wbuf *w, uint64_t v, int bytes)
{
	w_room(w, (size_t)bytes);
	for (int i = 0; i < bytes; i++)
		w->p[w->len++] = (char)(v >> (8 * i));
}

static void put_bytes(struct wbuf *w, const void *p, size_t n)
{
	put_le(w, n, 4);
	if (w->fd >= 0 && n > w->cap / 2) {
		/* A large value goes straight to the file. */
		w_flush(w);
		w->hash = fnv1a_more(w->hash, p, n);
		if (!w->err)
			w->err = write_all(w->fd, p, n);
		return;
	}
	w_room(w, n);
	if (n)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void encode(struct wbuf *w, const struct cachefile_hdr *h, const struct kv_batch *b)
{
	w_room(w, sizeof(MAGIC));
	memcpy(w->p + w->len, MAGIC, sizeof(MAGIC));
	w->len += sizeof(MAGIC);
	put_le(w, FORMAT_VERSION, 4);
	put_le(w, 0, 4);
	put_le(w, (uint64_t)b->revision, 8);
	put_le(w, (uint64_t)h->saved_at, 8);
	put_le(w, b->n, 8);
	put_bytes(w, h->store, strlen(h->store));
	put_bytes(w, h->prefix, h->plen);
	for (size_t i = 0; i < b->n; i++) {
		const struct kv *kv = &b->v[i];
		put_bytes(w, kv->key, kv->klen);
		put_bytes(w, kv->val ? kv->val->data : "", kv->val ? kv->val->len : 0);
		put_le(w, (uint64_t)kv->meta.mod_rev, 8);
		put_le(w, (uint64_t)kv->meta.create_rev, 8);
		put_le(w, (uint64_t)kv->meta.version, 8);
		put_le(w, kv->meta.flags, 8);
	}
	uint64_t sum = fnv1a_more(w->hash, w->p, w->len);
	put_le(w, sum, 8);
	w_flush(w);
}

int cachefile_encode(const struct cachefile_hdr *h, const struct kv_batch *b, char **out,
		     size_t *outlen)
{
	size_t size = sizeof(MAGIC) + 4 + 4 + 8 + 8 + 8 + 4 + strlen(h->store) + 4 + h->plen + 8;
	struct wbuf w = {.fd = -1, .hash = FNV_OFFSET};

	for (size_t i = 0; i < b->n; i++)
		size += RECORD_MIN + b->v[i].klen + (b->v[i].val ? b->v[i].val->len : 0);
	w.p = malloc(size);
	if (!w.p)
		return -ENOMEM;
	w.cap = size;
	encode(&w, h, b);
	*out = w.p;
	*outlen = w.len;
	return 0;
}

/* ------------------------------------------------------------ decoding */

struct rbuf {
	const char *p;
	size_t len, pos;
};

static bool get_le(struct rbuf *r, int bytes, uint64_t *v)
{
	if (r->len - r->pos < (size_t)bytes)
		return false;
	*v = 0;
	for (int i = 0; i < bytes; i++)
		*v |= (uint64_t)(unsigned char)r->p[r->pos++] << (8 * i);
	return true;
}

/* A length-prefixed byte string, borrowed from the buffer. */
static bool get_bytes(struct rbuf *r, const char **p, size_t *n)
{
	uint64_t len;

	if (!get_le(r, 4, &len) || r->len - r->pos < len)
		return false;
	*p = r->p + r->pos;
	*n = len;
	r->pos += len;
	return true;
}

static int bad(char *why, size_t whylen, const char *reason)
{
	snprintf(why, whylen, "%s", reason);
	return -EINVAL;
}

int cachefile_decode(const char *buf, size_t len, const struct cachefile_hdr *h, struct kv_batch *b,
		     int64_t *saved_at, char *why, size_t whylen)
{
	struct rbuf r = {.p = buf, .len = len};
	uint64_t version, zero, rev, at, count, sum;
	const char *s, *pfx;
	size_t slen, plen;

	if (len < sizeof(MAGIC) + 8 || memcmp(buf, MAGIC, sizeof(MAGIC)) != 0)
		return bad(why, whylen, "not a cfgfs cache file");
	r.pos = sizeof(MAGIC);
	r.len = len - 8;
	if (!get_le(&r, 4, &version) || version != FORMAT_VERSION)
		return bad(why, whylen, "written by another version of cfgfs");
	struct rbuf tail = {.p = buf, .len = len, .pos = len - 8};
	get_le(&tail, 8, &sum);
	if (sum != fnv1a(buf, len - 8))
		return bad(why, whylen, "damaged (checksum mismatch)");
	if (!get_le(&r, 4, &zero) || !get_le(&r, 8, &rev) || !get_le(&r, 8, &at) ||
	    !get_le(&r, 8, &count) || !get_bytes(&r, &s, &slen) || !get_bytes(&r, &pfx, &plen))
		return bad(why, whylen, "damaged (truncated header)");
	if (slen != strlen(h->store) || memcmp(s, h->store, slen) != 0)
		return bad(why, whylen, "written for another kind of store");
	if (plen != h->plen || memcmp(pfx, h->prefix, plen) != 0)
		return bad(why, whylen, "written for another prefix");
	if ((int64_t)rev < 0 || count > (r.len - r.pos) / RECORD_MIN)
		return bad(why, whylen, "damaged (impossible header)");
	for (uint64_t i = 0; i < count; i++) {
		const char *k, *v;
		size_t klen, vlen;
		struct kv_meta m;
		uint64_t x[4];
		if (!get_bytes(&r, &k, &klen) || !get_bytes(&r, &v, &vlen) ||
		    !get_le(&r, 8, &x[0]) || !get_le(&r, 8, &x[1]) || !get_le(&r, 8, &x[2]) ||
		    !get_le(&r, 8, &x[3]))
			goto truncated;
		if (klen < plen || memcmp(k, pfx, plen) != 0) {
			kv_batch_clear(b);
			return bad(why, whylen, "damaged (a key outside the prefix)");
		}
		m = (struct kv_meta){.mod_rev = (int64_t)x[0],
				     .create_rev = (int64_t)x[1],
				     .version = (int64_t)x[2],
				     .flags = x[3]};
		struct blob *val = blob_from(v, vlen);
		if (!val || kv_batch_push(b, k, klen, val, &m)) {
			kv_batch_clear(b);
			return bad(why, whylen, "out of memory");
		}
	}
	if (r.pos != r.len)
		goto truncated;
	b->revision = (int64_t)rev;
	*saved_at = (int64_t)at;
	return 0;
truncated:
	kv_batch_clear(b);
	return bad(why, whylen, "damaged (records do not match the header)");
}

/* ------------------------------------------------------------ files */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0)
			return -errno;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Replace the file at path with what fill writes to fd (see cachefile_write). */
static int replace_file(const char *path, int (*fill)(int fd, void *ctx), void *ctx)
{
	char *tmp = NULL, *dcopy = strdup(path);
	int fd = -1, err;

	if (!dcopy || asprintf(&tmp, "%s.tmp-%ld", path, (long)getpid()) < 0) {
		free(dcopy);
		return -ENOMEM;
	}
	/* A leftover of a crash has our pid only by chance; it is ours to replace. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	err = fill(fd, ctx);
	if (!err && fsync(fd))
		err = -errno;
	if (close(fd) && !err)
		err = -errno;
	if (!err && rename(tmp, path))
		err = -errno;
	if (err) {
		unlink(tmp);
		goto out;
	}
	/* The rename itself must survive a crash too. */
	int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
out:
	free(tmp);
	free(dcopy);
	return err;
}

struct span {
	const void *p;
	size_t len;
};

static int fill_span(int fd, void *ctx)
{
	const struct span *s = ctx;

	return write_all(fd, s->p, s->len);
}

int cachefile_write(const char *path, const void *buf, size_t len)
{
	struct span s = {buf, len};

	return replace_file(path, fill_span, &s);
}

struct tree_file {
	const struct cachefile_hdr *h;
	const struct kv_batch *b;
	char *buf;
};

static int fill_tree(int fd, void *ctx)
{
	struct tree_file *f = ctx;
	struct wbuf w = {.p = f->buf, .cap = WBUF_FILE_CAP, .fd = fd, .hash = FNV_OFFSET};

	encode(&w, f->h, f->b);
	return w.err;
}

int cachefile_save(const char *path, const struct cachefile_hdr *h, const struct kv_batch *b)
{
	struct tree_file f = {h, b, malloc(WBUF_FILE_CAP)};

	if (!f.buf)
		return -ENOMEM;
	int err = replace_file(path, fill_tree, &f);
	free(f.buf);
	return err;
}

int cachefile_load(const char *path, const struct cachefile_hdr *h, struct kv_batch *b,
		   int64_t *saved_at, char *why, size_t whylen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0) {
		err = -errno;
		snprintf(why, whylen, "%s", strerror(errno));
		return err;
	}
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > MAX_FILE) {
		close(fd);
		return bad(why, whylen, "not a regular file of a sensible size");
	}
	size_t len = (size_t)st.st_size, got = 0;
	char *buf = malloc(len ? len : 1);
	if (!buf) {
		close(fd);
		return bad(why, whylen, "out of memory");
	}
	while (got < len) {
		ssize_t k = read(fd, buf + got, len - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			err = k < 0 ? -errno : -EIO;
			snprintf(why, whylen, "%s",
				 k < 0 ? strerror(errno) : "shorter than it was");
			break;
		}
		got += (size_t)k;
	}
	close(fd);
	if (!err)
		err = cachefile_decode(buf, len, h, b, saved_at, why, whylen);
	free(buf);
	return err;
}

/* ------------------------------------------------------------ the saver thread */

struct cachefile {
	char *path;
	char *store;
	char *prefix;
	size_t plen;
	struct tree *tree;
	struct worker w;  /* the saver thread */
	bool dirty;	  /* protected by w.mu */
	int64_t dirty_ms; /* when dirty was set; protected by w.mu */
	int last_err;	  /* the saver thread's own: log each kind of failure once */
	bool here;	  /* benchmark: CFGFS_TEST_CACHE_SAVE=here saves without a child */
};

/* The longest a child's save may take before it is killed and this process saves itself. */
#define CHILD_MAX_MS 120000

/* What a child that saved tells its parent, through a pipe. */
struct child_report {
	int err;
	size_t n;
	int64_t rev;
};

static void child_save(struct cachefile *c, const struct cachefile_hdr *h, pid_t parent, int wfd)
{
	struct child_report r = {0};
	struct kv_batch b;

	/* Gone with the thread that forked it; nothing but the pipe to hold on to. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	if (wfd != 3 && dup2(wfd, 3) < 0)
		_exit(1);
	close_range(4, ~0u, 0);
	kv_batch_init(&b);
	r.err = tree_export_frozen(c->tree, &b);
	if (!r.err)
		r.err = cachefile_save(c->path, h, &b);
	r.n = b.n;
	r.rev = b.revision;
	if (write(3, &r, sizeof(r)) != (ssize_t)sizeof(r))
		_exit(1);
	_exit(0);
}

/*
 * Save from a child process. fork() gives the child this address space
 * copy-on-write, so it has the tree as it was at the fork, to itself, while
 * here the mirror goes on changing: changes wait only for the fork (the
 * tree held still meanwhile), not for a copy of the tree, and no page is
 * copied unless this process writes to it before the child is done.
 * 1: no child (save here instead).
 */
static int save_in_child(struct cachefile *c, const struct cachefile_hdr *h, struct child_report *r,
			 int64_t *held_us)
{
	pid_t parent = getpid();
	int fds[2];

	if (pipe2(fds, O_CLOEXEC))
		return 1;
	int64_t t0 = mono_us();
	tree_freeze(c->tree);
	pid_t pid = fork();
	if (pid == 0)
		child_save(c, h, parent, fds[1]);
	tree_thaw(c->tree);
	*held_us = mono_us() - t0;
	close(fds[1]);
	if (pid < 0) {
		close(fds[0]);
		return 1;
	}
	struct pollfd p = {.fd = fds[0], .events = POLLIN};
	int64_t until = mono_ms() + CHILD_MAX_MS;
	int pr;
	do
		pr = poll(&p, 1, (int)(until - mono_ms() > 0 ? until - mono_ms() : 0));
	while (pr < 0 && errno == EINTR);
	ssize_t got = pr > 0 ? read(fds[0], r, sizeof(*r)) : -1;
	close(fds[0]);
	if (got != (ssize_t)sizeof(*r)) {
		kill(pid, SIGKILL);
		r->err = pr == 0 ? -ETIMEDOUT : -EIO;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	return 0;
}

static void save(struct cachefile *c)
{
	struct cachefile_hdr h = {
		.store = c->store,
		.prefix = c->prefix,
		.plen = c->plen,
		.saved_at = time(NULL),
	};
	struct child_report r = {0};
	int64_t held_us = 0, t0 = mono_ms();
	bool child = !c->here && save_in_child(c, &h, &r, &held_us) == 0;

	if (!child || r.err == -ETIMEDOUT || r.err == -EIO) {
		if (child)
			log_warn("the process saving the tree to %s %s; saving it here", c->path,
				 r.err == -EIO ? "died" : "took too long");
		struct kv_batch b;
		kv_batch_init(&b);
		r.err = tree_export(c->tree, &b);
		if (!r.err)
			r.err = cachefile_save(c->path, &h, &b);
		r.n = b.n;
		r.rev = b.revision;
		kv_batch_clear(&b);
		/* The keys' copy was as large as the tree's names; hand the memory back rather
		 * than keep the peak. */
		malloc_trim(0);
		child = false;
	}
	if (r.err && r.err != c->last_err)
		log_warn("cannot save the tree to %s: %s (the last saved tree stays)", c->path,
			 strerror(-r.err));
	else if (!r.err && c->last_err)
		log_info("the tree is saved to %s again", c->path);
	else if (!r.err)
		log_debug("saved %zu keys at revision %lld to %s in %lld ms (%s)", r.n,
			  (long long)r.rev, c->path, (long long)(mono_ms() - t0),
			  child ? "by a child process" : "here");
	if (child && !r.err)
		log_debug("the tree was held still for the fork: %lld us", (long long)held_us);
	c->last_err = r.err;
}

static void *run(void *arg)
{
	struct cachefile *c = arg;
	int64_t last_save = mono_ms() - SAVE_INTERVAL_MS;

	pthread_mutex_lock(&c->w.mu);
	for (;;) {
		if (!c->dirty) {
			if (!worker_wait(&c->w, 0))
				break;
			continue;
		}
		int64_t due = c->dirty_ms + SAVE_DELAY_MS;
		if (due < last_save + SAVE_INTERVAL_MS)
			due = last_save + SAVE_INTERVAL_MS;
		/* Stopping: what changed is saved now. */
		if (!c->w.stop && mono_ms() < due) {
			worker_wait(&c->w, due);
			continue;
		}
		c->dirty = false;
		pthread_mutex_unlock(&c->w.mu);
		save(c);
		last_save = mono_ms();
		pthread_mutex_lock(&c->w.mu);
	}
	pthread_mutex_unlock(&c->w.mu);
	return NULL;
}

static void cachefile_free(struct cachefile *c)
{
	free(c->path);
	free(c->store);
	free(c->prefix);
	free(c);
}

int cachefile_start(const char *path, struct tree *t, const char *store, const char *prefix,
		    size_t plen, struct cachefile **out)
{
	struct cachefile *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->path = strdup(path);
	c->store = strdup(store);
	c->prefix = malloc(plen + 1);
	c->plen = plen;
	c->tree = t;
	if (!c->path || !c->store || !c->prefix) {
		cachefile_free(c);
		return -ENOMEM;
	}
	memcpy(c->prefix, prefix, plen);
	const char *how = getenv("CFGFS_TEST_CACHE_SAVE");
	c->here = how && strcmp(how, "here") == 0;
	int err = worker_start(&c->w, "cfgfs-cache", run, c);
	if (err) {
		cachefile_free(c);
		return err;
	}
	*out = c;
	return 0;
}

void cachefile_changed(struct cachefile *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->w.mu);
	if (!c->dirty) {
		c->dirty = true;
		c->dirty_ms = mono_ms();
		pthread_cond_signal(&c->w.cv);
	}
	pthread_mutex_unlock(&c->w.mu);
}

void cachefile_stop(struct cachefile *c)
{
	if (!c)
		return;
	worker_stop(&c->w, 0);
	worker_release(&c->w);
	cachefile_free(c);
}
