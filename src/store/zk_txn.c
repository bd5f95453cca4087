/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writes to ZooKeeper: a store transaction becomes one multi-op whose
 * setData and delete are guarded by each znode's dataVersion, with the
 * parents a create needs made on the way (as directories, null data).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "zk_int.h"

bool zk_path_ok(const char *p, size_t len)
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
	if (!zk_path_ok(path, strlen(path))) {
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

int zk_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res)
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
				char *server = zk_server_of(zh);
				store_set_error(s, "zookeeper at %s: %s%s",
						server ? server : "(none)", zerror(why),
						why == ZNOAUTH
							? " (the znode's ACL does not allow "
							  "this user: -o username=,password_file=)"
							: "");
				free(server);
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
