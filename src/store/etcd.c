/* SPDX-License-Identifier: GPL-2.0-or-later */
/* etcd v3 through its JSON gateway: paged range reads and one watch stream per mount. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hstore.h"
#include "json.h"
#include "log.h"

/* The largest response we accept: a page of keys, or one watch message. */
#define ETCD_MAX_RESPONSE (512u << 20)
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

struct etcd {
	struct hstore hs;
	char *key; /* first key of the mounted range */
	size_t klen;
	char *end; /* range_end: the first key after the range */
	size_t elen;
	uint64_t cluster_id; /* of the cluster the mirror came from; 0 until known */
};

static const char *const json_headers[] = {"Content-Type: application/json", NULL};

/*
 * The end of the range of keys starting with p[0..n) into out (n bytes, at
 * least 1): p with its last byte incremented, trailing 0xff bytes dropped
 * first. The empty prefix, and one of only 0xff bytes, extend to the end of
 * the key space, which etcd spells as range_end "\0".
 */
static size_t prefix_end(const char *p, size_t n, char *out)
{
	size_t el = n;

	while (el > 0 && (unsigned char)p[el - 1] == 0xff)
		el--;
	if (el == 0) {
		out[0] = '\0';
		return 1;
	}
	memcpy(out, p, el);
	out[el - 1]++;
	return el;
}

/* The mounted range; an empty key is not allowed, so the whole space starts at "\0". */
static int prefix_range(struct etcd *e, const char *p, size_t n)
{
	e->key = malloc(n ? n : 1);
	e->end = malloc(n ? n : 1);
	if (!e->key || !e->end)
		return -ENOMEM;
	if (n) {
		memcpy(e->key, p, n);
		e->klen = n;
	} else {
		e->key[0] = '\0';
		e->klen = 1;
	}
	e->elen = prefix_end(p, n, e->end);
	return 0;
}

/* POST to the endpoint in use, moving on to the next ones while they cannot be reached. */
static int etcd_post(struct etcd *e, struct http *h, const char *path, const char *body,
		     long timeout_ms, struct http_resp *rs)
{
	unsigned idx;
	struct http_req rq = {
		.method = "POST",
		.body = body,
		.body_len = strlen(body),
		.headers = json_headers,
		.timeout_ms = timeout_ms,
		.stall_ms = e->hs.base.timeout_ms,
		.max_body = ETCD_MAX_RESPONSE,
	};

	return hstore_request(&e->hs, h, &rq, path, rs, &idx);
}

/* Turn a non-200 gateway reply into an errno, recording what etcd said. */
static int reply_errno(struct etcd *e, const char *what, const struct http_resp *rs)
{
	const char *host = hstore_current_host(&e->hs);
	int code;
	char msg[200];

	if (json_etcd_error(rs->body, rs->len, &code, msg, sizeof(msg))) {
		store_set_error(&e->hs.base, "etcd at %s: %s failed: %s", host, what, msg);
		return hstore_status_errno(rs->status, code);
	}
	store_set_error(&e->hs.base, "%s answered HTTP %ld to a %s: is it an etcd v3 client URL?",
			host, rs->status, what);
	return hstore_status_errno(rs->status, 0);
}

static int etcd_snapshot(struct store *s, struct kv_batch *b)
{
	struct etcd *e = (struct etcd *)s;
	struct http *h = hstore_claim(&e->hs);
	struct http_resp rs;
	int64_t rev = 0, limit = ETCD_PAGE_FIRST;
	int restarts = 0, err = 0;
	char *cur = NULL;
	size_t curlen;

	if (!h)
		return -ENOMEM;
restart:
	kv_batch_clear(b);
	rev = 0;
	free(cur);
	cur = malloc(e->klen);
	if (!cur)
		return -ENOMEM;
	memcpy(cur, e->key, e->klen);
	curlen = e->klen;
	for (;;) {
		char *body = json_etcd_range_req(cur, curlen, e->end, e->elen, rev, limit);
		if (!body) {
			err = -ENOMEM;
			break;
		}
		err = etcd_post(e, h, "/v3/kv/range", body, 0, &rs);
		free(body);
		if (err == -EMSGSIZE && limit > 1) {
			/* Large values: ask for fewer keys per page. */
			limit = limit / 8 ? limit / 8 : 1;
			continue;
		}
		if (err)
			break;
		if (rs.status != 200) {
			err = reply_errno(e, "range read", &rs);
			http_resp_free(&rs);
			/* The revision we page at was compacted away: start over. */
			if (err == -ESTALE && rev && restarts++ < 3)
				goto restart;
			break;
		}
		struct json_err jerr;
		struct etcd_header hdr;
		bool more = false;
		size_t before = b->n, got = rs.len;
		err = json_etcd_range_resp(rs.body, rs.len, b, &more, &hdr, &jerr);
		http_resp_free(&rs);
		if (err) {
			store_set_error(s, "malformed range response from etcd at %s: %s",
					hstore_current_host(&e->hs), jerr.msg);
			err = -EIO;
			break;
		}
		if (rev == 0) {
			rev = hdr.revision;
			e->cluster_id = hdr.cluster_id;
		}
		if (!more || b->n == before)
			break;
		size_t per_key = got / (b->n - before) + 1;
		limit = ETCD_PAGE_BYTES / per_key;
		if (limit > ETCD_PAGE_MAX)
			limit = ETCD_PAGE_MAX;
		if (limit < ETCD_PAGE_MIN)
			limit = ETCD_PAGE_MIN;
		/* Next page: right after the last key, at the same revision. */
		const struct kv *last = &b->v[b->n - 1];
		char *next = realloc(cur, last->klen + 1);
		if (!next) {
			err = -ENOMEM;
			break;
		}
		cur = next;
		memcpy(cur, last->key, last->klen);
		cur[last->klen] = '\0';
		curlen = last->klen + 1;
	}
	free(cur);
	if (err) {
		kv_batch_clear(b);
		return err;
	}
	b->revision = rev;
	return 0;
}

struct watch_ctx {
	struct etcd *e;
	const char *host;
	const struct store_watch_cb *cb;
	struct json_framer fr;
	struct etcd_watch_msg msg;
	int64_t from_rev;
};

static int on_message(void *p, const char *buf, size_t n)
{
	struct watch_ctx *w = p;
	struct etcd_watch_msg *m = &w->msg;
	struct json_err jerr;
	int rc;

	if (json_etcd_watch_msg(buf, n, m, &jerr)) {
		store_set_error(&w->e->hs.base, "malformed watch message from etcd at %s: %s",
				w->host, jerr.msg);
		kv_batch_clear(&m->events);
		return -EIO;
	}
	if (m->error) {
		store_set_error(&w->e->hs.base, "etcd at %s: watch failed: %s", w->host, m->reason);
		return -EIO;
	}
	if (m->canceled) {
		if (m->compact_rev > 0) {
			log_info("etcd compacted its history past revision %lld (now from %lld): "
				 "reading the whole prefix again",
				 (long long)w->from_rev, (long long)m->compact_rev);
			return -ESTALE;
		}
		store_set_error(&w->e->hs.base, "etcd at %s cancelled the watch: %s", w->host,
				m->reason[0] ? m->reason : "no reason given");
		return -EIO;
	}
	if (m->created) {
		struct etcd *e = w->e;
		if (e->cluster_id && m->hdr.cluster_id && m->hdr.cluster_id != e->cluster_id) {
			log_warn(
				"etcd at %s is another cluster now: reading the whole prefix again",
				hstore_current_host(&e->hs));
			e->cluster_id = m->hdr.cluster_id;
			return -ESTALE;
		}
		/* A store that lost its data would otherwise leave us waiting for a future
		 * revision. */
		if (m->hdr.revision && m->hdr.revision < w->from_rev - 1) {
			log_warn("etcd went back to revision %lld (mirror at %lld): "
				 "reading the whole prefix again",
				 (long long)m->hdr.revision, (long long)w->from_rev - 1);
			return -ESTALE;
		}
		w->cb->connected(w->cb->ctx, m->hdr.revision);
	}
	if (m->events.n) {
		/* Resume points come from event revisions; the header may run ahead of them. */
		m->events.revision = 0;
		rc = w->cb->batch(w->cb->ctx, &m->events);
		kv_batch_clear(&m->events);
		return rc;
	}
	if (!m->created)
		w->cb->progress(w->cb->ctx, m->hdr.revision);
	return 0;
}

static int on_data(void *p, const char *d, size_t n)
{
	struct watch_ctx *w = p;
	int rc = json_framer_feed(&w->fr, d, n, on_message, w);

	if (rc == -EINVAL)
		store_set_error(&w->e->hs.base, "the watch stream from %s is not JSON", w->host);
	else if (rc == -EMSGSIZE)
		store_set_error(&w->e->hs.base, "a watch message from %s is larger than %u bytes",
				w->host, ETCD_MAX_RESPONSE);
	return rc;
}

static int etcd_watch(struct store *s, int64_t from_rev, const struct store_watch_cb *cb)
{
	struct etcd *e = (struct etcd *)s;
	struct http *h = hstore_claim(&e->hs);
	struct watch_ctx w = {.e = e, .cb = cb, .from_rev = from_rev};
	struct hstore_target t;
	long status;
	int err;

	if (!h)
		return -ENOMEM;
	char *body = json_etcd_watch_req(e->key, e->klen, e->end, e->elen, from_rev);
	if (!body)
		return -ENOMEM;
	unsigned idx = __atomic_load_n(&e->hs.endpoint, __ATOMIC_RELAXED);
	w.host = hstore_host(&e->hs, idx);
	struct http_req rq = {
		.method = "POST",
		.body = body,
		.body_len = strlen(body),
		.headers = json_headers,
	};
	hstore_aim(&e->hs, idx, "/v3/watch", &rq, &t);
	json_framer_init(&w.fr, ETCD_MAX_RESPONSE);
	kv_batch_init(&w.msg.events);
	err = http_stream(h, &rq, on_data, &w, &status);
	json_framer_free(&w.fr);
	kv_batch_clear(&w.msg.events);
	free(body);
	if (hstore_stopping(&e->hs))
		return -ECANCELED;
	if (err == 0) {
		store_set_error(s, "etcd at %s ended the watch stream (HTTP %ld)", w.host, status);
		return -ECONNRESET;
	}
	/* Failures inside the stream were recorded where they were seen. */
	if (err != -ESTALE && err != -EIO && err != -EINVAL && err != -EMSGSIZE)
		hstore_failed(&e->hs, idx, h, err);
	/* Try the next endpoint when this one went away. */
	if (s->url->nhosts > 1 && err != -ESTALE)
		hstore_next_endpoint(&e->hs, idx);
	return err;
}

static int etcd_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res)
{
	struct etcd *e = (struct etcd *)s;
	struct http *h = hstore_http();
	struct http_resp rs;
	size_t bytes = ETCD_REQUEST_SLACK;
	int err;

	if (!h)
		return -ENOMEM;
	/* etcd limits the compares and the operations of a transaction separately. */
	size_t ncmp = 0, nops = 0;
	for (size_t i = 0; i < n; i++) {
		ncmp += ops[i].expect != KV_ANY;
		nops += ops[i].kind != KV_CHECK;
	}
	if (ncmp > s->caps.max_txn_ops || nops > s->caps.max_txn_ops) {
		store_set_error(s, "%zu changes do not fit in one etcd transaction (at most %zu)",
				ncmp > nops ? ncmp : nops, s->caps.max_txn_ops);
		return -EXDEV;
	}
	for (size_t i = 0; i < n; i++)
		bytes += 2 * ops[i].klen + ops[i].vlen + 16;
	if (bytes > ETCD_MAX_REQUEST) {
		store_set_error(s, "%zu bytes are more than etcd accepts in one request (%u)",
				bytes, ETCD_MAX_REQUEST);
		return -EFBIG;
	}
	char *body = json_etcd_txn_req(ops, n, prefix_end);
	if (!body)
		return -ENOMEM;
	err = etcd_post(e, h, "/v3/kv/txn", body, s->timeout_ms, &rs);
	free(body);
	if (err)
		return err;
	if (rs.status != 200) {
		int code;
		char msg[200];
		err = reply_errno(e, "transaction", &rs);
		/* etcd says InvalidArgument for both; the message tells them apart. */
		if (json_etcd_error(rs.body, rs.len, &code, msg, sizeof(msg))) {
			if (strstr(msg, "too large"))
				err = -EFBIG;
			else if (strstr(msg, "too many operations"))
				err = -EXDEV;
		}
		http_resp_free(&rs);
		return err;
	}
	struct json_err jerr;
	struct etcd_header hdr;
	int64_t *current = calloc(ncmp ? ncmp : 1, sizeof(*current));
	bool ok;
	err = current ? json_etcd_txn_resp(rs.body, rs.len, &ok, current, ncmp, &hdr, &jerr)
		      : -ENOMEM;
	http_resp_free(&rs);
	if (err) {
		free(current);
		if (err == -ENOMEM)
			return err;
		store_set_error(s, "malformed transaction response from etcd: %s", jerr.msg);
		return -EIO;
	}
	if (!ok) {
		store_set_error(s, "a key changed in etcd since this host last read it");
		store_txn_refused(ops, n, current, res);
		free(current);
		return -ESTALE;
	}
	free(current);
	res->rev = hdr.revision;
	return 0;
}

static void etcd_free(struct store *s)
{
	struct etcd *e = (struct etcd *)s;

	hstore_destroy(&e->hs);
	free(e->key);
	free(e->end);
	free(e);
}

static const struct store_ops etcd_ops = {
	.snapshot = etcd_snapshot,
	.watch = etcd_watch,
	.txn = etcd_txn,
	.stop = hstore_stop,
	.thread_done = hstore_thread_done,
	.free = etcd_free,
};

static int etcd_open(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen)
{
	struct etcd *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	int rc = hstore_init(&e->hs, &etcd_ops, cfg, err, errlen);
	if (rc) {
		etcd_free(&e->hs.base);
		return rc;
	}
	e->hs.base.caps = (struct store_caps){
		/* The request limit covers key and framing too: leave room for a long key. */
		.max_value = ETCD_MAX_REQUEST - ETCD_REQUEST_SLACK - 4096,
		.max_txn_ops = ETCD_MAX_TXN_OPS,
		.counts_versions = true,
		.delete_prefix = true,
		.atomic_txn = true,
	};
	if (prefix_range(e, cfg->url.prefix, cfg->url.plen)) {
		etcd_free(&e->hs.base);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*out = &e->hs.base;
	return 0;
}

static const char *const etcd_options[] = {HSTORE_OPTIONS, NULL};

/* etcdctl's variables: every global flag as ETCDCTL_<FLAG>. */
static const struct store_env etcd_env[] = {
	{"cacert", "ETCDCTL_CACERT", ENV_VALUE},
	{"cert", "ETCDCTL_CERT", ENV_VALUE},
	{"key", "ETCDCTL_KEY", ENV_VALUE},
	{"insecure", "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", ENV_TRUE},
	{NULL, NULL, ENV_VALUE},
};

const struct store_driver etcd_driver = {
	.scheme = "etcd",
	.tls_scheme = "etcds",
	.default_port = "2379",
	.options = etcd_options,
	.env = etcd_env,
	.endpoints_env = "ETCDCTL_ENDPOINTS",
	.open = etcd_open,
};
