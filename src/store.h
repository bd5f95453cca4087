/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The store interface: one small vtable, one implementation per store. */
#ifndef CFGFS_STORE_H
#define CFGFS_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "kv.h"
#include "options.h"

struct store;
struct http;

/* What a transaction did. */
struct txn_result {
	int64_t rev;	 /* committed: the revision it created */
	size_t failed;	 /* refused: index of an op whose expectation failed; n: not known */
	int64_t current; /* refused: that key's mod revision now; 0: no key; -1: not known */
};

/* Fill the refusal fields of res from current[k], the k-th guarded op's key now. */
void store_txn_refused(const struct kv_op *ops, size_t n, const int64_t *current,
		       struct txn_result *res);

/* How a running watch reports to its caller (the watcher thread). */
struct store_watch_cb {
	/* The stream is established; rev is the store's current revision. */
	void (*connected)(void *ctx, int64_t rev);
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
	/* A counter of local changes committed to the store (see snapshot). */
	uint64_t (*epoch)(void *ctx);
	void *ctx;
};

struct store_ops {
	const char *name; /* "etcd" */

	/* Read the whole subtree into b (empty on entry); b->revision is the read's revision. */
	int (*snapshot)(struct store *s, struct kv_batch *b);

	/*
	 * Stream changes after from_rev - 1 until stopped or broken. Returns
	 * -ECANCELED after store_stop, -ESTALE when the store can no longer
	 * replay from from_rev (compacted, reset, or another cluster), or
	 * another negative errno when the connection failed.
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

	void (*free)(struct store *s);
};

struct store {
	const struct store_ops *ops;
	size_t max_value;   /* the largest value the store accepts */
	size_t max_txn_ops; /* the most changes one transaction may hold */
	/*
	 * A put adds one to the key's version (etcd); Consul's "version" is
	 * its LockIndex, which puts leave alone.
	 */
	bool counts_versions;
	const struct store_url *url; /* borrowed from the options */
	unsigned timeout_ms;
	unsigned endpoint; /* index of the endpoint in use; atomic */
	bool stopping;	   /* atomic; set under watch_mu */
	/*
	 * The handle of the thread that reads the store's changes, so that
	 * store_stop can interrupt it; cleared before that thread frees it.
	 */
	pthread_mutex_t watch_mu;
	struct http *watch_http; /* protected by watch_mu */
};

struct store_params {
	unsigned timeout_ms; /* one request */
	const char *token;   /* Consul ACL token, or NULL; never logged */
	const char *dc;	     /* Consul datacenter, or NULL */
};

/* Open the store a URL names (no I/O yet). 0 or a negative errno (reason in store_error). */
int store_open(const struct store_url *u, const struct store_params *p, struct store **out);

void store_free(struct store *s);

/* Ask a running watch (and any request of the watcher thread) to return -ECANCELED. */
void store_stop(struct store *s);

/* The calling thread's HTTP handle, created on first use; NULL on ENOMEM. */
struct http *store_http(void);

/*
 * The calling thread's handle, published so that store_stop interrupts what
 * it is doing (snapshots and watches: the requests that may wait long).
 */
struct http *store_claim_http(struct store *s);

/* Free the calling thread's HTTP handle (before daemonizing, at thread exit). */
void store_http_release(struct store *s);

/* "http://HOST:PORT" of endpoint i (i wraps around). */
const char *store_endpoint(const struct store *s, unsigned i);

/*
 * Store operations do not log their failures: they record one line saying
 * what went wrong, per thread, and return an errno. The caller reports it:
 * at startup as the one line cfgfs dies with, later in the log.
 */
const char *store_error(void);
void store_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Record why a request to endpoint idx failed (err from http_do/http_stream); returns err. */
int store_request_failed(const struct store *s, unsigned idx, struct http *h, int err);

/* True for errors where nothing reached the server, so another endpoint may be tried. */
bool store_err_unreached(int err);

/*
 * The one table from HTTP status (and, for etcd, gRPC code) to errno; the
 * detail belongs in the log line, the errno is what the caller returns.
 */
int store_status_errno(long http_status, int grpc_code);

int store_etcd_new(const struct store_url *u, struct store **out);
int store_consul_new(const struct store_url *u, const char *token, const char *dc,
		     struct store **out);

#endif
