/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the drivers that speak HTTP share: endpoints and failover, a handle per thread, errno. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hstore.h"
#include "log.h"

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

/* A copy of TLS file option name, checked readable; 0 or -EINVAL/-ENOMEM with err. */
static int tls_file(const struct store_cfg *cfg, const char *name, const char *what, char **out,
		    char *err, size_t errlen)
{
	const char *v = store_cfg_opt(cfg, name);

	*out = NULL;
	if (!v)
		return 0;
	if (!*v) {
		snprintf(err, errlen, "%s needs a file name", store_cfg_source(cfg, name));
		return -EINVAL;
	}
	if (access(v, R_OK)) {
		snprintf(err, errlen, "cannot read the %s %s (%s): %s", what, v,
			 store_cfg_source(cfg, name), strerror(errno));
		return -EINVAL;
	}
	*out = strdup(v);
	if (!*out) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* -o check_interval=SECONDS: 0 turns the checks off. */
static int parse_check_interval(struct hstore *hs, const struct store_cfg *cfg, char *err,
				size_t errlen)
{
	const char *v = store_cfg_opt(cfg, "check_interval");
	char *end;

	hs->check_ms = HSTORE_CHECK_MS;
	if (!v)
		return 0;
	errno = 0;
	double sec = strtod(v, &end);
	if (errno || end == v || *end || sec < 0 || sec > 3600) {
		snprintf(err, errlen, "bad -o check_interval '%s' (seconds, 0 to 3600)", v);
		return -EINVAL;
	}
	hs->check_ms = (unsigned)(sec * 1000);
	if (sec > 0 && hs->check_ms < 10)
		hs->check_ms = 10;
	return 0;
}

int hstore_init(struct hstore *hs, const struct store_ops *ops, const struct store_cfg *cfg,
		char *err, size_t errlen)
{
	static const char *const tls_opts[] = {"cacert", "cert", "key", "insecure",
					       "tls_server_name"};
	char *files[3];
	int rc;

	store_init(&hs->base, ops, cfg);
	pthread_mutex_init(&hs->watch_mu, NULL);
	rc = parse_check_interval(hs, cfg, err, errlen);
	if (rc)
		return rc;
	hs->tls = cfg->url.tls;
	if (!hs->tls) {
		/* Only an explicit -o: the environment may be set up for other tools' TLS stores.
		 */
		for (size_t i = 0; i < sizeof(tls_opts) / sizeof(tls_opts[0]); i++) {
			for (size_t k = 0; k < cfg->nopts; k++) {
				size_t n = strlen(tls_opts[i]);
				if (strncmp(cfg->opts[k], tls_opts[i], n) == 0 &&
				    (!cfg->opts[k][n] || cfg->opts[k][n] == '=')) {
					snprintf(
						err, errlen,
						"-o %s is for TLS, but %s is plain HTTP: use %s://",
						tls_opts[i], cfg->url.text,
						cfg->url.driver->tls_scheme);
					return -EINVAL;
				}
			}
		}
		return 0;
	}
	files[0] = files[1] = files[2] = NULL;
	if ((rc = tls_file(cfg, "cacert", "CA file", &files[0], err, errlen)) ||
	    (rc = tls_file(cfg, "cert", "client certificate", &files[1], err, errlen)) ||
	    (rc = tls_file(cfg, "key", "client key", &files[2], err, errlen))) {
		for (int i = 0; i < 3; i++)
			free(files[i]);
		return rc;
	}
	hs->tls_files.cacert = files[0];
	hs->tls_files.cert = files[1];
	hs->tls_files.key = files[2];
	if (files[2] && !files[1]) {
		snprintf(err, errlen, "a client key (%s) needs its certificate (-o cert)",
			 store_cfg_source(cfg, "key"));
		return -EINVAL;
	}
	hs->tls_files.insecure = store_cfg_flag(cfg, "insecure");
	if (hs->tls_files.insecure)
		log_warn("%s: not verifying the certificate of %s (%s): anyone on the path can "
			 "pose as the store",
			 store_cfg_source(cfg, "insecure"), cfg->url.text, cfg->url.driver->scheme);
	const char *name = store_cfg_opt(cfg, "tls_server_name");
	if (name && *name) {
		/* consul writes it as host:port; the port is the endpoint's */
		size_t n = strcspn(name, ":");
		if (name[0] == '[')
			n = strcspn(name, "]") + 1;
		hs->server_name = strndup(name, n);
		if (!hs->server_name) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	return 0;
}

void hstore_destroy(struct hstore *hs)
{
	pthread_mutex_destroy(&hs->watch_mu);
	free((char *)hs->tls_files.cacert);
	free((char *)hs->tls_files.cert);
	free((char *)hs->tls_files.key);
	free(hs->server_name);
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

long hstore_answer_ms(const struct hstore *hs)
{
	return (long)hs->base.timeout_ms * HSTORE_ANSWER_FACTOR;
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

char *hstore_endpoint(struct store *s)
{
	return strdup(hstore_current_host((struct hstore *)s));
}

const char *hstore_current_host(const struct hstore *hs)
{
	return hstore_host(hs, __atomic_load_n(&hs->endpoint, __ATOMIC_RELAXED));
}

void hstore_next_endpoint(struct hstore *hs, unsigned idx)
{
	unsigned was = idx;

	if (__atomic_compare_exchange_n(&hs->endpoint, &idx, idx + 1, false, __ATOMIC_RELAXED,
					__ATOMIC_RELAXED) &&
	    hs->base.url->nhosts > 1)
		log_warn("%s: leaving %s for %s (%s)", hs->base.driver->scheme,
			 hstore_host(hs, was), hstore_host(hs, was + 1), store_error(&hs->base));
}

bool hstore_aim(const struct hstore *hs, unsigned idx, const char *path, struct http_req *rq,
		struct hstore_target *t)
{
	const char *host = hstore_host(hs, idx);
	const char *scheme = hs->tls ? "https" : "http";
	int n;

	rq->tls = hs->tls ? &hs->tls_files : NULL;
	rq->connect_to = NULL;
	if (hs->server_name) {
		/* The URL names what the certificate says; curl connects to the endpoint. */
		const char *port = strrchr(host, ':');
		n = snprintf(t->url, sizeof(t->url), "%s://%s%s%s", scheme, hs->server_name, port,
			     path);
		int c = snprintf(t->connect_to, sizeof(t->connect_to), "%s%s:%s", hs->server_name,
				 port, host);
		if (c < 0 || (size_t)c >= sizeof(t->connect_to))
			return false;
		rq->connect_to = t->connect_to;
	} else {
		n = snprintf(t->url, sizeof(t->url), "%s://%s%s", scheme, host, path);
	}
	rq->url = t->url;
	return n >= 0 && (size_t)n < sizeof(t->url);
}

int hstore_request(struct hstore *hs, struct http *h, struct http_req *rq, const char *path,
		   struct http_resp *rs, unsigned *idx)
{
	struct hstore_target *t = malloc(sizeof(*t));
	int err = -EIO;

	if (!t)
		return -ENOMEM;
	for (size_t attempt = 0; attempt < hs->base.url->nhosts; attempt++) {
		*idx = __atomic_load_n(&hs->endpoint, __ATOMIC_RELAXED);
		if (!hstore_aim(hs, *idx, path, rq, t)) {
			store_set_error(&hs->base, "key too long for a %s URL",
					hs->base.driver->scheme);
			err = -ENAMETOOLONG;
			break;
		}
		err = http_do(h, rq, rs);
		if (err)
			hstore_failed(hs, *idx, h, err);
		if (!hstore_unreached(err) &&
		    !(rq->idempotent && (err == -ETIMEDOUT || err == -EIO)))
			break;
		hstore_next_endpoint(hs, *idx);
	}
	rq->url = NULL;
	rq->connect_to = NULL;
	free(t);
	return err;
}

/* curl's reason without the URL it starts with (the log line names the host already). */
static const char *tls_reason(const struct http *h)
{
	const char *r = http_error(h), *sep = strstr(r, ": ");

	return strncmp(r, "http", 4) == 0 && sep ? sep + 2 : r;
}

/* What to do about a TLS failure, from OpenSSL's words. */
static const char *tls_hint(const struct hstore *hs, const char *why)
{
	if (strstr(why, "alert certificate required") || strstr(why, "alert bad certificate") ||
	    strstr(why, "alert handshake failure") || strstr(why, "alert certificate unknown") ||
	    strstr(why, "alert unknown ca"))
		return hs->tls_files.cert
			       ? " (the server refused this host's client certificate: is it "
				 "signed by a CA the server trusts?)"
			       : " (the server requires a client certificate: -o cert= and key=)";
	if (strstr(why, "expired"))
		return " (the server's certificate has expired)";
	if (strstr(why, "subject name") || strstr(why, "does not match") ||
	    strstr(why, "no alternative certificate"))
		return " (the server's certificate does not name this host: use a name or "
		       "address from its subjectAltName, or -o tls_server_name)";
	if (strstr(why, "local issuer") || strstr(why, "self-signed") ||
	    strstr(why, "self signed") || strstr(why, "unknown ca"))
		return hs->tls_files.cacert ? " (the server's certificate is not signed by the CA "
					      "in -o cacert)"
					    : " (the server's certificate is not signed by a CA "
					      "this host trusts: -o cacert=)";
	return "";
}

/*
 * A TLS 1.3 server that wants a client certificate and got none ends the
 * connection after the handshake; curl then reports a reset or a failed
 * send, not a TLS error.
 */
static const char *no_client_cert(const struct hstore *hs, const char *why)
{
	if (!hs->tls)
		return "";
	if (!strstr(why, "reset by peer") && !strstr(why, "getpeername") &&
	    !strstr(why, "Send failure") && !strstr(why, "Recv failure") &&
	    !strstr(why, "SSL_read") && !strstr(why, "SSL_write") && !strstr(why, "Broken pipe"))
		return "";
	return hs->tls_files.cert
		       ? " (a server that does not accept this host's client certificate ends TLS "
			 "connections like this: is -o cert signed by a CA the server trusts?)"
		       : " (a server that requires a client certificate ends TLS connections "
			 "without one like this: -o cert= and key=)";
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
		/* Which limit ran out (connect, handshake, silence, the whole answer) is the news.
		 */
		if (http_error(h)[0])
			store_set_error(s, "%s at %s: %s", name, host, tls_reason(h));
		else
			store_set_error(s, "%s at %s: no answer within %u ms", name, host,
					s->timeout_ms);
		break;
	case -ECANCELED:
		store_set_error(s, "cancelled");
		break;
	case -EHOSTDOWN:
		break; /* a check failed, and said why */
	case -EPROTO:
		store_set_error(s, "%s at %s: TLS: %s%s", name, host, tls_reason(h),
				tls_hint(hs, http_error(h)));
		break;
	case -ENOKEY:
		store_set_error(s, "%s at %s: TLS files of this host: %s", name, host,
				tls_reason(h));
		break;
	default:
		store_set_error(s, "%s at %s: %s%s", name, host, http_error(h),
				no_client_cert(hs, http_error(h)));
		break;
	}
	return err;
}

bool hstore_unreached(int err)
{
	/* A TLS handshake that failed sent nothing: another member may have a good certificate. */
	return err == -ECONNREFUSED || err == -EHOSTUNREACH || err == -EPROTO;
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
