/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What all stores share: opening one by its URL's scheme, options, recorded errors. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

void store_cfg_free(struct store_cfg *c)
{
	store_url_free(&c->url);
	for (size_t i = 0; i < c->nopts; i++) {
		/* Options may name secrets' files; wipe them all alike. */
		memset(c->opts[i], 0, strlen(c->opts[i]));
		free(c->opts[i]);
	}
	free(c->opts);
	c->opts = NULL;
	c->nopts = 0;
}

/* Whether driver d takes the option called name (len bytes). */
static bool takes(const struct store_driver *d, const char *name, size_t len)
{
	for (const char *const *o = d->options; o && *o; o++)
		if (strlen(*o) == len && strncmp(*o, name, len) == 0)
			return true;
	return false;
}

int store_cfg_add_opt(struct store_cfg *c, const char *opt)
{
	const char *eq = strchr(opt, '=');
	size_t len = eq ? (size_t)(eq - opt) : strlen(opt);
	bool known = false;

	for (size_t i = 0; store_drivers[i] && !known; i++)
		known = takes(store_drivers[i], opt, len);
	if (!known)
		return 0;
	char **v = realloc(c->opts, (c->nopts + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	c->opts = v;
	/* A later -o of the same name wins, as for every other option. */
	for (size_t i = 0; i < c->nopts; i++) {
		if (strncmp(c->opts[i], opt, len) == 0 &&
		    (c->opts[i][len] == '=' || !c->opts[i][len])) {
			char *o = strdup(opt);
			if (!o)
				return -ENOMEM;
			free(c->opts[i]);
			c->opts[i] = o;
			return 1;
		}
	}
	if (!(c->opts[c->nopts] = strdup(opt)))
		return -ENOMEM;
	c->nopts++;
	return 1;
}

/* The -o given for name: its value ("" for a bare flag), or NULL. */
static const char *given(const struct store_cfg *c, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < c->nopts; i++)
		if (strncmp(c->opts[i], name, len) == 0) {
			if (c->opts[i][len] == '=')
				return c->opts[i] + len + 1;
			if (!c->opts[i][len])
				return "";
		}
	return NULL;
}

static const struct store_env *env_of(const struct store_cfg *c, const char *name)
{
	const struct store_driver *d = c->url.driver;

	for (const struct store_env *e = d ? d->env : NULL; e && e->option; e++)
		if (strcmp(e->option, name) == 0)
			return e;
	return NULL;
}

/* 1 true, 0 false, -1 neither: the spellings of Go's strconv.ParseBool, which etcdctl and consul
 * use. */
static int truth(const char *v)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
	static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};

	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcmp(v, yes[i]) == 0)
			return 1;
		if (strcmp(v, no[i]) == 0)
			return 0;
	}
	return -1;
}

const char *store_cfg_opt(const struct store_cfg *c, const char *name)
{
	const char *v = given(c, name);
	const struct store_env *e;

	if (v)
		return v;
	e = env_of(c, name);
	if (!e)
		return NULL;
	v = getenv(e->variable);
	if (!v || !*v)
		return NULL;
	if (e->kind == ENV_VALUE)
		return v;
	return truth(v) == (e->kind == ENV_TRUE) ? "" : NULL;
}

bool store_cfg_flag(const struct store_cfg *c, const char *name)
{
	const char *v = store_cfg_opt(c, name);

	return v && (!*v || truth(v) == 1);
}

const char *store_cfg_source(const struct store_cfg *c, const char *name)
{
	static __thread char buf[64];
	const struct store_env *e = env_of(c, name);

	if (given(c, name) || !e)
		snprintf(buf, sizeof(buf), "-o %s", name);
	else
		snprintf(buf, sizeof(buf), "%s", e->variable);
	return buf;
}

int store_open(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen)
{
	const struct store_driver *d = cfg->url.driver;

	for (size_t i = 0; i < cfg->nopts; i++) {
		const char *eq = strchr(cfg->opts[i], '=');
		size_t len = eq ? (size_t)(eq - cfg->opts[i]) : strlen(cfg->opts[i]);
		if (!takes(d, cfg->opts[i], len)) {
			size_t at = (size_t)snprintf(err, errlen, "-o %.*s is for", (int)len,
						     cfg->opts[i]);
			for (size_t k = 0; store_drivers[k] && at < errlen; k++)
				if (takes(store_drivers[k], cfg->opts[i], len))
					at += (size_t)snprintf(err + at, errlen - at, " %s://",
							       store_drivers[k]->scheme);
			if (at < errlen)
				snprintf(err + at, errlen - at, " stores, not %s://", d->scheme);
			return -EINVAL;
		}
	}
	return d->open(cfg, out, err, errlen);
}

void store_init(struct store *s, const struct store_ops *ops, const struct store_cfg *cfg)
{
	s->ops = ops;
	s->driver = cfg->url.driver;
	s->url = &cfg->url;
	s->timeout_ms = cfg->timeout_ms;
	pthread_mutex_init(&s->err_mu, NULL);
}

void store_free(struct store *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->err_mu);
	s->ops->free(s);
}

void store_stop(struct store *s)
{
	s->ops->stop(s);
}

char *store_endpoint(struct store *s)
{
	char *e = s->ops->endpoint ? s->ops->endpoint(s) : NULL;

	return e ? e : strdup("");
}

void store_thread_done(struct store *s)
{
	if (s->ops->thread_done)
		s->ops->thread_done(s);
}

void store_set_error(struct store *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	pthread_mutex_lock(&s->err_mu);
	vsnprintf(s->err, sizeof(s->err), fmt, ap);
	pthread_mutex_unlock(&s->err_mu);
	va_end(ap);
}

const char *store_error(struct store *s)
{
	static __thread char copy[sizeof(((struct store *)0)->err)];

	pthread_mutex_lock(&s->err_mu);
	memcpy(copy, s->err, sizeof(copy));
	pthread_mutex_unlock(&s->err_mu);
	return copy[0] ? copy : "unknown error";
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
