/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reading the whole mounted range at one revision: pages, and spans of it read side by side. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_int.h"
#include "json.h"
#include "keyspace.h"
#include "log.h"

/*
 * Why not one page after another: etcd (3.4, 3.5) counts every key from
 * where a page starts to the end of the range asked for (the answer's
 * "count"), so paging n keys through one range costs it about n² / (2 ×
 * page) index steps, and its gateway turns a page into JSON on one core
 * while the next is not asked for yet. Instead the range after the first
 * page is read as spans: windows of about a page of keys each, their ends
 * placed by extrapolating how wide (keys read as numbers, keyspace.h) the
 * last window's keys were, read at the first page's revision by up to
 * SPAN_READERS connections side by side. A span that still holds more than
 * SPAN_SPLIT_PAGES pages after a page is cut at its midpoint, the upper
 * half a span of its own. So a request counts about a page of keys, not
 * the rest of the range. Two connections, not more: at 100k keys two
 * read it in 1.3-1.6 s against 1.7-1.9 s for one, and three were no
 * faster (etcd is what is busy: 1M keys cost it ~33 s of CPU) but kept
 * ~30 bytes a key more resident; and a fleet that restarts at once opens
 * that many connections per host. Below SPAN_PARALLEL_MIN keys one does.
 */
#define SPAN_READERS 2		/* connections reading at once, this thread's included */
#define SPAN_PARALLEL_MIN 50000 /* keys left after the first page to start the others */
#define SPAN_SPLIT_PAGES 2
#define SPAN_KEY_MAX 1024 /* window ends are computed for keys up to this long */

/* etcd's key order: bytewise, a prefix before what extends it. */
static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
	int c = memcmp(a, b, al < bl ? al : bl);

	return c ? c : (al > bl) - (al < bl);
}

/*
 * What a page of a range read must hold to be believed: a header at a
 * revision etcd can have, keys in order inside the mounted range after the
 * previous page's last, none written after the revision read at. A server
 * that breaks this would otherwise put keys the store does not have, or
 * revisions that make later real changes look old, into the mirror.
 */
static int check_page(struct etcd *e, unsigned idx, const struct kv_batch *b, size_t from,
		      const struct etcd_header *hdr, int64_t rev)
{
	const char *host = hstore_host(&e->hs, idx);
	bool to_end = e->elen == 1 && e->end[0] == '\0';
	int64_t at = rev ? rev : hdr->revision;

	if (hdr->revision < 1 || hdr->revision >= HSTORE_REV_MAX) {
		store_set_error(&e->hs.base,
				"etcd at %s answered a range read at revision %lld, which no etcd "
				"reaches: refusing it",
				host, (long long)hdr->revision);
		return -EBADMSG;
	}
	for (size_t i = from; i < b->n; i++) {
		const struct kv *kv = &b->v[i];
		if (kv->meta.mod_rev < 1 || kv->meta.mod_rev > at || kv->meta.create_rev < 1 ||
		    kv->meta.create_rev > kv->meta.mod_rev) {
			store_set_error(
				&e->hs.base,
				"etcd at %s sent a key written at revision %lld (created at "
				"%lld) in a read at revision %lld: refusing it",
				host, (long long)kv->meta.mod_rev, (long long)kv->meta.create_rev,
				(long long)at);
			return -EBADMSG;
		}
		if ((i > 0 && key_cmp(b->v[i - 1].key, b->v[i - 1].klen, kv->key, kv->klen) >= 0) ||
		    key_cmp(kv->key, kv->klen, e->key, e->klen) < 0 ||
		    (!to_end && key_cmp(kv->key, kv->klen, e->end, e->elen) >= 0)) {
			store_set_error(&e->hs.base,
					"etcd at %s sent keys out of order or outside the range "
					"asked for: refusing the read",
					host);
			return -EBADMSG;
		}
	}
	return 0;
}

/* A 200 answer without a header: an error object in a success answer, or not etcd at all. */
static int headless(struct etcd *e, unsigned idx, const struct http_resp *rs)
{
	int code;
	char msg[200];

	if (json_etcd_error(rs->body, rs->len, &code, msg, sizeof(msg))) {
		store_set_error(&e->hs.base,
				"etcd at %s: range read failed: %s (in an HTTP 200 answer)",
				hstore_host(&e->hs, idx), msg);
		int err = hstore_status_errno(500, code);
		return err == -ESTALE ? -EIO : err;
	}
	store_set_error(
		&e->hs.base,
		"etcd at %s answered a range read without a header: is it an etcd v3 client "
		"URL?",
		hstore_host(&e->hs, idx));
	return -EBADMSG;
}

/* Keys [lo, hi) of the range; hi NULL: up to the mount's range end. */
struct span {
	char *lo; /* the next key to read */
	size_t lolen;
	char *hi;
	size_t hilen;
	struct kv_batch got;
	bool taken;  /* a reader has it (or had it: done) */
	bool window; /* its first page is still to be read, and sizes the next windows */
	char width[SPAN_KEY_MAX]; /* the window's width, for that */
	size_t wlen;
};

struct snap {
	struct etcd *e;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* All below protected by mu. */
	struct span **v; /* in key order, disjoint */
	size_t n, cap;
	char *cursor; /* where the next window starts; NULL: the spans reach the end */
	size_t curlen;
	char width[SPAN_KEY_MAX]; /* of the next window */
	size_t wlen;
	int64_t rev;   /* the revision every page is read at; 0 until the first answer */
	int64_t limit; /* keys per page, from what a key took so far */
	unsigned busy; /* readers reading a span */
	int err;       /* the first reader's failure; the others stop */
	/*
	 * The other readers' handles, so that a failure stops them at once.
	 * Never the calling thread's: a cancel stays on a handle, and that one
	 * is used again afterwards.
	 */
	struct http *h[SPAN_READERS];
};

/* What one page said. */
struct page {
	bool more;
	int64_t count; /* keys from where it started to the end of the span */
	size_t n;      /* keys it held */
};

static void span_free(struct span *sp)
{
	if (!sp)
		return;
	free(sp->lo);
	free(sp->hi);
	kv_batch_clear(&sp->got);
	free(sp);
}

static struct span *span_new(const char *lo, size_t lolen, const char *hi, size_t hilen)
{
	struct span *sp = calloc(1, sizeof(*sp));

	if (!sp || !(sp->lo = malloc(lolen ? lolen : 1)) ||
	    (hi && !(sp->hi = malloc(hilen ? hilen : 1)))) {
		span_free(sp);
		return NULL;
	}
	memcpy(sp->lo, lo, lolen);
	sp->lolen = lolen;
	if (hi) {
		memcpy(sp->hi, hi, hilen);
		sp->hilen = hilen;
	}
	kv_batch_init(&sp->got);
	return sp;
}

/* With mu held: room for one more span. */
static int grow(struct snap *s)
{
	if (s->n < s->cap)
		return 0;
	size_t cap = s->cap ? s->cap * 2 : 16;
	struct span **v = realloc(s->v, cap * sizeof(*v));
	if (!v)
		return -ENOMEM;
	s->v = v;
	s->cap = cap;
	return 0;
}

/* With mu held: the first error wins, and every other reader is told to stop. */
static void fail(struct snap *s, int err)
{
	if (!s->err) {
		s->err = err;
		for (size_t i = 0; i < SPAN_READERS; i++)
			if (s->h[i])
				http_cancel(s->h[i]);
	}
	pthread_cond_broadcast(&s->cv);
}

/* The end of the mount's range as a bound for keyspace.h: NULL when it is past every key. */
static const char *range_end(const struct etcd *e, size_t *len)
{
	*len = e->elen;
	return e->elen == 1 && e->end[0] == '\0' ? NULL : e->end;
}

/* With mu held: cut what is left of sp ([lo, hi)) in two, the upper half a span of its own. */
static void split(struct snap *s, size_t at)
{
	struct span *sp = s->v[at];
	size_t hilen;
	const char *hi = sp->hi ? sp->hi : range_end(s->e, &hilen);
	char mid[SPAN_KEY_MAX];

	if (sp->hi)
		hilen = sp->hilen;
	size_t mlen = keyspace_mid(sp->lo, sp->lolen, hi, hilen, mid, sizeof(mid));
	if (!mlen || grow(s))
		return; /* a missed cut only costs time */
	struct span *up = span_new(mid, mlen, sp->hi, sp->hilen);
	char *cut = malloc(mlen);
	if (!up || !cut) {
		span_free(up);
		free(cut);
		return;
	}
	memcpy(cut, mid, mlen);
	free(sp->hi);
	sp->hi = cut;
	sp->hilen = mlen;
	memmove(s->v + at + 2, s->v + at + 1, (s->n - at - 1) * sizeof(*s->v));
	s->v[at + 1] = up;
	s->n++;
}

/*
 * With mu held: the next window, from the cursor on, as wide as the last
 * windows suggest, or to the end of the range, into *out (NULL when the
 * spans reach the end already). 0 or -ENOMEM.
 */
static int next_window(struct snap *s, struct span **out)
{
	char end[SPAN_KEY_MAX];
	size_t hilen, elen = 0;
	const char *hi = range_end(s->e, &hilen);

	*out = NULL;
	if (!s->cursor)
		return 0;
	if (s->wlen)
		elen = keyspace_add(s->cursor, s->curlen, s->width, s->wlen, end, sizeof(end));
	bool last = !elen || (hi && key_cmp(end, elen, hi, hilen) >= 0);
	char *cursor = last ? NULL : malloc(elen);
	struct span *w = span_new(s->cursor, s->curlen, last ? NULL : end, elen);
	if (!w || (!last && !cursor) || grow(s)) {
		span_free(w);
		free(cursor);
		return -ENOMEM;
	}
	w->window = true;
	memcpy(w->width, s->width, s->wlen);
	w->wlen = s->wlen;
	free(s->cursor);
	s->cursor = cursor;
	if (cursor) {
		memcpy(cursor, end, elen);
		s->curlen = elen;
	}
	s->v[s->n++] = w;
	*out = w;
	return 0;
}

/*
 * With mu held: the next windows' width from what sp's first page found: a
 * window that held count keys, scaled to hold a page (at most 16 times
 * wider or narrower at once).
 */
static void size_windows(struct snap *s, struct span *sp, int64_t count)
{
	uint64_t f = count > 0 ? (uint64_t)s->limit * 16 / (uint64_t)count : 256;

	f = f < 1 ? 1 : f > 256 ? 256 : f;
	memcpy(s->width, sp->width, sp->wlen);
	s->wlen = keyspace_scale(s->width, sp->wlen, (unsigned)f, 16, sizeof(s->width));
	sp->window = false;
}

/* One page of sp, which this reader has: into sp->got, and what it said into *pg. */
static int read_page(struct snap *s, struct http *h, struct span *sp, int64_t *limit,
		     struct page *pg)
{
	struct etcd *e = s->e;
	struct http_resp rs;
	unsigned idx;

	/* sp's bounds change only under mu, and only by the reader that has it: this one. */
	pthread_mutex_lock(&s->mu);
	int64_t rev = s->rev;
	pthread_mutex_unlock(&s->mu);
	char *body = json_etcd_range_req(sp->lo, sp->lolen, sp->hi ? sp->hi : e->end,
					 sp->hi ? sp->hilen : e->elen, rev, *limit);
	if (!body)
		return -ENOMEM;
	int err = etcd_post(e, h, "/v3/kv/range", body, hstore_answer_ms(&e->hs), true, &rs, &idx);
	free(body);
	if (err == -EMSGSIZE && *limit > 1) {
		/* Large values: ask for fewer keys per page. */
		*limit = *limit / 8 ? *limit / 8 : 1;
		pg->n = 0;
		pg->more = true;
		pg->count = -1;
		return 0;
	}
	if (err)
		return err;
	if (rs.status != 200) {
		err = etcd_reply_errno(e, idx, "range read", &rs);
		http_resp_free(&rs);
		return err;
	}
	struct json_err jerr;
	struct etcd_header hdr;
	size_t before = sp->got.n, got = rs.len;
	err = json_etcd_range_resp(rs.body, rs.len, &sp->got, &pg->more, &pg->count, &hdr, &jerr);
	if (err) {
		http_resp_free(&rs);
		store_set_error(&e->hs.base, "malformed range response from etcd at %s: %s",
				hstore_host(&e->hs, idx), jerr.msg);
		return -EIO;
	}
	if (hdr.revision == 0) {
		err = headless(e, idx, &rs);
		http_resp_free(&rs);
		return err;
	}
	http_resp_free(&rs);
	if ((err = check_page(e, idx, &sp->got, before, &hdr, rev)))
		return err;
	size_t n = pg->n = sp->got.n - before;
	const struct kv *last = n ? &sp->got.v[sp->got.n - 1] : NULL;
	if (n && (key_cmp(sp->got.v[before].key, sp->got.v[before].klen, sp->lo, sp->lolen) < 0 ||
		  (sp->hi && key_cmp(last->key, last->klen, sp->hi, sp->hilen) >= 0))) {
		store_set_error(
			&e->hs.base,
			"etcd at %s sent keys outside the range asked for: refusing the read",
			hstore_host(&e->hs, idx));
		return -EBADMSG;
	}
	if (!rev) {
		pthread_mutex_lock(&s->mu);
		s->rev = hdr.revision;
		e->cluster_id = hdr.cluster_id;
		pthread_mutex_unlock(&s->mu);
	}
	if (!pg->more || n == 0) {
		pg->more = false;
		return 0;
	}
	*limit = ETCD_PAGE_BYTES / (got / n + 1);
	if (*limit > ETCD_PAGE_MAX)
		*limit = ETCD_PAGE_MAX;
	if (*limit < ETCD_PAGE_MIN)
		*limit = ETCD_PAGE_MIN;
	/* Next page: right after the last key, at the same revision. */
	char *next = malloc(last->klen + 1);
	if (!next)
		return -ENOMEM;
	memcpy(next, last->key, last->klen);
	next[last->klen] = '\0';
	pthread_mutex_lock(&s->mu);
	free(sp->lo);
	sp->lo = next;
	sp->lolen = last->klen + 1;
	s->limit = *limit;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

/* A reader: takes spans nobody has, or cuts new windows, until the range is read or one failed. */
static void read_spans(struct snap *s, struct http *h)
{
	pthread_mutex_lock(&s->mu);
	for (;;) {
		struct span *sp = NULL;
		for (size_t i = 0; i < s->n && !sp; i++)
			if (!s->v[i]->taken)
				sp = s->v[i];
		if (!sp && !s->err && next_window(s, &sp))
			fail(s, -ENOMEM);
		if (s->err || (!sp && s->busy == 0))
			break;
		if (!sp) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		sp->taken = true;
		s->busy++;
		int64_t limit = s->limit;
		pthread_mutex_unlock(&s->mu);
		int rc = 0;
		struct page pg = {.more = true};
		while (rc == 0 && pg.more) {
			rc = hstore_stopping(&s->e->hs) ? -ECANCELED
							: read_page(s, h, sp, &limit, &pg);
			if (rc || pg.count < 0)
				continue;
			pthread_mutex_lock(&s->mu);
			if (sp->window)
				size_windows(s, sp, pg.count);
			if (pg.more && pg.count - (int64_t)pg.n > SPAN_SPLIT_PAGES * limit) {
				for (size_t i = 0; i < s->n; i++)
					if (s->v[i] == sp) {
						split(s, i);
						break;
					}
				pthread_cond_broadcast(&s->cv);
			}
			pthread_mutex_unlock(&s->mu);
		}
		pthread_mutex_lock(&s->mu);
		s->busy--;
		if (rc < 0)
			fail(s, rc);
		pthread_cond_broadcast(&s->cv);
	}
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

struct helper {
	struct snap *s;
	unsigned slot;
	pthread_t thread;
};

static void *helper_run(void *arg)
{
	struct helper *hp = arg;
	struct snap *s = hp->s;
	struct http *h = http_new();

	if (!h)
		return NULL; /* the others read its share */
	pthread_mutex_lock(&s->mu);
	s->h[hp->slot] = h;
	if (s->err)
		http_cancel(h);
	pthread_mutex_unlock(&s->mu);
	read_spans(s, h);
	pthread_mutex_lock(&s->mu);
	s->h[hp->slot] = NULL;
	pthread_mutex_unlock(&s->mu);
	http_free(h);
	return NULL;
}

/* Up to SPAN_READERS - 1 more readers; returns how many started. */
static unsigned start_helpers(struct snap *s, struct helper *hp)
{
	sigset_t all, old;
	unsigned n = 0;

	/* Signals are for the threads that handle them, never these. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 1; i < SPAN_READERS; i++) {
		hp[n] = (struct helper){.s = s, .slot = i};
		if (pthread_create(&hp[n].thread, NULL, helper_run, &hp[n]))
			break;
		pthread_setname_np(hp[n].thread, "cfgfs-range");
		n++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return n;
}

/* Everything read, in key order, into b. */
static int gather(struct snap *s, struct kv_batch *b)
{
	size_t total = 0;

	for (size_t i = 0; i < s->n; i++)
		total += s->v[i]->got.n;
	struct kv *v = malloc((total ? total : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	size_t at = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct kv_batch *g = &s->v[i]->got;
		if (g->n) /* an empty span has no array at all */
			memcpy(v + at, g->v, g->n * sizeof(*v));
		at += g->n;
		free(g->v); /* its entries are v's now */
		kv_batch_init(g);
	}
	kv_batch_clear(b);
	b->v = v;
	b->n = b->cap = total;
	b->revision = s->rev;
	return 0;
}

/*
 * After the first page (its keys from first to last): windows from right
 * after it, the first as wide as that page's keys were, scaled to a page.
 */
static void start_windows(struct snap *s, const struct kv *first, const struct kv *last, size_t n)
{
	uint64_t f = (uint64_t)s->limit * 16 / (n ? n : 1);

	f = f < 1 ? 1 : f > 256 ? 256 : f;
	s->wlen = keyspace_width(first->key, first->klen, last->key, last->klen, (unsigned)f, 16,
				 s->width, sizeof(s->width));
}

/* SPAN_PARALLEL_MIN, or for the tests CFGFS_TEST_PARALLEL_RANGE_MIN: keys, so that a small
 * tree is read by several connections too. */
static int64_t parallel_min(void)
{
	const char *v = getenv("CFGFS_TEST_PARALLEL_RANGE_MIN");
	char *end;
	long long n = v ? strtoll(v, &end, 10) : -1;

	return v && *v && !*end && n >= 0 ? n : SPAN_PARALLEL_MIN;
}

/*
 * One attempt at the whole range: 0, or an errno; *at is the revision it
 * read at, once one answer fixed it (-ESTALE then: it was compacted away).
 */
static int snapshot_once(struct etcd *e, struct http *h, struct kv_batch *b, int64_t *at)
{
	struct snap s = {.e = e, .limit = ETCD_PAGE_FIRST};
	struct helper hp[SPAN_READERS];
	unsigned helpers = 0;
	struct page pg;
	int rc;

	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	s.v = malloc(sizeof(*s.v));
	if (!s.v || !(s.v[0] = span_new(e->key, e->klen, NULL, 0))) {
		rc = -ENOMEM;
		goto out;
	}
	s.n = s.cap = 1;
	/*
	 * The first page alone: it fixes the revision, its keys size the first
	 * window, and its count says whether more connections are worth it.
	 */
	struct span *first = s.v[0];
	int64_t limit = s.limit;
	first->taken = true;
	do
		rc = read_page(&s, h, first, &limit, &pg);
	while (rc == 0 && pg.count < 0);
	*at = s.rev;
	if (rc == 0 && pg.more) {
		/* The first span ends where its page did; windows go on from there. */
		s.cursor = malloc(first->lolen);
		if (!s.cursor) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(s.cursor, first->lo, first->lolen);
		s.curlen = first->lolen;
		start_windows(&s, &first->got.v[0], &first->got.v[first->got.n - 1], first->got.n);
		if (pg.count - (int64_t)pg.n > parallel_min())
			helpers = start_helpers(&s, hp);
		read_spans(&s, h);
		for (unsigned i = 0; i < helpers; i++)
			pthread_join(hp[i].thread, NULL);
		rc = s.err;
	}
	if (rc == 0) {
		log_debug("range read at revision %lld: %zu spans by %u connection%s",
			  (long long)s.rev, s.n, helpers + 1, helpers ? "s" : "");
		rc = gather(&s, b);
	}
out:
	for (size_t i = 0; i < s.n; i++)
		span_free(s.v[i]);
	free(s.v);
	free(s.cursor);
	pthread_cond_destroy(&s.cv);
	pthread_mutex_destroy(&s.mu);
	return rc;
}

int etcd_snapshot(struct store *st, struct kv_batch *b)
{
	struct etcd *e = (struct etcd *)st;
	struct http *h = hstore_claim(&e->hs);

	if (!h)
		return -ENOMEM;
	for (int restarts = 0;; restarts++) {
		int64_t at = 0;
		int err = snapshot_once(e, h, b, &at);
		/* The revision we paged at was compacted away: start over. */
		if (err == -ESTALE && at && restarts < 3)
			continue;
		if (err)
			kv_batch_clear(b);
		return err;
	}
}
