/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A large Consul prefix cut into sub-prefixes, so that a change is read from the one it is in. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "consul_shards.h"

struct rkey {
	const char *k; /* below the mount's prefix */
	size_t len;
	int64_t mod;
};

/* A run of sorted keys sharing their first depth bytes. */
struct range {
	size_t lo, hi, depth;
};

static int bytes_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

static int rkey_cmp(const void *x, const void *y)
{
	const struct rkey *a = x, *b = y;

	return bytes_cmp(a->k, a->len, b->k, b->len);
}

static int shard_cmp(const void *x, const void *y)
{
	const struct shard *a = x, *b = y;

	return bytes_cmp(a->pfx, a->len, b->pfx, b->len);
}

void shards_clear(struct shards *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i].pfx);
	free(s->v);
	s->v = NULL;
	s->n = 0;
}

/* Whether r stays one shard: small enough, a whole top-level name, or itself a key. */
static bool leaf(const struct rkey *k, const struct range *r, size_t per_shard)
{
	return r->hi - r->lo <= per_shard || (r->depth && k[r->lo].k[r->depth - 1] == '/') ||
	       k[r->lo].len == r->depth;
}

/* How many runs r's next byte cuts it into (a byte inside a character too: Consul takes it). */
static size_t children(const struct rkey *k, const struct range *r)
{
	size_t c = 1;

	for (size_t i = r->lo + 1; i < r->hi; i++)
		c += k[i].k[r->depth] != k[i - 1].k[r->depth];
	return c;
}

static int emit(struct shards *out, const struct rkey *k, const struct range *r)
{
	struct shard *sh = &out->v[out->n];

	sh->pfx = malloc(r->depth + 1);
	if (!sh->pfx)
		return -ENOMEM;
	memcpy(sh->pfx, k[r->lo].k, r->depth);
	sh->pfx[r->depth] = '\0';
	sh->len = r->depth;
	sh->total = r->hi - r->lo;
	sh->index = 0;
	for (size_t i = r->lo; i < r->hi; i++)
		if (k[i].mod > sh->index)
			sh->index = k[i].mod;
	out->n++;
	return 0;
}

/*
 * Breadth first, so that the budget of shards goes to cutting the largest
 * runs: a run is cut by its next byte while the shards it makes fit.
 */
static int cut(struct shards *out, const struct rkey *k, size_t n, size_t per_shard,
	       size_t max_shards)
{
	struct range *q = malloc(max_shards * sizeof(*q));
	size_t head = 0, tail = 0;
	int err = 0;

	if (!q)
		return -ENOMEM;
	q[tail++] = (struct range){0, n, 0};
	while (!err && head < tail) {
		struct range r = q[head++];
		size_t c = leaf(k, &r, per_shard) ? 0 : children(k, &r);
		/* Shards so far: emitted, still queued, and these. */
		if (c <= 1 || out->n + (tail - head) + c > max_shards) {
			if (c == 1) {
				/* One next byte for all: go one byte deeper. */
				r.depth++;
				q[--head] = r;
				continue;
			}
			err = emit(out, k, &r);
			continue;
		}
		/* Room: compact the queue so that the children fit behind it. */
		memmove(q, q + head, (tail - head) * sizeof(*q));
		tail -= head;
		head = 0;
		size_t lo = r.lo;
		for (size_t i = r.lo + 1; i <= r.hi; i++) {
			if (i < r.hi && k[i].k[r.depth] == k[i - 1].k[r.depth])
				continue;
			q[tail++] = (struct range){lo, i, r.depth + 1};
			lo = i;
		}
	}
	free(q);
	return err;
}

int shards_build(struct shards *s, const struct kv_batch *b, size_t plen, size_t per_shard,
		 size_t max_shards)
{
	struct shards out = {0};
	struct rkey *k = malloc((b->n ? b->n : 1) * sizeof(*k));
	size_t n = 0;
	int err = -ENOMEM;

	if (max_shards == 0)
		max_shards = 1;
	if (!k)
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		const struct kv *x = &b->v[i];
		/* A NUL cannot go into a shard's prefix (Consul keys have none). */
		if (!x->val || x->klen < plen || memchr(x->key + plen, '\0', x->klen - plen))
			continue;
		k[n++] = (struct rkey){x->key + plen, x->klen - plen, x->meta.mod_rev};
	}
	qsort(k, n, sizeof(*k), rkey_cmp);
	out.v = calloc(max_shards, sizeof(*out.v));
	if (!out.v)
		goto fail;
	if (n == 0) {
		/* Nothing to cut: one shard, the whole prefix. */
		struct rkey none = {"", 0, 0};
		struct range r = {0, 0, 0};
		err = emit(&out, &none, &r);
	} else {
		err = cut(&out, k, n, per_shard ? per_shard : 1, max_shards);
	}
	if (err)
		goto fail;
	qsort(out.v, out.n, sizeof(*out.v), shard_cmp);
	free(k);
	shards_clear(s);
	*s = out;
	return 0;
fail:
	free(k);
	shards_clear(&out);
	return err;
}

long shards_find(const struct shards *s, const char *name, size_t len)
{
	size_t lo = 0, hi = s->n;

	/* The last shard not after name: no other can be a prefix of it. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (bytes_cmp(s->v[mid].pfx, s->v[mid].len, name, len) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == 0)
		return -1;
	const struct shard *sh = &s->v[lo - 1];
	return sh->len <= len && memcmp(sh->pfx, name, sh->len) == 0 ? (long)(lo - 1) : -1;
}

int shards_add(struct shards *s, const char *name, size_t len)
{
	size_t at = 0;

	if (memchr(name, '\0', len) || shards_find(s, name, len) >= 0)
		return 1;
	while (at < s->n && bytes_cmp(s->v[at].pfx, s->v[at].len, name, len) < 0)
		at++;
	/* The first shard after it is the only one it could be a prefix of. */
	if (at < s->n && s->v[at].len >= len && memcmp(s->v[at].pfx, name, len) == 0)
		return 1;
	struct shard *v = realloc(s->v, (s->n + 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	char *pfx = malloc(len + 1);
	if (!pfx)
		return -ENOMEM;
	memcpy(pfx, name, len);
	pfx[len] = '\0';
	memmove(v + at + 1, v + at, (s->n - at) * sizeof(*v));
	v[at] = (struct shard){.pfx = pfx, .len = len};
	s->n++;
	return 0;
}
