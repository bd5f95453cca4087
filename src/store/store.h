/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store interface: what every store driver offers, and how one is chosen by URL. */
#ifndef CFGFS_STORE_H
#define CFGFS_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "names.h"

/*
 * A parsed store URL: SCHEME://HOST[:PORT][,HOST[:PORT]...][/PREFIX], the
 * scheme naming a driver (store_drivers), which also gives the default port.
 *
 * PREFIX is everything after the '/' that ends the host list, with %XX
 * escapes decoded, plus a '/' unless it already ends in one: "/app" and
 * "/app/" both mount the keys under "app/". A second leading slash is kept:
 * etcd://h//app mounts "/app/" (keys written as "/app/x"), etcd://h// the
 * keys starting with '/'. An empty prefix mounts the whole key space.
 *
 * The driver's TLS scheme (etcds://) asks for TLS. An empty host list
 * (etcds:///app) takes the endpoints from the driver's environment variable
 * (ETCDCTL_ENDPOINTS), whose "https://" endpoints ask for TLS too.
 */
struct store_url {
	const struct store_driver *driver;
	bool tls;
	char **hosts; /* "host:port", IPv6 in brackets */
	size_t nhosts;
	char *prefix; /* raw key bytes, may contain NUL */
	size_t plen;
	char *text; /* the URL as given */
};

/* Parse text; on failure -EINVAL and a one-line reason in err (-ENOMEM likewise). */
int store_url_parse(const char *text, struct store_url *u, char *err, size_t errlen);

void store_url_free(struct store_url *u);

/* What a user configures for a store; the driver validates what concerns it. */
struct store_cfg {
	struct store_url url;
	unsigned timeout_ms; /* one request, writes included */
	/*
	 * Options for the driver (-o NAME=VALUE, NAME being one the driver
	 * lists in its options): "dc=east", "token_file=/etc/cfgfs/token".
	 * Owned, malloc'd.
	 */
	char **opts;
	size_t nopts;
};

void store_cfg_free(struct store_cfg *c);

/*
 * Add a driver option NAME=VALUE if some driver takes NAME: 1 taken, 0 not a
 * driver option, -ENOMEM. Which driver is checked at store_open.
 */
int store_cfg_add_opt(struct store_cfg *c, const char *opt);

/*
 * The value of driver option name: the -o given, else the environment
 * variable the driver names for it (ETCDCTL_CACERT), else NULL. A flag
 * given without a value reads as "".
 */
const char *store_cfg_opt(const struct store_cfg *c, const char *name);

/* Whether flag option name is set (-o insecure, or its variable says so). */
bool store_cfg_flag(const struct store_cfg *c, const char *name);

/* Where the value of option name comes from, for messages: "-o cacert" or "ETCDCTL_CACERT". */
const char *store_cfg_source(const struct store_cfg *c, const char *name);

/* What a store can do; the tree and the writer adapt to it. */
struct store_caps {
	size_t max_value;   /* the largest value the store accepts */
	size_t max_txn_ops; /* the most changes one transaction may hold */
	/*
	 * A put adds one to the key's version (etcd); Consul's "version" is
	 * its LockIndex, which puts leave alone.
	 */
	bool counts_versions;
	int64_t first_version; /* a new key's version (etcd 1; ZooKeeper's dataVersion 0) */
	bool has_flags;	       /* keys carry opaque flags (Consul) */
	/* The flags of a key are the session that owns it, 0 for none (ZooKeeper's ephemerals). */
	bool owner_flags;
	enum names_style names; /* what key segments may hold (see names.h) */
	bool delete_prefix;	/* KV_DELETE_PREFIX in one operation */
	bool atomic_txn;	/* a transaction of several keys is all or nothing */
};

/* How a running watch reports to its caller (the watcher thread). */
struct store_watch_cb {
	/* The stream is established; rev is the store's current revision. */
	void (*connected)(void *ctx, int64_t rev);
	/*
	 * The connection is lost, and the store is getting it back by itself
	 * (connected() follows) without the watch returning (ZooKeeper's client).
	 */
	void (*lost)(void *ctx);
	/* Complete revisions to apply as one unit. Return 0 to go on. */
	int (*batch)(void *ctx, struct kv_batch *b);
	/* Everything up to rev has been delivered. */
	void (*progress)(void *ctx, int64_t rev);
	/*
	 * The whole prefix as it is now (stores whose change notification is
	 * "something changed, here is everything": Consul). epoch is what
	 * epoch() said just before the request was sent. Returns 0 to go on, 1
	 * when the listing may predate a change made here since (read again),
	 * or a negative errno.
	 */
	int (*snapshot)(void *ctx, struct kv_batch *b, uint64_t epoch);
	/*
	 * What changed since the last snapshot or changes, none of it a delete,
	 * read when epoch() said epoch: returns like snapshot (Consul, when no
	 * key went away).
	 */
	int (*changes)(void *ctx, struct kv_batch *b, uint64_t epoch);
	/*
	 * Each key the mirror holds from the store that starts with the
	 * prefix and then sub, to fn (Consul: which keys of a part of the
	 * prefix went away). fn must not call back. 0, -ENOMEM, or what fn
	 * returned to stop. May be NULL.
	 */
	int (*keys_under)(void *ctx, const char *sub, size_t slen,
			  int (*fn)(void *fctx, const char *key, size_t klen), void *fctx);
	/* A counter of local changes committed to the store (see snapshot). */
	uint64_t (*epoch)(void *ctx);
	void *ctx;
};

/* What a transaction did. */
struct txn_result {
	int64_t rev;	 /* committed: the revision it created */
	size_t failed;	 /* refused: index of an op whose expectation failed; n: not known */
	int64_t current; /* refused: that key's mod revision now; 0: no key; -1: not known */
};

struct store;

struct store_ops {
	/* Read the whole subtree into b (empty on entry); b->revision is the read's revision. */
	int (*snapshot)(struct store *s, struct kv_batch *b);

	/*
	 * Stream changes after from_rev - 1 until stopped or broken. Returns
	 * -ECANCELED after stop, -ESTALE when the store can no longer replay
	 * from from_rev (compacted, reset, or another cluster), or another
	 * negative errno when the connection failed.
	 */
	int (*watch)(struct store *s, int64_t from_rev, const struct store_watch_cb *cb);

	/*
	 * Apply ops atomically, all or nothing, if every expectation holds.
	 * Returns 0 (res->rev: the revision of the commit); -ESTALE when an
	 * expectation failed (someone else changed a key: nothing was written;
	 * res->failed and res->current say which and what it is now); -EFBIG,
	 * -EXDEV (more ops than one transaction may hold), -EACCES, or a
	 * connection error, after which nothing is known to be written.
	 */
	int (*txn)(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res);

	/* From any thread: make a running snapshot or watch return -ECANCELED, and later ones. */
	void (*stop)(struct store *s);

	/* The calling thread is done with the store: free what it holds for it (connections). */
	void (*thread_done)(struct store *s);

	/* The member (host:port) requests go to now, malloc'd; NULL: not known. */
	char *(*endpoint)(struct store *s);

	void (*free)(struct store *s);
};

/*
 * A driver option's default from the environment, so that cfgfs follows the
 * conventions of the store's own tools (etcdctl, consul).
 */
struct store_env {
	const char *option;   /* "cacert" */
	const char *variable; /* "ETCDCTL_CACERT" */
	enum {
		ENV_VALUE, /* the variable's value is the option's */
		ENV_TRUE,  /* a flag, set when the variable says true */
		ENV_FALSE, /* a flag, set when the variable says false */
	} kind;
};

/* A store driver: one per URL scheme, listed in store_drivers (drivers.c). */
struct store_driver {
	const char *scheme;	     /* "etcd" */
	const char *tls_scheme;	     /* "etcds": the same store over TLS; may be NULL */
	const char *alias;	     /* another name of the scheme ("zookeeper"); may be NULL */
	const char *default_port;    /* "2379" */
	const char *const *options;  /* the -o names it takes, NULL-terminated; may be NULL */
	const struct store_env *env; /* option defaults, {NULL}-terminated; may be NULL */
	/*
	 * The variable holding the endpoints when the URL names none
	 * ("ETCDCTL_ENDPOINTS": comma-separated, "https://" meaning TLS), and
	 * one that asks for TLS when true ("CONSUL_HTTP_SSL"). May be NULL.
	 */
	const char *endpoints_env;
	const char *tls_env;
	/*
	 * Open a store for cfg (no I/O yet): 0, or a negative errno with the
	 * reason in err (a line for the user).
	 */
	int (*open)(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen);
};

/* Every driver built in, NULL-terminated. */
extern const struct store_driver *const store_drivers[];

struct store {
	const struct store_ops *ops;
	const struct store_driver *driver;
	struct store_caps caps;
	const struct store_url *url; /* borrowed from the configuration */
	unsigned timeout_ms;
	/*
	 * Drivers do not log their failures: they record one line saying what
	 * went wrong here, and return an errno; the caller reports it (at
	 * startup as the one line cfgfs dies with, later in the log). Any
	 * thread may record, any may read (a copy).
	 */
	pthread_mutex_t err_mu;
	char err[512]; /* protected by err_mu */
};

/* Open the store cfg names (no I/O yet). 0 or a negative errno, the reason in err. */
int store_open(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen);

/* For drivers: set up the common part of a new store. */
void store_init(struct store *s, const struct store_ops *ops, const struct store_cfg *cfg);

void store_free(struct store *s);

/* Ask a running watch (and any request of the watcher thread) to return -ECANCELED. */
void store_stop(struct store *s);

/* The member requests go to now ("host:port", malloc'd); "" when the store cannot say. */
char *store_endpoint(struct store *s);

/* The calling thread is done with s (before daemonizing, at thread exit). */
void store_thread_done(struct store *s);

/* Record why an operation failed (see struct store). */
void store_set_error(struct store *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last failure recorded for s, copied for the calling thread (valid until its next call). */
const char *store_error(struct store *s);

/* Fill the refusal fields of res from current[k], the k-th guarded op's key now. */
void store_txn_refused(const struct kv_op *ops, size_t n, const int64_t *current,
		       struct txn_result *res);

#endif
