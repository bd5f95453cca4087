/* SPDX-License-Identifier: GPL-2.0-or-later */
/* etcd v3 through its JSON gateway: paged range reads and one watch stream per mount. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_int.h"
#include "json.h"
#include "log.h"

/*
 * The end of the range of keys starting with p[0..n) into out (n bytes, at
 * least 1): p with its last byte incremented, trailing 0xff bytes dropped
 * first. The empty prefix, and one of only 0xff bytes, extend to the end of
 * the key space, which etcd spells as range_end "\0".
 */
size_t etcd_prefix_end(const char *p, size_t n, char *out)
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
	e->elen = etcd_prefix_end(p, n, e->end);
	return 0;
}

/* A member without a leader refused the request before proposing it: another may take it. */
static bool no_leader(const struct http_resp *rs)
{
	int code;
	char msg[200];

	return rs->status == 503 && json_etcd_error(rs->body, rs->len, &code, msg, sizeof(msg)) &&
	       strstr(msg, "no leader");
}

/*
 * POST to the endpoint in use, moving on to the next ones while they cannot
 * be reached or have no leader (or, when idempotent, do not answer in
 * time); with a new token once when etcd no longer takes the one sent.
 * *idx: the endpoint that answered.
 */
int etcd_post(struct etcd *e, struct http *h, const char *path, const char *body, long timeout_ms,
	      bool idempotent, struct http_resp *rs, unsigned *idx)
{
	struct etcd_headers hd;
	bool renewed = false;
	size_t moves = 0;
	int err;

	for (;;) {
		err = etcd_headers(e, h, &hd);
		if (err)
			break;
		struct http_req rq = {
			.method = "POST",
			.body = body,
			.body_len = strlen(body),
			.headers = hd.v,
			.timeout_ms = timeout_ms,
			.stall_ms = e->hs.base.timeout_ms,
			.max_body = ETCD_MAX_RESPONSE,
			.idempotent = idempotent,
			.changes = !idempotent,
		};
		err = hstore_request(&e->hs, h, &rq, path, rs, idx);
		if (err)
			break;
		if (!renewed && etcd_token_rejected(e, hd.gen, rs->status, rs->body, rs->len)) {
			renewed = true;
			http_resp_free(rs);
			continue;
		}
		if (++moves < e->hs.base.url->nhosts && no_leader(rs)) {
			store_set_error(&e->hs.base, "etcd at %s has no leader",
					hstore_host(&e->hs, *idx));
			hstore_next_endpoint(&e->hs, *idx);
			http_resp_free(rs);
			continue;
		}
		break;
	}
	explicit_bzero(hd.auth, sizeof(hd.auth));
	return err;
}

int etcd_reply_errno(struct etcd *e, unsigned idx, const char *what, const struct http_resp *rs)
{
	const char *host = hstore_host(&e->hs, idx);
	int code;
	char msg[200];

	if (json_etcd_error(rs->body, rs->len, &code, msg, sizeof(msg))) {
		if (strstr(msg, "user name is empty"))
			store_set_error(&e->hs.base,
					"etcd at %s requires authentication: -o username= and "
					"password_file= (or ETCDCTL_USER and ETCDCTL_PASSWORD)",
					host);
		else
			store_set_error(&e->hs.base, "etcd at %s: %s failed: %s", host, what, msg);
		return hstore_status_errno(rs->status, code);
	}
	if (strstr(rs->body, "CommonName")) {
		/* embed/serve.go: with auth on, the gateway refuses certificates that carry a CN.
		 */
		store_set_error(&e->hs.base,
				"etcd at %s refuses a client certificate with a CN (Common Name) "
				"once authentication is on: issue it without one (openssl req "
				"-subj /O=cfgfs) and authenticate with -o username=",
				host);
		return -EACCES;
	}
	store_set_error(&e->hs.base, "%s answered HTTP %ld to a %s: is it an etcd v3 client URL?",
			host, rs->status, what);
	return hstore_status_errno(rs->status, 0);
}

struct watch_ctx {
	struct etcd *e;
	unsigned idx; /* the endpoint serving the watch */
	const char *host;
	const struct store_watch_cb *cb;
	struct json_framer fr;
	struct etcd_watch_msg msg;
	int64_t from_rev;
	int64_t last_rev;    /* of the last event delivered; from_rev - 1 before any */
	int64_t created_rev; /* the header's at creation; 0 until created */
	uint64_t gen;	     /* of the token the watch was made with */
	struct http *check;  /* the liveness checks' own connection */
	bool seen;	     /* the stream's end was seen (and said) in on_data or the check */
	char *check_body;
};

/*
 * The revisions of a watch message must be ones etcd can send: a header
 * below HSTORE_REV_MAX, events after everything delivered so far, in order,
 * none after the header's revision. One that is not is refused whole: an
 * event at 2^63-1 taken into the mirror would make every later real event
 * look old.
 */
static int check_watch_msg(struct watch_ctx *w, const struct etcd_watch_msg *m)
{
	int64_t hrev = m->hdr.revision, prev = w->last_rev + 1;

	if (hrev >= HSTORE_REV_MAX) {
		store_set_error(&w->e->hs.base,
				"etcd at %s sent a watch message at revision %lld, which no etcd "
				"reaches: refusing it",
				w->host, (long long)hrev);
		return -EBADMSG;
	}
	for (size_t i = 0; i < m->events.n; i++) {
		const struct kv_meta *k = &m->events.v[i].meta;
		const char *why = NULL;
		if (k->mod_rev >= HSTORE_REV_MAX)
			why = "which no etcd reaches";
		else if (k->mod_rev < prev)
			why = i ? "before the event ahead of it"
				: "at or before what it already sent";
		else if (hrev && k->mod_rev > hrev)
			why = "after the revision of the message's own header";
		else if (k->create_rev > k->mod_rev)
			why = "before the key was created";
		if (why) {
			store_set_error(&w->e->hs.base,
					"etcd at %s sent a change at revision %lld, %s (watching "
					"from %lld, header at %lld): refusing it",
					w->host, (long long)k->mod_rev, why, (long long)w->from_rev,
					(long long)hrev);
			return -EBADMSG;
		}
		prev = k->mod_rev;
	}
	return 0;
}

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
		store_set_error(&w->e->hs.base, "etcd at %s: watch failed: %s", w->host,
				m->reason[0] ? m->reason : "an error without a message");
		return -EIO;
	}
	rc = check_watch_msg(w, m);
	if (rc) {
		kv_batch_clear(&m->events);
		return rc;
	}
	if (m->canceled) {
		if (m->compact_rev > 0) {
			log_info("etcd compacted its history past revision %lld (now from %lld): "
				 "reading the whole prefix again",
				 (long long)w->from_rev, (long long)m->compact_rev);
			return -ESTALE;
		}
		if (strstr(m->reason, "auth token") || strstr(m->reason, "Unauthenticated")) {
			/* A watch made with an expired token is cancelled at once (the stream
			 * stays). */
			etcd_token_drop(w->e, w->gen);
			store_set_error(&w->e->hs.base,
					"etcd at %s refused the watch: the token expired", w->host);
			return -EKEYEXPIRED;
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
		w->created_rev = m->hdr.revision ? m->hdr.revision : w->from_rev;
		w->cb->connected(w->cb->ctx, m->hdr.revision);
	}
	if (m->events.n) {
		/* Resume points come from event revisions; the header may run ahead of them. */
		m->events.revision = 0;
		w->last_rev = m->events.v[m->events.n - 1].meta.mod_rev;
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

	w->seen = rc != 0;
	if (rc == -EINVAL)
		store_set_error(&w->e->hs.base, "the watch stream from %s is not JSON", w->host);
	else if (rc == -EMSGSIZE)
		store_set_error(&w->e->hs.base, "a watch message from %s is larger than %u bytes",
				w->host, ETCD_MAX_RESPONSE);
	return rc;
}

/*
 * Every check interval while a watch runs: the member serving it must
 * answer a read of its own copy within the interval. A member that hangs
 * or lost its leader would otherwise keep the stream open and silent, and
 * the mirror would stop following the store without a word.
 */
static int watch_check(void *p)
{
	struct watch_ctx *w = p;
	struct etcd *e = w->e;
	struct etcd_headers hd;
	struct hstore_target t;
	struct http_resp rs;

	if (!w->check && !(w->check = http_new()))
		return 0;
	if (!w->check_body && !(w->check_body = json_etcd_check_req(e->key, e->klen)))
		return 0;
	if (etcd_headers(e, w->check, &hd))
		return 0; /* authentication is not this member's health */
	struct http_req rq = {
		.method = "POST",
		.body = w->check_body,
		.body_len = strlen(w->check_body),
		.headers = hd.v,
		.connect_timeout_ms = e->hs.check_ms,
		.timeout_ms = e->hs.check_ms,
		.max_body = 1 << 20,
	};
	hstore_aim(&e->hs, w->idx, "/v3/kv/range", &rq, &t);
	int err = http_do(w->check, &rq, &rs);
	explicit_bzero(hd.auth, sizeof(hd.auth));
	if (!err) {
		bool fine = rs.status == 200 ||
			    etcd_token_rejected(e, hd.gen, rs.status, rs.body, rs.len);
		if (!fine)
			etcd_reply_errno(e, w->idx, "check", &rs);
		http_resp_free(&rs);
		if (fine)
			return 0;
	} else {
		store_set_error(&e->hs.base,
				"etcd at %s failed a check while serving the watch: %s", w->host,
				http_error(w->check));
	}
	w->seen = true;
	return -EHOSTDOWN;
}

static int etcd_watch(struct store *s, int64_t from_rev, const struct store_watch_cb *cb)
{
	struct etcd *e = (struct etcd *)s;
	struct http *h = hstore_claim(&e->hs);
	struct watch_ctx w = {.e = e, .cb = cb, .from_rev = from_rev, .last_rev = from_rev - 1};
	struct hstore_target t;
	long status;
	int err;

	if (!h)
		return -ENOMEM;
	char *body = json_etcd_watch_req(e->key, e->klen, e->end, e->elen, from_rev);
	if (!body)
		return -ENOMEM;
	struct etcd_headers hd;
	err = etcd_headers(e, h, &hd);
	if (err) {
		free(body);
		return err;
	}
	unsigned idx = __atomic_load_n(&e->hs.endpoint, __ATOMIC_RELAXED);
	w.idx = idx;
	w.host = hstore_host(&e->hs, idx);
	w.gen = hd.gen;
	struct http_req rq = {
		.method = "POST",
		.body = body,
		.body_len = strlen(body),
		.headers = hd.v,
		.tick = e->hs.check_ms ? watch_check : NULL,
		.tick_ctx = &w,
		.tick_ms = e->hs.check_ms,
	};
	hstore_aim(&e->hs, idx, "/v3/watch", &rq, &t);
	json_framer_init(&w.fr, ETCD_MAX_RESPONSE);
	kv_batch_init(&w.msg.events);
	err = http_stream(h, &rq, on_data, &w, &status);
	explicit_bzero(hd.auth, sizeof(hd.auth));
	json_framer_free(&w.fr);
	kv_batch_clear(&w.msg.events);
	http_free(w.check);
	free(w.check_body);
	free(body);
	if (hstore_stopping(&e->hs))
		return -ECANCELED;
	if (err == 0) {
		store_set_error(s, "etcd at %s ended the watch stream (HTTP %ld)", w.host, status);
		return -ECONNRESET;
	}
	/* Failures inside the stream were recorded where they were seen. */
	if (!w.seen)
		hstore_failed(&e->hs, idx, h, err);
	if (err == -EMSGSIZE && w.created_rev > w.last_rev) {
		/*
		 * Catching up, etcd may pack many revisions into one message; a
		 * paged re-read gets past them, where a reconnect would meet the
		 * same message again.
		 */
		log_warn("%s; reading the whole prefix again instead of its history",
			 store_error(s));
		return -ESTALE;
	}
	/* Try the next endpoint when this one went away. */
	if (s->url->nhosts > 1 && err != -ESTALE && err != -EKEYEXPIRED)
		hstore_next_endpoint(&e->hs, idx);
	return err;
}

static void etcd_free(struct store *s)
{
	struct etcd *e = (struct etcd *)s;

	etcd_auth_free(e);
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
	.endpoint = hstore_endpoint,
	.free = etcd_free,
};

static int etcd_open(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen)
{
	struct etcd *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	int rc = hstore_init(&e->hs, &etcd_ops, cfg, err, errlen);
	if (!rc)
		rc = etcd_auth_init(e, cfg, err, errlen);
	if (rc) {
		etcd_free(&e->hs.base);
		return rc;
	}
	e->hs.base.caps = (struct store_caps){
		/* The request limit covers key and framing too: leave room for a long key. */
		.max_value = ETCD_MAX_REQUEST - ETCD_REQUEST_SLACK - 4096,
		.max_txn_ops = ETCD_MAX_TXN_OPS,
		.counts_versions = true,
		.first_version = 1,
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

static const char *const etcd_options[] = {HSTORE_OPTIONS, "username", "password_file", NULL};

/* etcdctl's variables: every global flag as ETCDCTL_<FLAG>. */
static const struct store_env etcd_env[] = {
	{"cacert", "ETCDCTL_CACERT", ENV_VALUE},
	{"cert", "ETCDCTL_CERT", ENV_VALUE},
	{"key", "ETCDCTL_KEY", ENV_VALUE},
	{"insecure", "ETCDCTL_INSECURE_SKIP_TLS_VERIFY", ENV_TRUE},
	{"username", "ETCDCTL_USER", ENV_VALUE}, /* ETCDCTL_PASSWORD: etcd_auth.c */
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
