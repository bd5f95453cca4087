/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Consul KV's JSON: recursive listings and /v1/txn requests and answers. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"

static int fail(struct json_err *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* A non-negative integer field; a missing one is 0. */
static int get_index(json_t *obj, const char *name, int64_t *out, struct json_err *err)
{
	json_t *v = json_object_get(obj, name);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return fail(err, "field %s is not a non-negative integer", name);
	*out = json_integer_value(v);
	return 0;
}

static int parse_entry(json_t *e, struct kv_batch *out, struct json_err *err)
{
	struct kv_meta meta = {0};
	int64_t flags;

	if (!json_is_object(e))
		return fail(err, "listing entry is not an object");
	json_t *key = json_object_get(e, "Key");
	if (!json_is_string(key) || json_string_length(key) == 0)
		return fail(err, "listing entry without a key");
	if (get_index(e, "ModifyIndex", &meta.mod_rev, err) ||
	    get_index(e, "CreateIndex", &meta.create_rev, err) ||
	    get_index(e, "LockIndex", &meta.version, err) || get_index(e, "Flags", &flags, err))
		return -EINVAL;
	meta.flags = (uint64_t)flags;

	/* An empty value and a folder key both come as null. */
	json_t *v = json_object_get(e, "Value");
	const char *s = "";
	size_t n = 0;
	if (v && !json_is_null(v)) {
		if (!json_is_string(v))
			return fail(err, "Value of %.60s is not a string", json_string_value(key));
		s = json_string_value(v);
		n = json_string_length(v);
	}
	struct blob *b = blob_new(base64_decoded_max(n));
	if (!b)
		return fail(err, "out of memory");
	ssize_t len = base64_decode(s, n, b->data);
	if (len < 0) {
		blob_unref(b);
		return fail(err, "Value of %.60s is not base64", json_string_value(key));
	}
	b->len = len;
	b->data[len] = '\0';
	if (kv_batch_push(out, json_string_value(key), json_string_length(key), b, &meta))
		return fail(err, "out of memory");
	return 0;
}

int json_consul_list(const char *buf, size_t len, struct kv_batch *out, struct json_err *err)
{
	json_error_t je;
	/* Consul keys are plain JSON strings and may hold NUL bytes. */
	json_t *root = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
	size_t i;
	json_t *e;
	int rc = 0;

	if (!root)
		return fail(err, "not JSON: %s", je.text);
	if (!json_is_array(root)) {
		json_decref(root);
		return fail(err, "listing is not an array");
	}
	json_array_foreach (root, i, e) {
		rc = parse_entry(e, out, err);
		if (rc)
			break;
	}
	json_decref(root);
	return rc;
}

static json_t *b64_string(const void *p, size_t n)
{
	char *s = malloc(base64_encoded_size(n));
	json_t *j;

	if (!s)
		return NULL;
	size_t len = base64_encode(p, n, s);
	j = json_stringn(s, len);
	free(s);
	return j;
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

char *json_consul_txn_req(const struct kv_op *ops, size_t n)
{
	json_t *arr = json_array();

	if (!arr)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool with_index;
		const char *verb = verb_of(&ops[i], &with_index);
		json_t *kv = json_object(), *op = json_object();
		json_t *key = json_stringn(ops[i].key, ops[i].klen);
		if (!kv || !op || !key || !verb) {
			/* json_stringn refuses keys that are not UTF-8: Consul could not list them.
			 */
			json_decref(kv);
			json_decref(op);
			json_decref(key);
			json_decref(arr);
			return NULL;
		}
		json_object_set_new(kv, "Verb", json_string(verb));
		json_object_set_new(kv, "Key", key);
		if (ops[i].kind == KV_PUT) {
			json_object_set_new(kv, "Value", b64_string(ops[i].val, ops[i].vlen));
			json_object_set_new(kv, "Flags", json_integer((json_int_t)ops[i].flags));
		}
		if (with_index)
			json_object_set_new(kv, "Index", json_integer(ops[i].expect));
		json_object_set_new(op, "KV", kv);
		json_array_append_new(arr, op);
	}
	char *s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return s;
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
			 char *what, size_t whatlen, struct json_err *err)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, JSON_ALLOW_NUL, &je);
	int rc = 0;

	*rev = 0;
	*denied = false;
	if (whatlen)
		what[0] = '\0';
	if (!json_is_object(root)) {
		json_decref(root);
		return fail(err, "txn answer is not a JSON object");
	}
	if (status == 200) {
		json_t *r = json_array_get(json_object_get(root, "Results"), 0);
		json_t *kv = json_object_get(r, "KV");
		if (kv)
			rc = get_index(kv, "ModifyIndex", rev, err);
	} else {
		json_t *e = json_array_get(json_object_get(root, "Errors"), 0);
		json_t *w = json_object_get(e, "What");
		if (!json_is_string(w)) {
			rc = fail(err, "txn error without a reason");
		} else {
			snprintf(what, whatlen, "%s", json_string_value(w));
			/* ACL failures come as 409 too, told apart only by their text. */
			*denied = strstr(json_string_value(w), "ermission denied") != NULL;
		}
	}
	json_decref(root);
	return rc;
}
