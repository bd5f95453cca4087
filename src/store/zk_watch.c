/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Following a ZooKeeper subtree: a mirror of its znodes kept current by
 * one-shot watches (the C client has no recursive ones), told to cfgfs's
 * mirror as the keys each znode shows as (zk_shape.h).
 *
 * Every znode has a data watch, and a persistent one a child watch, armed
 * by the read that saw it. A fired watch only means "read this again"; the
 * read arms the next watch, so nothing that happens between the two is
 * missed. Answers older than what the mirror has are dropped, and a node
 * deleted and created again is told apart by its czxid. Answers are told
 * to cfgfs once every read sent is answered (or after a short bound), so
 * the znodes of one multi-op arrive together.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "clock.h"
#include "log.h"
#include "zk_int.h"
#include "zk_shape.h"

/*
 * On a reconnect the client sends every watch's path in one packet, which
 * the server refuses above jute.maxbuffer (1 MiB): the session then
 * reconnects forever without a word. Past this many bytes of watches a
 * lost connection starts a new session and a full read instead.
 */
#define ZK_WATCH_BUDGET 900000
/*
 * Changes are told once every read sent is answered and every answer
 * handled: only then does the mirror hold one state of the store (each
 * change after a read fires that read's watch, and ZooKeeper delivers the
 * notification before the answer to any later read). Under a stream of
 * writes that never leaves a moment of quiet, they are told at least this
 * often, possibly partly.
 */
#define ZK_GATHER_MS 1000

struct znode {
	struct znode *next; /* hash chain */
	char *path;
	size_t plen;
	int64_t czxid, mzxid, pzxid;
	int64_t owner; /* ephemeralOwner */
	int32_t version, cversion, data_len, nkids;
	struct blob *val; /* the data (a reference the tree may share); NULL for null data */
	char **kids;	  /* sorted */
	unsigned keys;	  /* the ZK_KEY_* told to cfgfs */
	bool have_data, have_kids, kids_asked;
	bool retry; /* a read failed (connection lost): read again once connected */
};

struct zk_mirror {
	struct znode **tab;
	size_t mask, n;
	size_t watch_bytes;  /* what a reconnect's SetWatches would carry */
	int64_t rev;	     /* the highest zxid seen */
	bool watch;	     /* arm watches (false: a one-off snapshot) */
	struct kv_batch out; /* changes not told yet */
	int64_t out_since;   /* mono_ms of the first of them */
};

static size_t hash(const char *s, size_t n)
{
	size_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static struct zk_mirror *mirror_new(bool watch)
{
	struct zk_mirror *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->mask = 1023;
	m->tab = calloc(m->mask + 1, sizeof(*m->tab));
	if (!m->tab) {
		free(m);
		return NULL;
	}
	m->watch = watch;
	kv_batch_init(&m->out);
	return m;
}

static void node_free(struct znode *n)
{
	for (int i = 0; i < n->nkids; i++)
		free(n->kids[i]);
	free(n->kids);
	blob_unref(n->val);
	free(n->path);
	free(n);
}

void zk_mirror_free(struct zk_mirror *m)
{
	if (!m)
		return;
	for (size_t i = 0; i <= m->mask; i++)
		while (m->tab[i]) {
			struct znode *n = m->tab[i];
			m->tab[i] = n->next;
			node_free(n);
		}
	free(m->tab);
	kv_batch_clear(&m->out);
	free(m);
}

static struct znode *find(struct zk_mirror *m, const char *path)
{
	size_t len = strlen(path);

	for (struct znode *n = m->tab[hash(path, len) & m->mask]; n; n = n->next)
		if (n->plen == len && memcmp(n->path, path, len) == 0)
			return n;
	return NULL;
}

static int grow(struct zk_mirror *m)
{
	size_t mask = m->mask * 2 + 1;
	struct znode **tab = calloc(mask + 1, sizeof(*tab));

	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i <= m->mask; i++)
		while (m->tab[i]) {
			struct znode *n = m->tab[i];
			m->tab[i] = n->next;
			size_t h = hash(n->path, n->plen) & mask;
			n->next = tab[h];
			tab[h] = n;
		}
	free(m->tab);
	m->tab = tab;
	m->mask = mask;
	return 0;
}

static struct znode *add(struct zk_mirror *m, const char *path)
{
	struct znode *n = find(m, path);

	if (n)
		return n;
	if (m->n > m->mask && grow(m))
		return NULL;
	n = calloc(1, sizeof(*n));
	if (!n || !(n->path = strdup(path))) {
		free(n);
		return NULL;
	}
	n->plen = strlen(path);
	size_t h = hash(path, n->plen) & m->mask;
	n->next = m->tab[h];
	m->tab[h] = n;
	m->n++;
	return n;
}

static void unhash(struct zk_mirror *m, struct znode *n)
{
	struct znode **p = &m->tab[hash(n->path, n->plen) & m->mask];

	while (*p != n)
		p = &(*p)->next;
	*p = n->next;
	m->n--;
}

/* ------------------------------------------------------------ keys */

static void meta_of(const struct znode *n, struct kv_meta *meta)
{
	*meta = (struct kv_meta){
		.mod_rev = n->mzxid,
		.create_rev = n->czxid,
		.version = n->version,
		.flags = (uint64_t)n->owner,
	};
}

/*
 * Tell cfgfs the key of n (with a '/' for its directory marker): a put of
 * val, or a delete at revision gone (a zxid at or after the delete: the
 * mirror ignores a delete older than what it holds; 0: whenever).
 */
static int tell(struct zk_mirror *m, const struct znode *n, bool marker, struct blob *val, bool put,
		int64_t gone)
{
	struct kv_meta meta;
	char *key = NULL;
	size_t klen = n->plen - 1 + marker;

	meta_of(n, &meta);
	if (!put)
		meta.mod_rev = gone;
	key = malloc(klen + 1);
	if (!key) {
		blob_unref(val);
		return -ENOMEM;
	}
	memcpy(key, zk_key(n->path), n->plen - 1);
	if (marker)
		key[klen - 1] = '/';
	key[klen] = '\0';
	if (!m->out.n)
		m->out_since = mono_ms();
	int err = kv_batch_push(&m->out, key, klen, put ? val : NULL, &meta);
	free(key);
	return err;
}

static struct blob *value_of(const struct znode *n)
{
	if (n->val)
		return blob_ref(n->val);
	return blob_new(0);
}

/* What n shows as now, told to cfgfs as the difference from what it showed (data: it changed). */
static int show(struct zk *z, struct zk_mirror *m, struct znode *n, bool data)
{
	if (!n->have_data || (!n->have_kids && !n->owner) || n->plen == z->rootlen)
		return 0; /* not known yet, or the mount's root */
	const char *name = strrchr(n->path, '/') + 1;
	struct zk_znode zn = {
		.name = name,
		.name_len = strlen(name),
		.data = n->val ? n->val->data : NULL,
		.data_len = n->data_len,
		.version = n->version,
		.cversion = n->cversion,
		.num_children = n->nkids,
		.ephemeral_owner = n->owner,
	};
	unsigned keys = zk_shape_keys(zk_shape(&zn)), was = n->keys;
	int err = 0;

	/* Puts before deletes: a directory never vanishes between its marker and its files. */
	if ((keys & ZK_KEY_VALUE) && (!(was & ZK_KEY_VALUE) || data))
		err = tell(m, n, false, value_of(n), true, 0);
	if (!err && (keys & ZK_KEY_MARKER) && (!(was & ZK_KEY_MARKER) || data))
		err = tell(m, n, true, blob_new(0), true, 0);
	/* The change that took a key away is the one that made this state: at mzxid or pzxid. */
	int64_t at = n->mzxid > n->pzxid ? n->mzxid : n->pzxid;
	if (!err && (was & ZK_KEY_VALUE) && !(keys & ZK_KEY_VALUE))
		err = tell(m, n, false, NULL, false, at);
	if (!err && (was & ZK_KEY_MARKER) && !(keys & ZK_KEY_MARKER))
		err = tell(m, n, true, NULL, false, at);
	n->keys = keys;
	return err;
}

static char *child_path(const struct znode *n, const char *name)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s", n->plen == 1 ? "" : n->path, name) < 0)
		return NULL;
	return p;
}

/* Forget n and what is below it, telling cfgfs its keys are gone at zxid gone (see tell). */
static void forget(struct zk_mirror *m, struct znode *n, int64_t gone)
{
	for (int i = 0; i < n->nkids; i++) {
		char *cp = child_path(n, n->kids[i]);
		struct znode *c = cp ? find(m, cp) : NULL;
		free(cp);
		if (c)
			forget(m, c, gone);
	}
	if (n->keys & ZK_KEY_VALUE)
		tell(m, n, false, NULL, false, gone);
	if (n->keys & ZK_KEY_MARKER)
		tell(m, n, true, NULL, false, gone);
	if (n->have_data)
		m->watch_bytes -= 4 + n->plen;
	if (n->kids_asked)
		m->watch_bytes -= 4 + n->plen;
	unhash(m, n);
	node_free(n);
}

/* ------------------------------------------------------------ answers */

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool has_name(char **v, int n, const char *name)
{
	return n > 0 && bsearch(&name, v, (size_t)n, sizeof(*v), cmp_names) != NULL;
}

static void ask_kids(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
		     struct znode *n)
{
	if (!n->kids_asked && m->watch)
		m->watch_bytes += 4 + n->plen;
	n->kids_asked = true;
	if (zk_read_kids(r, zh, n->path, m->watch) != ZOK)
		n->retry = true;
}

static void ask_data(struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh, struct znode *n)
{
	if (zk_read_data(r, zh, n->path, m->watch) != ZOK)
		n->retry = true;
}

/* The mount's root was deleted: forget everything, and wait for it to come back. */
static int root_gone(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
		     struct znode *n)
{
	forget(m, n, 0);
	n = add(m, z->root);
	if (!n)
		return -ENOMEM;
	if (zk_read_exists(r, zh, z->root) != ZOK)
		n->retry = true;
	return 0;
}

/* Read the children of path's parent again (they say whether path is gone, and since when). */
static int parent_again(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
			const char *path)
{
	char *parent = strdup(path);

	if (!parent)
		return -ENOMEM;
	char *slash = strrchr(parent, '/');
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	struct znode *p = find(m, parent);
	free(parent);
	if (p)
		ask_kids(z, m, r, zh, p);
	return 0;
}

static int on_data(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
		   struct zk_event *e)
{
	struct znode *n = find(m, e->path);

	if (!n)
		return 0; /* forgotten meanwhile */
	if (e->rc == ZNONODE) {
		/*
		 * Gone: its parent's children say when (its pzxid), and whether it
		 * came back meanwhile; the mount's root waits to come back.
		 */
		if (n->plen == z->rootlen)
			return root_gone(z, m, r, zh, n);
		return parent_again(z, m, r, zh, n->path);
	}
	if (e->rc != ZOK) {
		n->retry = true;
		return e->rc == ZSYSTEMERROR ? -ENOMEM : 0;
	}
	const struct Stat *st = &e->stat;
	if (n->have_data && st->czxid == n->czxid && st->mzxid < n->mzxid)
		return 0; /* an answer older than what the mirror has */
	if (n->have_data && st->czxid != n->czxid) {
		/* Deleted and created again: its children are not the old ones. */
		for (int i = 0; i < n->nkids; i++) {
			char *cp = child_path(n, n->kids[i]);
			struct znode *c = cp ? find(m, cp) : NULL;
			free(cp);
			if (c)
				forget(m, c, st->czxid);
			free(n->kids[i]);
		}
		free(n->kids);
		n->kids = NULL;
		n->nkids = 0;
		n->have_kids = false;
		if (n->kids_asked && m->watch)
			m->watch_bytes -= 4 + n->plen;
		n->kids_asked = false;
	}
	if (!n->have_data && m->watch)
		m->watch_bytes += 4 + n->plen;
	bool changed = !n->have_data || st->mzxid != n->mzxid || st->czxid != n->czxid;
	n->have_data = true;
	n->czxid = st->czxid;
	n->mzxid = st->mzxid;
	n->version = st->version;
	n->owner = st->ephemeralOwner;
	if (st->mzxid > m->rev)
		m->rev = st->mzxid;
	if (changed) {
		blob_unref(n->val);
		n->val = NULL;
		n->data_len = e->data_len;
		if (e->data_len > 0) {
			n->val = blob_from(e->data, (size_t)e->data_len);
			if (!n->val)
				return -ENOMEM;
		}
	}
	if (n->owner) {
		n->have_kids = true; /* ephemerals have no children: no child watch to hold */
	} else if (!n->kids_asked) {
		ask_kids(z, m, r, zh, n);
	}
	if (!n->have_kids)
		n->cversion = st->cversion;
	return show(z, m, n, changed);
}

static int on_kids(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
		   struct zk_event *e)
{
	struct znode *n = find(m, e->path);

	if (!n || e->rc == ZNONODE)
		return 0; /* the data's answer says what happened */
	if (e->rc != ZOK) {
		n->retry = true;
		return e->rc == ZSYSTEMERROR ? -ENOMEM : 0;
	}
	if (n->have_kids && e->stat.pzxid < n->pzxid)
		return 0;
	if (e->nkids > 1)
		qsort(e->kids, (size_t)e->nkids, sizeof(*e->kids), cmp_names);
	/* Gone: forgotten with what is below them. */
	for (int i = 0; i < n->nkids; i++) {
		if (has_name(e->kids, e->nkids, n->kids[i]))
			continue;
		char *cp = child_path(n, n->kids[i]);
		struct znode *c = cp ? find(m, cp) : NULL;
		free(cp);
		if (c)
			forget(m, c, e->stat.pzxid);
	}
	/* New: read (the system's own /zookeeper is not config). */
	for (int i = 0; i < e->nkids; i++) {
		if (has_name(n->kids, n->nkids, e->kids[i]) ||
		    (n->plen == 1 && strcmp(e->kids[i], "zookeeper") == 0))
			continue;
		char *cp = child_path(n, e->kids[i]);
		struct znode *c = cp ? add(m, cp) : NULL;
		free(cp);
		if (!c)
			return -ENOMEM;
		ask_data(m, r, zh, c);
	}
	for (int i = 0; i < n->nkids; i++)
		free(n->kids[i]);
	free(n->kids);
	n->kids = e->kids;
	n->nkids = e->nkids;
	e->kids = NULL;
	e->nkids = 0;
	if (n->plen == 1) {
		/* Leave /zookeeper out of the count, as out of the listing. */
		for (int i = 0; i < n->nkids; i++)
			if (strcmp(n->kids[i], "zookeeper") == 0) {
				free(n->kids[i]);
				memmove(n->kids + i, n->kids + i + 1,
					(size_t)(n->nkids - i - 1) * sizeof(*n->kids));
				n->nkids--;
				break;
			}
	}
	n->have_kids = true;
	n->pzxid = e->stat.pzxid;
	n->cversion = e->stat.cversion;
	if (e->stat.pzxid > m->rev)
		m->rev = e->stat.pzxid;
	return show(z, m, n, false);
}

static int on_watch(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
		    struct zk_event *e)
{
	struct znode *n = find(m, e->path);

	/* The client's event types are variables, not constants: no switch. */
	if (e->type == ZOO_CREATED_EVENT) {
		if (strcmp(e->path, z->root) != 0)
			return 0;
		if (!n && !(n = add(m, z->root)))
			return -ENOMEM;
		ask_data(m, r, zh, n);
	} else if (e->type == ZOO_DELETED_EVENT) {
		/* Its parent's child watch fires too: that read says when, and what is left. */
		if (n && n->plen == z->rootlen)
			return root_gone(z, m, r, zh, n);
		if (n)
			return parent_again(z, m, r, zh, n->path);
	} else if (e->type == ZOO_CHANGED_EVENT) {
		if (n)
			ask_data(m, r, zh, n);
	} else if (e->type == ZOO_CHILD_EVENT) {
		if (n)
			ask_kids(z, m, r, zh, n);
	}
	return 0; /* ZOO_NOTWATCHING_EVENT and the like: nothing to read */
}

/* Send again the reads that failed while the connection was lost. */
static void retry_reads(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh)
{
	for (size_t i = 0; i <= m->mask; i++)
		for (struct znode *n = m->tab[i]; n; n = n->next) {
			if (!n->retry)
				continue;
			n->retry = false;
			ask_data(m, r, zh, n);
			if (n->kids_asked)
				ask_kids(z, m, r, zh, n);
		}
}

static int handle(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh,
		  struct zk_event *e)
{
	log_debug("zookeeper event %d type %d rc %d path %s", (int)e->kind, e->type, e->rc,
		  e->path);
	switch (e->kind) {
	case ZKE_DATA:
		return on_data(z, m, r, zh, e);
	case ZKE_KIDS:
		return on_kids(z, m, r, zh, e);
	case ZKE_WATCH:
		return on_watch(z, m, r, zh, e);
	case ZKE_SESSION:
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------ a whole read */

/* Reads sent and not answered, or answers not handled yet: more of the same change may come. */
static bool busy(struct zk_reader *r)
{
	pthread_mutex_lock(&r->mu);
	bool b = r->outstanding > 0 || r->head != NULL;
	pthread_mutex_unlock(&r->mu);
	return b;
}

/* Every key the mirror shows, into b (for a first read, or one after a new session). */
static int list_all(struct zk *z, struct zk_mirror *m, struct kv_batch *b)
{
	kv_batch_clear(&m->out);
	for (size_t i = 0; i <= m->mask; i++)
		for (struct znode *n = m->tab[i]; n; n = n->next) {
			n->keys = 0;
			int err = show(z, m, n, true);
			if (err)
				return err;
		}
	/* The puts only: nothing was shown before. */
	*b = m->out;
	kv_batch_init(&m->out);
	b->revision = m->rev;
	return 0;
}

/*
 * Handle events and answers until every read sent is answered. Returns 0,
 * -ECANCELED, or an errno with the reason recorded; session events (a lost
 * connection) end it with -ECONNRESET.
 */
static int settle(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh)
{
	int64_t deadline = mono_ms() + 60000 + (int64_t)z->base.timeout_ms;

	while (busy(r)) {
		if (__atomic_load_n(&z->stopping, __ATOMIC_ACQUIRE))
			return -ECANCELED;
		struct zk_event *e = zk_next_event(r, 1000);
		if (!e) {
			if (mono_ms() > deadline) {
				store_set_error(&z->base,
						"zookeeper at %s: reading the subtree "
						"took longer than a minute",
						z->hosts);
				return -ETIMEDOUT;
			}
			continue;
		}
		int err = 0;
		if (e->kind == ZKE_SESSION && e->type != ZOO_CONNECTED_STATE) {
			store_set_error(&z->base,
					"zookeeper at %s: the connection was lost while "
					"reading the subtree",
					z->hosts);
			err = -ECONNRESET;
		} else if (e->kind == ZKE_DATA && e->rc == ZNONODE &&
			   strcmp(e->path, z->root) == 0) {
			/* The mounted znode does not exist (yet): an empty mount. */
			if (m->watch && zk_read_exists(r, zh, z->root) != ZOK)
				err = -ECONNRESET;
		} else if ((e->kind == ZKE_DATA || e->kind == ZKE_KIDS) && e->rc != ZOK &&
			   e->rc != ZNONODE) {
			store_set_error(&z->base, "zookeeper at %s: reading %s: %s", z->hosts,
					e->path, zerror(e->rc));
			err = e->rc == ZNOAUTH ? -EACCES : -ECONNRESET;
		} else {
			err = handle(z, m, r, zh, e);
		}
		zk_event_free(e);
		if (err)
			return err;
	}
	return 0;
}

/* Read the subtree from the mount's root (see settle). */
static int read_all(struct zk *z, struct zk_mirror *m, struct zk_reader *r, zhandle_t *zh)
{
	struct znode *root = add(m, z->root);

	if (!root)
		return -ENOMEM;
	if (zk_read_data(r, zh, z->root, m->watch) != ZOK)
		return -ECONNRESET;
	return settle(z, m, r, zh);
}

int zk_snapshot(struct store *s, struct kv_batch *b)
{
	struct zk *z = (struct zk *)s;
	struct zk_reader r;
	struct zk_mirror *m = mirror_new(false);
	int err;

	if (!m)
		return -ENOMEM;
	zk_reader_init(&r, z);
	zhandle_t *zh = zk_connect(z, &r, &err);
	if (zh) {
		err = read_all(z, m, &r, zh);
		if (!err)
			err = list_all(z, m, b);
		/* This session served one read; the watch starts its own. */
		zk_drain(&r, ZK_DRAIN_MS);
		zookeeper_close(zh);
	}
	zk_reader_destroy(&r);
	zk_mirror_free(m);
	return err;
}

/* ------------------------------------------------------------ following */

/* Tell cfgfs what changed, once every read sent is answered or the changes waited long enough. */
static int flush(struct zk_mirror *m, struct zk_reader *r, const struct store_watch_cb *cb,
		 bool force)
{
	if (!m->out.n || (!force && busy(r) && mono_ms() - m->out_since < ZK_GATHER_MS))
		return 0;
	m->out.revision = m->rev;
	int rc = cb->batch(cb->ctx, &m->out);
	kv_batch_clear(&m->out);
	return rc;
}

/* Replace the watch thread's session (taken for writing: no request is using it). */
static int new_session(struct zk *z)
{
	int err = 0;

	pthread_rwlock_wrlock(&z->lock);
	if (z->zh)
		zookeeper_close(z->zh);
	z->zh = zk_connect(z, &z->reader, &err);
	pthread_rwlock_unlock(&z->lock);
	/* Events of the old session are stale now. */
	struct zk_event *e;
	while ((e = zk_next_event(&z->reader, 0)))
		zk_event_free(e);
	return err;
}

int zk_watch(struct store *s, int64_t from_rev, const struct store_watch_cb *cb)
{
	struct zk *z = (struct zk *)s;
	struct zk_reader *r = &z->reader;
	struct kv_batch b;
	int err;

	/*
	 * Each call starts a session and reads everything, which cfgfs diffs
	 * against what it has: within a session the client restores the
	 * watches itself, so this runs only at the start and after a session
	 * is lost.
	 */
	zk_mirror_free(z->mirror);
	z->mirror = mirror_new(true);
	if (!z->mirror)
		return -ENOMEM;
	struct zk_mirror *m = z->mirror;
	err = new_session(z);
	if (err)
		return err;
	zhandle_t *zh = z->zh; /* only this thread replaces it */
	uint64_t epoch = cb->epoch(cb->ctx);
	err = read_all(z, m, r, zh);
	/*
	 * A commit made here while the mirror was read may not be in it yet;
	 * its watches have fired, though: handle them, and list again.
	 */
	for (int tries = 0; !err; tries++) {
		err = list_all(z, m, &b);
		if (err)
			break;
		err = cb->snapshot(cb->ctx, &b, epoch);
		kv_batch_clear(&b);
		if (err != 1)
			break;
		if (tries == 10) {
			store_set_error(s, "the subtree changed here during every read of it");
			err = -ECONNRESET;
			break;
		}
		epoch = cb->epoch(cb->ctx);
		err = settle(z, m, r, zh);
	}
	if (err)
		return err;
	cb->connected(cb->ctx, m->rev);
	bool up = true;
	while (!__atomic_load_n(&z->stopping, __ATOMIC_ACQUIRE)) {
		struct zk_event *e = zk_next_event(r, 20);
		if (e && e->kind == ZKE_SESSION) {
			int state = e->type;
			zk_event_free(e);
			if (state == ZOO_CONNECTED_STATE) {
				if (!up)
					cb->connected(cb->ctx, m->rev);
				up = true;
				retry_reads(z, m, r, zh);
				continue;
			}
			if (state == ZOO_EXPIRED_SESSION_STATE) {
				store_set_error(s, "zookeeper at %s: the session expired",
						z->hosts);
				return -ECONNRESET;
			}
			if (state == ZOO_AUTH_FAILED_STATE) {
				store_set_error(s, "zookeeper at %s: authentication failed",
						z->hosts);
				return -EACCES;
			}
			/* Connecting again: the client restores the watches, if they fit one
			 * packet. */
			store_set_error(s, "zookeeper at %s: the connection was lost", z->hosts);
			if (up && cb->lost)
				cb->lost(cb->ctx);
			up = false;
			if (m->watch_bytes > ZK_WATCH_BUDGET) {
				log_warn("zookeeper: %zu bytes of watches do not fit one reconnect "
					 "packet: starting a new session and reading everything "
					 "again",
					 m->watch_bytes);
				return -ECONNRESET;
			}
			continue;
		}
		if (e) {
			err = e->gen == r->gen ? handle(z, m, r, zh, e) : 0;
			zk_event_free(e);
			if (err)
				return err;
		}
		err = flush(m, r, cb, false);
		if (err)
			return err;
	}
	return -ECANCELED;
}
