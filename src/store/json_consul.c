/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Consul KV's JSON: recursive listings and /v1/txn requests and answers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_int.h"

static bool in_number(char c)
{
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

/*
 * Consul's Flags and indexes are uint64, and Flags really reach 2^64-1 (any
 * client may set them); jansson refuses integers past INT64_MAX. Before
 * parsing, such numbers (outside strings) become strings of digits, which
 * get_u64 accepts. Returns 0 when nothing needed it, 1 with a new buffer in
 * *out, or -ENOMEM.
 */
static int quote_big_numbers(const char *buf, size_t len, char **out, size_t *outlen)
{
	static const char max[] = "9223372036854775807";
	size_t nbig = 0;
	char *o = NULL, *w = NULL;

	/* Pass 0 counts, pass 1 copies (only when something is too big). */
	for (int pass = 0; pass < 2; pass++) {
		bool in_str = false, esc = false;
		for (size_t i = 0; i < len;) {
			char c = buf[i];
			size_t start = i, end = i + 1;
			bool big = false;
			if (in_str) {
				if (esc)
					esc = false;
				else if (c == '\\')
					esc = true;
				else if (c == '"')
					in_str = false;
			} else if (c == '"') {
				in_str = true;
			} else if (c >= '1' && c <= '9' && (i == 0 || !in_number(buf[i - 1]))) {
				while (end < len && buf[end] >= '0' && buf[end] <= '9')
					end++;
				size_t nd = end - start;
				bool fraction = end < len && in_number(buf[end]);
				big = !fraction &&
				      (nd > 19 || (nd == 19 && memcmp(buf + start, max, 19) > 0));
			}
			if (pass == 1) {
				if (big)
					*w++ = '"';
				memcpy(w, buf + start, end - start);
				w += end - start;
				if (big)
					*w++ = '"';
			}
			nbig += pass == 0 && big;
			i = end;
		}
		if (nbig == 0)
			return 0;
		if (pass == 0) {
			o = malloc(len + 2 * nbig + 1);
			if (!o)
				return -ENOMEM;
			w = o;
		}
	}
	*w = '\0';
	*out = o;
	*outlen = (size_t)(w - o);
	return 1;
}

/* json_loadb for Consul's answers: NUL bytes in keys, uint64 numbers. NULL with je set. */
static json_t *load(const char *buf, size_t len, json_error_t *je)
{
	char *copy = NULL;
	size_t clen;
	int q = quote_big_numbers(buf, len, &copy, &clen);

	if (q < 0) {
		snprintf(je->text, sizeof(je->text), "out of memory");
		return NULL;
	}
	/* Consul keys are plain JSON strings and may hold NUL bytes. */
	json_t *root = q ? json_loadb(copy, clen, JSON_ALLOW_NUL, je)
			 : json_loadb(buf, len, JSON_ALLOW_NUL, je);
	free(copy);
	return root;
}

/* An unsigned integer field, as a number or as the digits quote_big_numbers made; missing: 0. */
static int get_u64(json_t *obj, const char *name, uint64_t *out, struct json_err *err)
{
	json_t *v = json_object_get(obj, name);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	const char *s = json_string_value(v);
	if (s && s[0] >= '0' && s[0] <= '9' && json_string_length(v) <= 20) {
		char *end;
		errno = 0;
		unsigned long long x = strtoull(s, &end, 10);
		/* Only what quote_big_numbers made: smaller numbers come as numbers. */
		if (!errno && *end == '\0' && x > INT64_MAX) {
			*out = x;
			return 0;
		}
	}
	return json_fail(err, "field %s is not an unsigned 64-bit integer", name);
}

/* An index: the mirror keeps revisions as int64, which no real index outgrows. */
static int get_index(json_t *obj, const char *name, int64_t *out, struct json_err *err)
{
	uint64_t x;

	*out = 0;
	if (get_u64(obj, name, &x, err))
		return -EINVAL;
	if (x > INT64_MAX)
		return json_fail(err, "field %s is out of range", name);
	*out = (int64_t)x;
	return 0;
}

static int parse_entry(json_t *e, int64_t since, struct kv_batch *out, struct consul_count *cnt,
		       struct json_err *err)
{
	struct kv_meta meta = {0};

	if (!json_is_object(e))
		return json_fail(err, "listing entry is not an object");
	json_t *key = json_object_get(e, "Key");
	if (!json_is_string(key) || json_string_length(key) == 0)
		return json_fail(err, "listing entry without a key");
	if (get_index(e, "ModifyIndex", &meta.mod_rev, err) ||
	    get_index(e, "CreateIndex", &meta.create_rev, err) ||
	    get_index(e, "LockIndex", &meta.version, err) || get_u64(e, "Flags", &meta.flags, err))
		return -EINVAL;
	cnt->total++;
	cnt->created += since && meta.create_rev > since;

	/* An empty value and a folder key both come as null. */
	char what[80];
	struct blob *b;
	snprintf(what, sizeof(what), "Value of %.60s", json_string_value(key));
	if (json_b64_blob(json_object_get(e, "Value"), true, what, &b, err))
		return -EINVAL;
	if (!json_consul_handed(since, &meta)) {
		blob_unref(b);
		return 0;
	}
	if (kv_batch_push(out, json_string_value(key), json_string_length(key), b, &meta))
		return json_fail(err, "out of memory");
	return 0;
}

int json_consul_list(const char *buf, size_t len, struct kv_batch *out, struct json_err *err)
{
	struct consul_count cnt;

	return json_consul_list_since(buf, len, 0, out, &cnt, err);
}

int json_consul_list_since(const char *buf, size_t len, int64_t since, struct kv_batch *out,
			   struct consul_count *cnt, struct json_err *err)
{
	int rc = json_consul_list_scan(buf, len, since, out, cnt);

	if (rc == -ENOMEM)
		return json_fail(err, "out of memory");
	return rc == 0 ? 0 : json_consul_list_dom(buf, len, since, out, cnt, err);
}

int json_consul_list_dom(const char *buf, size_t len, int64_t since, struct kv_batch *out,
			 struct consul_count *cnt, struct json_err *err)
{
	json_error_t je;
	json_t *root = load(buf, len, &je);
	size_t i;
	json_t *e;
	int rc = 0;

	if (!root)
		return json_fail(err, "not JSON: %s", je.text);
	if (!json_is_array(root)) {
		json_decref(root);
		return json_fail(err, "listing is not an array");
	}
	cnt->total = cnt->created = 0;
	json_array_foreach (root, i, e) {
		rc = parse_entry(e, since, out, cnt, err);
		if (rc)
			break;
	}
	json_decref(root);
	return rc;
}

int json_consul_keys(const char *buf, size_t len, json_consul_key_fn fn, void *ctx,
		     struct json_err *err)
{
	json_error_t je;
	json_t *root = load(buf, len, &je);
	size_t i;
	json_t *e;
	int rc = 0;

	if (!root)
		return json_fail(err, "not JSON: %s", je.text);
	if (!json_is_array(root)) {
		json_decref(root);
		return json_fail(err, "key listing is not an array");
	}
	json_array_foreach (root, i, e) {
		if (!json_is_string(e)) {
			rc = json_fail(err, "key listing holds a %s, not a key",
				       json_is_null(e) ? "null" : "non-string");
			break;
		}
		rc = fn(ctx, json_string_value(e), json_string_length(e));
		if (rc)
			break;
	}
	json_decref(root);
	return rc;
}

/* The Consul verb for one op, and whether it carries Index. */
static const char *verb_of(const struct kv_op *op, bool *with_index)
{
	*with_index = op->expect != KV_ANY;
	switch (op->kind) {
	case KV_PUT:
		/* cas with Index 0 means "only if the key does not exist". */
		return op->expect == KV_ANY ? "set" : "cas";
	case KV_DELETE:
		return op->expect == KV_ANY || op->expect == KV_ABSENT ? "delete" : "delete-cas";
	case KV_DELETE_PREFIX:
		*with_index = false;
		return "delete-tree";
	case KV_CHECK:
		if (op->expect == KV_ABSENT) {
			*with_index = false;
			return "check-not-exists";
		}
		return "check-index";
	}
	return NULL;
}

/* One operation of a txn body, {"KV":{...}}; NULL for keys that are not UTF-8, or ENOMEM. */
static char *txn_op(const struct kv_op *op)
{
	bool with_index;
	const char *verb = verb_of(op, &with_index);
	/* json_stringn refuses keys that are not UTF-8: Consul could not list them. */
	json_t *key = json_stringn(op->key, op->klen);
	json_t *kv = json_object();
	char *text = NULL, *s = NULL;

	if (!kv || !key || !verb) {
		json_decref(key);
		goto out;
	}
	json_object_set_new(kv, "Verb", json_string(verb));
	json_object_set_new(kv, "Key", key);
	if (op->kind == KV_PUT)
		json_object_set_new(kv, "Value", json_b64_string(op->val, op->vlen));
	if (with_index)
		json_object_set_new(kv, "Index", json_integer(op->expect));
	text = json_dumps(kv, JSON_COMPACT);
	if (!text)
		goto out;
	/*
	 * Flags are uint64 and jansson writes only int64: the number is added
	 * as text, before the closing brace of the object.
	 */
	size_t n = strlen(text);
	if (op->kind == KV_PUT) {
		if (asprintf(&s, "{\"KV\":%.*s,\"Flags\":%llu}}", (int)(n - 1), text,
			     (unsigned long long)op->flags) < 0)
			s = NULL;
	} else if (asprintf(&s, "{\"KV\":%s}", text) < 0) {
		s = NULL;
	}
out:
	free(text);
	json_decref(kv);
	return s;
}

char *json_consul_txn_req(const struct kv_op *ops, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	bool ok = f != NULL;

	if (!f)
		return NULL;
	fputc('[', f);
	for (size_t i = 0; ok && i < n; i++) {
		char *op = txn_op(&ops[i]);
		ok = op != NULL;
		if (op)
			fprintf(f, "%s%s", i ? "," : "", op);
		free(op);
	}
	fputc(']', f);
	ok &= fclose(f) == 0;
	if (!ok) {
		free(buf);
		return NULL;
	}
	return buf;
}

char *json_consul_get_req(const char *key, size_t klen)
{
	json_t *k = json_stringn(key, klen);

	if (!k)
		return NULL;
	json_t *arr = json_pack("[{s:{s:s,s:o}}]", "KV", "Verb", "get", "Key", k);
	if (!arr)
		return NULL;
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
}

int json_consul_txn_resp(const char *buf, size_t len, long status, int64_t *rev, bool *denied,
			 long *op_index, char *what, size_t whatlen, struct json_err *err)
{
	json_error_t je;
	json_t *root = load(buf, len, &je);
	int rc = 0;

	*rev = 0;
	*denied = false;
	*op_index = -1;
	if (whatlen)
		what[0] = '\0';
	if (!json_is_object(root)) {
		json_decref(root);
		return json_fail(err, "txn answer is not a JSON object");
	}
	if (status == 200) {
		/*
		 * The commit's index is the highest one reported: a write's result
		 * carries it, a check-index result the (older) index it checked.
		 */
		json_t *results = json_object_get(root, "Results");
		for (size_t i = 0; i < json_array_size(results) && !rc; i++) {
			json_t *kv = json_object_get(json_array_get(results, i), "KV");
			int64_t idx;
			if (kv && (rc = get_index(kv, "ModifyIndex", &idx, err)) == 0 && idx > *rev)
				*rev = idx;
		}
	} else {
		json_t *e = json_array_get(json_object_get(root, "Errors"), 0);
		json_t *w = json_object_get(e, "What");
		json_t *oi = json_object_get(e, "OpIndex");
		if (json_is_integer(oi) && json_integer_value(oi) >= 0)
			*op_index = (long)json_integer_value(oi);
		if (!json_is_string(w)) {
			rc = json_fail(err, "txn error without a reason");
		} else {
			snprintf(what, whatlen, "%s", json_string_value(w));
			/* ACL failures come as 409 too, told apart only by their text. */
			*denied = strstr(json_string_value(w), "ermission denied") != NULL;
		}
	}
	json_decref(root);
	return rc;
}
