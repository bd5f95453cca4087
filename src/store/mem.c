/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A store held in memory, behind the same vtable: for testing what sits above the stores. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"

struct entry {
	char *key;
	size_t klen;
	struct blob *val;
	struct kv_meta meta;
};

/* One key's change at one revision, for watches: val NULL for a delete. */
struct event {
	char *key;
	size_t klen;
	struct blob *val;
	struct kv_meta meta;
};

struct mem {
	struct store base;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a new revision, or stop */
	struct entry *e;   /* sorted by key */
	size_t n, cap;
	struct event *log; /* every change since compacted, in revision order */
	size_t nlog, logcap;
	int64_t rev, compacted;
	bool stopping;
	bool hold; /* watches wait; a running one ends */
	int fail_err;
	unsigned fail_n, commits;
};

static int cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/* Index of key, or where it would go (*found false). Called with mu held. */
static size_t find(const struct mem *m, const char *key, size_t klen, bool *found)
{
	size_t lo = 0, hi = m->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp(m->e[mid].key, m->e[mid].klen, key, klen);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static bool in_prefix(const struct mem *m, const char *key, size_t klen)
{
	const struct store_url *u = m->base.url;

	return klen >= u->plen && memcmp(key, u->prefix, u->plen) == 0;
}

static int log_event(struct mem *m, const char *key, size_t klen, struct blob *val,
		     const struct kv_meta *meta)
{
	if (m->nlog == m->logcap) {
		size_t cap = m->logcap ? m->logcap * 2 : 64;
		struct event *l = realloc(m->log, cap * sizeof(*l));
		if (!l)
			return -ENOMEM;
		m->log = l;
		m->logcap = cap;
	}
	char *k = malloc(klen + 1);
	if (!k)
		return -ENOMEM;
	memcpy(k, key, klen);
	k[klen] = '\0';
	m->log[m->nlog++] = (struct event){k, klen, val ? blob_ref(val) : NULL, *meta};
	return 0;
}

/* Apply one put or delete at revision rev. Called with mu held. */
static int apply(struct mem *m, const char *key, size_t klen, const void *val, size_t vlen,
		 bool put, uint64_t flags, int64_t rev)
{
	bool found;
	size_t i = find(m, key, klen, &found);
	struct kv_meta meta = {.mod_rev = rev, .flags = flags};

	if (!put) {
		if (!found)
			return 0;
		meta = m->e[i].meta;
		meta.mod_rev = rev;
		int err = log_event(m, key, klen, NULL, &meta);
		free(m->e[i].key);
		blob_unref(m->e[i].val);
		memmove(m->e + i, m->e + i + 1, (m->n - i - 1) * sizeof(*m->e));
		m->n--;
		return err;
	}
	struct blob *b = blob_from(val, vlen);
	if (!b)
		return -ENOMEM;
	if (found) {
		meta.create_rev = m->e[i].meta.create_rev;
		meta.version = m->e[i].meta.version + 1;
		blob_unref(m->e[i].val);
		m->e[i].val = b;
		m->e[i].meta = meta;
		return log_event(m, key, klen, b, &meta);
	}
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		struct entry *e = realloc(m->e, cap * sizeof(*e));
		if (!e) {
			blob_unref(b);
			return -ENOMEM;
		}
		m->e = e;
		m->cap = cap;
	}
	char *k = malloc(klen + 1);
	if (!k) {
		blob_unref(b);
		return -ENOMEM;
	}
	memcpy(k, key, klen);
	k[klen] = '\0';
	meta.create_rev = rev;
	meta.version = 1;
	memmove(m->e + i + 1, m->e + i, (m->n - i) * sizeof(*m->e));
	m->e[i] = (struct entry){k, klen, b, meta};
	m->n++;
	return log_event(m, key, klen, b, &meta);
}

/* Whether op's expectation holds now. Called with mu held. */
static bool holds(const struct mem *m, const struct kv_op *op, int64_t *current)
{
	bool found;
	size_t i = find(m, op->key, op->klen, &found);

	*current = found ? m->e[i].meta.mod_rev : 0;
	if (op->expect == KV_ANY)
		return true;
	if (op->expect == KV_ABSENT)
		return !found;
	return found && m->e[i].meta.mod_rev == op->expect;
}

static int mem_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res)
{
	struct mem *m = (struct mem *)s;
	int err = 0;

	pthread_mutex_lock(&m->mu);
	if (m->fail_n) {
		m->fail_n--;
		err = m->fail_err;
		store_set_error(s, "mem: failing as asked");
		goto out;
	}
	if (n > s->caps.max_txn_ops) {
		store_set_error(s, "%zu changes do not fit in one transaction", n);
		err = -EXDEV;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t current;
		if (!holds(m, &ops[i], &current)) {
			store_set_error(s, "a key changed since this host last read it");
			res->failed = i;
			res->current = current;
			err = -ESTALE;
			goto out;
		}
	}
	int64_t rev = m->rev + 1;
	bool wrote = false;
	for (size_t i = 0; i < n && !err; i++) {
		const struct kv_op *op = &ops[i];
		if (op->kind == KV_PUT || op->kind == KV_DELETE) {
			err = apply(m, op->key, op->klen, op->val, op->vlen, op->kind == KV_PUT,
				    op->flags, rev);
			wrote = true;
		} else if (op->kind == KV_DELETE_PREFIX) {
			bool found;
			size_t at = find(m, op->key, op->klen, &found);
			while (!err && at < m->n && m->e[at].klen >= op->klen &&
			       memcmp(m->e[at].key, op->key, op->klen) == 0) {
				char *k = strdup(m->e[at].key);
				err = k ? apply(m, k, m->e[at].klen, NULL, 0, false, 0, rev)
					: -ENOMEM;
				free(k);
				wrote = true;
			}
		}
	}
	if (wrote) {
		m->rev = rev;
		m->commits++;
		pthread_cond_broadcast(&m->cv);
	}
	res->rev = m->rev;
out:
	pthread_mutex_unlock(&m->mu);
	return err;
}

static int mem_snapshot(struct store *s, struct kv_batch *b)
{
	struct mem *m = (struct mem *)s;
	int err = 0;

	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->n && !err; i++) {
		if (!in_prefix(m, m->e[i].key, m->e[i].klen))
			continue;
		err = kv_batch_push(b, m->e[i].key, m->e[i].klen, blob_ref(m->e[i].val),
				    &m->e[i].meta);
	}
	b->revision = m->rev;
	pthread_mutex_unlock(&m->mu);
	if (err)
		kv_batch_clear(b);
	return err;
}

static int mem_watch(struct store *s, int64_t from_rev, const struct store_watch_cb *cb)
{
	struct mem *m = (struct mem *)s;
	int err = 0;

	pthread_mutex_lock(&m->mu);
	while (m->hold && !m->stopping)
		pthread_cond_wait(&m->cv, &m->mu);
	if (!m->stopping && from_rev <= m->compacted) {
		pthread_mutex_unlock(&m->mu);
		return -ESTALE;
	}
	if (!m->stopping)
		cb->connected(cb->ctx, m->rev);
	while (!err) {
		if (m->stopping) {
			err = -ECANCELED;
			break;
		}
		if (m->hold) {
			store_set_error(s, "mem: the watch was dropped as asked");
			err = -ECONNRESET;
			break;
		}
		/* Skip what the caller has (compaction may have moved the log); then one revision.
		 */
		size_t next = 0;
		while (next < m->nlog && m->log[next].meta.mod_rev < from_rev)
			next++;
		if (next == m->nlog) {
			pthread_cond_wait(&m->cv, &m->mu);
			continue;
		}
		struct kv_batch b;
		kv_batch_init(&b);
		int64_t rev = m->log[next].meta.mod_rev;
		for (; next < m->nlog && m->log[next].meta.mod_rev == rev && !err; next++) {
			const struct event *ev = &m->log[next];
			if (in_prefix(m, ev->key, ev->klen))
				err = kv_batch_push(&b, ev->key, ev->klen,
						    ev->val ? blob_ref(ev->val) : NULL, &ev->meta);
		}
		from_rev = rev + 1;
		pthread_mutex_unlock(&m->mu);
		if (!err && b.n)
			err = cb->batch(cb->ctx, &b);
		else if (!err)
			cb->progress(cb->ctx, rev);
		kv_batch_clear(&b);
		pthread_mutex_lock(&m->mu);
	}
	pthread_mutex_unlock(&m->mu);
	return err;
}

static void mem_stop(struct store *s)
{
	struct mem *m = (struct mem *)s;

	pthread_mutex_lock(&m->mu);
	m->stopping = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static void mem_free(struct store *s)
{
	struct mem *m = (struct mem *)s;

	for (size_t i = 0; i < m->n; i++) {
		free(m->e[i].key);
		blob_unref(m->e[i].val);
	}
	for (size_t i = 0; i < m->nlog; i++) {
		free(m->log[i].key);
		blob_unref(m->log[i].val);
	}
	free(m->e);
	free(m->log);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m);
}

static const struct store_ops mem_ops = {
	.snapshot = mem_snapshot,
	.watch = mem_watch,
	.txn = mem_txn,
	.stop = mem_stop,
	.free = mem_free,
};

int mem_store_new(const struct store_cfg *cfg, struct store **out)
{
	struct mem *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	store_init(&m->base, &mem_ops, cfg);
	m->base.caps = (struct store_caps){
		.max_value = 1536 * 1024 - 4608,
		.max_txn_ops = 128,
		.counts_versions = true,
		.first_version = 1,
		.delete_prefix = true,
		.atomic_txn = true,
	};
	pthread_mutex_init(&m->mu, NULL);
	mono_cond_init(&m->cv);
	/* A fresh etcd is at revision 1. */
	m->rev = 1;
	*out = &m->base;
	return 0;
}

int64_t mem_store_set(struct store *s, const char *key, const char *val, size_t vlen)
{
	struct mem *m = (struct mem *)s;
	int64_t rev;

	pthread_mutex_lock(&m->mu);
	rev = ++m->rev;
	apply(m, key, strlen(key), val, vlen, val != NULL, 0, rev);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	return rev;
}

void mem_store_compact(struct store *s, int64_t rev)
{
	struct mem *m = (struct mem *)s;
	size_t k = 0;

	pthread_mutex_lock(&m->mu);
	for (size_t i = 0; i < m->nlog; i++) {
		if (m->log[i].meta.mod_rev <= rev) {
			free(m->log[i].key);
			blob_unref(m->log[i].val);
		} else {
			m->log[k++] = m->log[i];
		}
	}
	m->nlog = k;
	if (rev > m->compacted)
		m->compacted = rev;
	pthread_mutex_unlock(&m->mu);
}

void mem_store_hold_watches(struct store *s, bool hold)
{
	struct mem *m = (struct mem *)s;

	pthread_mutex_lock(&m->mu);
	m->hold = hold;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

void mem_store_fail_next(struct store *s, int err, unsigned n)
{
	struct mem *m = (struct mem *)s;

	pthread_mutex_lock(&m->mu);
	m->fail_err = err;
	m->fail_n = n;
	pthread_mutex_unlock(&m->mu);
}

int mem_store_get(struct store *s, const char *key, struct blob **val, struct kv_meta *meta)
{
	struct mem *m = (struct mem *)s;
	bool found;

	pthread_mutex_lock(&m->mu);
	size_t i = find(m, key, strlen(key), &found);
	if (found) {
		*val = blob_ref(m->e[i].val);
		*meta = m->e[i].meta;
	}
	pthread_mutex_unlock(&m->mu);
	return found ? 0 : -ENOENT;
}

unsigned mem_store_commits(struct store *s)
{
	struct mem *m = (struct mem *)s;

	pthread_mutex_lock(&m->mu);
	unsigned n = m->commits;
	pthread_mutex_unlock(&m->mu);
	return n;
}
