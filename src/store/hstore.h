/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the drivers that speak HTTP share: endpoints and failover, a handle per thread, errno. */
#ifndef CFGFS_HSTORE_H
#define CFGFS_HSTORE_H

#include <pthread.h>
#include <stdbool.h>

#include "http.h"
#include "store.h"

struct hstore {
	struct store base;
	unsigned endpoint; /* index of the endpoint in use; atomic */
	bool stopping;	   /* atomic; set under watch_mu */
	/*
	 * The handle of the thread that reads the store's changes, so that
	 * stop interrupts it; cleared before that thread frees it.
	 */
	pthread_mutex_t watch_mu;
	struct http *watch_http; /* protected by watch_mu */
};

void hstore_init(struct hstore *hs, const struct store_ops *ops, const struct store_cfg *cfg);

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

bool hstore_stopping(struct hstore *hs);

/* "HOST:PORT" of endpoint idx (wraps around), and of the one in use. */
const char *hstore_host(const struct hstore *hs, unsigned idx);
const char *hstore_current_host(const struct hstore *hs);

/* The URL of path at endpoint idx into buf; false if it does not fit. */
bool hstore_url(const struct hstore *hs, unsigned idx, const char *path, char *buf, size_t len);

/*
 * Send rq (its url is set here: the endpoint in use, then path) and, while
 * endpoints cannot be reached, to the next ones. *idx receives the endpoint
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
