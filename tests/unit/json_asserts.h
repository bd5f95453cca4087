/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Assertions shared by the tests of the stores' JSON codecs. */
#ifndef CFGFS_TEST_JSON_ASSERTS_H
#define CFGFS_TEST_JSON_ASSERTS_H

#include <string.h>

#include "json.h"
#include "kv.h"
#include "util.h"

/* A rejection must say why, on one line. */
static inline void assert_reason(const struct json_err *err)
{
	assert_true(err->msg[0] != '\0');
	assert_null(strchr(err->msg, '\n'));
	assert_true(strlen(err->msg) < sizeof(err->msg));
}

/* kv holds key and, unless val is NULL (a delete), val; both NUL-terminated past their length. */
static inline void assert_kv(const struct kv *kv, const char *key, size_t klen, const char *val,
			     size_t vlen)
{
	assert_int_equal(kv->klen, klen);
	assert_memory_equal(kv->key, key, klen);
	assert_int_equal(kv->key[klen], '\0');
	if (!val) {
		assert_null(kv->val);
		return;
	}
	assert_non_null(kv->val);
	assert_int_equal(kv->val->len, vlen);
	assert_memory_equal(kv->val->data, val, vlen);
	assert_int_equal(kv->val->data[vlen], '\0');
}

#endif
