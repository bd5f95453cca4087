/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Consul KV: recursive reads, a blocking query per mount (by shard when large), txn writes. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "consul_shards.h"
#include "hstore.h"
#include "json.h"
#include "log.h"

/*
 * The largest answer we hold. A listing carries the whole mounted subtree at
 * once, so this is not a few values (Consul takes 512 KiB at most) but room
 * for a large tree: 64 MiB is some 300,000 small keys, or 96 values of the
 * largest size in base64. Anything larger is more than a config tree, and
 * holding it would let a broken or hostile server decide how much memory
 * cfgfs takes.
 */
#define CONSUL_MAX_RESPONSE (64u << 20)
/* kv_max_value_size and txn_max_req_len default to 512 KiB; 1.8 allows 64 ops per txn. */
#define CONSUL_MAX_VALUE (512u * 1024)
#define CONSUL_MAX_TXN_BODY (512u * 1024)
#define CONSUL_MAX_TXN_OPS 64
/* A blocking query waits this long at most; the server adds up to 1/16 of jitter. */
#define CONSUL_WAIT_S 300
/*
 * From this many keys a change is found by shard (consul_shards.h): a
 * listing of the whole prefix costs Consul some 2 ms of CPU per 1,000 keys,
 * a key listing of it a tenth of that.
 */
#define SHARD_MIN_KEYS 20000
#define SHARD_KEYS 3000
#define SHARD_MAX 64
/* Rounds of index checks before a prefix that keeps changing is read whole. */
#define SHARD_ROUNDS 4

struct consul {
	struct hstore hs;
	char *prefix_path; /* the prefix, URL-encoded, for /v1/kv/ */
	char *query;	   /* "dc=NAME&" or "" */
	char *token_hdr;   /* "X-Consul-Token: ..." or NULL; never logged */
	unsigned seed;
	struct http *check; /* the checks' own connection; the watch thread's */
	/*
	 * The watch's last listing the mirror holds: its index and how many
	 * entries it had. The next one is applied as its changes when nothing
	 * was deleted since (see fetch_and_apply).
	 */
	int64_t seen_index;
	size_t seen_total;
	char *prefix; /* the prefix, raw */
	size_t plen;
	struct shards shards; /* two or more: changes are found by shard */
	size_t shard_min, shard_keys;
};

/* Bytes that may stand unescaped in the path of /v1/kv/KEY. */
static bool unreserved(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
}

static char *url_escape(const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = malloc(3 * n + 1), *p = o;

	if (!o)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (unreserved(c)) {
			*p++ = c;
		} else {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		}
	}
	*p = '\0';
	return o;
}

/*
 * Whether the HTTP router would rewrite the path of this key (it cleans
 * "//", "." and ".." segments and a leading '/' with a redirect, and refuses
 * control characters): such keys are only reachable through /v1/txn.
 */
static bool url_safe(const char *k, size_t n)
{
	if (n == 0 || k[0] == '/')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = k[i];
		if (c < 0x20 || c == 0x7f || c >= 0x80)
			return false;
		if (c == '/' && i + 1 < n && k[i + 1] == '/')
			return false;
	}
	for (const char *seg = k; seg < k + n;) {
		const char *end = memchr(seg, '/', k + n - seg);
		size_t sl = end ? (size_t)(end - seg) : (size_t)(k + n - seg);
		if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		seg += sl + 1;
	}
	return true;
}

/*
 * While a blocking query waits: the agent holding it must say, within the
 * check interval, that its cluster has a leader. A hung agent would
 * otherwise hold the query for minutes, and one cut off from its servers
 * would answer nothing new.
 */
static int check_agent(void *p)
{
	struct consul *c = p;
	const char *headers[2] = {c->token_hdr, NULL};
	unsigned idx = __atomic_load_n(&c->hs.endpoint, __ATOMIC_RELAXED);
	struct hstore_target *t;
	struct http_resp rs;
	int err;

	if (!c->check && !(c->check = http_new()))
		return 0;
	t = malloc(sizeof(*t));
	if (!t)
		return 0;
	struct http_req rq = {
		.method = "GET",
		.headers = headers,
		.connect_timeout_ms = c->hs.check_ms,
		.timeout_ms = c->hs.check_ms,
		.max_body = 4096,
	};
	hstore_aim(&c->hs, idx, "/v1/status/leader", &rq, t);
	err = http_do(c->check, &rq, &rs);
	free(t);
	const char *host = hstore_host(&c->hs, idx);
	if (!err) {
		/* "\"10.0.0.1:8300\"", or "\"\"" without a leader */
		bool fine = rs.status == 200 && rs.len > 2;
		if (!fine)
			store_set_error(&c->hs.base,
					"consul at %s failed a check while holding the watch: %s",
					host, rs.status == 200 ? "no leader" : "an error answer");
		http_resp_free(&rs);
		if (fine)
			return 0;
	} else {
		store_set_error(&c->hs.base,
				"consul at %s failed a check while holding the watch: %s", host,
				http_error(c->check));
	}
	hstore_next_endpoint(&c->hs, idx);
	return -EHOSTDOWN;
}

/* One request to the endpoint in use, moving on while endpoints cannot be reached. */
static int request(struct consul *c, struct http *h, const char *method, const char *path_query,
		   const void *body, size_t blen, long timeout_ms, long stall_ms,
		   struct http_resp *rs)
{
	const char *headers[3] = {c->token_hdr, NULL, NULL};
	unsigned idx;
	struct http_req rq = {
		.method = method,
		.body = body,
		.body_len = blen,
		.headers = headers,
		.capture_header = "X-Consul-Index",
		.timeout_ms = timeout_ms,
		.stall_ms = stall_ms,
		.max_body = CONSUL_MAX_RESPONSE,
		.changes = strcmp(method, "GET") != 0,
	};

	if (timeout_ms > (long)c->hs.base.timeout_ms && !stall_ms && c->hs.check_ms) {
		/* A blocking query (silent by design): long enough to need its agent checked. */
		rq.tick = check_agent;
		rq.tick_ctx = c;
		rq.tick_ms = c->hs.check_ms;
	}
	return hstore_request(&c->hs, h, &rq, path_query, rs, &idx);
}

static const char *host_of(struct consul *c)
{
	return hstore_current_host(&c->hs);
}

/* Turn a failed answer into an errno, recording what Consul said. */
static int reply_errno(struct consul *c, const char *what, const struct http_resp *rs)
{
	char text[200];
	size_t n = rs->len < sizeof(text) - 1 ? rs->len : sizeof(text) - 1;

	memcpy(text, rs->body, n);
	text[n] = '\0';
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	if (rs->status == 403) {
		store_set_error(&c->hs.base,
				"consul at %s: %s refused: permission denied (check the ACL token)",
				host_of(c), what);
		return -EACCES;
	}
	store_set_error(&c->hs.base, "consul at %s: %s failed: HTTP %ld %s", host_of(c), what,
			rs->status, text);
	if (rs->status == 413)
		return strstr(text, "operations") ? -EXDEV : -EFBIG;
	/*
	 * "leadership lost while committing log": the entry may be committed by the next
	 * leader, so the outcome is unknown (ETIMEDOUT, as for a request that got no
	 * answer); "No cluster leader" and the like: nothing was applied, try again.
	 */
	if (rs->status == 500 && strstr(text, "while committing"))
		return -ETIMEDOUT;
	if (rs->status == 500 && strstr(text, "leader"))
		return -EAGAIN;
	return hstore_status_errno(rs->status, 0);
}

static int parse_index(const struct http_resp *rs, int64_t *idx)
{
	char *end;

	if (!rs->header)
		return -EINVAL;
	errno = 0;
	long long v = strtoll(rs->header, &end, 10);
	if (errno || end == rs->header || *end || v < 0)
		return -EINVAL;
	*idx = v;
	return 0;
}

/*
 * The indexes of a listing must be ones Consul can send: no key modified
 * after the index of the answer it came in, none created after it was
 * modified. A key taken at an absurd index would make every later real
 * change of it look old.
 */
static int check_listing(struct consul *c, const struct kv_batch *b, size_t from, int64_t index)
{
	for (size_t i = from; i < b->n; i++) {
		const struct kv_meta *m = &b->v[i].meta;
		if (m->mod_rev > index || m->create_rev > m->mod_rev) {
			store_set_error(
				&c->hs.base,
				"consul at %s sent key %.100s modified at index %lld (created "
				"at %lld) in an answer at index %lld: refusing it",
				host_of(c), b->v[i].key, (long long)m->mod_rev,
				(long long)m->create_rev, (long long)index);
			return -EBADMSG;
		}
	}
	return 0;
}

/*
 * The entries of a listing at index appended to b. With since (the index
 * of the listing the mirror holds, which had seen_total entries), only
 * those changed after it, when every entry that listing had is still there:
 * as many entries as then, plus those created since. Else, or when the
 * index went back, all of them (*whole), for the mirror to compare.
 */
static int parse_listing(struct consul *c, const struct http_resp *rs, int64_t since, int64_t index,
			 size_t seen_total, struct kv_batch *b, struct consul_count *cnt,
			 bool *whole)
{
	struct json_err jerr;
	size_t from = b->n; /* a shard's entries may follow those of others */
	int err = json_consul_list_since(rs->body, rs->len, since, b, cnt, &jerr);

	*whole = !since;
	if (!err && since && (index < since || cnt->total != seen_total + cnt->created)) {
		kv_batch_truncate(b, from);
		*whole = true;
		err = json_consul_list_since(rs->body, rs->len, 0, b, cnt, &jerr);
	}
	if (err) {
		store_set_error(&c->hs.base, "malformed listing from consul at %s: %s", host_of(c),
				jerr.msg);
		return -EIO;
	}
	return check_listing(c, b, from, index);
}

/* list(): a plain read, not blocking, not consistent (after a blocking query woke). */
#define LIST_NOW (-1)

/*
 * GET /v1/kv/PREFIX+sub?QUERY&what, blocking until the prefix changes past
 * index when it is not 0 (or the wait runs out); *out_index the
 * X-Consul-Index. Statuses other than 200 and 404 (an empty prefix, still
 * with an index) are errors.
 */
static int kv_get(struct consul *c, struct http *h, const char *sub, size_t slen, const char *what,
		  int64_t index, struct http_resp *rs, int64_t *out_index)
{
	char *pq, *esc = url_escape(sub, slen);
	long timeout = hstore_answer_ms(&c->hs), stall = c->hs.base.timeout_ms;
	int n, err;

	if (!esc)
		return -ENOMEM;
	if (index > 0) {
		/* Spread the wake-ups of many hosts, and never wait longer than the server's cap.
		 */
		unsigned wait = CONSUL_WAIT_S - (unsigned)(rand_r(&c->seed) % 30);
		n = asprintf(&pq, "/v1/kv/%s%s?%s%s&index=%lld&wait=%us", c->prefix_path, esc,
			     c->query, what, (long long)index, wait);
		timeout = (wait + wait / 16 + 30) * 1000L;
		stall = 0;
	} else {
		n = asprintf(&pq, "/v1/kv/%s%s?%s%s", c->prefix_path, esc, c->query, what);
	}
	free(esc);
	if (n < 0)
		return -ENOMEM;
	err = request(c, h, "GET", pq, NULL, 0, timeout, stall, rs);
	free(pq);
	if (err)
		return err;
	if (rs->status != 200 && rs->status != 404) {
		err = reply_errno(c, "read", rs);
		http_resp_free(rs);
		return err;
	}
	if (parse_index(rs, out_index)) {
		store_set_error(&c->hs.base,
				"consul at %s answered without a valid X-Consul-Index (%.40s)",
				host_of(c), rs->header ? rs->header : "none");
		http_resp_free(rs);
		return -EBADMSG;
	}
	if (*out_index >= HSTORE_REV_MAX) {
		store_set_error(&c->hs.base,
				"consul at %s answered at index %lld, which no Consul reaches: "
				"refusing it",
				host_of(c), (long long)*out_index);
		http_resp_free(rs);
		return -EBADMSG;
	}
	return 0;
}

/*
 * One recursive read of the prefix, or of the part of it under sub; index >
 * 0 blocks until the prefix changes past it (or the wait runs out), 0 reads
 * consistently, LIST_NOW reads with Consul's default consistency. b
 * receives the keys (with since, those changed after it when the listing
 * read at since had seen_total entries, unless *whole says the listing
 * needed reading whole: see fetch_and_apply); *out_index the
 * X-Consul-Index; *cnt the number of entries.
 */
static int list(struct consul *c, struct http *h, const char *sub, size_t slen, int64_t index,
		int64_t since, size_t seen_total, struct kv_batch *b, int64_t *out_index,
		struct consul_count *cnt, bool *whole)
{
	struct http_resp rs;
	int err;

	*whole = true;
	cnt->total = cnt->created = 0;
	if (index > 0 || index == LIST_NOW) {
		err = kv_get(c, h, sub, slen, "recurse", index > 0 ? index : 0, &rs, out_index);
	} else {
		/*
		 * Consistent: an agent that has just restarted answers default reads from
		 * the state it had on disk, possibly far behind what it acknowledged before
		 * (the chaos run saw index 2201 read back as 48), until it has replayed its
		 * log. Plain reads are rare (startup, reconnects, re-reads); blocking
		 * queries stay default, and an answer of theirs that goes back is confirmed
		 * by one of these (fetch_and_apply).
		 */
		err = kv_get(c, h, sub, slen, "consistent&recurse", 0, &rs, out_index);
	}
	if (err)
		return err;
	if (rs.status == 200) {
		const char *p = rs.body + strspn(rs.body, " \t\r\n");
		if (*p == '{') {
			/* An error object where the listing belongs: say what it says. */
			char text[200];
			size_t n = strcspn(p, "\r\n");
			snprintf(text, sizeof(text), "%.*s", (int)(n < 160 ? n : 160), p);
			store_set_error(&c->hs.base,
					"consul at %s answered HTTP 200 with an object, not a "
					"listing: %s",
					host_of(c), text);
			err = -EBADMSG;
		} else {
			err = parse_listing(c, &rs, since, *out_index, seen_total, b, cnt, whole);
		}
	}
	http_resp_recycle(h, &rs);
	return err;
}

static int consul_snapshot(struct store *s, struct kv_batch *b)
{
	struct consul *c = (struct consul *)s;
	struct http *h = hstore_claim(&c->hs);
	int64_t index;
	struct consul_count cnt;
	bool whole;

	if (!h)
		return -ENOMEM;
	int err = list(c, h, "", 0, 0, 0, 0, b, &index, &cnt, &whole);
	if (err) {
		kv_batch_clear(b);
		return err;
	}
	b->revision = index;
	return 0;
}

/*
 * After a listing the mirror now holds: cut the prefix into shards, or stop,
 * by its size. True when it cut.
 */
static bool reshard(struct consul *c, const struct kv_batch *b, bool whole, size_t total)
{
	if (!whole) {
		/* Only its changes in hand: a prefix grown large is read whole next, to be cut. */
		if (total >= c->shard_min && c->shards.n < 2)
			c->seen_index = 0;
		return false;
	}
	if (total < c->shard_min) {
		shards_clear(&c->shards);
		return false;
	}
	if (shards_build(&c->shards, b, c->plen, c->shard_keys, SHARD_MAX)) {
		log_warn("out of memory: every change of the prefix is read with all of it");
		shards_clear(&c->shards);
		return false;
	}
	log_debug("consul prefix of %zu keys: changes are found in %zu shards", total, c->shards.n);
	return true;
}

/*
 * Read the prefix (blocking past wait_index when it is not 0) and hand what
 * changed since index to the mirror. A listing that may predate a change
 * committed here meanwhile is read again at once, so it never undoes it.
 *
 * Consul answers a change under the prefix with the whole prefix. When no
 * key went away since the listing the mirror holds (c->seen_*), only the
 * entries modified after it are decoded and applied, as a batch of puts:
 * at 100k keys that is what keeps a change from costing a pass over the
 * whole mirror under its write lock. Like a whole listing, they are not
 * applied when a change was committed here since the request went out: a
 * delete's index is not in Consul's answer to it, so no tombstone would keep
 * such a listing from bringing back what was deleted here. Anything else is
 * compared whole.
 */
static int fetch_and_apply(struct consul *c, struct http *h, const struct store_watch_cb *cb,
			   int64_t wait_index, int64_t index, int64_t *got, bool first)
{
	for (int attempt = 0;; attempt++) {
		struct kv_batch b;
		struct consul_count cnt;
		bool whole;
		uint64_t epoch = cb->epoch(cb->ctx);
		int64_t since = !first && attempt == 0 && c->seen_index == index ? index : 0;

		kv_batch_init(&b);
		c->seen_index = 0; /* until this one is applied */
		int err = list(c, h, "", 0, attempt ? 0 : wait_index, since, c->seen_total, &b, got,
			       &cnt, &whole);
		if (err) {
			kv_batch_clear(&b);
			return err;
		}
		if (first && attempt == 0)
			cb->connected(cb->ctx, *got);
		if (*got < index && !first && attempt == 0) {
			/* Maybe an agent behind its own past (see list()): ask consistently. */
			log_debug("consul index went back from %lld to %lld: reading again, "
				  "consistently",
				  (long long)index, (long long)*got);
			kv_batch_clear(&b);
			continue;
		}
		if (*got < index && !first)
			log_info("consul index went back from %lld to %lld: applying the whole "
				 "prefix again",
				 (long long)index, (long long)*got);
		b.revision = *got;
		/* Same index: a timeout, nothing changed. Lower: a reset; higher: a change. */
		if (*got == index && !attempt)
			err = 0;
		else if (!whole)
			err = cb->changes(cb->ctx, &b, epoch);
		else
			err = cb->snapshot(cb->ctx, &b, epoch);
		bool cut = false;
		if (err == 0) {
			c->seen_index = *got;
			c->seen_total = cnt.total;
			cut = reshard(c, &b, whole, cnt.total);
		}
		kv_batch_clear(&b);
		/*
		 * The shards were allocated above the listing just freed, which the heap
		 * then keeps (24 MiB at 100k keys): the next listings are small.
		 */
		if (cut)
			malloc_trim(0);
		if (err != 1 || attempt >= 10)
			return err == 1 ? 0 : err;
	}
}

/* New top-level names a key listing shows outside every shard: they become shards. */
#define NEW_NAMES_MAX 16

struct cover {
	const struct consul *c;
	char *names[NEW_NAMES_MAX];
	size_t n;
	bool too_many; /* or one outside the prefix */
};

static int cover_name(void *ctx, const char *key, size_t len)
{
	struct cover *cv = ctx;
	const struct consul *c = cv->c;

	if (len < c->plen || memcmp(key, c->prefix, c->plen) || cv->n == NEW_NAMES_MAX) {
		cv->too_many = true;
		return 1;
	}
	if (shards_find(&c->shards, key + c->plen, len - c->plen) >= 0)
		return 0;
	if (!(cv->names[cv->n] = strndup(key + c->plen, len - c->plen)))
		return -ENOMEM;
	cv->n++;
	return 0;
}

static void cover_free(struct cover *cv)
{
	for (size_t i = 0; i < cv->n; i++)
		free(cv->names[i]);
	cv->n = 0;
}

/*
 * A key listing (?keys&separator=/) of the prefix, or of the part under sub:
 * blocking past index when it is not 0, its names to cover when set, the
 * X-Consul-Index in *idx, *found false when nothing is there (a 404, whose
 * index is the part's newest tombstone, or when it has none the whole
 * table's).
 */
static int key_list(struct consul *c, struct http *h, const char *sub, size_t slen, int64_t index,
		    struct cover *cover, int64_t *idx, bool *found)
{
	struct http_resp rs;
	struct json_err jerr;
	int err = kv_get(c, h, sub, slen, "keys&separator=/", index, &rs, idx);

	if (err)
		return err;
	*found = rs.status == 200;
	if (*found && cover) {
		err = json_consul_keys(rs.body, rs.len, cover_name, cover, &jerr);
		if (err == -EINVAL) {
			store_set_error(&c->hs.base, "malformed key listing from consul at %s: %s",
					host_of(c), jerr.msg);
			err = -EIO;
		} else if (err == 1) {
			err = 0;
		}
	}
	http_resp_recycle(h, &rs);
	return err;
}

/* The keys of one shard's whole listing (b->v[from..]), to tell which of the mirror's went away. */
struct gone {
	struct kv_batch *b;
	size_t *sorted; /* indexes into b->v, by key */
	size_t n;
	int64_t rev; /* the deletes' index */
};

static int kv_key_cmp(const struct kv *x, const char *key, size_t klen)
{
	int c = memcmp(x->key, key, x->klen < klen ? x->klen : klen);

	return c ? c : (x->klen > klen) - (x->klen < klen);
}

static int by_key(const void *x, const void *y, void *batch)
{
	const struct kv_batch *kb = batch;
	const struct kv *b = &kb->v[*(const size_t *)y];

	return kv_key_cmp(&kb->v[*(const size_t *)x], b->key, b->klen);
}

static int gone_key(void *ctx, const char *key, size_t klen)
{
	struct gone *g = ctx;
	size_t lo = 0, hi = g->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = kv_key_cmp(&g->b->v[g->sorted[mid]], key, klen);
		if (c == 0)
			return 0;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	struct kv_meta m = {.mod_rev = g->rev};
	return kv_batch_push(g->b, key, klen, NULL, &m);
}

/*
 * b->v[from..] is all a shard holds now: append a delete, at index rev, of
 * every key the mirror holds under it that is not there.
 */
static int add_gone(const struct store_watch_cb *cb, const struct shard *sh, struct kv_batch *b,
		    size_t from, int64_t rev)
{
	struct gone g = {b, NULL, b->n - from, rev};

	if (!cb->keys_under)
		return 1;
	g.sorted = malloc((g.n ? g.n : 1) * sizeof(*g.sorted));
	if (!g.sorted)
		return -ENOMEM;
	for (size_t i = 0; i < g.n; i++)
		g.sorted[i] = from + i;
	qsort_r(g.sorted, g.n, sizeof(*g.sorted), by_key, b);
	int err = cb->keys_under(cb->ctx, sh->pfx, sh->len, gone_key, &g);
	free(g.sorted);
	return err;
}

/*
 * One round over the shards: ask each for its index and list those that
 * moved into b (with deletes of what went from them), their new indexes and
 * totals into idx and tot (by shard). Every answer must be at or below
 * *top, the index the round reads the prefix at; one above it raises *top
 * and returns 2 (read the round again). 1: read the prefix whole.
 */
static int shard_round(struct consul *c, struct http *h, const struct store_watch_cb *cb,
		       int64_t *top, struct kv_batch *b, int64_t *idx, size_t *tot)
{
	bool check_top = false;

	for (size_t i = 0; i < c->shards.n; i++) {
		const struct shard *sh = &c->shards.v[i];
		bool found;
		int err = key_list(c, h, sh->pfx, sh->len, 0, NULL, &idx[i], &found);
		tot[i] = sh->total;
		if (err)
			return err;
		if (!found) {
			/* Empty: unchanged if it was, else what it held went away. */
			check_top |= sh->total && idx[i] > *top;
			idx[i] = sh->total ? -1 : sh->index;
			continue;
		}
		if (idx[i] > *top) {
			*top = idx[i];
			return 2;
		}
	}
	for (size_t i = 0; i < c->shards.n; i++) {
		const struct shard *sh = &c->shards.v[i];
		struct consul_count cnt;
		bool whole;
		size_t from = b->n;
		if (idx[i] == sh->index)
			continue;
		int err = list(c, h, sh->pfx, sh->len, LIST_NOW, sh->index, sh->total, b, &idx[i],
			       &cnt, &whole);
		if (err)
			return err;
		if (cnt.total == 0) {
			/* A 404: its index may be the whole table's (see key_list). */
			check_top |= idx[i] > *top;
			idx[i] = 0;
		} else if (idx[i] > *top) {
			*top = idx[i];
			return 2;
		}
		/* Fewer than expected: it is all there, and the mirror tells what went. */
		if (whole && (err = add_gone(cb, sh, b, from, idx[i] ? idx[i] : *top)))
			return err;
		tot[i] = cnt.total;
	}
	if (check_top) {
		/* Was that index a delete after *top? The prefix's own index tells. */
		int64_t now;
		bool found;
		int err = key_list(c, h, "", 0, 0, NULL, &now, &found);
		if (err)
			return err;
		if (!found)
			return 1;
		if (now > *top) {
			*top = now;
			return 2;
		}
	}
	return 0;
}

/* New names outside every shard become shards of their own; 1: cut the prefix again instead. */
static int add_shards(struct consul *c, struct cover *cv)
{
	if (cv->too_many || c->shards.n + cv->n > 2 * SHARD_MAX)
		return 1;
	for (size_t i = 0; i < cv->n; i++) {
		int err = shards_add(&c->shards, cv->names[i], strlen(cv->names[i]));
		if (err)
			return err;
	}
	return 0;
}

/*
 * A change found by shard (consul_shards.h): a key listing of the prefix
 * blocks past wait_index; when it wakes at a new index, every shard is
 * asked for its index, those that moved are listed, and what changed in
 * them goes to the mirror as one batch. Whatever the round read was at or
 * below the index the prefix woke at (else the round is read again), so it
 * is the prefix at that index: a transaction across shards is seen whole.
 * 0 (done, *got the index), 1 (read the prefix whole), or an error.
 */
static int shard_fetch(struct consul *c, struct http *h, const struct store_watch_cb *cb,
		       int64_t wait_index, int64_t *got)
{
	struct cover cv = {.c = c};
	bool found;
	int err = key_list(c, h, "", 0, wait_index, &cv, got, &found);

	if (!err && *got > wait_index && found)
		err = add_shards(c, &cv);
	cover_free(&cv);
	if (err < 0)
		return err;
	if (*got == wait_index)
		return 0; /* the wait ran out */
	if (err || *got < wait_index || !found) {
		log_debug("consul prefix at index %lld: %s; reading it whole", (long long)*got,
			  *got < wait_index ? "the index went back"
			  : found	    ? "too many new names"
					    : "it is empty");
		return 1;
	}
	size_t n = c->shards.n;
	int64_t *idx = calloc(n, sizeof(*idx)), top = *got;
	size_t *tot = calloc(n, sizeof(*tot));
	uint64_t epoch = cb->epoch(cb->ctx);

	err = idx && tot ? 1 : -ENOMEM;
	for (int round = 0; idx && tot && round < SHARD_ROUNDS; round++) {
		struct kv_batch b;
		kv_batch_init(&b);
		err = shard_round(c, h, cb, &top, &b, idx, tot);
		if (err == 0) {
			b.revision = top;
			int applied = cb->changes(cb->ctx, &b, epoch);
			/* 1: a change committed here meanwhile; read again what includes it. */
			err = applied == 1 ? 2 : applied;
			epoch = cb->epoch(cb->ctx);
		}
		kv_batch_clear(&b);
		if (err == 0) {
			size_t moved = 0;
			for (size_t i = 0; i < n; i++) {
				moved += idx[i] != c->shards.v[i].index;
				c->seen_total += tot[i] - c->shards.v[i].total;
				c->shards.v[i].index = idx[i];
				c->shards.v[i].total = tot[i];
			}
			c->seen_index = *got = top;
			log_debug("consul prefix at index %lld: read from %zu of %zu shards",
				  (long long)top, moved, n);
			break;
		}
		if (err != 2)
			break;
		err = 1; /* read again, or whole after the last round */
	}
	free(idx);
	free(tot);
	return err;
}

/*
 * One blocking query at a time, following Consul's rules for the index: a
 * result at the same index is a timeout, one at a lower index means the
 * store was reset (reread everything), an index of 0 must never be waited
 * on (it returns at once). A change is read with the whole prefix, or, from
 * SHARD_MIN_KEYS keys, from the shards it moved (shard_fetch). A token
 * bucket (burst 4, one token per 50 ms) keeps a busy or broken server from
 * being hammered.
 */
static int consul_watch(struct store *s, int64_t from_rev, const struct store_watch_cb *cb)
{
	struct consul *c = (struct consul *)s;
	struct http *h = hstore_claim(&c->hs);
	int64_t index = from_rev > 1 ? from_rev - 1 : 1;
	double tokens = 4;
	int64_t last = mono_ms();

	if (!h)
		return -ENOMEM;
	/*
	 * Start with a plain read: it shows at once that the store answers (a
	 * blocking query on a quiet prefix returns only after minutes), and it
	 * catches up with whatever changed while we were not connected.
	 */
	int64_t got;
	int err = fetch_and_apply(c, h, cb, 0, index, &got, true);
	if (err)
		return hstore_stopping(&c->hs) ? -ECANCELED : err;
	index = got > 0 ? got : 1;
	for (;;) {
		int64_t now = mono_ms();
		tokens += (now - last) / 50.0;
		if (tokens > 4)
			tokens = 4;
		last = now;
		if (tokens < 1) {
			struct timespec ts = {0, (long)((1 - tokens) * 50) * 1000000L};
			nanosleep(&ts, NULL);
			tokens = 1;
			last = mono_ms();
		}
		tokens -= 1;

		err = c->shards.n >= 2 ? shard_fetch(c, h, cb, index, &got) : -EAGAIN;
		if (err == 1) {
			c->seen_index = 0; /* whole, for new shards */
			err = fetch_and_apply(c, h, cb, 0, index, &got, false);
		} else if (err == -EAGAIN) {
			err = fetch_and_apply(c, h, cb, index, index, &got, false);
		}
		if (err)
			return hstore_stopping(&c->hs) ? -ECANCELED : err;
		index = got > 0 ? got : 1;
	}
}

/* A single put too large for a txn body: plain PUT ?cas=, then read the new index back. */
static int plain_put(struct consul *c, struct http *h, const struct kv_op *op,
		     struct txn_result *res)
{
	struct http_resp rs;
	char pq[8192];
	int err;
	char *path = url_escape(op->key, op->klen);

	if (!path)
		return -ENOMEM;
	if (op->expect == KV_ANY)
		snprintf(pq, sizeof(pq), "/v1/kv/%s?%sflags=%llu", path, c->query,
			 (unsigned long long)op->flags);
	else
		snprintf(pq, sizeof(pq), "/v1/kv/%s?%sflags=%llu&cas=%lld", path, c->query,
			 (unsigned long long)op->flags, (long long)op->expect);
	err = request(c, h, "PUT", pq, op->val, op->vlen, c->hs.base.timeout_ms, 0, &rs);
	if (err == -EIO)
		err = -ETIMEDOUT; /* lost once sent: it may have been applied */
	if (err)
		goto out;
	if (rs.status != 200) {
		err = reply_errno(c, "write", &rs);
	} else if (strncmp(rs.body, "true", 4) != 0) {
		store_set_error(&c->hs.base,
				"a key changed in consul since this host last read it");
		res->failed = 0;
		res->current = -1;
		err = -ESTALE;
	}
	http_resp_free(&rs);
	if (err)
		goto out;
	/* The answer carries no index: ask for it. */
	snprintf(pq, sizeof(pq), "/v1/kv/%s?%s", path, c->query);
	err = request(c, h, "GET", pq, NULL, 0, c->hs.base.timeout_ms, 0, &rs);
	if (!err) {
		struct kv_batch b;
		struct json_err jerr;
		kv_batch_init(&b);
		if (rs.status == 200 && json_consul_list(rs.body, rs.len, &b, &jerr) == 0 && b.n)
			res->rev = b.v[0].meta.mod_rev;
		kv_batch_clear(&b);
		http_resp_free(&rs);
	}
	err = 0;
out:
	free(path);
	return err;
}

/*
 * The ModifyIndex of the first guarded key of ops now (0: it does not
 * exist, -1: unknown), for the log line of a refused change: a refused
 * transaction does not say it.
 */
/* The ModifyIndex of key now (0: no such key; -1: not known). */
static int64_t current_index(struct consul *c, struct http *h, const char *key, size_t klen)
{
	struct http_resp rs;
	struct json_err jerr;
	int64_t rev = -1;

	/* A txn "get" reads any key; it fails with 409 when the key is missing. */
	char *body = json_consul_get_req(key, klen);
	if (body && request(c, h, "PUT", "/v1/txn", body, strlen(body), c->hs.base.timeout_ms, 0,
			    &rs) == 0) {
		bool denied;
		char what[64];
		int64_t idx;
		long op;
		if (rs.status == 409)
			rev = 0;
		else if (rs.status == 200 &&
			 json_consul_txn_resp(rs.body, rs.len, 200, &idx, &denied, &op, what,
					      sizeof(what), &jerr) == 0)
			rev = idx;
		http_resp_free(&rs);
	}
	free(body);
	return rev;
}

static int consul_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res)
{
	struct consul *c = (struct consul *)s;
	struct http *h = hstore_http();
	struct http_resp rs;
	int err;

	if (!h)
		return -ENOMEM;
	if (n > s->caps.max_txn_ops) {
		store_set_error(&c->hs.base,
				"%zu changes do not fit in one Consul transaction (at most %zu)", n,
				s->caps.max_txn_ops);
		return -EXDEV;
	}
	for (size_t i = 0; i < n; i++) {
		if (ops[i].vlen > s->caps.max_value) {
			store_set_error(&c->hs.base,
					"a value of %zu bytes is more than Consul accepts (%u)",
					ops[i].vlen, CONSUL_MAX_VALUE);
			return -EFBIG;
		}
	}
	char *body = json_consul_txn_req(ops, n);
	if (!body) {
		/* jansson takes only UTF-8 keys, and Consul could not list others anyway. */
		store_set_error(&c->hs.base, "a key for Consul must be UTF-8 text");
		return -EINVAL;
	}
	size_t blen = strlen(body);
	if (blen > CONSUL_MAX_TXN_BODY) {
		free(body);
		/* base64 makes a large value too big for a transaction; one key can go as is. */
		if (n == 1 && ops[0].kind == KV_PUT && url_safe(ops[0].key, ops[0].klen))
			return plain_put(c, h, &ops[0], res);
		store_set_error(&c->hs.base,
				"%zu bytes are more than one Consul transaction may carry (%u)",
				blen, CONSUL_MAX_TXN_BODY);
		return -EFBIG;
	}
	char pq[256];
	snprintf(pq, sizeof(pq), "/v1/txn%s%.*s", c->query[0] ? "?" : "",
		 c->query[0] ? (int)strlen(c->query) - 1 : 0, c->query);
	err = request(c, h, "PUT", pq, body, blen, s->timeout_ms, 0, &rs);
	free(body);
	/* A connection lost once the transaction was sent: it may have been applied. */
	if (err == -EIO)
		err = -ETIMEDOUT;
	if (err)
		return err;
	if (rs.status != 200 && rs.status != 409) {
		err = reply_errno(c, "transaction", &rs);
		http_resp_free(&rs);
		return err;
	}
	struct json_err jerr;
	char what[200];
	bool denied;
	int64_t index;
	long op;
	err = json_consul_txn_resp(rs.body, rs.len, rs.status, &index, &denied, &op, what,
				   sizeof(what), &jerr);
	long status = rs.status;
	http_resp_free(&rs);
	if (err) {
		store_set_error(&c->hs.base, "malformed transaction answer from consul at %s: %s",
				host_of(c), jerr.msg);
		return -EIO;
	}
	if (status == 409) {
		if (denied) {
			store_set_error(&c->hs.base,
					"consul at %s: permission denied (check the ACL token)",
					host_of(c));
			return -EACCES;
		}
		store_set_error(&c->hs.base, "consul at %s: %s", host_of(c), what);
		/* Consul names the op that failed; when it does not, the first guarded one. */
		res->failed = n;
		for (size_t i = 0; i < n && res->failed == n; i++)
			if ((op < 0 || (size_t)op == i) && ops[i].expect != KV_ANY)
				res->failed = i;
		res->current = res->failed < n ? current_index(c, h, ops[res->failed].key,
							       ops[res->failed].klen)
					       : -1;
		return -ESTALE;
	}
	res->rev = index;
	return 0;
}

static void consul_free(struct store *s)
{
	struct consul *c = (struct consul *)s;

	hstore_destroy(&c->hs);
	http_free(c->check);
	free(c->prefix_path);
	free(c->prefix);
	shards_clear(&c->shards);
	free(c->query);
	if (c->token_hdr) {
		memset(c->token_hdr, 0, strlen(c->token_hdr));
		free(c->token_hdr);
	}
	free(c);
}

static const struct store_ops consul_ops = {
	.snapshot = consul_snapshot,
	.watch = consul_watch,
	.txn = consul_txn,
	.stop = hstore_stop,
	.thread_done = hstore_thread_done,
	.endpoint = hstore_endpoint,
	.free = consul_free,
};

/*
 * The ACL token: from -o token_file, else CONSUL_HTTP_TOKEN. It is never
 * taken from the command line (ps would show it) and never logged; what is
 * read here is wiped once the header holds it.
 */
static int load_token(const struct store_cfg *cfg, char **token, char *err, size_t errlen)
{
	const char *file = store_cfg_opt(cfg, "token_file");
	char buf[4097];

	*token = NULL;
	if (!file) {
		const char *env = getenv("CONSUL_HTTP_TOKEN");
		if (env && *env && !(*token = strdup(env))) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		return 0;
	}
	if (!*file) {
		snprintf(err, errlen, "-o token_file needs a file name");
		return -EINVAL;
	}
	FILE *f = fopen(file, "r");
	if (!f) {
		snprintf(err, errlen, "token file %s: %s", file, strerror(errno));
		return -EINVAL;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n == 0 || n == sizeof(buf) - 1 || strchr(buf, '\n')) {
		memset(buf, 0, sizeof(buf));
		snprintf(err, errlen, "token file %s does not hold one token", file);
		return -EINVAL;
	}
	*token = strdup(buf);
	memset(buf, 0, sizeof(buf));
	if (!*token) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

static int consul_open(const struct store_cfg *cfg, struct store **out, char *err, size_t errlen)
{
	const struct store_url *u = &cfg->url;
	const char *dc = store_cfg_opt(cfg, "dc");
	char *token;

	if (dc && !*dc) {
		snprintf(err, errlen, "-o dc needs a datacenter name");
		return -EINVAL;
	}
	if (u->plen && !url_safe(u->prefix, u->plen)) {
		snprintf(err, errlen,
			 "Consul cannot serve the prefix '%.*s' through its HTTP API "
			 "(leading '/', empty, '.' or '..' segments, or control characters)",
			 (int)u->plen, u->prefix);
		return -EINVAL;
	}
	int rc = load_token(cfg, &token, err, errlen);
	if (rc)
		return rc;
	struct consul *c = calloc(1, sizeof(*c));
	if (!c) {
		free(token);
		return -ENOMEM;
	}
	rc = hstore_init(&c->hs, &consul_ops, cfg, err, errlen);
	if (rc) {
		free(token);
		consul_free(&c->hs.base);
		return rc;
	}
	c->hs.base.caps = (struct store_caps){
		.max_value = CONSUL_MAX_VALUE,
		.max_txn_ops = CONSUL_MAX_TXN_OPS,
		.has_flags = true,
		.delete_prefix = true,
		.atomic_txn = true,
	};
	c->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)c;
	c->prefix_path = url_escape(u->prefix, u->plen);
	c->prefix = malloc(u->plen + 1);
	if (c->prefix) {
		memcpy(c->prefix, u->prefix, u->plen);
		c->prefix[u->plen] = '\0';
	}
	c->plen = u->plen;
	c->shard_min = SHARD_MIN_KEYS;
	c->shard_keys = SHARD_KEYS;
	/* Tests: shards from MIN keys, of about KEYS each. */
	const char *t = getenv("CFGFS_TEST_CONSUL_SHARDS");
	unsigned long tmin, tkeys;
	if (t && sscanf(t, "%lu:%lu", &tmin, &tkeys) == 2 && tkeys) {
		c->shard_min = tmin;
		c->shard_keys = tkeys;
	}
	if (dc) {
		char *e = url_escape(dc, strlen(dc));
		if (e && asprintf(&c->query, "dc=%s&", e) < 0)
			c->query = NULL;
		free(e);
	} else {
		c->query = strdup("");
	}
	if (token && asprintf(&c->token_hdr, "X-Consul-Token: %s", token) < 0)
		c->token_hdr = NULL;
	bool nomem = !c->prefix_path || !c->prefix || !c->query || (token && !c->token_hdr);
	if (token) {
		memset(token, 0, strlen(token));
		free(token);
	}
	if (nomem) {
		consul_free(&c->hs.base);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*out = &c->hs.base;
	return 0;
}

static const char *const consul_options[] = {"dc", "token_file", HSTORE_OPTIONS, NULL};

/* The consul CLI's variables (api.go); CONSUL_HTTP_TOKEN is read by load_token. */
static const struct store_env consul_env[] = {
	{"cacert", "CONSUL_CACERT", ENV_VALUE},
	{"cert", "CONSUL_CLIENT_CERT", ENV_VALUE},
	{"key", "CONSUL_CLIENT_KEY", ENV_VALUE},
	{"insecure", "CONSUL_HTTP_SSL_VERIFY", ENV_FALSE},
	{"tls_server_name", "CONSUL_TLS_SERVER_NAME", ENV_VALUE},
	{"token_file", "CONSUL_HTTP_TOKEN_FILE", ENV_VALUE},
	{NULL, NULL, ENV_VALUE},
};

const struct store_driver consul_driver = {
	.scheme = "consul",
	.tls_scheme = "consuls",
	.default_port = "8500",
	.options = consul_options,
	.env = consul_env,
	.endpoints_env = "CONSUL_HTTP_ADDR",
	.tls_env = "CONSUL_HTTP_SSL",
	.open = consul_open,
};
