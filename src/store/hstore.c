/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the drivers that speak HTTP share: endpoints and failover, a handle per thread, errno. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hstore.h"

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

void hstore_init(struct hstore *hs, const struct store_ops *ops, const struct store_cfg *cfg)
{
	store_init(&hs->base, ops, cfg);
	pthread_mutex_init(&hs->watch_mu, NULL);
}

void hstore_destroy(struct hstore *hs)
{
	pthread_mutex_destroy(&hs->watch_mu);
}

struct http *hstore_http(void)
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

struct http *hstore_claim(struct hstore *hs)
{
	struct http *h = hstore_http();

	if (!h)
		return NULL;
	pthread_mutex_lock(&hs->watch_mu);
	hs->watch_http = h;
	if (__atomic_load_n(&hs->stopping, __ATOMIC_ACQUIRE))
		http_cancel(h);
	pthread_mutex_unlock(&hs->watch_mu);
	return h;
}

void hstore_stop(struct store *s)
{
	struct hstore *hs = (struct hstore *)s;

	pthread_mutex_lock(&hs->watch_mu);
	__atomic_store_n(&hs->stopping, true, __ATOMIC_RELEASE);
	if (hs->watch_http)
		http_cancel(hs->watch_http);
	pthread_mutex_unlock(&hs->watch_mu);
}

bool hstore_stopping(struct hstore *hs)
{
	return __atomic_load_n(&hs->stopping, __ATOMIC_SEQ_CST);
}

void hstore_thread_done(struct store *s)
{
	struct hstore *hs = (struct hstore *)s;

	pthread_once(&http_once, make_key);
	struct http *h = pthread_getspecific(http_key);
	if (!h)
		return;
	/* stop must not reach for it any more: it is about to be freed. */
	pthread_mutex_lock(&hs->watch_mu);
	if (hs->watch_http == h)
		hs->watch_http = NULL;
	pthread_mutex_unlock(&hs->watch_mu);
	pthread_setspecific(http_key, NULL);
	http_free(h);
}

const char *hstore_host(const struct hstore *hs, unsigned idx)
{
	return hs->base.url->hosts[idx % hs->base.url->nhosts];
}

const char *hstore_current_host(const struct hstore *hs)
{
	return hstore_host(hs, __atomic_load_n(&hs->endpoint, __ATOMIC_RELAXED));
}

void hstore_next_endpoint(struct hstore *hs, unsigned idx)
{
	__atomic_compare_exchange_n(&hs->endpoint, &idx, idx + 1, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

bool hstore_url(const struct hstore *hs, unsigned idx, const char *path, char *buf, size_t len)
{
	int n = snprintf(buf, len, "http://%s%s", hstore_host(hs, idx), path);

	return n >= 0 && (size_t)n < len;
}

int hstore_request(struct hstore *hs, struct http *h, struct http_req *rq, const char *path,
		   struct http_resp *rs, unsigned *idx)
{
	char url[8192];
	int err = -EIO;

	for (size_t attempt = 0; attempt < hs->base.url->nhosts; attempt++) {
		*idx = __atomic_load_n(&hs->endpoint, __ATOMIC_RELAXED);
		if (!hstore_url(hs, *idx, path, url, sizeof(url))) {
			store_set_error(&hs->base, "key too long for a %s URL",
					hs->base.driver->scheme);
			return -ENAMETOOLONG;
		}
		rq->url = url;
		err = http_do(h, rq, rs);
		if (err)
			hstore_failed(hs, *idx, h, err);
		if (!hstore_unreached(err))
			break;
		hstore_next_endpoint(hs, *idx);
	}
	rq->url = NULL;
	return err;
}

int hstore_failed(struct hstore *hs, unsigned idx, struct http *h, int err)
{
	struct store *s = &hs->base;
	const char *host = hstore_host(hs, idx), *name = s->driver->scheme;

	switch (err) {
	case -ECONNREFUSED:
		store_set_error(s, "%s at %s: connection refused", name, host);
		break;
	case -EHOSTUNREACH:
		store_set_error(s, "%s at %s: host not found or unreachable", name, host);
		break;
	case -ETIMEDOUT:
		store_set_error(s, "%s at %s: no answer within %u ms", name, host, s->timeout_ms);
		break;
	case -ECANCELED:
		store_set_error(s, "cancelled");
		break;
	default:
		store_set_error(s, "%s at %s: %s", name, host, http_error(h));
		break;
	}
	return err;
}

bool hstore_unreached(int err)
{
	return err == -ECONNREFUSED || err == -EHOSTUNREACH;
}

int hstore_status_errno(long status, int grpc_code)
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
