/* SPDX-License-Identifier: GPL-2.0-or-later */
/* JSON: the only place that speaks jansson; encoders and defensive decoders for the stores. */
#ifndef CFGFS_JSON_H
#define CFGFS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "kv.h"

/* Why a response was rejected, as one line of text. */
struct json_err {
	char msg[200];
};

/* Seed jansson's hash function; call before any thread starts. */
void json_global_init(void);

/* ---------------------------------------------------------------- framing */

/*
 * Splits a byte stream into complete top-level JSON objects or arrays (the
 * etcd watch stream sends one object per message), without parsing them.
 */
struct json_framer {
	char *buf;
	size_t len, cap, max;
	size_t scan;  /* bytes of buf already examined */
	size_t start; /* where the current value starts */
	int depth;
	bool in_str, esc;
};

/* A framer that refuses values longer than max bytes. */
void json_framer_init(struct json_framer *f, size_t max);
void json_framer_free(struct json_framer *f);

typedef int (*json_value_fn)(void *ctx, const char *p, size_t n);

/*
 * Feed bytes; fn is called for each complete value. Returns 0, the first
 * non-zero value fn returned, -EMSGSIZE for an oversized value or -EINVAL
 * for bytes that cannot start a value.
 */
int json_framer_feed(struct json_framer *f, const char *p, size_t n, json_value_fn fn, void *ctx);

/* ---------------------------------------------------------------- etcd v3 gateway */

struct etcd_header {
	int64_t revision;
	uint64_t cluster_id;
};

/* POST /v3/kv/range body; rev 0 reads the latest revision. Returns malloc'd text or NULL. */
char *json_etcd_range_req(const char *key, size_t klen, const char *end, size_t elen, int64_t rev,
			  int64_t limit);

/*
 * Parse a range response: keys are appended to out (values as blobs), *more
 * tells whether another page follows, *count (unless NULL) how many keys the
 * whole range asked for holds, this page's included. 0 or -EINVAL with the
 * reason in err.
 */
int json_etcd_range_resp(const char *buf, size_t len, struct kv_batch *out, bool *more,
			 int64_t *count, struct etcd_header *hdr, struct json_err *err);

/* POST /v3/watch body for a prefix watch starting at start_rev, with progress notifications. */
char *json_etcd_watch_req(const char *key, size_t klen, const char *end, size_t elen,
			  int64_t start_rev);

/*
 * POST /v3/kv/txn body: compares for every op whose expect is not KV_ANY
 * (mod_revision equal, or create_revision 0 for KV_ABSENT), then the ops.
 * end_of() gives the range end of a prefix for KV_DELETE_PREFIX.
 */
struct kv_op;
char *json_etcd_txn_req(const struct kv_op *ops, size_t n,
			size_t (*end_of)(const char *key, size_t klen, char *out));

/*
 * A txn response: *ok is false when a compare failed ("succeeded" is omitted
 * then); current[k] is then the mod revision of the k-th guarded key (0 if
 * it does not exist), read back by the request's failure branch, for k below
 * ncurrent (-1 when the answer does not say).
 */
int json_etcd_txn_resp(const char *buf, size_t len, bool *ok, int64_t *current, size_t ncurrent,
		       struct etcd_header *hdr, struct json_err *err);

/* One message of a watch stream. */
struct etcd_watch_msg {
	struct etcd_header hdr;
	bool created;
	bool canceled;
	int64_t compact_rev;
	char reason[200];	/* cancel reason or stream error */
	bool error;		/* the stream carried an error object instead of a result */
	struct kv_batch events; /* deletes have val == NULL */
};

/* Parse one watch message into m (whose events batch the caller owns and clears). */
int json_etcd_watch_msg(const char *buf, size_t len, struct etcd_watch_msg *m,
			struct json_err *err);

/*
 * The error an etcd gateway reply carries: {"error":"...","code":N} or the
 * stream form {"error":{"grpc_code":N,"message":"..."}}. Returns true if it
 * is one, with the gRPC code and message.
 */
bool json_etcd_error(const char *buf, size_t len, int *code, char *msg, size_t msglen);

/* A cheap read of one key from the member's own copy (a liveness check). */
char *json_etcd_check_req(const char *key, size_t klen);

/*
 * The body of /v3/auth/authenticate into out (outlen bytes): its length, or
 * -ENAMETOOLONG. Written here, not by jansson, so that no copy of the
 * password is left in memory the caller cannot wipe; the caller wipes out.
 */
ssize_t json_etcd_auth_req(const char *user, const char *password, char *out, size_t outlen);

/* The token of an authenticate answer, malloc'd; NULL with a reason in err. */
char *json_etcd_auth_resp(const char *buf, size_t len, struct json_err *err);

/* ---------------------------------------------------------------- Consul KV */

/*
 * A recursive GET /v1/kv/PREFIX?recurse: a JSON array of entries with Key,
 * Value (base64 or null), Flags, CreateIndex, ModifyIndex, LockIndex. Keys
 * are appended to out as puts. 0 or -EINVAL with the reason in err.
 */
int json_consul_list(const char *buf, size_t len, struct kv_batch *out, struct json_err *err);

/* How many entries a listing held, and how many were created after the since it was read with. */
struct consul_count {
	size_t total, created;
};

/*
 * json_consul_list, handing over only what changed after index since (all
 * when since is 0): an entry modified at or before since is the same as in
 * the listing read at since, so it is counted in *cnt and checked but not
 * appended (unless its indexes are impossible, which the caller refuses).
 */
int json_consul_list_since(const char *buf, size_t len, int64_t since, struct kv_batch *out,
			   struct consul_count *cnt, struct json_err *err);

/*
 * The two ways json_consul_list_since reads: the one-pass scanner (0, 1
 * when it leaves the answer to jansson, having added nothing, or -ENOMEM)
 * and jansson alone. Apart only so that the fuzzer can hold them to the
 * same result.
 */
int json_consul_list_scan(const char *buf, size_t len, int64_t since, struct kv_batch *out,
			  struct consul_count *cnt);
int json_consul_list_dom(const char *buf, size_t len, int64_t since, struct kv_batch *out,
			 struct consul_count *cnt, struct json_err *err);

/*
 * A key listing (GET /v1/kv/PREFIX?keys&separator=/): a JSON array of
 * strings, each handed to fn, which stops the walk with a non-zero result
 * (returned). 0, or -EINVAL with the reason in err.
 */
typedef int (*json_consul_key_fn)(void *ctx, const char *key, size_t len);
int json_consul_keys(const char *buf, size_t len, json_consul_key_fn fn, void *ctx,
		     struct json_err *err);

/* PUT /v1/txn body for ops (Consul 1.8 verbs: set, cas, delete, delete-cas, delete-tree,
 * check-index, check-not-exists). */
char *json_consul_txn_req(const struct kv_op *ops, size_t n);

/* PUT /v1/txn body reading one key (any key: no URL path involved). */
char *json_consul_get_req(const char *key, size_t klen);

/*
 * A /v1/txn answer. 200: *rev is the index of the commit, the highest
 * ModifyIndex its results report (0 if none does: deletes report nothing). 409: *denied tells a
 * permission failure from a failed compare, *op_index is the index of the op that failed (-1: not
 * said), what receives the first error's text.
 */
int json_consul_txn_resp(const char *buf, size_t len, long status, int64_t *rev, bool *denied,
			 long *op_index, char *what, size_t whatlen, struct json_err *err);

#endif
