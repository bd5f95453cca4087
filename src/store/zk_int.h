/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the ZooKeeper driver: what zk.c (sessions, requests, writes) and zk_watch.c share. */
#ifndef CFGFS_ZK_INT_H
#define CFGFS_ZK_INT_H

#include <pthread.h>
#include <zookeeper/zookeeper.h>

#include "store.h"

/*
 * The largest request jute.maxbuffer (1 MiB - 1) lets through, less room
 * for a path of 2 KiB and the framing of a multi (measured:
 * setData fits 1048555 - len(path) bytes).
 */
#define ZK_MAX_VALUE (1024 * 1024 - 4096)
/*
 * ZooKeeper limits a multi by bytes only; this many operations of long
 * paths still fit, and it keeps a directory rename's request well inside
 * jute.maxbuffer.
 */
#define ZK_MAX_TXN_OPS 256
/* jute.maxbuffer, less room for the framing the estimate leaves out. */
#define ZK_MAX_REQUEST (1048575 - 2048)

struct zk_mirror;

/*
 * Where a session's events go: the watch thread's mirror, or a snapshot's
 * one-off read. Lives longer than its session: the client calls watchers
 * and completions until zookeeper_close returns.
 */
struct zk_reader {
	struct zk *z;
	pthread_mutex_t mu;   /* never held while calling the client */
	pthread_cond_t cv;    /* an event came, or stop */
	int state;	      /* ZOO_*_STATE of the session, as its watcher last said */
	uint64_t gen;	      /* counts this reader's sessions: older ones' events are dropped */
	unsigned outstanding; /* reads sent, not answered */
	struct zk_event *head, *tail;
};

struct zk {
	struct store base;
	char *hosts; /* "h1:2181,h2:2181", the client's connect string */
	char *root;  /* the mounted znode: "/app", or "/" */
	size_t rootlen;
	char *digest; /* "user:password" for digest authentication, or NULL; wiped when freed */
	int session_ms;

	/*
	 * The watch thread's session, which writes use too. Any thread sends
	 * requests on it holding lock for reading; the watch thread replaces it
	 * (expired, or too large to reconnect) holding lock for writing.
	 */
	pthread_rwlock_t lock;
	zhandle_t *zh; /* protected by lock */
	bool stopping; /* atomic */

	struct zk_reader reader;  /* the watch thread's */
	struct zk_mirror *mirror; /* the watch thread's own */
};

/* What the client's threads tell a reader, in the order they happened. */
enum zk_event_kind {
	ZKE_WATCH,   /* a watch fired: type is ZOO_*_EVENT */
	ZKE_SESSION, /* the session changed state: type is ZOO_*_STATE */
	ZKE_DATA,    /* the answer to a read of data */
	ZKE_KIDS,    /* the answer to a read of children */
};

struct zk_event {
	struct zk_event *next;
	enum zk_event_kind kind;
	int type;
	int rc;
	uint64_t gen;
	struct Stat stat;
	char *data; /* ZKE_DATA: malloc'd, data_len bytes; NULL for null data */
	int data_len;
	char **kids; /* ZKE_KIDS: names, malloc'd */
	int nkids;
	char path[];
};

/* The watcher of every watch and of the session: its context is the zk_reader. */
void zk_on_watch(zhandle_t *zh, int type, int state, const char *path, void *ctx);

/* The server zh is connected to, "HOST:PORT", malloc'd; NULL when none (zk.c). */
char *zk_server_of(zhandle_t *zh);

void zk_reader_init(struct zk_reader *r, struct zk *z);
void zk_reader_destroy(struct zk_reader *r);

/* Before a session that served r is closed: wait at most ms for what it still owes r. */
#define ZK_DRAIN_MS 1000
void zk_drain(struct zk_reader *r, unsigned ms);

/* The next event, waiting up to ms for one; NULL on timeout or when stopping. */
struct zk_event *zk_next_event(struct zk_reader *r, int ms);
void zk_event_free(struct zk_event *e);

/*
 * Ask for path's data, its children, or whether it exists, arming a watch
 * when watch: the answers come as events (an existing node's as a
 * ZOO_CREATED_EVENT watch event). 0, or a client error code.
 */
int zk_read_data(struct zk_reader *r, zhandle_t *zh, const char *path, bool watch);
int zk_read_kids(struct zk_reader *r, zhandle_t *zh, const char *path, bool watch);
int zk_read_exists(struct zk_reader *r, zhandle_t *zh, const char *path);

/*
 * A new session whose events go to r, connected (and authenticated) within
 * the store's timeout: NULL with an errno in *err and the reason recorded.
 */
zhandle_t *zk_connect(struct zk *z, struct zk_reader *r, int *err);

/*
 * The watch thread's session for a request by any thread, taken for
 * reading (zk_put_session gives it back): NULL with an errno in *err and
 * the reason recorded when there is none now.
 */
zhandle_t *zk_get_session(struct zk *z, int *err);
void zk_put_session(struct zk *z);

/* The znode path of a store key (without a trailing '/'), malloc'd. */
char *zk_path(const struct zk *z, const char *key, size_t klen);

/* The store key of a znode path ("/app/x" -> "app/x"). */
const char *zk_key(const char *path);

/* A client error code as an errno. */
int zk_errno(int rc);

/* Whether ZooKeeper can hold the znode path p of len bytes (checked before sending, for a
 * clear error rather than the server's). */
bool zk_path_ok(const char *p, size_t len);

/* store_ops.txn (zk_txn.c). */
int zk_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res);

/* store_ops.watch and store_ops.snapshot (zk_watch.c), and its mirror's lifetime. */
int zk_watch(struct store *s, int64_t from_rev, const struct store_watch_cb *cb);
int zk_snapshot(struct store *s, struct kv_batch *b);
void zk_mirror_free(struct zk_mirror *m);

#endif
