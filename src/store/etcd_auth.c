/* SPDX-License-Identifier: GPL-2.0-or-later */
/* etcd authentication through the gateway: user, password, and the token it gives. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "etcd_int.h"
#include "json.h"
#include "log.h"

#define PASSWORD_MAX 1024

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Take a secret out of the environment, so that /proc/PID/environ no longer shows it. */
static void wipe_env(const char *name)
{
	char *v = getenv(name);

	if (v) {
		explicit_bzero(v, strlen(v));
		unsetenv(name);
	}
}

int etcd_auth_init(struct etcd *e, const struct store_cfg *cfg, char *err, size_t errlen)
{
	struct etcd_auth *a = &e->auth;
	const char *user = store_cfg_opt(cfg, "username");
	const char *file = store_cfg_opt(cfg, "password_file");
	const char *envpw = getenv("ETCDCTL_PASSWORD");
	const char *colon = NULL;
	int rc = -EINVAL;

	pthread_mutex_init(&a->mu, NULL);
	if (!user && !file)
		return 0;
	if (!user || !*user) {
		snprintf(err, errlen, "-o password_file needs -o username (or ETCDCTL_USER)");
		goto out;
	}
	colon = strchr(user, ':');
	if (colon && strcmp(store_cfg_source(cfg, "username"), "-o username") == 0) {
		snprintf(err, errlen,
			 "-o username must not carry a password (ps would show it): "
			 "use -o password_file or ETCDCTL_PASSWORD");
		goto out;
	}
	a->user = colon ? strndup(user, colon - user) : strdup(user);
	if (file && *file) {
		struct stat st;
		a->password_file = strdup(file);
		if (stat(file, &st) || access(file, R_OK)) {
			snprintf(err, errlen, "cannot read the password file %s: %s", file,
				 strerror(errno));
			goto out;
		}
		if (st.st_mode & 077)
			log_warn("the password file %s can be read by others (mode %03o): "
				 "chmod 600 it",
				 file, (unsigned)(st.st_mode & 0777));
	} else if (file) {
		snprintf(err, errlen, "-o password_file needs a file name");
		goto out;
	} else if (colon) {
		a->password = strdup(colon + 1);
	} else if (envpw) {
		a->password = strdup(envpw);
	} else {
		snprintf(err, errlen,
			 "etcd user %s needs a password: -o password_file=FILE or ETCDCTL_PASSWORD",
			 a->user ? a->user : "");
		goto out;
	}
	if (!a->user || (file && !a->password_file) || (!file && !a->password)) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto out;
	}
	rc = 0;
out:
	/* Whatever happens, the environment keeps no password. */
	wipe_env("ETCDCTL_PASSWORD");
	if (colon)
		wipe_env("ETCDCTL_USER");
	return rc;
}

void etcd_auth_free(struct etcd *e)
{
	struct etcd_auth *a = &e->auth;

	free(a->user);
	free(a->password_file);
	wipe_free(a->password);
	wipe_free(a->header);
	pthread_mutex_destroy(&a->mu);
}

/* The password into buf (wiped by the caller); 0 or -EACCES with the reason recorded. */
static int password(struct etcd *e, char *buf, size_t len)
{
	struct etcd_auth *a = &e->auth;

	if (a->password) {
		if (strlen(a->password) >= len)
			goto too_long;
		strcpy(buf, a->password);
		return 0;
	}
	int fd = open(a->password_file, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		store_set_error(&e->hs.base, "cannot read the password file %s: %s",
				a->password_file, strerror(errno));
		return -EACCES;
	}
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0 || (size_t)n == len - 1) {
		explicit_bzero(buf, len);
		if (n < 0) {
			store_set_error(&e->hs.base, "cannot read the password file %s",
					a->password_file);
			return -EACCES;
		}
		goto too_long;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (n == 0 || strchr(buf, '\n')) {
		explicit_bzero(buf, len);
		store_set_error(&e->hs.base, "the password file %s does not hold one password",
				a->password_file);
		return -EACCES;
	}
	return 0;
too_long:
	store_set_error(&e->hs.base, "the password of etcd user %s is longer than %d bytes",
			a->user, PASSWORD_MAX - 1);
	return -EACCES;
}

/* Ask for a new token, unless one newer than generation seen came meanwhile. */
static int authenticate(struct etcd *e, struct http *h, uint64_t seen)
{
	struct etcd_auth *a = &e->auth;
	static const char *const json[] = {"Content-Type: application/json", NULL};
	char pw[PASSWORD_MAX], body[3 * PASSWORD_MAX];
	struct http_resp rs;
	unsigned idx;
	int err;

	err = password(e, pw, sizeof(pw));
	if (err)
		return err;
	ssize_t blen = json_etcd_auth_req(a->user, pw, body, sizeof(body));
	explicit_bzero(pw, sizeof(pw));
	if (blen < 0) {
		store_set_error(&e->hs.base, "the etcd user name or password is too long");
		return -EACCES;
	}
	struct http_req rq = {
		.method = "POST",
		.body = body,
		.body_len = (size_t)blen,
		.headers = json,
		.timeout_ms = e->hs.base.timeout_ms,
		.max_body = 1 << 16,
	};
	err = hstore_request(&e->hs, h, &rq, "/v3/auth/authenticate", &rs, &idx);
	explicit_bzero(body, sizeof(body));
	if (err)
		return err;
	const char *host = hstore_host(&e->hs, idx);
	char *token = NULL;
	if (rs.status == 200) {
		struct json_err jerr;
		token = json_etcd_auth_resp(rs.body, rs.len, &jerr);
		if (!token) {
			store_set_error(&e->hs.base, "etcd at %s: %s", host, jerr.msg);
			err = -EIO;
		}
	} else {
		int code;
		char msg[200];
		bool known = json_etcd_error(rs.body, rs.len, &code, msg, sizeof(msg));
		if (known && strstr(msg, "authentication is not enabled")) {
			/* Nothing to prove: go on without a token (and say so once). */
			log_warn("etcd at %s has authentication off: user %s is not needed", host,
				 a->user);
			pthread_mutex_lock(&a->mu);
			a->off = true;
			pthread_mutex_unlock(&a->mu);
			http_resp_free(&rs);
			return 0;
		}
		if (known &&
		    (strstr(msg, "authentication failed") || strstr(msg, "invalid user"))) {
			store_set_error(&e->hs.base,
					"etcd at %s: authentication failed for user %s: wrong "
					"user name or password",
					host, a->user);
			err = -EACCES;
		} else {
			err = etcd_reply_errno(e, idx, "authentication", &rs);
		}
	}
	http_resp_free(&rs);
	if (!err && !token)
		err = -EACCES; /* an error answer etcd gave without saying why */
	if (err)
		return err;
	char *hdr = NULL;
	if (asprintf(&hdr, "Authorization: %s", token) < 0)
		hdr = NULL;
	wipe_free(token);
	if (!hdr)
		return -ENOMEM;
	pthread_mutex_lock(&a->mu);
	if (a->gen == seen) {
		wipe_free(a->header);
		a->header = hdr;
		a->gen++;
		hdr = NULL;
	}
	pthread_mutex_unlock(&a->mu);
	wipe_free(hdr);
	return 0;
}

int etcd_headers(struct etcd *e, struct http *h, struct etcd_headers *hd)
{
	struct etcd_auth *a = &e->auth;
	size_t n = 0;

	hd->v[n++] = "Content-Type: application/json";
	for (int attempt = 0; attempt < 2; attempt++) {
		pthread_mutex_lock(&a->mu);
		bool need = a->user && !a->off;
		bool have = a->header && strlen(a->header) < sizeof(hd->auth);
		if (have)
			strcpy(hd->auth, a->header);
		hd->gen = a->gen;
		pthread_mutex_unlock(&a->mu);
		if (!need)
			break;
		if (have) {
			hd->v[n++] = hd->auth;
			break;
		}
		if (attempt == 1) {
			store_set_error(&e->hs.base,
					"etcd gave a token that does not fit a header");
			return -EACCES;
		}
		int err = authenticate(e, h, hd->gen);
		if (err)
			return err;
	}
	/* A member cut off from its leader answers "no leader" at once instead of waiting. */
	hd->v[n++] = "Grpc-Metadata-Hasleader: true";
	hd->v[n] = NULL;
	return 0;
}

void etcd_token_drop(struct etcd *e, uint64_t gen)
{
	struct etcd_auth *a = &e->auth;

	pthread_mutex_lock(&a->mu);
	if (a->gen == gen && a->header) {
		wipe_free(a->header);
		a->header = NULL;
	}
	pthread_mutex_unlock(&a->mu);
}

bool etcd_token_rejected(struct etcd *e, uint64_t gen, long status, const char *body, size_t len)
{
	int code;
	char msg[200];

	pthread_mutex_lock(&e->auth.mu);
	bool auth = e->auth.user && !e->auth.off;
	pthread_mutex_unlock(&e->auth.mu);
	if (!auth || status == 200)
		return false;
	bool known = json_etcd_error(body, len, &code, msg, sizeof(msg));
	/* Expired (401, Unauthenticated), or the roles changed since the token was made. */
	if (status == 401 ||
	    (known && (code == 16 || strstr(msg, "invalid auth token") ||
		       strstr(msg, "auth store is old") || strstr(msg, "user name is empty")))) {
		etcd_token_drop(e, gen);
		return true;
	}
	return false;
}
