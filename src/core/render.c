/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Views: a subtree rendered as one JSON, YAML, .env or .properties file; pure functions. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "render.h"
#include "render_int.h"

static const char *const view_names[RENDER_NFORMATS] = {
	[RENDER_JSON] = "%#json",
	[RENDER_YAML] = "%#yaml",
	[RENDER_ENV] = "%#env",
	[RENDER_PROPERTIES] = "%#properties",
};

const char *render_view_name(enum render_format f)
{
	return f < RENDER_NFORMATS ? view_names[f] : NULL;
}

int render_view_format(const char *name, size_t len)
{
	for (int f = 0; f < RENDER_NFORMATS; f++)
		if (strlen(view_names[f]) == len && memcmp(view_names[f], name, len) == 0)
			return f;
	return -1;
}

/* ------------------------------------------------------------ order */

/* The byte at p[i] for sorting: '/' (between segments) first, then every byte in order. */
static int sort_byte(const char *p, size_t i)
{
	return p[i] == '/' ? 0 : (unsigned char)p[i] + 1;
}

static int cmp_path(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;

	for (size_t i = 0; i < n; i++) {
		int d = sort_byte(a, i) - sort_byte(b, i);
		if (d)
			return d;
	}
	return alen < blen ? -1 : alen > blen;
}

static int cmp_entry(const void *pa, const void *pb)
{
	const struct render_entry *a = *(const struct render_entry *const *)pa;
	const struct render_entry *b = *(const struct render_entry *const *)pb;
	int d = cmp_path(a->path, a->plen, b->path, b->plen);

	/* Equal paths keep their input order, so the first given wins. */
	return d ? d : (a > b) - (a < b);
}

struct seg {
	const char *s;
	size_t len;
};

static bool seg_eq(struct seg a, struct seg b)
{
	return a.len == b.len && memcmp(a.s, b.s, a.len) == 0;
}

/* Split path into at most max segments; returns how many, or max + 1 if there are more. */
static size_t split(const char *path, size_t plen, struct seg *v, size_t max)
{
	size_t n = 0, start = 0;

	for (size_t i = 0; i <= plen; i++) {
		if (i < plen && path[i] != '/')
			continue;
		if (n == max)
			return max + 1;
		v[n].s = path + start;
		v[n].len = i - start;
		n++;
		start = i + 1;
	}
	return n;
}

/* ------------------------------------------------------------ nested formats */

/* Deeper paths are cut off: far beyond any directory tree a file system can hold. */
#define MAX_DEPTH 512

struct nest {
	struct out *o;
	bool yaml;
	struct seg open[MAX_DEPTH]; /* open[i]: the object opened at level i + 1 */
	size_t nopen;
	struct seg last[MAX_DEPTH + 1]; /* last member written at each level */
	bool has_last[MAX_DEPTH + 1];
};

static void member_name(struct nest *t, size_t level, struct seg name)
{
	struct out *o = t->o;

	if (t->yaml) {
		/* The parent's "name:" line ends here, before its first member. */
		rb_putc(o, '\n');
		rb_indent(o, level);
		rt_yaml_string(o, name.s, name.len);
		rb_putc(o, ':');
	} else {
		if (t->has_last[level])
			rb_putc(o, ',');
		rb_putc(o, '\n');
		rb_indent(o, level + 1);
		rt_json_string(o, name.s, name.len);
		rb_puts(o, ": ");
	}
	t->last[level] = name;
	t->has_last[level] = true;
}

static void open_object(struct nest *t, struct seg name)
{
	size_t level = t->nopen;

	member_name(t, level, name);
	if (!t->yaml)
		rb_putc(t->o, '{');
	t->open[t->nopen++] = name;
	t->has_last[t->nopen] = false;
}

static void close_object(struct nest *t)
{
	size_t level = t->nopen--;

	if (t->yaml) {
		if (!t->has_last[level])
			rb_puts(t->o, " {}");
		return;
	}
	if (t->has_last[level]) {
		rb_putc(t->o, '\n');
		rb_indent(t->o, level);
	}
	rb_putc(t->o, '}');
}

static void value(struct nest *t, const struct render_entry *e)
{
	if (t->yaml) {
		rb_putc(t->o, ' ');
		rt_yaml_string(t->o, e->val, e->vlen);
		return;
	}
	if (!render_is_json(e->val, e->vlen)) {
		rt_json_string(t->o, e->val, e->vlen);
		return;
	}
	/* Embedded as it is, without the whitespace around it. */
	size_t a = 0, b = e->vlen;
	while (a < b && strchr(" \t\r\n", e->val[a]))
		a++;
	while (b > a && strchr(" \t\r\n", e->val[b - 1]))
		b--;
	rb_put(t->o, e->val + a, b - a);
}

static void nest_entry(struct nest *t, const struct render_entry *e)
{
	struct seg s[MAX_DEPTH + 1];
	size_t k = split(e->path, e->plen, s, MAX_DEPTH);

	if (k == 0 || k > MAX_DEPTH)
		return;
	/* Close what is not a parent of e, open what is missing. */
	size_t d = 0;
	while (d < t->nopen && d < k && seg_eq(t->open[d], s[d]))
		d++;
	/* e is a directory already open (a duplicate), or a value where one is: it loses. */
	if (d == k)
		return;
	while (t->nopen > d)
		close_object(t);
	for (size_t i = d; i < k; i++) {
		/* A name already written at this level (a value, or a duplicate): e loses. */
		if (t->has_last[i] && seg_eq(t->last[i], s[i]))
			return;
		if (i + 1 < k || e->dir) {
			open_object(t, s[i]);
			continue;
		}
		member_name(t, i, s[i]);
		value(t, e);
	}
}

static void render_nested(struct out *o, bool yaml, struct render_entry **v, size_t n)
{
	struct nest *t = calloc(1, sizeof(*t));

	if (!t) {
		o->oom = true;
		return;
	}
	t->o = o;
	t->yaml = yaml;
	if (!yaml)
		rb_putc(o, '{');
	for (size_t i = 0; i < n; i++)
		nest_entry(t, v[i]);
	while (t->nopen)
		close_object(t);
	if (yaml) {
		if (!t->has_last[0])
			rb_puts(o, "{}");
		rb_putc(o, '\n');
		/* Drop the line break written before the first name. */
		if (!o->oom && t->has_last[0])
			memmove(o->p, o->p + 1, --o->n);
	} else {
		if (t->has_last[0])
			rb_putc(o, '\n');
		rb_puts(o, "}\n");
	}
	free(t);
}

/* ------------------------------------------------------------ flat formats */

/* One name per line: .env identifiers, .properties dotted keys. */
struct flat {
	char *key; /* the name before escaping; NULL: the entry has none (skipped) */
	size_t klen;
	size_t at;  /* position in path order */
	bool taken; /* an earlier entry has this name */
};

/* The .env name of path: segments joined by '_', upper case, [A-Z0-9_] only, no leading digit. */
static void env_key(struct out *k, const struct seg *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			rb_putc(k, '_');
		for (size_t j = 0; j < s[i].len; j++) {
			unsigned char c = (unsigned char)s[i].s[j];
			if (c >= 'a' && c <= 'z')
				c = (unsigned char)(c - 'a' + 'A');
			else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
				c = '_';
			if (k->n == 0 && c >= '0' && c <= '9')
				rb_putc(k, '_');
			rb_putc(k, (char)c);
		}
	}
}

/* The .properties name of path: segments joined by '.'. */
static void prop_key(struct out *k, const struct seg *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i)
			rb_putc(k, '.');
		rb_put(k, s[i].s, s[i].len);
	}
}

static int cmp_flat(const void *pa, const void *pb)
{
	const struct flat *a = *(const struct flat *const *)pa;
	const struct flat *b = *(const struct flat *const *)pb;
	size_t n = a->klen < b->klen ? a->klen : b->klen;
	int d = memcmp(a->key, b->key, n);

	if (d)
		return d;
	if (a->klen != b->klen)
		return a->klen < b->klen ? -1 : 1;
	return (a->at > b->at) - (a->at < b->at);
}

/*
 * A comment line naming e's path, on one line whatever it holds: JSON-quoted
 * in a .env file, escaped as a key (so ASCII) in a .properties file.
 */
static void skip_comment(struct out *o, bool env, const struct render_entry *e, const char *why)
{
	rb_puts(o, "# skipped ");
	if (env)
		rt_json_string(o, e->path, e->plen);
	else
		rt_prop_escape(o, e->path, e->plen, true);
	rb_puts(o, ": ");
	rb_puts(o, why);
	rb_putc(o, '\n');
}

static void flat_line(struct out *o, bool env, const struct flat *f, const struct render_entry *e)
{
	if (!f->key) {
		skip_comment(o, env, e, "it has no name in a .env file");
		return;
	}
	if (f->taken) {
		skip_comment(o, env, e, "an earlier key has the same name here");
		return;
	}
	if (!env) {
		rt_prop_escape(o, f->key, f->klen, true);
		rb_putc(o, '=');
		rt_prop_escape(o, e->val, e->vlen, false);
		rb_putc(o, '\n');
		return;
	}
	if (memchr(e->val, '\0', e->vlen)) {
		skip_comment(o, env, e, "a shell variable cannot hold a NUL byte");
		return;
	}
	rb_put(o, f->key, f->klen);
	rb_puts(o, "='");
	for (size_t i = 0; i < e->vlen;) {
		const char *q = memchr(e->val + i, '\'', e->vlen - i);
		size_t run = q ? (size_t)(q - e->val) - i : e->vlen - i;
		rb_put(o, e->val + i, run);
		i += run;
		if (q) {
			rb_puts(o, "'\\''");
			i++;
		}
	}
	rb_puts(o, "'\n");
}

static void render_flat(struct out *o, bool env, struct render_entry **v, size_t n)
{
	struct flat *f = calloc(n ? n : 1, sizeof(*f));
	struct flat **order = calloc(n ? n : 1, sizeof(*order));
	struct seg s[MAX_DEPTH + 1];
	size_t nf = 0;

	if (!f || !order) {
		o->oom = true;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (v[i]->dir)
			continue;
		size_t k = split(v[i]->path, v[i]->plen, s, MAX_DEPTH);
		if (k == 0 || k > MAX_DEPTH)
			continue;
		/* "a/%value" is the value of "a". */
		if (names_is_value(s[k - 1].s, s[k - 1].len))
			k--;
		struct flat *x = &f[nf];
		x->at = i;
		order[nf++] = x;
		if (k == 0 && env)
			continue;
		struct out key = {0};
		if (env)
			env_key(&key, s, k);
		else
			prop_key(&key, s, k);
		if (!rb_reserve(&key, 0)) {
			free(key.p);
			o->oom = true;
			goto out;
		}
		/* Nothing left of the path (the top's own value, an empty name): no .env name. */
		if (env && key.n == 0) {
			free(key.p);
			continue;
		}
		x->key = key.p;
		x->klen = key.n;
	}
	/* Names given twice: the first in path order keeps it. */
	struct flat **named = calloc(nf ? nf : 1, sizeof(*named));
	size_t nn = 0;
	if (!named) {
		o->oom = true;
		goto out;
	}
	for (size_t i = 0; i < nf; i++)
		if (f[i].key)
			named[nn++] = &f[i];
	qsort(named, nn, sizeof(*named), cmp_flat);
	for (size_t i = 1; i < nn; i++)
		named[i]->taken = named[i]->klen == named[i - 1]->klen &&
				  memcmp(named[i]->key, named[i - 1]->key, named[i]->klen) == 0;
	free(named);
	for (size_t i = 0; i < nf; i++)
		flat_line(o, env, order[i], v[order[i]->at]);
out:
	for (size_t i = 0; f && i < nf; i++)
		free(f[i].key);
	free(f);
	free(order);
}

int render(enum render_format f, struct render_entry *v, size_t n, char **out, size_t *len)
{
	struct render_entry **p = malloc((n ? n : 1) * sizeof(*p));
	struct out o = {0};

	*out = NULL;
	*len = 0;
	if (!p)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		p[i] = &v[i];
	qsort(p, n, sizeof(*p), cmp_entry);
	if (f == RENDER_JSON || f == RENDER_YAML)
		render_nested(&o, f == RENDER_YAML, p, n);
	else
		render_flat(&o, f == RENDER_ENV, p, n);
	free(p);
	if (!rb_reserve(&o, 0)) {
		free(o.p);
		return -ENOMEM;
	}
	o.p[o.n] = '\0';
	*out = o.p;
	*len = o.n;
	return 0;
}
