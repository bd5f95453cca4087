/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Store URLs: SCHEME://HOST[:PORT][,HOST[:PORT]...][/PREFIX], the scheme naming a driver. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store.h"

/* "etcd://, etcds://, consul:// or consuls://", from the drivers built in, for messages. */
static const char *schemes_text(void)
{
	static __thread char buf[256];
	const char *names[32];
	size_t n = 0, len = 0;

	for (size_t i = 0; store_drivers[i] && n + 2 <= 32; i++) {
		names[n++] = store_drivers[i]->scheme;
		if (store_drivers[i]->tls_scheme)
			names[n++] = store_drivers[i]->tls_scheme;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < n && len < sizeof(buf); i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s://",
				i == 0	    ? ""
				: i + 1 < n ? ", "
					    : " or ",
				names[i]);
	return buf;
}

void store_url_free(struct store_url *u)
{
	for (size_t i = 0; i < u->nhosts; i++)
		free(u->hosts[i]);
	free(u->hosts);
	free(u->prefix);
	free(u->text);
	memset(u, 0, sizeof(*u));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool valid_port(const char *p, size_t n)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

/* One "host[:port]" of the host list, normalized to "host:port". */
static int parse_host(const char *h, size_t n, const char *defport, char **out, char *err,
		      size_t errlen)
{
	const char *host = h, *port = NULL;
	size_t hlen = n, plen = 0;

	if (n == 0) {
		snprintf(err, errlen, "empty host in the host list");
		return -EINVAL;
	}
	if (h[0] == '[') {
		const char *close = memchr(h, ']', n);
		if (!close || close == h + 1) {
			snprintf(err, errlen, "bad IPv6 address '%.*s'", (int)n, h);
			return -EINVAL;
		}
		hlen = close - h + 1;
		if (hlen < n) {
			if (h[hlen] != ':') {
				snprintf(err, errlen, "bad host '%.*s'", (int)n, h);
				return -EINVAL;
			}
			port = h + hlen + 1;
			plen = n - hlen - 1;
		}
	} else {
		const char *colon = memchr(h, ':', n);
		if (colon) {
			hlen = colon - h;
			port = colon + 1;
			plen = n - hlen - 1;
		}
	}
	if (hlen == 0) {
		snprintf(err, errlen, "empty host name in '%.*s'", (int)n, h);
		return -EINVAL;
	}
	for (size_t i = 0; i < hlen; i++) {
		char c = host[i];
		if (c <= ' ' || c == '/' || c == '?' || c == '#' || c == '@' || c == '%' ||
		    (c == ':' && host[0] != '[')) {
			snprintf(err, errlen, "bad host name '%.*s'", (int)hlen, host);
			return -EINVAL;
		}
	}
	if (port && !valid_port(port, plen)) {
		snprintf(err, errlen, "bad port '%.*s' (expected 1-65535)", (int)plen, port);
		return -EINVAL;
	}
	if (!port) {
		port = defport;
		plen = strlen(defport);
	}
	if (asprintf(out, "%.*s:%.*s", (int)hlen, host, (int)plen, port) < 0)
		return -ENOMEM;
	return 0;
}

/* Decode %XX escapes of the URL path into the raw prefix. */
static int decode_path(const char *p, size_t n, char **out, size_t *outlen, char *err,
		       size_t errlen)
{
	char *o = malloc(n + 2);
	size_t len = 0;

	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '%') {
			o[len++] = p[i];
			continue;
		}
		if (i + 2 >= n) {
			free(o);
			snprintf(err, errlen, "bad %%-escape at the end of the prefix");
			return -EINVAL;
		}
		int a = hexval(p[i + 1]), b = hexval(p[i + 2]);
		if (a < 0 || b < 0) {
			free(o);
			snprintf(err, errlen, "bad %%-escape '%.3s' in the prefix", p + i);
			return -EINVAL;
		}
		o[len++] = (char)(a << 4 | b);
		i += 2;
	}
	/* A non-empty prefix names a directory: it always ends in '/'. */
	if (len > 0 && o[len - 1] != '/')
		o[len++] = '/';
	o[len] = '\0';
	*out = o;
	*outlen = len;
	return 0;
}

/* Parse the comma-separated host list a[0..alen) into u->hosts; where names the list for messages.
 */
static int parse_hosts(struct store_url *u, const char *a, size_t alen, bool from_env,
		       const char *where, char *err, size_t errlen)
{
	size_t n = 1;
	int schemes = 0; /* 1: some http://, 2: some https:// */

	for (size_t i = 0; i < alen; i++)
		n += a[i] == ',';
	u->hosts = calloc(n, sizeof(*u->hosts));
	if (!u->hosts)
		return -ENOMEM;
	for (const char *h = a; h < a + alen;) {
		const char *comma = memchr(h, ',', a + alen - h);
		size_t hl = comma ? (size_t)(comma - h) : (size_t)(a + alen - h);
		const char *start = h;
		char reason[160];
		if (from_env) {
			/* etcdctl and consul write endpoints as URLs. */
			if (hl > 8 && strncmp(h, "https://", 8) == 0) {
				schemes |= 2;
				h += 8, hl -= 8;
			} else if (hl > 7 && strncmp(h, "http://", 7) == 0) {
				schemes |= 1;
				h += 7, hl -= 7;
			} else if (memmem(h, hl, "://", 3)) {
				snprintf(err, errlen, "%s: unsupported endpoint '%.*s'", where,
					 (int)hl, h);
				return -EINVAL;
			}
			while (hl && h[hl - 1] == '/')
				hl--;
		}
		int rc = parse_host(h, hl, u->driver->default_port, &u->hosts[u->nhosts], reason,
				    sizeof(reason));
		if (rc == -ENOMEM)
			return rc;
		if (rc) {
			snprintf(err, errlen, "%s: %s", where, reason);
			return rc;
		}
		u->nhosts++;
		h = start + (comma ? (size_t)(comma - start) + 1 : (size_t)(a + alen - start));
		if (comma && h == a + alen) {
			snprintf(err, errlen, "%s: empty host in the host list", where);
			return -EINVAL;
		}
	}
	if (schemes == 3) {
		snprintf(err, errlen, "%s mixes http:// and https:// endpoints", where);
		return -EINVAL;
	}
	if (schemes == 2)
		u->tls = true;
	return 0;
}

/* Whether the driver's TLS variable says true (CONSUL_HTTP_SSL=true). */
static bool env_true(const char *name)
{
	const char *v = name ? getenv(name) : NULL;

	return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcmp(v, "t") == 0 ||
		     strcmp(v, "T") == 0);
}

int store_url_parse(const char *text, struct store_url *u, char *err, size_t errlen)
{
	const char *sep = strstr(text, "://");
	const struct store_driver *d = NULL;
	char where[300];
	int rc;

	memset(u, 0, sizeof(*u));
	if (!sep) {
		snprintf(err, errlen,
			 "bad store URL '%s': expected %s followed by HOST:PORT/PREFIX", text,
			 schemes_text());
		return -EINVAL;
	}
	size_t sl = (size_t)(sep - text);
	for (size_t i = 0; store_drivers[i] && !d; i++) {
		const struct store_driver *c = store_drivers[i];
		if ((strlen(c->scheme) == sl && strncmp(text, c->scheme, sl) == 0) ||
		    (c->alias && strlen(c->alias) == sl && strncmp(text, c->alias, sl) == 0)) {
			d = c;
		} else if (c->tls_scheme && strlen(c->tls_scheme) == sl &&
			   strncmp(text, c->tls_scheme, sl) == 0) {
			d = c;
			u->tls = true;
		}
	}
	if (!d) {
		snprintf(err, errlen, "unsupported store '%.*s' in '%s': expected %s", (int)sl,
			 text, text, schemes_text());
		return -EINVAL;
	}
	u->driver = d;
	const char *auth = sep + 3;
	const char *path = strchr(auth, '/');
	size_t alen = path ? (size_t)(path - auth) : strlen(auth);
	if (alen > 0) {
		snprintf(where, sizeof(where), "bad store URL '%s'", text);
		rc = parse_hosts(u, auth, alen, false, where, err, errlen);
	} else {
		const char *env = d->endpoints_env ? getenv(d->endpoints_env) : NULL;
		if (!env || !*env) {
			snprintf(err, errlen, "bad store URL '%s': no host given%s%s%s", text,
				 d->endpoints_env ? " (and " : "",
				 d->endpoints_env ? d->endpoints_env : "",
				 d->endpoints_env ? " is not set)" : "");
			return -EINVAL;
		}
		snprintf(where, sizeof(where), "%s='%.200s'", d->endpoints_env, env);
		rc = parse_hosts(u, env, strlen(env), true, where, err, errlen);
		if (!rc && env_true(d->tls_env))
			u->tls = true;
	}
	if (rc == -ENOMEM)
		goto nomem;
	if (rc)
		goto fail;
	if (path) {
		char reason[160];
		rc = decode_path(path + 1, strlen(path + 1), &u->prefix, &u->plen, reason,
				 sizeof(reason));
		if (rc == -ENOMEM)
			goto nomem;
		if (rc) {
			snprintf(err, errlen, "bad store URL '%s': %s", text, reason);
			goto fail;
		}
	} else {
		u->prefix = strdup("");
		if (!u->prefix)
			goto nomem;
	}
	u->text = strdup(text);
	if (!u->text)
		goto nomem;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	store_url_free(u);
	return -EINVAL;
}
