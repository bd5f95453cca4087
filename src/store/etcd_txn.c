/* SPDX-License-Identifier: GPL-2.0-or-later */
/* etcd transactions: the limits checked before sending, and a retry that cannot apply twice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_int.h"
#include "json.h"
#include "log.h"

/*
 * One attempt at a transaction: 0 (res->rev), -ESTALE (res says which key),
 * or an errno; *unknown when it may or may not have been applied (no
 * answer in time, a connection lost after sending, a proposal etcd gave up
 * waiting for). *idx: the endpoint it went to.
 */
static int txn_once(struct etcd *e, struct http *h, const char *body, const struct kv_op *ops,
		    size_t n, size_t ncmp, struct txn_result *res, bool *unknown, unsigned *idx)
{
	struct store *s = &e->hs.base;
	struct http_resp rs;
	int err;

	*unknown = false;
	err = etcd_post(e, h, "/v3/kv/txn", body, s->timeout_ms, false, &rs, idx);
	if (err) {
		*unknown = err == -ETIMEDOUT || err == -EIO;
		return err;
	}
	if (rs.status != 200) {
		int code;
		char msg[200];
		err = etcd_reply_errno(e, *idx, "transaction", &rs);
		/* etcd says InvalidArgument for both; the message tells them apart. */
		if (json_etcd_error(rs.body, rs.len, &code, msg, sizeof(msg))) {
			if (strstr(msg, "too large"))
				err = -EFBIG;
			else if (strstr(msg, "too many operations"))
				err = -EXDEV;
			*unknown = strstr(msg, "timed out") || strstr(msg, "leader changed");
		}
		http_resp_free(&rs);
		return err;
	}
	struct json_err jerr;
	struct etcd_header hdr;
	int64_t *current = calloc(ncmp ? ncmp : 1, sizeof(*current));
	bool ok;
	err = current ? json_etcd_txn_resp(rs.body, rs.len, &ok, current, ncmp, &hdr, &jerr)
		      : -ENOMEM;
	http_resp_free(&rs);
	if (err) {
		free(current);
		if (err == -ENOMEM)
			return err;
		store_set_error(s, "malformed transaction response from etcd: %s", jerr.msg);
		*unknown = true;
		return -EIO;
	}
	if (!ok) {
		store_set_error(s, "a key changed in etcd since this host last read it");
		store_txn_refused(ops, n, current, res);
		free(current);
		return -ESTALE;
	}
	free(current);
	res->rev = hdr.revision;
	return 0;
}

/*
 * Whether sending ops a second time is harmless: one of them compares a
 * key it also changes, so once the transaction is applied, a copy of it
 * fails that compare.
 */
static bool retry_safe(const struct kv_op *ops, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ops[i].expect != KV_ANY && (ops[i].kind == KV_PUT || ops[i].kind == KV_DELETE))
			return true;
	return false;
}

/*
 * Whether the store holds what ops wrote (an earlier attempt was applied):
 * each key put has that value, each key deleted is gone. *rev: the
 * revision that wrote them.
 */
static bool applied(struct etcd *e, struct http *h, const struct kv_op *ops, size_t n, int64_t *rev)
{
	bool checked = false;

	*rev = 0;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].kind != KV_PUT && ops[i].kind != KV_DELETE)
			continue;
		char *body = json_etcd_range_req(ops[i].key, ops[i].klen, "", 0, 0, 1);
		struct http_resp rs;
		unsigned idx;
		if (!body)
			return false;
		int err = etcd_post(e, h, "/v3/kv/range", body, e->hs.base.timeout_ms, true, &rs,
				    &idx);
		free(body);
		if (err)
			return false;
		struct kv_batch b;
		struct json_err jerr;
		struct etcd_header hdr;
		bool more;
		kv_batch_init(&b);
		err = rs.status == 200
			      ? json_etcd_range_resp(rs.body, rs.len, &b, &more, NULL, &hdr, &jerr)
			      : -EIO;
		http_resp_free(&rs);
		bool same = !err;
		if (same && ops[i].kind == KV_PUT) {
			same = b.n == 1 && b.v[0].val->len == ops[i].vlen &&
			       memcmp(b.v[0].val->data, ops[i].val, ops[i].vlen) == 0;
			if (same && b.v[0].meta.mod_rev > *rev)
				*rev = b.v[0].meta.mod_rev;
		} else if (same) {
			same = b.n == 0;
			if (same && !*rev)
				*rev = hdr.revision;
		}
		kv_batch_clear(&b);
		if (!same)
			return false;
		checked = true;
	}
	return checked;
}

int etcd_txn(struct store *s, const struct kv_op *ops, size_t n, struct txn_result *res)
{
	struct etcd *e = (struct etcd *)s;
	struct http *h = hstore_http();
	size_t bytes = ETCD_REQUEST_SLACK;
	unsigned idx;
	bool unknown;
	int err;

	if (!h)
		return -ENOMEM;
	/* etcd limits the compares and the operations of a transaction separately. */
	size_t ncmp = 0, nops = 0;
	for (size_t i = 0; i < n; i++) {
		ncmp += ops[i].expect != KV_ANY;
		nops += ops[i].kind != KV_CHECK;
	}
	if (ncmp > s->caps.max_txn_ops || nops > s->caps.max_txn_ops) {
		store_set_error(s, "%zu changes do not fit in one etcd transaction (at most %zu)",
				ncmp > nops ? ncmp : nops, s->caps.max_txn_ops);
		return -EXDEV;
	}
	for (size_t i = 0; i < n; i++)
		bytes += 2 * ops[i].klen + ops[i].vlen + 16;
	if (bytes > ETCD_MAX_REQUEST) {
		store_set_error(s, "%zu bytes are more than etcd accepts in one request (%u)",
				bytes, ETCD_MAX_REQUEST);
		return -EFBIG;
	}
	char *body = json_etcd_txn_req(ops, n, etcd_prefix_end);
	if (!body)
		return -ENOMEM;
	err = txn_once(e, h, body, ops, n, ncmp, res, &unknown, &idx);
	if (err && unknown && s->url->nhosts > 1 && retry_safe(ops, n)) {
		/*
		 * Ask another member. The compares make this safe: if the first
		 * attempt was (or is later) applied, at most one of the two
		 * passes its compares.
		 */
		log_warn("%s; the transaction may or may not be applied: sending it again to "
			 "another member",
			 store_error(s));
		hstore_next_endpoint(&e->hs, idx);
		err = txn_once(e, h, body, ops, n, ncmp, res, &unknown, &idx);
		int64_t rev;
		if (err == -ESTALE && applied(e, h, ops, n, &rev)) {
			log_info("the first attempt had been applied, at revision %lld",
				 (long long)rev);
			res->rev = rev;
			err = 0;
		}
	}
	free(body);
	return err;
}
