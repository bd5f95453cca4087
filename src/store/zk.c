/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ZooKeeper through Debian's C client (libzookeeper_mt): sessions, the
 * events its threads hand over, and writes as one multi-op. The only code
 * that calls the client besides zk_watch.c, which keeps the mirror.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "zk_int.h"

/* ------------------------------------------------------------ events */

void zk_reader_init(struct zk_reader *r, struct zk *z)
{
	memset(r, 0, sizeof(*r));
	r->z = z;
	pthread_mutex_init(&r->mu, NULL);
	mono_cond_init(&r->cv);
	r->state = ZOO_CONNECTING_STATE;
}

void zk_event_free(struct zk_event *e)
{
	if (!e)
		return;
	free(e->data);
	for (int i = 0; i < e->nkids; i++)
		free(e->kids[i]);
	free(e->kids);
	free(e);
}

void zk_reader_destroy(struct zk_reader *r)
{
	while (r->head) {
		struct zk_event *e = r->head;
		r->head = e->next;
		zk_event_free(e);
	}
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
}

static struct zk_event *event_new(enum zk_event_kind kind, const char *path)
{
	size_t len = path ? strlen(path) : 0;
	struct zk_event *e = calloc(1, sizeof(*e) + len + 1);

	if (e) {
		e->kind = kind;
		if (path)
			memcpy(e->path, path, len + 1);
	}
	return e;
}

/* Queue e for the reader (a client thread); answers also count down what is outstanding. */
static void push(struct zk_reader *r, struct zk_event *e, bool answer)
{
	pthread_mutex_lock(&r->mu);
	if (answer && r->outstanding)
		r->outstanding--;
	if (e) {
		if (r->tail)
			r->tail->next = e;
		else
			r->head = e;
		r->tail = e;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

struct zk_event *zk_next_event(struct zk_reader *r, int ms)
{
	struct timespec until = mono_ts(mono_ms() + ms);
	struct zk_event *e;

	pthread_mutex_lock(&r->mu);
	while (!r->head && !__atomic_load_n(&r->z->stopping, __ATOMIC_ACQUIRE))
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until))
			break;
	e = r->head;
	if (e) {
		r->head = e->next;
		if (!r->head)
			r->tail = NULL;
		e->next = NULL;
	}
	pthread_mutex_unlock(&r->mu);
	return e;
}

void zk_on_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	struct zk_reader *r = ctx;
	struct zk_event *e = event_new(type == ZOO_SESSION_EVENT ? ZKE_SESSION : ZKE_WATCH,
				       type == ZOO_SESSION_EVENT ? NULL : path);

	pthread_mutex_lock(&r->mu);
	uint64_t gen = r->gen;
	if (type == ZOO_SESSION_EVENT)
		r->state = state;
	pthread_mutex_unlock(&r->mu);
	if (!e) {
		log_err("out of memory: a ZooKeeper event was lost");
		return;
	}
	e->type = type == ZOO_SESSION_EVENT ? state : type;
	e->gen = gen;
	push(r, e, false);
}

/* What a read's completion needs: where to report, for which session, about which node. */
struct rctx {
	struct zk_reader *r;
	uint64_t gen;
	char path[];
};

static struct rctx *rctx_new(struct zk_reader *r, const char *path)
{
	size_t len = strlen(path);
	struct rctx *c = malloc(sizeof(*c) + len + 1);

	if (c) {
		c->r = r;
		pthread_mutex_lock(&r->mu);
		c->gen = r->gen;
		pthread_mutex_unlock(&r->mu);
		memcpy(c->path, path, len + 1);
	}
	return c;
}

static void on_data(int rc, const char *value, int value_len, const struct Stat *stat,
		    const void *data)
{
	struct rctx *c = (struct rctx *)data;
	struct zk_event *e = event_new(ZKE_DATA, c->path);

	if (e) {
		e->rc = rc;
		e->gen = c->gen;
		e->data_len = rc == ZOK ? value_len : 0;
		if (stat)
			e->stat = *stat;
		if (rc == ZOK && value_len > 0) {
			e->data = malloc((size_t)value_len);
			if (e->data)
				memcpy(e->data, value, (size_t)value_len);
			else
				e->rc = ZSYSTEMERROR;
		}
	} else {
		log_err("out of memory: a ZooKeeper answer was lost");
	}
	push(c->r, e, true);
	free(c);
}

static void on_kids(int rc, const struct String_vector *strings, const struct Stat *stat,
		    const void *data)
{
	struct rctx *c = (struct rctx *)data;
	struct zk_event *e = event_new(ZKE_KIDS, c->path);

	if (e) {
		e->rc = rc;
		e->gen = c->gen;
		if (stat)
			e->stat = *stat;
		if (rc == ZOK && strings && strings->count > 0) {
			e->kids = calloc((size_t)strings->count, sizeof(*e->kids));
			for (int i = 0; e->kids && i < strings->count; i++) {
				e->kids[i] = strdup(strings->data[i]);
				if (!e->kids[i])
					break;
				e->nkids++;
			}
			if (e->nkids < strings->count)
				e->rc = ZSYSTEMERROR;
		}
	} else {
		log_err("out of memory: a ZooKeeper answer was lost");
	}
	push(c->r, e, true);
	free(c);
}

static void sent(struct zk_reader *r)
{
	pthread_mutex_lock(&r->mu);
	r->outstanding++;
	pthread_mutex_unlock(&r->mu);
}

int zk_read_data(struct zk_reader *r, zhandle_t *zh, const char *path, bool watch)
{
	struct rctx *c = rctx_new(r, path);

	if (!c)
		return ZSYSTEMERROR;
	sent(r);
	int rc = zoo_awget(zh, path, watch ? zk_on_watch : NULL, r, on_data, c);
	if (rc != ZOK) {
		free(c);
		push(r, NULL, true);
	}
	return rc;
}

int zk_read_kids(struct zk_reader *r, zhandle_t *zh, const char *path, bool watch)
{
	struct rctx *c = rctx_new(r, path);

	if (!c)
		return ZSYSTEMERROR;
	sent(r);
	int rc = zoo_awget_children2(zh, path, watch ? zk_on_watch : NULL, r, on_kids, c);
	if (rc != ZOK) {
		free(c);
		push(r, NULL, true);
	}
	return rc;
}

static void on_exists(int rc, const struct Stat *stat, const void *data)
{
	struct rctx *c = (struct rctx *)data;
	struct zk_event *e = rc == ZOK ? event_new(ZKE_WATCH, c->path) : NULL;

	if (e) {
		e->type = ZOO_CREATED_EVENT;
		e->gen = c->gen;
	}
	push(c->r, e, true);
	free(c);
}

int zk_read_exists(struct zk_reader *r, zhandle_t *zh, const char *path)
{
	struct rctx *c = rctx_new(r, path);

	if (!c)
		return ZSYSTEMERROR;
	sent(r);
	int rc = zoo_awexists(zh, path, zk_on_watch, r, on_exists, c);
	if (rc != ZOK) {
		free(c);
		push(r, NULL, true);
	}
	return rc;
}

/* ------------------------------------------------------------ sessions */

/* The client's own log lines are for debugging: what matters is said by cfgfs. */
static void client_log(const char *message)
{
	log_debug("zookeeper client: %s", message);
}

int zk_errno(int rc)
{
	switch (rc) {
	case ZOK:
		return 0;
	case ZNONODE:
	case ZNODEEXISTS:
	case ZBADVERSION:
		return -ESTALE;
	case ZNOTEMPTY:
		return -ENOTEMPTY;
	case ZNOAUTH:
	case ZAUTHFAILED:
		return -EACCES;
	case ZBADARGUMENTS:
	case ZINVALIDACL:
	case ZNOCHILDRENFOREPHEMERALS:
		return -EINVAL;
	case ZMARSHALLINGERROR:
		return -EFBIG;
	case ZOPERATIONTIMEOUT:
		return -ETIMEDOUT;
	case ZCONNECTIONLOSS:
	case ZSESSIONEXPIRED:
	case ZCLOSING:
	case ZINVALIDSTATE:
		return -ECONNRESET;
	case ZSYSTEMERROR:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

/* An authentication's answer. */
struct auth_wait {
	struct zk_reader *r;
	int rc;
	bool done;
};

static void on_auth(int rc, const void *data)
{
	struct auth_wait *w = (struct auth_wait *)data;

	pthread_mutex_lock(&w->r->mu);
	w->rc = rc;
	w->done = true;
	pthread_cond_broadcast(&w->r->cv);
	pthread_mutex_unlock(&w->r->mu);
}

zhandle_t *zk_connect(struct zk *z, struct zk_reader *r, int *err)
{
	zhandle_t *zh;

	pthread_mutex_lock(&r->mu);
	r->gen++;
	r->state = ZOO_CONNECTING_STATE;
	pthread_mutex_unlock(&r->mu);
	zh = zookeeper_init2(z->hosts, zk_on_watch, z->session_ms, NULL, r, 0, client_log);
	if (!zh) {
		*err = errno ? -errno : -EINVAL;
		store_set_error(&z->base, "zookeeper at %s: cannot start a session: %s", z->hosts,
				strerror(-*err));
		return NULL;
	}
	struct timespec until = mono_ts(mono_ms() + z->base.timeout_ms);
	pthread_mutex_lock(&r->mu);
	while (r->state != ZOO_CONNECTED_STATE && r->state != ZOO_EXPIRED_SESSION_STATE &&
	       r->state != ZOO_AUTH_FAILED_STATE &&
	       !__atomic_load_n(&z->stopping, __ATOMIC_ACQUIRE))
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until))
			break;
	int state = r->state;
	pthread_mutex_unlock(&r->mu);
	if (state != ZOO_CONNECTED_STATE) {
		*err = __atomic_load_n(&z->stopping, __ATOMIC_ACQUIRE) ? -ECANCELED : -ECONNREFUSED;
		store_set_error(&z->base, "zookeeper at %s: no server answered within %u ms",
				z->hosts, z->base.timeout_ms);
		zookeeper_close(zh);
		return NULL;
	}
	if (z->digest) {
		struct auth_wait w = {.r = r};
		int rc = zoo_add_auth(zh, "digest", z->digest, (int)strlen(z->digest), on_auth, &w);
		pthread_mutex_lock(&r->mu);
		while (rc == ZOK && !w.done)
			if (pthread_cond_timedwait(&r->cv, &r->mu, &until))
				break;
		bool done = w.done;
		pthread_mutex_unlock(&r->mu);
		if (rc == ZOK && !done) {
			/* The completion still points at w: only closing the session drains it. */
			zookeeper_close(zh);
			*err = -ETIMEDOUT;
			store_set_error(&z->base,
					"zookeeper at %s: no answer to the login within %u ms",
					z->hosts, z->base.timeout_ms);
			return NULL;
		}
		if (rc == ZOK)
			rc = w.rc;
		if (rc != ZOK) {
			zookeeper_close(zh);
			*err = -EACCES;
			store_set_error(&z->base,
					"zookeeper at %s: authentication failed (digest user %.*s)",
					z->hosts, (int)strcspn(z->digest, ":"), z->digest);
			return NULL;
		}
	}
	return zh;
}

zhandle_t *zk_get_session(struct zk *z, int *err)
{
	int64_t until = mono_ms() + z->base.timeout_ms;

	for (;;) {
		pthread_rwlock_rdlock(&z->lock);
		if (z->zh && zoo_state(z->zh) == ZOO_CONNECTED_STATE)
			return z->zh;
		pthread_rwlock_unlock(&z->lock);
		if (__atomic_load_n(&z->stopping, __ATOMIC_ACQUIRE) || mono_ms() >= until)
			break;
		/* The watch thread is connecting, or the client reconnecting. */
		struct timespec ts = {0, 20 * 1000000};
		nanosleep(&ts, NULL);
	}
	*err = -ECONNREFUSED;
	store_set_error(&z->base,
			"zookeeper at %s: not connected (no server answered within %u ms)",
			z->hosts, z->base.timeout_ms);
	return NULL;
}

void zk_put_session(struct zk *z)
{
	pthread_rwlock_unlock(&z->lock);
}

/* ------------------------------------------------------------ names */

char *zk_path(const struct zk *z, const char *key, size_t klen)
{
	if (klen && key[klen - 1] == '/')
		klen--;
	char *p = malloc(klen + 2);
	if (!p)
		return NULL;
	p[0] = '/';
	memcpy(p + 1, key, klen);
	p[klen + 1] = '\0';
	return p;
}

const char *zk_key(const char *path)
{
	return path + 1;
}

/* Whether ZooKeeper can hold path (checked before sending, for a clear error). */
static bool path_ok(const char *p, size_t len)
{
	if (strlen(p) != len || len < 2 || p[len - 1] == '/')
		return false;
	for (const char *seg = p + 1; seg <= p + len;) {
		const char *end = strchr(seg, '/');
		size_t sl = end ? (size_t)(end - seg) : strlen(seg);
		if (sl == 0 || (sl == 1 && seg[0] == '.') ||
		    (sl == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		if (!end)
			break;
		seg = end + 1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

/* ------------------------------------------------------------ writes */

/* A multi-op being built from a store transaction. */
struct multi {
	zoo_op_t *ops;
	int *from;	    /* the store op each came from; -1: a parent created on the way */
	struct Stat *stats; /* setData results */
	char **owned;	    /* paths to free */
	size_t n, cap, nowned;
	char **made; /* paths this multi creates (parents are created once) */
	size_t nmade;
	char **gone; /* paths this multi deletes before what follows (a rename onto a directory) */
	size_t ngone;
};

static int grow(struct multi *m)
{
	if (m->n < m->cap)
		return 0;
	size_t cap = m->cap ? m->cap * 2 : 16;
	zoo_op_t *o = realloc(m->ops, cap * sizeof(*o));
	if (o)
		m->ops = o;
	int *f = realloc(m->from, cap * sizeof(*f));
	if (f)
		m->from = f;
	struct Stat *s = realloc(m->stats, cap * sizeof(*s));
	if (s)
		m->stats = s;
	if (!o || !f || !s)
		return -ENOMEM;
	m->cap = cap;
	return 0;
}

static char *own(struct multi *m, char *p)
{
	char **v = realloc(m->owned, (m->nowned + 1) * sizeof(*v));

	if (!v || !p) {
		free(p);
		return NULL;
	}
	m->owned = v;
	m->owned[m->nowned++] = p;
	return p;
}

static void multi_free(struct multi *m)
{
	for (size_t i = 0; i < m->nowned; i++)
		free(m->owned[i]);
	free(m->owned);
	free(m->ops);
	free(m->from);
	free(m->stats);
	free(m->made);
	free(m->gone);
}

static bool in(char *const *v, size_t n, const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], path) == 0)
			return true;
	return false;
}

static bool made(const struct multi *m, const char *path)
{
	return in(m->made, m->nmade, path);
}

/* A delete of path (owned by m), remembered: a later create of it in the same multi is fine. */
static int add_delete(struct multi *m, const char *path, int version, int from)
{
	char **v = realloc(m->gone, (m->ngone + 1) * sizeof(*v));

	if (!v || grow(m))
		return -ENOMEM;
	m->gone = v;
	m->gone[m->ngone++] = (char *)path;
	zoo_delete_op_init(&m->ops[m->n], path, version);
	m->from[m->n++] = from;
	return 0;
}

static int add_create(struct multi *m, const char *path, const char *val, int vlen, int from)
{
	char **v = realloc(m->made, (m->nmade + 1) * sizeof(*v));

	if (!v || grow(m))
		return -ENOMEM;
	m->made = v;
	m->made[m->nmade++] = (char *)path;
	zoo_create_op_init(&m->ops[m->n], path, val, vlen, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
	m->from[m->n++] = from;
	return 0;
}

/*
 * Create the missing parents of path (the mounted znode too), as
 * directories: null data, as mkdir does.
 */
static int add_parents(struct zk *z, zhandle_t *zh, struct multi *m, const char *path)
{
	size_t len = strlen(path);

	for (size_t i = 1; i < len; i++) {
		if (path[i] != '/')
			continue;
		char *p = own(m, strndup(path, i));
		if (!p)
			return -ENOMEM;
		if (made(m, p))
			continue;
		struct Stat st;
		int rc = zoo_exists(zh, p, 0, &st);
		if (rc == ZNONODE) {
			if (add_create(m, p, NULL, -1, -1))
				return -ENOMEM;
		} else if (rc != ZOK) {
			return zk_errno(rc);
		}
	}
	return 0;
}

/* Add the deletes of everything below path, deepest first. */
static int add_subtree_deletes(zhandle_t *zh, struct multi *m, const char *path, int from)
{
	struct String_vector kids = {0};
	int rc = zoo_get_children(zh, path, 0, &kids);

	if (rc == ZNONODE)
		return 0;
	if (rc != ZOK)
		return zk_errno(rc);
	int err = 0;
	for (int i = 0; i < kids.count && !err; i++) {
		char *c = NULL;
		if (asprintf(&c, "%s/%s", strcmp(path, "/") ? path : "", kids.data[i]) < 0 ||
		    !own(m, c)) {
			err = -ENOMEM;
			break;
		}
		err = add_subtree_deletes(zh, m, c, from);
		if (!err)
			err = add_delete(m, c, -1, from);
	}
	deallocate_String_vector(&kids);
	return err;
}

static int add_op(struct zk *z, zhandle_t *zh, struct multi *m, const struct kv_op *op, int i,
		  struct txn_result *res)
{
	bool marker = op->klen && op->key[op->klen - 1] == '/';
	char *path = own(m, zk_path(z, op->key, op->klen));
	struct Stat st;
	int rc, err;

	if (!path)
		return -ENOMEM;
	if (!path_ok(path, strlen(path))) {
		store_set_error(&z->base,
				"ZooKeeper cannot hold the key %.*s (an empty, '.' or "
				"'..' name, or a control character)",
				(int)op->klen, op->key);
		return -EINVAL;
	}
	if (op->expect > 0 && op->expect_version == KV_VERSION_UNKNOWN) {
		/* The mirror no longer knows the version this change was based on. */
		store_set_error(&z->base, "%s changed since this change was based on it", path);
		res->failed = (size_t)i;
		res->current = zoo_exists(zh, path, 0, &st) == ZOK ? st.mzxid : 0;
		return -ESTALE;
	}
	int version = op->expect > 0 ? (int)op->expect_version : -1;
	switch (op->kind) {
	case KV_CHECK:
		if (op->expect == KV_ANY)
			return 0;
		if (op->expect == KV_ABSENT) {
			rc = zoo_exists(zh, path, 0, &st);
			if (rc == ZOK) {
				res->failed = (size_t)i;
				res->current = st.mzxid;
				store_set_error(&z->base, "%s exists", path);
				return -ESTALE;
			}
			return rc == ZNONODE ? 0 : zk_errno(rc);
		}
		if ((err = grow(m)))
			return err;
		zoo_check_op_init(&m->ops[m->n], path, version);
		m->from[m->n++] = i;
		return 0;
	case KV_PUT:
		if ((err = add_parents(z, zh, m, path)))
			return err;
		rc = op->expect > 0		   ? ZOK
		     : in(m->gone, m->ngone, path) ? ZNONODE
						   : zoo_exists(zh, path, 0, &st);
		if (rc != ZOK && rc != ZNONODE)
			return zk_errno(rc);
		if (rc == ZNONODE) {
			if (op->expect > 0)
				goto gone;
			/* A directory has null data; an empty file, zero bytes. */
			return add_create(m, path, marker ? NULL : op->val,
					  marker ? -1 : (int)op->vlen, i);
		}
		if (op->expect == KV_ABSENT && (marker || st.dataLength > 0)) {
			/* Someone else made it first. */
			res->failed = (size_t)i;
			res->current = st.mzxid;
			store_set_error(&z->base, "%s exists", path);
			return -ESTALE;
		}
		if (marker)
			return 0; /* the directory is there */
		if ((err = grow(m)))
			return err;
		/* A value for a directory's znode (its value file), or a new value. */
		zoo_set_op_init(&m->ops[m->n], path, op->val, (int)op->vlen,
				op->expect == KV_ABSENT ? st.version : version, &m->stats[m->n]);
		m->from[m->n++] = i;
		return 0;
	case KV_DELETE:
		rc = zoo_exists(zh, path, 0, &st);
		if (rc == ZNONODE)
			goto gone;
		if (rc != ZOK)
			return zk_errno(rc);
		if ((err = grow(m)))
			return err;
		if (marker ? st.dataLength > 0 : st.numChildren > 0) {
			/* The znode stays for what else it holds: a value, or children. */
			if (marker)
				zoo_check_op_init(&m->ops[m->n], path, version);
			else
				zoo_set_op_init(&m->ops[m->n], path, NULL, -1, version,
						&m->stats[m->n]);
			m->from[m->n++] = i;
			return 0;
		}
		return add_delete(m, path, version, i);
	case KV_DELETE_PREFIX:
		if ((err = add_subtree_deletes(zh, m, path, i)))
			return err;
		rc = zoo_exists(zh, path, 0, &st);
		if (rc == ZOK && st.dataLength == 0)
			return add_delete(m, path, -1, i);
		return 0;
	}
	return -EINVAL;
gone:
	res->failed = (size_t)i;
	res->current = 0;
	store_set_error(&z->base, "%s is gone", path);
	return -ESTALE;
}

/* About what a multi's request takes on the wire. */
static size_t multi_bytes(const struct multi *m)
{
	size_t b = 64;

	for (size_t i = 0; i < m->n; i++) {
		const zoo_op_t *op = &m->ops[i];
		b += 32 + strlen(op->check_op.path); /* every op starts with its path */
		if (op->type == ZOO_CREATE_OP && op->create_op.datalen > 0)
			b += (size_t)op->create_op.datalen + 32;
		else if (op->type == ZOO_SETDATA_OP && op->set_op.datalen > 0)
			b += (size_t)op->set_op.datalen;
	}
	return b;
}

static const char *op_path(const zoo_op_t *op)
{
	switch (op->type) {
	case ZOO_CREATE_OP:
		return op->create_op.path;
	case ZOO_DELETE_OP:
		return op->delete_op.path;
	case ZOO_SETDATA_OP:
		return op->set_op.path;
	default:
		return op->check_op.path;
	}
}

/* The revision of a multi that changed nothing with a stat to show for it. */
static int64_t revision_of(zhandle_t *zh, const struct multi *m)
{
	int64_t rev = 0;
	struct Stat st;

	for (size_t i = 0; i < m->n; i++)
		if (m->ops[i].type == ZOO_SETDATA_OP && m->stats[i].mzxid > rev)
			rev = m->stats[i].mzxid;
	if (rev)
		return rev;
	for (size_t i = 0; i < m->n; i++) {
		if (m->ops[i].type == ZOO_CREATE_OP &&
		    zoo_exists(zh, m->ops[i].create_op.path, 0, &st) == ZOK)
			return st.czxid;
		if (m->ops[i].type == ZOO_DELETE_OP) {
			/* The parent's pzxid is the zxid of its last child change: this one. */
			char *parent = strdup(m->ops[i].delete_op.path);
			if (!parent)
				return 0;
			char *slash = strrchr(parent, '/');
			if (slash == parent)
				slash[1] = '\0';
			else if (slash)
				*slash = '\0';
			if (zoo_exists(zh, parent, 0, &st) == ZOK)
				rev = st.pzxid;
			free(parent);
			return rev;
		}
	}
	return rev;
}

static int zk_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res)
{
	struct zk *z = (struct zk *)s;
	int err = 0;
	zhandle_t *zh = zk_get_session(z, &err);

	if (!zh)
		return err;
	/*
	 * Directories are keys here: their markers ride along uncounted, so a
	 * rename of N keys fits whatever their depth, as on etcd.
	 */
	size_t keys = 0;
	for (size_t i = 0; i < n; i++)
		keys += ops[i].kind == KV_DELETE_PREFIX ||
			!(ops[i].klen && ops[i].key[ops[i].klen - 1] == '/');
	if (keys > s->caps.max_txn_ops) {
		zk_put_session(z);
		store_set_error(s, "%zu changes do not fit in one ZooKeeper multi-op (at most %zu)",
				keys, s->caps.max_txn_ops);
		return -EXDEV;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		struct multi m = {0};
		for (size_t i = 0; i < n && !err; i++)
			err = add_op(z, zh, &m, &ops[i], (int)i, res);
		if (!err && m.n && multi_bytes(&m) > ZK_MAX_REQUEST) {
			/* The server would close the connection on it ("Len error"). */
			store_set_error(s,
					"%zu changes are more than ZooKeeper takes in one request "
					"(jute.maxbuffer, 1 MiB)",
					n);
			err = n > 1 ? -EXDEV : -EFBIG;
		}
		if (!err && m.n) {
			zoo_op_result_t *results = calloc(m.n, sizeof(*results));
			int rc = results ? zoo_multi(zh, (int)m.n, m.ops, results) : ZSYSTEMERROR;
			if (rc != ZOK) {
				size_t k = 0;
				while (k < m.n && results &&
				       (results[k].err == ZOK ||
					results[k].err == ZRUNTIMEINCONSISTENCY))
					k++;
				int why = k < m.n && results ? results[k].err : rc;
				if (why == ZNODEEXISTS && k < m.n && m.from[k] < 0 &&
				    attempt == 0) {
					/* A parent appeared meanwhile: plan again. */
					free(results);
					multi_free(&m);
					continue;
				}
				err = zk_errno(why);
				if (k < m.n && m.from[k] >= 0) {
					struct Stat st;
					res->failed = (size_t)m.from[k];
					res->current =
						zoo_exists(zh, op_path(&m.ops[k]), 0, &st) == ZOK
							? st.mzxid
							: 0;
				}
				store_set_error(s, "zookeeper at %s: %s%s",
						zoo_get_current_server(zh), zerror(why),
						why == ZNOAUTH
							? " (the znode's ACL does not allow "
							  "this user: -o username=,password_file=)"
							: "");
			} else {
				res->rev = revision_of(zh, &m);
			}
			free(results);
		} else if (!err) {
			res->rev = 0; /* nothing to change */
		}
		multi_free(&m);
		break;
	}
	zk_put_session(z);
	return err;
}

/* ------------------------------------------------------------ the driver */

static void zk_stop(struct store *s)
{
	struct zk *z = (struct zk *)s;

	__atomic_store_n(&z->stopping, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&z->reader.mu);
	pthread_cond_broadcast(&z->reader.cv);
	pthread_mutex_unlock(&z->reader.mu);
}

static char *zk_endpoint(struct store *s)
{
	struct zk *z = (struct zk *)s;
	char *e = NULL;

	pthread_rwlock_rdlock(&z->lock);
	const char *cur = z->zh ? zoo_get_current_server(z->zh) : NULL;
	if (cur)
		e = strdup(cur);
	pthread_rwlock_unlock(&z->lock);
	return e;
}

static void zk_free(struct store *s)
{
	struct zk *z = (struct zk *)s;

	/* The session first: its threads call into the reader until it is closed. */
	if (z->zh)
		zookeeper_close(z->zh);
	zk_mirror_free(z->mirror);
	zk_reader_destroy(&z->reader);
	pthread_rwlock_destroy(&z->lock);
	if (z->digest) {
		explicit_bzero(z->digest, strlen(z->digest));
		free(z->digest);
	}
	free(z->hosts);
	free(z->root);
	free(z);
}

static const struct store_ops zk_ops = {
	.snapshot = zk_snapshot,
	.watch = zk_watch,
	.txn = zk_txn,
	.stop = zk_stop,
	.endpoint = zk_endpoint,
	.free = zk_free,
};

/* user:password for digest authentication, from -o username and password_file. */
static int load_digest(struct zk *z, const struct store_cfg *cfg, char *err, size_t errlen)
{
	const char *user = store_cfg_opt(cfg, "username");
	const char *file = store_cfg_opt(cfg, "password_file");
	char pw[1024];

	if (!user && !file)
		return 0;
	if (!user || !*user || strchr(user, ':') || !file || !*file) {
		snprintf(err, errlen,
			 "ZooKeeper digest authentication needs -o username=NAME (no ':') and "
			 "-o password_file=PATH");
		return -EINVAL;
	}
	FILE *f = fopen(file, "re");
	if (!f) {
		snprintf(err, errlen, "cannot read the password file %s: %s", file,
			 strerror(errno));
		return -EINVAL;
	}
	size_t n = fread(pw, 1, sizeof(pw) - 1, f);
	fclose(f);
	pw[n] = '\0';
	while (n && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
		pw[--n] = '\0';
	int rc = 0;
	if (n == 0 || n == sizeof(pw) - 1 || strchr(pw, '\n')) {
		snprintf(err, errlen, "the password file %s does not hold one password", file);
		rc = -EINVAL;
	} else if (asprintf(&z->digest, "%s:%s", user, pw) < 0) {
		z->digest = NULL;
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
	}
	explicit_bzero(pw, sizeof(pw));
	return rc;
}

static int zk_open(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen)
{
	const struct store_url *u = &cfg->url;
	struct zk *z = calloc(1, sizeof(*z));
	size_t hl = 0;

	if (!z)
		return -ENOMEM;
	store_init(&z->base, &zk_ops, cfg);
	pthread_rwlock_init(&z->lock, NULL);
	zk_reader_init(&z->reader, z);
	z->base.caps = (struct store_caps){
		.max_value = ZK_MAX_VALUE,
		.max_txn_ops = ZK_MAX_TXN_OPS,
		.counts_versions = true,
		.first_version = 0,
		.owner_flags = true,
		.delete_prefix = true,
		.atomic_txn = true,
		.names = NAMES_PLAIN,
	};
	/* The client gives up on a server after two thirds of this: -o timeout, as for writes. */
	z->session_ms = (int)(cfg->timeout_ms * 3 / 2);
	if (z->session_ms < 4000)
		z->session_ms = 4000;
	for (size_t i = 0; i < u->nhosts; i++)
		hl += strlen(u->hosts[i]) + 1;
	z->hosts = calloc(1, hl + 1);
	/* The prefix "app/" is the znode /app; a whole-store mount is "/". */
	size_t pl = u->plen && u->prefix[u->plen - 1] == '/' ? u->plen - 1 : u->plen;
	z->root = malloc(pl + 2);
	if (!z->hosts || !z->root) {
		zk_free(&z->base);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < u->nhosts; i++) {
		if (i)
			strcat(z->hosts, ",");
		strcat(z->hosts, u->hosts[i]);
	}
	z->root[0] = '/';
	memcpy(z->root + 1, u->prefix, pl);
	z->root[pl + 1] = '\0';
	z->rootlen = pl + 1;
	if (pl && (u->prefix[0] == '/' || !path_ok(z->root, z->rootlen))) {
		snprintf(err, errlen,
			 "ZooKeeper has no znode '%.*s': a path holds no empty, '.' or '..' name "
			 "(zk://HOST/PREFIX mounts /PREFIX)",
			 (int)u->plen, u->prefix);
		zk_free(&z->base);
		return -EINVAL;
	}
	int rc = load_digest(z, cfg, err, errlen);
	if (rc) {
		zk_free(&z->base);
		return rc;
	}
	*out = &z->base;
	return 0;
}

static const char *const zk_options[] = {"username", "password_file", NULL};

const struct store_driver zk_driver = {
	.scheme = "zk",
	.alias = "zookeeper",
	.default_port = "2181",
	.options = zk_options,
	.open = zk_open,
};
