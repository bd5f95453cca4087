/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What all stores share: opening by URL, per-thread HTTP handles, errno mapping. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "store.h"

static pthread_key_t http_key;
static pthread_once_t http_once = PTHREAD_ONCE_INIT;

static void http_destructor(void *p)
{
	http_free(p);
}

static void make_key(void)
{
	pthread_key_create(&http_key, http_destructor);
}

struct http *store_http(void)
{
	pthread_once(&http_once, make_key);
	struct http *h = pthread_getspecific(http_key);
	if (!h) {
		h = http_new();
		if (h)
			pthread_setspecific(http_key, h);
	}
	return h;
}

struct http *store_claim_http(struct store *s)
{
	struct http *h = store_http();

	if (!h)
		return NULL;
	pthread_mutex_lock(&s->watch_mu);
	s->watch_http = h;
	if (__atomic_load_n(&s->stopping, __ATOMIC_ACQUIRE))
		http_cancel(h);
	pthread_mutex_unlock(&s->watch_mu);
	return h;
}

void store_http_release(struct store *s)
{
	pthread_once(&http_once, make_key);
	struct http *h = pthread_getspecific(http_key);
	if (!h)
		return;
	/* store_stop must not reach for it any more: it is about to be freed. */
	pthread_mutex_lock(&s->watch_mu);
	if (s->watch_http == h)
		s->watch_http = NULL;
	pthread_mutex_unlock(&s->watch_mu);
	pthread_setspecific(http_key, NULL);
	http_free(h);
}

int store_open(const struct store_url *u, const struct store_params *p, struct store **out)
{
	int err;

	switch (u->kind) {
	case STORE_ETCD:
		err = store_etcd_new(u, out);
		break;
	case STORE_CONSUL:
		err = store_consul_new(u, p->token, p->dc, out);
		break;
	default:
		return -EPROTONOSUPPORT;
	}
	if (err)
		return err;
	pthread_mutex_init(&(*out)->watch_mu, NULL);
	(*out)->url = u;
	(*out)->timeout_ms = p->timeout_ms;
	return 0;
}

void store_free(struct store *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->watch_mu);
	s->ops->free(s);
}

void store_stop(struct store *s)
{
	pthread_mutex_lock(&s->watch_mu);
	__atomic_store_n(&s->stopping, true, __ATOMIC_RELEASE);
	if (s->watch_http)
		http_cancel(s->watch_http);
	pthread_mutex_unlock(&s->watch_mu);
}

const char *store_endpoint(const struct store *s, unsigned i)
{
	static __thread char buf[300];

	snprintf(buf, sizeof(buf), "http://%s", s->url->hosts[i % s->url->nhosts]);
	return buf;
}

static __thread char last_error[512];

const char *store_error(void)
{
	return last_error[0] ? last_error : "unknown error";
}

void store_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
}

int store_request_failed(const struct store *s, unsigned idx, struct http *h, int err)
{
	const char *host = s->url->hosts[idx % s->url->nhosts];

	switch (err) {
	case -ECONNREFUSED:
		store_set_error("%s at %s: connection refused", s->ops->name, host);
		break;
	case -EHOSTUNREACH:
		store_set_error("%s at %s: host not found or unreachable", s->ops->name, host);
		break;
	case -ETIMEDOUT:
		store_set_error("%s at %s: no answer within %u ms", s->ops->name, host,
				s->timeout_ms);
		break;
	case -ECANCELED:
		store_set_error("cancelled");
		break;
	default:
		store_set_error("%s at %s: %s", s->ops->name, host, http_error(h));
		break;
	}
	return err;
}

void store_txn_refused(const struct kv_op *ops, size_t n, const int64_t *current,
		       struct txn_result *res)
{
	size_t k = 0;

	res->failed = n;
	res->current = -1;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].expect == KV_ANY)
			continue;
		int64_t now = current[k++];
		bool holds = ops[i].expect == KV_ABSENT ? now == 0 : now == ops[i].expect;
		if (now >= 0 && !holds) {
			res->failed = i;
			res->current = now;
			return;
		}
	}
}

bool store_err_unreached(int err)
{
	return err == -ECONNREFUSED || err == -EHOSTUNREACH;
}

int store_status_errno(long status, int grpc_code)
{
	/* gRPC codes, as the etcd gateway reports them, say more than the status. */
	switch (grpc_code) {
	case 3: /* InvalidArgument: "request is too large", "too many operations" */
		return -EINVAL;
	case 5: /* NotFound */
		return -ENOENT;
	case 7:	 /* PermissionDenied */
	case 16: /* Unauthenticated */
		return -EACCES;
	case 8: /* ResourceExhausted: quota, or request too large */
		return -ENOSPC;
	case 9: /* FailedPrecondition */
		return -EAGAIN;
	case 11: /* OutOfRange: compacted or future revision */
		return -ESTALE;
	case 14: /* Unavailable: no leader */
		return -EAGAIN;
	default:
		break;
	}
	switch (status) {
	case 200:
		return 0;
	case 400:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return -EAGAIN;
	case 413:
		return -EFBIG;
	case 429:
	case 503:
		return -EAGAIN;
	default:
		return -EIO;
	}
}
