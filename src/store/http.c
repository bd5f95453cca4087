/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HTTP over libcurl: the only place that speaks curl. One handle per thread. */
#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"
#include "http.h"

struct http {
	CURL *easy;
	CURLM *multi; /* every transfer runs through it, so http_cancel can wake it */
	bool cancel;  /* atomic */
	char errbuf[CURL_ERROR_SIZE];
	char reason[CURL_ERROR_SIZE + 64];

	/* The transfer in progress. */
	const struct http_req *rq;
	int64_t last_data_ms; /* monotonic time anything last arrived, for stall_ms */
	http_data_fn on_data;
	void *ctx;
	int cb_result;
	struct http_resp *rs;
	size_t cap;  /* of rs->body */
	char *spare; /* a buffer http_resp_recycle kept */
	size_t spare_cap;
};

int http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_ALL) == CURLE_OK ? 0 : -EIO;
}

void http_global_cleanup(void)
{
	curl_global_cleanup();
}

struct http *http_new(void)
{
	struct http *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->easy = curl_easy_init();
	h->multi = curl_multi_init();
	if (!h->easy || !h->multi) {
		http_free(h);
		return NULL;
	}
	return h;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	if (h->easy)
		curl_easy_cleanup(h->easy);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	free(h->spare);
	free(h);
}

void http_resp_free(struct http_resp *r)
{
	free(r->body);
	free(r->header);
	memset(r, 0, sizeof(*r));
}

void http_resp_recycle(struct http *h, struct http_resp *r)
{
	if (r->body && h->cap > h->spare_cap) {
		free(h->spare);
		h->spare = r->body;
		h->spare_cap = h->cap;
		r->body = NULL;
	}
	http_resp_free(r);
}

void http_cancel(struct http *h)
{
	__atomic_store_n(&h->cancel, true, __ATOMIC_RELEASE);
	curl_multi_wakeup(h->multi);
}

void http_reset_cancel(struct http *h)
{
	__atomic_store_n(&h->cancel, false, __ATOMIC_RELEASE);
}

const char *http_error(const struct http *h)
{
	return h->reason;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *userdata)
{
	struct http *h = userdata;
	size_t n = size * nmemb;

	h->last_data_ms = mono_ms();
	if (h->on_data) {
		h->cb_result = h->on_data(h->ctx, p, n);
		return h->cb_result ? CURL_WRITEFUNC_ERROR : n;
	}
	struct http_resp *rs = h->rs;
	if (rs->len + n > h->rq->max_body) {
		h->cb_result = -EMSGSIZE;
		return CURL_WRITEFUNC_ERROR;
	}
	if (rs->len == 0) {
		/* An announced length above the cap fails before anything is held. */
		curl_off_t cl = -1;
		if (curl_easy_getinfo(h->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) ==
			    CURLE_OK &&
		    cl > 0 && (uint64_t)cl > h->rq->max_body) {
			h->cb_result = -EMSGSIZE;
			return CURL_WRITEFUNC_ERROR;
		}
	}
	if (!rs->body && h->spare) {
		rs->body = h->spare;
		h->cap = h->spare_cap;
		h->spare = NULL;
		h->spare_cap = 0;
	}
	if (rs->len + n + 1 > h->cap) {
		size_t cap = h->cap ? h->cap : 4096;
		while (cap < rs->len + n + 1)
			cap *= 2;
		/* Doubling must not take twice the cap: what one answer may hold bounds memory. */
		if (cap > h->rq->max_body + 1)
			cap = h->rq->max_body + 1;
		char *b = realloc(rs->body, cap);
		if (!b) {
			h->cb_result = -ENOMEM;
			return CURL_WRITEFUNC_ERROR;
		}
		rs->body = b;
		h->cap = cap;
	}
	memcpy(rs->body + rs->len, p, n);
	rs->len += n;
	rs->body[rs->len] = '\0';
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *userdata)
{
	struct http *h = userdata;
	size_t n = size * nmemb, hl;
	const char *want = h->rq->capture_header;

	h->last_data_ms = mono_ms();
	if (!want || !h->rs)
		return n;
	hl = strlen(want);
	if (n > hl + 1 && p[hl] == ':' && strncasecmp(p, want, hl) == 0) {
		const char *v = p + hl + 1, *end = p + n;
		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
			end--;
		free(h->rs->header);
		h->rs->header = strndup(v, end - v);
	}
	return n;
}

/* TLS 1.3 servers refuse a missing client certificate after the handshake, at the first read. */
static bool tls_alert(const char *errbuf)
{
	return strstr(errbuf, "alert certificate required") ||
	       strstr(errbuf, "alert bad certificate") || strstr(errbuf, "alert unknown ca") ||
	       strstr(errbuf, "alert handshake failure") ||
	       strstr(errbuf, "alert certificate unknown");
}

static int curl_to_errno(CURLcode c, const char *errbuf)
{
	switch (c) {
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return -EPROTO;
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CRL_BADFILE:
		return -ENOKEY;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return tls_alert(errbuf) ? -EPROTO : -EIO;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static int setup(struct http *h, const struct http_req *rq, struct curl_slist **hdrs,
		 struct curl_slist **connect)
{
	CURL *e = h->easy;

	curl_easy_reset(e);
	h->errbuf[0] = '\0';
	h->reason[0] = '\0';
	h->cb_result = 0;
	h->cap = 0;
	*hdrs = NULL;
	*connect = NULL;
	for (const char *const *l = rq->headers; l && *l; l++) {
		struct curl_slist *n = curl_slist_append(*hdrs, *l);
		if (!n)
			return -ENOMEM;
		*hdrs = n;
	}
	/* curl adds "Expect: 100-continue" to large bodies, costing a round trip. */
	struct curl_slist *n = curl_slist_append(*hdrs, "Expect:");
	if (!n)
		return -ENOMEM;
	*hdrs = n;

	curl_easy_setopt(e, CURLOPT_URL, rq->url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method);
	curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, rq->changes ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	/* A peer that vanishes without closing the connection is noticed in ~20 s. */
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 10L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 5L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 rq->connect_timeout_ms > 0 ? rq->connect_timeout_ms : 2000L);
	if (rq->timeout_ms > 0) {
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, rq->timeout_ms);
	}
	if (rq->connect_to) {
		struct curl_slist *c = curl_slist_append(NULL, rq->connect_to);
		if (!c)
			return -ENOMEM;
		*connect = c;
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, c);
	}
	if (rq->tls) {
		const struct http_tls *t = rq->tls;
		if (t->cacert)
			curl_easy_setopt(e, CURLOPT_CAINFO, t->cacert);
		if (t->cert)
			curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert);
		if (t->key)
			curl_easy_setopt(e, CURLOPT_SSLKEY, t->key);
		if (t->insecure) {
			curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
		}
	}
#if LIBCURL_VERSION_NUM >= 0x075700
	/* curl keeps a parsed CA bundle for a day; a rotated CA must count at the next connection.
	 */
	curl_easy_setopt(e, CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
	if (rq->body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, rq->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
	} else if (strcmp(rq->method, "GET") != 0 && strcmp(rq->method, "DELETE") != 0) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
	}
	return 0;
}

/*
 * The reason of a timeout: where the transfer stood tells a host that does
 * not answer from a TLS port that never speaks from a slow answer. limit_ms
 * is the limit that ran out once connected (what is answered when it did).
 */
static void timed_out(struct http *h, const struct http_req *rq, long limit_ms, const char *what)
{
	curl_off_t tcp = 0, tls = 0;
	long port = 0;
	long connect_ms = rq->connect_timeout_ms > 0 ? rq->connect_timeout_ms : 2000L;

	curl_easy_getinfo(h->easy, CURLINFO_CONNECT_TIME_T, &tcp);
	curl_easy_getinfo(h->easy, CURLINFO_APPCONNECT_TIME_T, &tls);
	/* curl 7.88 records the connect time only once TLS is up too; the local port shows
	 * the TCP connection. */
	curl_easy_getinfo(h->easy, CURLINFO_LOCAL_PORT, &port);
	if (rq->timeout_ms > 0 && rq->timeout_ms < connect_ms)
		connect_ms = rq->timeout_ms;
	if (rq->stall_ms > 0 && rq->stall_ms < connect_ms)
		connect_ms = rq->stall_ms;
	if (!tcp && !port)
		snprintf(h->reason, sizeof(h->reason), "%s: no connection within %ld ms", rq->url,
			 connect_ms);
	else if (!tls && strncmp(rq->url, "https:", 6) == 0)
		snprintf(h->reason, sizeof(h->reason),
			 "%s: the TLS handshake did not complete within %ld ms", rq->url,
			 connect_ms);
	else if (h->errbuf[0] && strcmp(what, "no data") != 0)
		snprintf(h->reason, sizeof(h->reason), "%s: %s within %ld ms (%s)", rq->url, what,
			 limit_ms, h->errbuf);
	else
		snprintf(h->reason, sizeof(h->reason), "%s: %s within %ld ms", rq->url, what,
			 limit_ms);
}

/* Drive the transfer through the multi handle so that http_cancel can interrupt it. */
static int run(struct http *h, const struct http_req *rq, long *status)
{
	CURLcode res = CURLE_OK;
	int running = 1, err = 0;
	bool ticked = false; /* err is the tick's */

	if (curl_multi_add_handle(h->multi, h->easy) != CURLM_OK)
		return -ENOMEM;
	h->last_data_ms = mono_ms();
	bool tick = rq->tick && rq->tick_ms > 0;
	int64_t next_tick = mono_ms() + rq->tick_ms;
	while (running) {
		if (__atomic_load_n(&h->cancel, __ATOMIC_ACQUIRE)) {
			err = -ECANCELED;
			break;
		}
		if (tick && mono_ms() >= next_tick) {
			err = rq->tick(rq->tick_ctx);
			if (err) {
				ticked = true;
				break;
			}
			next_tick = mono_ms() + rq->tick_ms;
		}
		/*
		 * A server that accepts the connection but never answers would
		 * otherwise hold a large transfer (a snapshot) forever.
		 */
		if (rq->stall_ms > 0 && mono_ms() - h->last_data_ms > rq->stall_ms) {
			err = -ETIMEDOUT;
			break;
		}
		if (curl_multi_perform(h->multi, &running) != CURLM_OK) {
			err = -EIO;
			break;
		}
		if (!running)
			break;
		long wait = rq->stall_ms > 0 && rq->stall_ms < 1000 ? rq->stall_ms : 1000;
		if (tick && rq->tick_ms < wait)
			wait = rq->tick_ms;
		if (curl_multi_poll(h->multi, NULL, 0, (int)wait, NULL) != CURLM_OK) {
			err = -EIO;
			break;
		}
	}
	if (!err) {
		int left;
		CURLMsg *m;
		while ((m = curl_multi_info_read(h->multi, &left)))
			if (m->msg == CURLMSG_DONE)
				res = m->data.result;
	}
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, status);
	curl_multi_remove_handle(h->multi, h->easy);

	if (ticked)
		return err; /* the tick recorded its reason where it belongs */
	if (err == -ECANCELED) {
		snprintf(h->reason, sizeof(h->reason), "cancelled");
		return err;
	}
	if (err == -ETIMEDOUT) {
		timed_out(h, rq, rq->stall_ms, "no data");
		return err;
	}
	if (err) {
		snprintf(h->reason, sizeof(h->reason), "%s: internal curl error", rq->url);
		return err;
	}
	if (res == CURLE_WRITE_ERROR && h->cb_result) {
		if (h->cb_result == -EMSGSIZE && !h->on_data)
			snprintf(h->reason, sizeof(h->reason),
				 "%s: an answer larger than %zu bytes (the most one answer may "
				 "hold)",
				 rq->url, rq->max_body);
		else if (h->cb_result == -ENOMEM)
			snprintf(h->reason, sizeof(h->reason), "%s: out of memory for the answer",
				 rq->url);
		return h->cb_result;
	}
	if (res == CURLE_OPERATION_TIMEDOUT) {
		timed_out(h, rq, rq->timeout_ms, "no complete answer");
		return -ETIMEDOUT;
	}
	if (res != CURLE_OK) {
		snprintf(h->reason, sizeof(h->reason), "%s: %s", rq->url,
			 h->errbuf[0] ? h->errbuf : curl_easy_strerror(res));
		return curl_to_errno(res, h->errbuf);
	}
	return 0;
}

int http_do(struct http *h, const struct http_req *rq, struct http_resp *rs)
{
	struct curl_slist *hdrs, *connect;
	int err;

	memset(rs, 0, sizeof(*rs));
	h->rq = rq;
	h->rs = rs;
	h->on_data = NULL;
	err = setup(h, rq, &hdrs, &connect);
	if (!err)
		err = run(h, rq, &rs->status);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(connect);
	if (!err && !rs->body) {
		rs->body = strdup("");
		if (!rs->body)
			err = -ENOMEM;
	}
	if (err)
		http_resp_free(rs);
	h->rs = NULL;
	return err;
}

int http_stream(struct http *h, const struct http_req *rq, http_data_fn on_data, void *ctx,
		long *status)
{
	struct curl_slist *hdrs, *connect;
	int err;

	h->rq = rq;
	h->rs = NULL;
	h->on_data = on_data;
	h->ctx = ctx;
	*status = 0;
	err = setup(h, rq, &hdrs, &connect);
	if (!err)
		err = run(h, rq, status);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(connect);
	h->on_data = NULL;
	return err;
}
