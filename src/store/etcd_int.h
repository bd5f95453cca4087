/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the etcd driver: what etcd.c and etcd_auth.c share. */
#ifndef CFGFS_ETCD_INT_H
#define CFGFS_ETCD_INT_H

#include <pthread.h>
#include <stdint.h>

#include "hstore.h"

/*
 * The largest answer we hold: a page of keys, or one watch message. About
 * ten times etcd's request limit (ETCD_MAX_REQUEST), so eight values of the
 * largest size etcd takes fit even in base64, and four pages of
 * ETCD_PAGE_BYTES; a range page that needs more is asked again with fewer
 * keys. Anything larger is a broken or hostile server, and holding it
 * would let that server decide how much memory cfgfs takes.
 */
#define ETCD_MAX_RESPONSE (16u << 20)
/*
 * Pages of a range read: etcd counts the rest of the range for every page,
 * so many small pages cost far more than a few large ones (100k keys: 7 s in
 * pages of 500, 3 s in pages of 10000). The first page is modest; later
 * ones are sized to about ETCD_PAGE_BYTES of answer from what a key took.
 */
#define ETCD_PAGE_FIRST 2000
#define ETCD_PAGE_MAX 10000
#define ETCD_PAGE_MIN 16
#define ETCD_PAGE_BYTES (4u << 20)
/*
 * etcd's defaults: --max-request-bytes 1.5 MiB for a whole request (key,
 * value and protobuf framing), --max-txn-ops 128. Values are checked against
 * these before anything is sent, so an oversized save fails cleanly.
 */
#define ETCD_MAX_REQUEST (1536u * 1024)
#define ETCD_REQUEST_SLACK 512
#define ETCD_MAX_TXN_OPS 128

/*
 * Authentication with user and password: the gateway's token, renewed when
 * etcd stops taking it. The password is never on the command line, never
 * logged; one from a file is read again for each authentication and wiped
 * at once, one from the environment is wiped there and kept here only.
 */
struct etcd_auth {
	char *user; /* NULL: no authentication */
	char *password_file;
	char *password; /* from the environment; wiped when freed */
	pthread_mutex_t mu;
	char *header; /* "Authorization: TOKEN" or NULL; protected by mu */
	uint64_t gen; /* counts tokens; protected by mu */
	bool off;     /* etcd has authentication off; protected by mu */
};

struct etcd {
	struct hstore hs;
	char *key; /* first key of the mounted range */
	size_t klen;
	char *end; /* range_end: the first key after the range */
	size_t elen;
	uint64_t cluster_id; /* of the cluster the mirror came from; 0 until known */
	struct etcd_auth auth;
};

/* The headers of a request: JSON, the token, and "fail rather than wait without a leader". */
struct etcd_headers {
	const char *v[4];
	char auth[1024];
	uint64_t gen; /* of the token in auth */
};

/* The user and password from cfg and the environment; 0 or -EINVAL with a line in err. */
int etcd_auth_init(struct etcd *e, const struct store_cfg *cfg, char *err, size_t errlen);
void etcd_auth_free(struct etcd *e);

/*
 * Fill hd for a request, authenticating first when a user is configured and
 * there is no token yet: 0, or the errno of a failed authentication (the
 * reason recorded in the store).
 */
int etcd_headers(struct etcd *e, struct http *h, struct etcd_headers *hd);

/*
 * Whether an answer says the token is no longer good (expired, or the auth
 * store changed): the token of generation gen is then dropped, and the
 * caller sends the request again once, with a new one.
 */
bool etcd_token_rejected(struct etcd *e, uint64_t gen, long status, const char *body, size_t len);

/*
 * The end of the range of keys starting with p[0..n) into out (n bytes, at
 * least 1), as etcd's range_end.
 */
size_t etcd_prefix_end(const char *p, size_t n, char *out);

/*
 * POST body to path at the endpoint in use, moving on to the next ones
 * while they cannot be reached or have no leader (or, when idempotent, do
 * not answer in time); with a new token once when etcd no longer takes the
 * one sent. 0 when an answer came (in rs, from endpoint *idx), or an errno.
 */
int etcd_post(struct etcd *e, struct http *h, const char *path, const char *body, long timeout_ms,
	      bool idempotent, struct http_resp *rs, unsigned *idx);

/* store_ops.snapshot (etcd_range.c). */
int etcd_snapshot(struct store *s, struct kv_batch *b);

/* store_ops.txn (etcd_txn.c). */
int etcd_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res);

/* Turn a failed gateway answer from endpoint idx into an errno, recording what etcd said. */
int etcd_reply_errno(struct etcd *e, unsigned idx, const char *what, const struct http_resp *rs);

/* Drop the token of generation gen (a watch was refused with it). */
void etcd_token_drop(struct etcd *e, uint64_t gen);

#endif
