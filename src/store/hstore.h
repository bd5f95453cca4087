/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the drivers that speak HTTP share: endpoints and failover, a handle per thread, errno. */
#ifndef CFGFS_HSTORE_H
#define CFGFS_HSTORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "http.h"
#include "store.h"

/* The driver options every HTTP store takes, for its options list. */
#define HSTORE_OPTIONS "cacert", "cert", "key", "insecure", "tls_server_name", "check_interval"

/*
 * How often the member holding a long request (a watch) must answer a
 * check, and how long it has to: a hung or cut-off member is left within
 * about twice this (-o check_interval).
 */
#define HSTORE_CHECK_MS 1000

/*
 * A one-shot read (a page of a snapshot, a listing) must arrive whole within
 * this many times -o timeout: the stall timer alone lets a server that sends
 * a byte now and then hold it for ever, and a large answer on a slow link
 * needs more than the silence allowed.
 */
#define HSTORE_ANSWER_FACTOR 2

/*
 * Revisions (etcd) and indexes (Consul) count writes from 1. A million
 * writes a second would take 285 years to reach 2^53; a value beyond it is
 * a hostile or broken server, and taking it would make every real change
 * after it look old (and overflow the arithmetic on it).
 */
#define HSTORE_REV_MAX ((int64_t)1 << 53)

struct hstore {
	struct store base;
	bool tls;		   /* https:// */
	struct http_tls tls_files; /* its strings are owned */
	char *server_name;	   /* the name the servers' certificates carry; NULL: the host's */
	unsigned check_ms;	   /* see HSTORE_CHECK_MS; 0: no checks */
	unsigned endpoint;	   /* index of the endpoint in use; atomic */
	bool stopping;		   /* atomic; set under watch_mu */
	/*
	 * The handle of the thread that reads the store's changes, so that
	 * stop interrupts it; cleared before that thread frees it.
	 */
	pthread_mutex_t watch_mu;
	struct http *watch_http; /* protected by watch_mu */
};

/*
 * Set up the common part from cfg: TLS settings, checked for what can be
 * checked before connecting (the files can be read). 0, or -EINVAL with a
 * line for the user in err; hs must be destroyed either way.
 */
int hstore_init(struct hstore *hs, const struct store_ops *ops, const struct store_cfg *cfg,
		char *err, size_t errlen);

/* Undo hstore_init (the driver frees hs itself). */
void hstore_destroy(struct hstore *hs);

/* The calling thread's handle, created on first use; NULL on ENOMEM. */
struct http *hstore_http(void);

/*
 * The calling thread's handle, published so that stop interrupts what it is
 * doing (snapshots and watches: the requests that may wait long).
 */
struct http *hstore_claim(struct hstore *hs);

/* store_ops.stop and store_ops.thread_done of every HTTP driver. */
void hstore_stop(struct store *s);
void hstore_thread_done(struct store *s);
char *hstore_endpoint(struct store *s);

bool hstore_stopping(struct hstore *hs);

/* The whole-answer deadline of one-shot reads, in ms (see HSTORE_ANSWER_FACTOR). */
long hstore_answer_ms(const struct hstore *hs);

/* "HOST:PORT" of endpoint idx (wraps around), and of the one in use. */
const char *hstore_host(const struct hstore *hs, unsigned idx);
const char *hstore_current_host(const struct hstore *hs);

/* Where a request goes: its URL, and how to reach the host when the certificate names another. */
struct hstore_target {
	char url[8192];
	char connect_to[600];
};

/*
 * Aim rq at path on endpoint idx (url, tls, connect_to point into t); false
 * if the URL does not fit.
 */
bool hstore_aim(const struct hstore *hs, unsigned idx, const char *path, struct http_req *rq,
		struct hstore_target *t);

/*
 * Send rq (its url is set here: the endpoint in use, then path) and, while
 * endpoints cannot be reached (or, for an idempotent rq, do not answer in
 * time), to the next ones. *idx receives the endpoint
 * tried last. 0 when an answer came (whatever its status), or the errno of
 * http_do, the reason recorded in the store.
 */
int hstore_request(struct hstore *hs, struct http *h, struct http_req *rq, const char *path,
		   struct http_resp *rs, unsigned *idx);

/* Move on to the endpoint after idx, unless another thread already did. */
void hstore_next_endpoint(struct hstore *hs, unsigned idx);

/* Record why a request to endpoint idx failed (err from http_do/http_stream); returns err. */
int hstore_failed(struct hstore *hs, unsigned idx, struct http *h, int err);

/* True for errors where nothing reached the server, so another endpoint may be tried. */
bool hstore_unreached(int err);

/*
 * The one table from HTTP status (and, for etcd, gRPC code) to errno; the
 * detail belongs in the log line, the errno is what the caller returns.
 */
int hstore_status_errno(long http_status, int grpc_code);

#endif
