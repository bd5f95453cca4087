/* SPDX-License-Identifier: GPL-2.0-or-later */
/* HTTP over libcurl: the only place that speaks curl. One handle per thread. */
#ifndef CFGFS_HTTP_H
#define CFGFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http;

/* Process-wide setup; call before any thread starts. 0 or -EIO. */
int http_global_init(void);
void http_global_cleanup(void);

/* A handle for the calling thread (never share one between threads). NULL on ENOMEM. */
struct http *http_new(void);
void http_free(struct http *h);

/*
 * TLS for https:// URLs. The files are read for each new connection, so
 * files replaced on disk (certificate rotation) take effect without a
 * restart.
 */
struct http_tls {
	const char *cacert;	/* CA bundle; NULL: the system's */
	const char *cert, *key; /* client certificate and key; NULL: none */
	bool insecure;		/* do not verify the server (-o insecure) */
};

struct http_req {
	const char *method; /* "GET", "POST", "PUT", "DELETE" */
	const char *url;
	const void *body; /* may be NULL */
	size_t body_len;
	const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
	const char *capture_header; /* a response header to keep (e.g. "X-Consul-Index") */
	long connect_timeout_ms;
	long timeout_ms; /* whole request, the last byte of the answer included; 0: none */
	long stall_ms;	 /* give up after this long without data; 0: never */
	size_t max_body; /* a larger response fails with -EMSGSIZE */
	/* Sending it twice does no harm: after a timeout another endpoint may get it. */
	bool idempotent;
	/*
	 * It changes the store: sent on a new connection only. On a reused
	 * connection found dead, libcurl sends a request again by itself, on a
	 * new one; the first copy may have been applied (a server killed after
	 * taking it), and a refused second connection then reads as "never
	 * sent". On a new connection, refused is refused.
	 */
	bool changes;
	const struct http_tls *tls; /* for https:// URLs; NULL: defaults */
	/* "NAME:PORT:HOST:PORT": connect to HOST:PORT for the URL's NAME:PORT; may be NULL */
	const char *connect_to;
	/*
	 * Called with tick_ctx every tick_ms while the request runs; a non-zero
	 * return ends the transfer and is returned. For checking, from the
	 * waiting thread, that a server holding a long request is still alive.
	 */
	int (*tick)(void *ctx);
	void *tick_ctx;
	long tick_ms;
};

struct http_resp {
	long status;
	char *body; /* malloc'd, NUL-terminated */
	size_t len;
	char *header; /* value of capture_header, malloc'd, or NULL */
};

void http_resp_free(struct http_resp *r);

/*
 * http_resp_free for an answer h gave and nothing else since: h keeps its
 * buffer for the next answer. A watch that reads listings of 15 MB again
 * and again then neither copies them as the buffer grows nor takes a page
 * fault for every 4 KiB of fresh memory.
 */
void http_resp_recycle(struct http *h, struct http_resp *r);

/*
 * Perform a request and collect the response. Returns 0 when a response
 * arrived (whatever its status), else a negative errno: -ECONNREFUSED or
 * -EHOSTUNREACH when nothing was sent, -EPROTO when TLS failed with the
 * server (its certificate was not accepted, or it refused ours: nothing was
 * sent), -ENOKEY when this host's TLS files could not be used, -ETIMEDOUT,
 * -EMSGSIZE, -ECANCELED (http_cancel), -EIO. The reason stays in
 * http_error(h).
 */
int http_do(struct http *h, const struct http_req *rq, struct http_resp *rs);

/*
 * Called with each chunk of a streamed response body. Returning non-zero
 * ends the transfer and makes http_stream return that value.
 */
typedef int (*http_data_fn)(void *ctx, const char *p, size_t n);

/*
 * Perform a request whose response is a long-lived stream; on_data sees the
 * body as it arrives. *status receives the HTTP status. Returns 0 when the
 * server ended the response, on_data's value, or an errno as http_do.
 */
int http_stream(struct http *h, const struct http_req *rq, http_data_fn on_data, void *ctx,
		long *status);

/* From any thread: make the transfer running on h (or the next one) return -ECANCELED. */
void http_cancel(struct http *h);

/* Forget an earlier http_cancel, so the handle can be used again. */
void http_reset_cancel(struct http *h);

/* The reason of the last failure on h, as one line of text. */
const char *http_error(const struct http *h);

#endif
