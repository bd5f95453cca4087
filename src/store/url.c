/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Store URLs: SCHEME://HOST[:PORT][,HOST[:PORT]...][/PREFIX], the scheme naming a driver. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* "etcd:// or consul://", from the drivers built in, for messages. */
static const char *schemes_text(void)
{
	static __thread char buf[256];
	size_t len = 0;

	buf[0] = '\0';
	for (size_t i = 0; store_drivers[i] && len < sizeof(buf); i++)
		len += snprintf(buf + len, sizeof(buf) - len, "%s%s://",
				i == 0		       ? ""
				: store_drivers[i + 1] ? ", "
						       : " or ",
				store_drivers[i]->scheme);
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

int store_url_parse(const char *text, struct store_url *u, char *err, size_t errlen)
{
	const char *sep = strstr(text, "://");
	size_t si;
	int rc;

	memset(u, 0, sizeof(*u));
	if (!sep) {
		snprintf(err, errlen,
			 "bad store URL '%s': expected %s followed by HOST:PORT/PREFIX", text,
			 schemes_text());
		return -EINVAL;
	}
	for (si = 0; store_drivers[si]; si++)
		if (strlen(store_drivers[si]->scheme) == (size_t)(sep - text) &&
		    strncmp(text, store_drivers[si]->scheme, sep - text) == 0)
			break;
	if (!store_drivers[si]) {
		snprintf(err, errlen, "unsupported store '%.*s' in '%s': expected %s",
			 (int)(sep - text), text, text, schemes_text());
		return -EINVAL;
	}
	u->driver = store_drivers[si];
	const char *auth = sep + 3;
	const char *path = strchr(auth, '/');
	size_t alen = path ? (size_t)(path - auth) : strlen(auth);
	if (alen == 0) {
		snprintf(err, errlen, "bad store URL '%s': no host given", text);
		return -EINVAL;
	}
	/* Count hosts, then parse each. */
	size_t n = 1;
	for (size_t i = 0; i < alen; i++)
		n += auth[i] == ',';
	u->hosts = calloc(n, sizeof(*u->hosts));
	if (!u->hosts)
		goto nomem;
	for (const char *h = auth; h < auth + alen;) {
		const char *comma = memchr(h, ',', auth + alen - h);
		size_t hl = comma ? (size_t)(comma - h) : (size_t)(auth + alen - h);
		char reason[160];
		rc = parse_host(h, hl, store_drivers[si]->default_port, &u->hosts[u->nhosts],
				reason, sizeof(reason));
		if (rc == -ENOMEM)
			goto nomem;
		if (rc) {
			snprintf(err, errlen, "bad store URL '%s': %s", text, reason);
			goto fail;
		}
		u->nhosts++;
		h += hl + (comma ? 1 : 0);
		if (comma && h == auth + alen) {
			snprintf(err, errlen, "bad store URL '%s': empty host in the host list",
				 text);
			goto fail;
		}
	}
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
