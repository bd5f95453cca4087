/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ZooKeeper through Debian's C client (libzookeeper_mt): sessions, the
 * events its threads hand over, and writes as one multi-op. The only code
 * that calls the client besides zk_watch.c, which keeps the mirror.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

/*
 * Wait, at most ms, for the answers to the reads in flight. ZooKeeper's C
 * client leaks what a session still owes when it is closed (the faked
 * answers go to a completion thread that has stopped already): a mount
 * stopped during its first read of a large subtree lost 600 KB that way,
 * found by LeakSanitizer.
 */
void zk_drain(struct zk_reader *r, unsigned ms)
{
	struct timespec until = mono_ts(mono_ms() + ms);

	pthread_mutex_lock(&r->mu);
	while (r->outstanding > 0)
		if (pthread_cond_timedwait(&r->cv, &r->mu, &until))
			break;
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

static void zk_stop(struct store *s)
{
	struct zk *z = (struct zk *)s;

	__atomic_store_n(&z->stopping, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&z->reader.mu);
	pthread_cond_broadcast(&z->reader.cv);
	pthread_mutex_unlock(&z->reader.mu);
}

/*
 * The server zh is connected to, "HOST:PORT", malloc'd (NULL when none).
 * Not zoo_get_current_server: it formats into a static buffer that the
 * library's own threads write to when they log.
 */
char *zk_server_of(zhandle_t *zh)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char host[INET6_ADDRSTRLEN], *e = NULL;
	const void *addr = NULL;
	unsigned port = 0;

	if (!zookeeper_get_connected_host(zh, (struct sockaddr *)&ss, &len))
		return NULL;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;
		addr = &in->sin_addr;
		port = ntohs(in->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;
		addr = &in6->sin6_addr;
		port = ntohs(in6->sin6_port);
	}
	if (addr && inet_ntop(ss.ss_family, addr, host, sizeof(host)) &&
	    asprintf(&e, ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port) < 0)
		e = NULL;
	return e;
}

static char *zk_endpoint(struct store *s)
{
	struct zk *z = (struct zk *)s;
	char *e = NULL;

	pthread_rwlock_rdlock(&z->lock);
	if (z->zh)
		e = zk_server_of(z->zh);
	pthread_rwlock_unlock(&z->lock);
	return e;
}

static void zk_free(struct store *s)
{
	struct zk *z = (struct zk *)s;

	/* The session first: its threads call into the reader until it is closed. */
	if (z->zh) {
		zk_drain(&z->reader, ZK_DRAIN_MS);
		zookeeper_close(z->zh);
	}
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
	if (pl && (u->prefix[0] == '/' || !zk_path_ok(z->root, z->rootlen))) {
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
