/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The etcd v3 JSON gateway's requests and responses (bytes are base64, int64s are strings). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

/*
 * Every number we read (revisions, versions, ids) is a non-negative 64-bit
 * integer; the gateway sends them as decimal strings, plain integers are
 * accepted too. max bounds the value (INT64_MAX or UINT64_MAX).
 */
static int get_num(json_t *obj, const char *name, uint64_t max, uint64_t *out, struct json_err *err)
{
	json_t *v = json_object_get(obj, name);

	*out = 0;
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		if (x < 0)
			return json_fail(err, "field %s is negative", name);
		*out = (uint64_t)x;
		return 0;
	}
	if (!json_is_string(v))
		return json_fail(err, "field %s is not a number", name);
	const char *s = json_string_value(v);
	char *end;
	errno = 0;
	unsigned long long x = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || errno || *end || x > max)
		return json_fail(err, "field %s is not a number in range: '%.40s'", name, s);
	*out = x;
	return 0;
}

static int get_i64(json_t *obj, const char *name, int64_t *out, struct json_err *err)
{
	uint64_t x;
	int rc = get_num(obj, name, INT64_MAX, &x, err);

	*out = (int64_t)x;
	return rc;
}

static int get_u64(json_t *obj, const char *name, uint64_t *out, struct json_err *err)
{
	return get_num(obj, name, UINT64_MAX, out, err);
}

static bool get_bool(json_t *obj, const char *name)
{
	return json_is_true(json_object_get(obj, name));
}

static int parse_header(json_t *root, struct etcd_header *hdr, struct json_err *err)
{
	json_t *h = json_object_get(root, "header");

	memset(hdr, 0, sizeof(*hdr));
	if (!h)
		return 0;
	if (!json_is_object(h))
		return json_fail(err, "header is not an object");
	if (get_i64(h, "revision", &hdr->revision, err))
		return -EINVAL;
	return get_u64(h, "cluster_id", &hdr->cluster_id, err);
}

/* Decode base64 field name of obj into a new blob; a missing field is empty. */
static int get_blob(json_t *obj, const char *name, struct blob **out, struct json_err *err)
{
	char what[64];

	snprintf(what, sizeof(what), "field %s", name);
	return json_b64_blob(json_object_get(obj, name), false, what, out, err);
}

/* One mvccpb.KeyValue; a delete when is_delete. */
static int parse_kv(json_t *kv, bool is_delete, struct kv_batch *out, struct json_err *err)
{
	struct kv_meta meta = {0};
	struct blob *key = NULL, *val = NULL;
	int rc;

	if (!json_is_object(kv))
		return json_fail(err, "key-value entry is not an object");
	if (get_i64(kv, "mod_revision", &meta.mod_rev, err) ||
	    get_i64(kv, "create_revision", &meta.create_rev, err) ||
	    get_i64(kv, "version", &meta.version, err))
		return -EINVAL;
	if (!json_object_get(kv, "key"))
		return json_fail(err, "key-value entry without a key");
	if (get_blob(kv, "key", &key, err))
		return -EINVAL;
	if (key->len == 0) {
		blob_unref(key);
		return json_fail(err, "key-value entry with an empty key");
	}
	if (!is_delete && get_blob(kv, "value", &val, err)) {
		blob_unref(key);
		return -EINVAL;
	}
	rc = kv_batch_push(out, key->data, key->len, val, &meta);
	blob_unref(key);
	return rc ? json_fail(err, "out of memory") : 0;
}

static json_t *load(const char *buf, size_t len, struct json_err *err)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);

	if (!root) {
		json_fail(err, "not JSON: %s", je.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		json_fail(err, "not a JSON object");
		return NULL;
	}
	return root;
}

char *json_etcd_range_req(const char *key, size_t klen, const char *end, size_t elen, int64_t rev,
			  int64_t limit)
{
	char num[32];
	json_t *j = json_object();

	if (!j)
		return NULL;
	json_object_set_new(j, "key", json_b64_string(key, klen));
	json_object_set_new(j, "range_end", json_b64_string(end, elen));
	if (rev > 0) {
		snprintf(num, sizeof(num), "%lld", (long long)rev);
		json_object_set_new(j, "revision", json_string(num));
	}
	if (limit > 0) {
		snprintf(num, sizeof(num), "%lld", (long long)limit);
		json_object_set_new(j, "limit", json_string(num));
	}
	return json_dump_compact(j);
}

char *json_etcd_check_req(const char *key, size_t klen)
{
	json_t *j = json_object();

	if (!j)
		return NULL;
	json_object_set_new(j, "key", json_b64_string(key, klen));
	json_object_set_new(j, "serializable", json_true());
	json_object_set_new(j, "keys_only", json_true());
	return json_dump_compact(j);
}

int json_etcd_range_resp(const char *buf, size_t len, struct kv_batch *out, bool *more,
			 int64_t *count, struct etcd_header *hdr, struct json_err *err)
{
	json_t *root = load(buf, len, err);
	int rc = -EINVAL;

	if (!root)
		return -EINVAL;
	if (parse_header(root, hdr, err))
		goto out;
	json_t *kvs = json_object_get(root, "kvs");
	if (kvs && !json_is_array(kvs)) {
		json_fail(err, "kvs is not an array");
		goto out;
	}
	size_t i;
	json_t *kv;
	json_array_foreach (kvs, i, kv) {
		if (parse_kv(kv, false, out, err))
			goto out;
	}
	*more = get_bool(root, "more");
	if (count && get_i64(root, "count", count, err))
		goto out;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

char *json_etcd_watch_req(const char *key, size_t klen, const char *end, size_t elen,
			  int64_t start_rev)
{
	char num[32];
	json_t *cr = json_object(), *j = json_object();

	if (!cr || !j) {
		json_decref(cr);
		json_decref(j);
		return NULL;
	}
	snprintf(num, sizeof(num), "%lld", (long long)start_rev);
	json_object_set_new(cr, "key", json_b64_string(key, klen));
	json_object_set_new(cr, "range_end", json_b64_string(end, elen));
	json_object_set_new(cr, "start_revision", json_string(num));
	json_object_set_new(cr, "progress_notify", json_true());
	json_object_set_new(j, "create_request", cr);
	return json_dump_compact(j);
}

static void copy_str(char *dst, size_t n, json_t *v)
{
	snprintf(dst, n, "%s", json_is_string(v) ? json_string_value(v) : "");
}

int json_etcd_watch_msg(const char *buf, size_t len, struct etcd_watch_msg *m, struct json_err *err)
{
	json_t *root = load(buf, len, err);
	int rc = -EINVAL;

	m->created = m->canceled = m->error = false;
	m->compact_rev = 0;
	m->reason[0] = '\0';
	memset(&m->hdr, 0, sizeof(m->hdr));
	if (!root)
		return -EINVAL;
	json_t *e = json_object_get(root, "error");
	if (e) {
		m->error = true;
		if (json_is_object(e))
			copy_str(m->reason, sizeof(m->reason), json_object_get(e, "message"));
		else
			copy_str(m->reason, sizeof(m->reason), e);
		rc = 0;
		goto out;
	}
	json_t *r = json_object_get(root, "result");
	if (!json_is_object(r)) {
		json_fail(err, "watch message without a result");
		goto out;
	}
	if (parse_header(r, &m->hdr, err))
		goto out;
	m->created = get_bool(r, "created");
	m->canceled = get_bool(r, "canceled");
	if (get_i64(r, "compact_revision", &m->compact_rev, err))
		goto out;
	copy_str(m->reason, sizeof(m->reason), json_object_get(r, "cancel_reason"));
	json_t *evs = json_object_get(r, "events");
	if (evs && !json_is_array(evs)) {
		json_fail(err, "events is not an array");
		goto out;
	}
	size_t i;
	json_t *ev;
	json_array_foreach (evs, i, ev) {
		if (!json_is_object(ev)) {
			json_fail(err, "event is not an object");
			goto out;
		}
		/* A PUT is enum value 0, which the gateway leaves out. */
		json_t *type = json_object_get(ev, "type");
		bool del = false;
		if (type) {
			if (json_is_string(type) && strcmp(json_string_value(type), "DELETE") == 0)
				del = true;
			else if (!(json_is_string(type) &&
				   strcmp(json_string_value(type), "PUT") == 0)) {
				json_fail(err, "unknown event type");
				goto out;
			}
		}
		if (parse_kv(json_object_get(ev, "kv"), del, &m->events, err))
			goto out;
	}
	rc = 0;
out:
	json_decref(root);
	return rc;
}

bool json_etcd_error(const char *buf, size_t len, int *code, char *msg, size_t msglen)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, 0, &je);
	bool found = false;

	*code = 0;
	if (msglen)
		msg[0] = '\0';
	if (!json_is_object(root))
		goto out;
	json_t *e = json_object_get(root, "error");
	if (!e)
		goto out;
	found = true;
	if (json_is_object(e)) {
		json_t *c = json_object_get(e, "grpc_code");
		if (json_is_integer(c))
			*code = json_integer_value(c);
		copy_str(msg, msglen, json_object_get(e, "message"));
	} else {
		json_t *c = json_object_get(root, "code");
		if (json_is_integer(c))
			*code = json_integer_value(c);
		copy_str(msg, msglen, e);
	}
out:
	json_decref(root);
	return found;
}

static json_t *compare(const struct kv_op *op)
{
	char num[32];
	json_t *c = json_object();

	if (!c)
		return NULL;
	json_object_set_new(c, "key", json_b64_string(op->key, op->klen));
	json_object_set_new(c, "result", json_string("EQUAL"));
	if (op->expect == KV_ABSENT) {
		/* A key that does not exist has create_revision 0. */
		json_object_set_new(c, "target", json_string("CREATE"));
		json_object_set_new(c, "create_revision", json_string("0"));
	} else {
		snprintf(num, sizeof(num), "%lld", (long long)op->expect);
		json_object_set_new(c, "target", json_string("MOD"));
		json_object_set_new(c, "mod_revision", json_string(num));
	}
	return c;
}

static json_t *request(const struct kv_op *op,
		       size_t (*end_of)(const char *key, size_t klen, char *out))
{
	json_t *inner = json_object(), *r = json_object();

	if (!inner || !r) {
		json_decref(inner);
		json_decref(r);
		return NULL;
	}
	json_object_set_new(inner, "key", json_b64_string(op->key, op->klen));
	switch (op->kind) {
	case KV_PUT:
		json_object_set_new(inner, "value", json_b64_string(op->val, op->vlen));
		json_object_set_new(r, "request_put", inner);
		break;
	case KV_DELETE:
		json_object_set_new(r, "request_delete_range", inner);
		break;
	case KV_CHECK:
		break;
	case KV_DELETE_PREFIX: {
		char *end = malloc(op->klen + 1);
		if (!end) {
			json_decref(inner);
			json_decref(r);
			return NULL;
		}
		size_t elen = end_of(op->key, op->klen, end);
		json_object_set_new(inner, "range_end", json_b64_string(end, elen));
		free(end);
		json_object_set_new(r, "request_delete_range", inner);
		break;
	}
	}
	return r;
}

char *json_etcd_txn_req(const struct kv_op *ops, size_t n,
			size_t (*end_of)(const char *key, size_t klen, char *out))
{
	json_t *j = json_object(), *cmp = json_array(), *succ = json_array(), *fl = json_array();

	if (!j || !cmp || !succ || !fl)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		json_t *c = ops[i].expect == KV_ANY ? NULL : compare(&ops[i]);
		json_t *r = ops[i].kind == KV_CHECK ? NULL : request(&ops[i], end_of);
		if ((ops[i].expect != KV_ANY && !c) || (ops[i].kind != KV_CHECK && !r)) {
			json_decref(c);
			json_decref(r);
			goto fail;
		}
		if (c)
			json_array_append_new(cmp, c);
		if (r)
			json_array_append_new(succ, r);
		/* If refused, read every guarded key back: the log names the one that changed. */
		if (c) {
			json_t *rr = json_object(), *rq = json_object();
			if (!rr || !rq) {
				json_decref(rr);
				json_decref(rq);
				goto fail;
			}
			json_object_set_new(rq, "key", json_b64_string(ops[i].key, ops[i].klen));
			json_object_set_new(rq, "keys_only", json_true());
			json_object_set_new(rr, "request_range", rq);
			json_array_append_new(fl, rr);
		}
	}
	json_object_set_new(j, "compare", cmp);
	json_object_set_new(j, "success", succ);
	json_object_set_new(j, "failure", fl);
	return json_dump_compact(j);
fail:
	json_decref(j);
	json_decref(cmp);
	json_decref(succ);
	json_decref(fl);
	return NULL;
}

int json_etcd_txn_resp(const char *buf, size_t len, bool *ok, int64_t *current, size_t ncurrent,
		       struct etcd_header *hdr, struct json_err *err)
{
	json_t *root = load(buf, len, err);

	for (size_t k = 0; k < ncurrent; k++)
		current[k] = -1;
	if (!root)
		return -EINVAL;
	int rc = parse_header(root, hdr, err);
	/* A failed txn leaves "succeeded" out (false is the default). */
	*ok = get_bool(root, "succeeded");
	json_t *rs = json_object_get(root, "responses");
	for (size_t k = 0; !rc && !*ok && k < ncurrent && k < json_array_size(rs); k++) {
		json_t *range = json_object_get(json_array_get(rs, k), "response_range");
		if (!range)
			continue;
		json_t *kv = json_array_get(json_object_get(range, "kvs"), 0);
		current[k] = 0;
		if (kv)
			rc = get_i64(kv, "mod_revision", &current[k], err);
	}
	json_decref(root);
	return rc;
}

/* Append JSON string text for s at out[*at]; false when it does not fit. */
static bool put_json_string(const char *s, char *out, size_t outlen, size_t *at)
{
	static const char hex[] = "0123456789abcdef";

	if (*at + 1 >= outlen)
		return false;
	out[(*at)++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[6] = {'\\', (char)*p};
		size_t n = 2;
		if (*p < 0x20) {
			esc[1] = 'u', esc[2] = '0', esc[3] = '0';
			esc[4] = hex[*p >> 4], esc[5] = hex[*p & 15];
			n = 6;
		} else if (*p != '"' && *p != '\\') {
			esc[0] = (char)*p;
			n = 1;
		}
		if (*at + n + 1 >= outlen)
			return false;
		memcpy(out + *at, esc, n);
		*at += n;
	}
	out[(*at)++] = '"';
	return true;
}

ssize_t json_etcd_auth_req(const char *user, const char *password, char *out, size_t outlen)
{
	size_t at = 0;
	static const char a[] = "{\"name\":", b[] = ",\"password\":";

	if (outlen < sizeof(a) + sizeof(b) + 2)
		return -ENAMETOOLONG;
	memcpy(out, a, sizeof(a) - 1);
	at = sizeof(a) - 1;
	if (!put_json_string(user, out, outlen, &at) || at + sizeof(b) >= outlen)
		return -ENAMETOOLONG;
	memcpy(out + at, b, sizeof(b) - 1);
	at += sizeof(b) - 1;
	if (!put_json_string(password, out, outlen, &at) || at + 2 > outlen)
		return -ENAMETOOLONG;
	out[at++] = '}';
	out[at] = '\0';
	return (ssize_t)at;
}

char *json_etcd_auth_resp(const char *buf, size_t len, struct json_err *err)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, 0, &je);
	char *token = NULL;

	if (!json_is_object(root)) {
		json_fail(err, "authenticate answer is not a JSON object");
		goto out;
	}
	json_t *t = json_object_get(root, "token");
	if (!json_is_string(t) || json_string_length(t) == 0 ||
	    strcspn(json_string_value(t), "\r\n") != json_string_length(t)) {
		json_fail(err, "authenticate answer without a token");
		goto out;
	}
	token = strdup(json_string_value(t));
	if (!token)
		json_fail(err, "out of memory");
out:
	json_decref(root);
	return token;
}
