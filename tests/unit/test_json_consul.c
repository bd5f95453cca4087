/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the Consul KV JSON codec (json_consul.c): listings, txn bodies and txn answers. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "json_asserts.h"
#include "kv.h"
#include "util.h"

/* ------------------------------------------------------------ listings */

/* What Consul 1.8 sends for ?recurse (pretty-printed, as with ?pretty or older agents). */
static const char list_ok[] =
	"[\n"
	"    { \"LockIndex\": 2, \"Key\": \"app/a\", \"Flags\": 0, \"Value\": \"aGVsbG8=\","
	" \"CreateIndex\": 13, \"ModifyIndex\": 17 },\n"
	"    { \"LockIndex\": 0, \"Key\": \"app/dir/\", \"Flags\": 0, \"Value\": null,"
	" \"CreateIndex\": 16, \"ModifyIndex\": 16 },\n"
	"    { \"LockIndex\": 0, \"Key\": \"app/n\\u0000ul\", \"Flags\": 42, \"Value\": \"eA==\","
	" \"CreateIndex\": 15, \"ModifyIndex\": 15, \"Session\": \"x\" }\n"
	"]";

static void test_list(void **state)
{
	struct kv_batch b;
	struct json_err err = {""};

	kv_batch_init(&b);
	assert_int_equal(json_consul_list(S(list_ok), &b, &err), 0);
	assert_int_equal(b.n, 3);
	assert_kv(&b.v[0], S("app/a"), S("hello"));
	assert_int_equal(b.v[0].meta.mod_rev, 17);
	assert_int_equal(b.v[0].meta.create_rev, 13);
	assert_int_equal(b.v[0].meta.version, 2);
	assert_int_equal(b.v[0].meta.flags, 0);
	/* A folder key and an empty value both come as null: an empty put, never a delete. */
	assert_kv(&b.v[1], S("app/dir/"), S(""));
	assert_kv(&b.v[2], S("app/n\0ul"), S("x"));
	assert_int_equal(b.v[2].meta.flags, 42);
	kv_batch_clear(&b);

	/* The compact form, and an empty array. */
	kv_batch_init(&b);
	assert_int_equal(
		json_consul_list(S("[{\"Key\":\"k\",\"Value\":\"\",\"ModifyIndex\":1}]"), &b, &err),
		0);
	assert_int_equal(b.n, 1);
	assert_kv(&b.v[0], S("k"), S(""));
	kv_batch_clear(&b);
	assert_int_equal(json_consul_list(S("[]"), &b, &err), 0);
	assert_int_equal(b.n, 0);
}

/* Both readers hold each input to the same entries, to the byte. */
static void assert_same_batches(const struct kv_batch *a, const struct kv_batch *d)
{
	assert_int_equal(a->n, d->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_kv(&a->v[i], d->v[i].key, d->v[i].klen, d->v[i].val->data, d->v[i].val->len);
		assert_memory_equal(&a->v[i].meta, &d->v[i].meta, sizeof(a->v[i].meta));
	}
}

/*
 * The one-pass scanner reads what Consul writes, escapes included, exactly
 * as jansson does; what it does not expect (valid or not) it leaves to
 * jansson, adding nothing, and json_consul_list still answers.
 */
static void test_list_scan(void **state)
{
	static const char *const taken[] = {
		list_ok,
		"[]",
		" [ ] ",
		"[{\"Key\":\"k\"}]", /* no value: empty */
		"[{\"Key\":\"a\\\"b\\\\c\\/d\\n\\u00e9\\ud83d\\ude00\\u0000\",\"Value\":\"eA==\","
		"\"Flags\":18446744073709551615,\"ModifyIndex\":9223372036854775807,"
		"\"Session\":\"s\",\"Namespace\":null,\"X\":true,\"Y\":0}]",
		"[{\"Key\":\"\xc3\xa9t\xc3\xa9/\xf0\x9f\x98\x80\",\"Value\":null,\"Flags\":null}]",
	};
	static const char *const left[] = {
		"",
		"{}",
		"[{}]",
		"[{\"Key\":\"\"}]",
		"[{\"Key\":\"k\",\"Key\":\"j\"}]",
		"[{\"Key\":\"k\",\"Value\":\"eA\\u003d\\u003d\"}]", /* jansson takes it */
		"[{\"Key\":\"k\",\"Other\":{\"a\":1}}]",	    /* and this */
		"[{\"Key\":\"k\",\"Other\":1.5}]",		    /* and this */
		"[{\"Key\":\"k\",\"ModifyIndex\":-1}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":9223372036854775808}]",
		"[{\"Key\":\"k\",\"Flags\":18446744073709551616}]",
		"[{\"Key\":\"k\",\"ModifyIndex\":01}]",
		"[{\"Key\":\"k\",\"Value\":\"e===\"}]",
		"[{\"Key\":\"\\udc00\"}]",
		"[{\"Key\":\"\\ud800x\"}]",
		"[{\"Key\":\"\xc0\xafx\"}]",
		"[{\"Key\":\"\xed\xa0\x80\"}]",
		"[{\"Key\":\"a\x01\"}]",
		"[{\"K\x01\":1,\"Key\":\"k\"}]",
		"[{\"Key\":\"k\"},]",
		"[{\"Key\":\"k\"}] x",
		"[{\"Key\":\"k\"}",
		"[{\"Key\":\"k\"},{\"Key\":\"j\",\"Value\":7}]",
	};
	struct kv_batch a, d;
	struct consul_count ca, cd;
	struct json_err err = {""};

	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		kv_batch_init(&a);
		kv_batch_init(&d);
		assert_int_equal(json_consul_list_scan(taken[i], strlen(taken[i]), 0, &a, &ca), 0);
		assert_int_equal(json_consul_list_dom(taken[i], strlen(taken[i]), 0, &d, &cd, &err),
				 0);
		assert_same_batches(&a, &d);
		kv_batch_clear(&a);
		kv_batch_clear(&d);
	}
	for (size_t i = 0; i < sizeof(left) / sizeof(left[0]); i++) {
		kv_batch_init(&a);
		kv_batch_init(&d);
		if (json_consul_list_scan(left[i], strlen(left[i]), 0, &a, &ca) != 1 || a.n != 0)
			fail_msg("the scanner took input %zu: %s", i, left[i]);
		/* json_consul_list answers as jansson alone does. */
		int dom = json_consul_list_dom(left[i], strlen(left[i]), 0, &d, &cd, &err);
		kv_batch_clear(&d);
		assert_int_equal(json_consul_list(left[i], strlen(left[i]), &d, &err), dom);
		kv_batch_clear(&a);
		kv_batch_clear(&d);
	}
}

/*
 * Read with since (the index of the listing the mirror holds), a listing
 * hands over only what was modified after it, and entries whose indexes are
 * impossible (for the caller to refuse); it counts every entry, and those
 * created after since, so that the caller can tell whether one went away.
 */
static void test_list_since(void **state)
{
	static const char l[] = "[{\"Key\":\"a\",\"Value\":\"YQ==\",\"CreateIndex\":5,"
				"\"ModifyIndex\":10},"
				"{\"Key\":\"b\",\"Value\":\"Yg==\",\"CreateIndex\":5,"
				"\"ModifyIndex\":21},"
				"{\"Key\":\"c\",\"Value\":\"Yw==\",\"CreateIndex\":22,"
				"\"ModifyIndex\":22},"
				"{\"Key\":\"d\",\"Value\":\"ZA==\","
				"\"CreateIndex\":3,\"ModifyIndex\":4},"
				"{\"Key\":\"e\",\"Value\":null,\"CreateIndex\":9,"
				"\"ModifyIndex\":8}]";
	struct kv_batch a, d;
	struct consul_count ca, cd;
	struct json_err err = {""};

	kv_batch_init(&a);
	kv_batch_init(&d);
	assert_int_equal(json_consul_list_scan(S(l), 20, &a, &ca), 0);
	assert_int_equal(json_consul_list_dom(S(l), 20, &d, &cd, &err), 0);
	assert_same_batches(&a, &d);
	assert_int_equal(a.n, 3);
	assert_kv(&a.v[0], S("b"), S("b"));
	assert_kv(&a.v[1], S("c"), S("c"));
	assert_kv(&a.v[2], S("e"), S("")); /* created after its change: refused by the caller */
	assert_int_equal(ca.total, 5);
	assert_int_equal(cd.total, 5);
	assert_int_equal(ca.created, 1);
	assert_int_equal(cd.created, 1);
	kv_batch_clear(&a);
	kv_batch_clear(&d);

	/* Not kept is not unchecked: garbage in an unchanged entry is refused. */
	static const char *const bad[] = {
		"[{\"Key\":\"a\",\"Value\":\"not base64\",\"CreateIndex\":1,\"ModifyIndex\":1}]",
		"[{\"Key\":\"a\",\"Value\":\"Y\x01==\",\"CreateIndex\":1,\"ModifyIndex\":1}]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(json_consul_list_scan(bad[i], strlen(bad[i]), 20, &a, &ca), 1);
		assert_int_equal(json_consul_list_since(bad[i], strlen(bad[i]), 20, &a, &ca, &err),
				 -EINVAL);
		assert_int_equal(a.n, 0);
	}
	kv_batch_clear(&a);
}

/*
 * Flags are uint64 and any client may set them to 2^64-1: such a key must
 * neither break the listing (jansson alone refuses integers past INT64_MAX)
 * nor lose bits.
 */
static void test_list_uint64_flags(void **state)
{
	static const char big[] =
		"[{\"Key\":\"a\",\"Flags\":18446744073709551615,\"Value\":\"dg==\","
		"\"CreateIndex\":10,\"ModifyIndex\":10},"
		"{\"Key\":\"b\",\"Flags\":9223372036854775808,\"Value\":null,"
		"\"CreateIndex\":9,\"ModifyIndex\":9},"
		"{\"Key\":\"c\",\"Flags\":9223372036854775807,\"Value\":null,"
		"\"CreateIndex\":8,\"ModifyIndex\":8},"
		/* Digits inside strings are text, whatever their length. */
		"{\"Key\":\"99999999999999999999 \\\" 99999999999999999999\",\"Flags\":1,"
		"\"ModifyIndex\":7}]";
	struct kv_batch b;
	struct json_err err = {""};

	kv_batch_init(&b);
	assert_int_equal(json_consul_list(S(big), &b, &err), 0);
	assert_int_equal(b.n, 4);
	assert_true(b.v[0].meta.flags == UINT64_MAX);
	assert_true(b.v[1].meta.flags == 9223372036854775808ULL);
	assert_true(b.v[2].meta.flags == 9223372036854775807ULL);
	assert_kv(&b.v[0], S("a"), S("v"));
	assert_kv(&b.v[3], S("99999999999999999999 \" 99999999999999999999"), S(""));
	assert_int_equal(b.v[3].meta.flags, 1);
	kv_batch_clear(&b);
}

static void test_list_hostile(void **state)
{
	static const char *const bad[] = {
		"",
		"{}",
		"null",
		"\"text\"",
		"[1]",
		"[[]]",
		"[{}]",
		"[{\"Key\":\"\"}]",
		"[{\"Key\":7}]",
		"[{\"Key\":\"a\",\"Value\":5}]",
		"[{\"Key\":\"a\",\"Value\":\"!!notbase64\"}]",
		"[{\"Key\":\"a\",\"ModifyIndex\":-1}]",
		"[{\"Key\":\"a\",\"ModifyIndex\":1.5}]",
		"[{\"Key\":\"a\",\"ModifyIndex\":\"12\"}]",
		"[{\"Key\":\"a\",\"CreateIndex\":9223372036854775808}]",
		"[{\"Key\":\"a\",\"Flags\":18446744073709551616}]",
		"[{\"Key\":\"a\",\"Flags\":-1}]",
		"[{\"Key\":\"a\",\"Flags\":\"abc\"}]",
		"[{\"Key\":\"a\",\"Flags\":1e30}]",
		"[{\"Key\":\"a\",\"Flags\":00018446744073709551615}]",
		"[{\"Key\":\"a\"}",
		"[{\"Key\":\"a\",\"Value\":\"dg==\"},",
		"[{\"Key\":\"unterminated}]",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct kv_batch b;
		struct json_err err = {""};
		kv_batch_init(&b);
		if (json_consul_list(bad[i], strlen(bad[i]), &b, &err) != -EINVAL)
			fail_msg("accepted: %s", bad[i]);
		assert_reason(&err);
		kv_batch_clear(&b);
	}
}

/* Every prefix of a valid listing but the whole is refused, never crashes. */
static void test_list_truncated(void **state)
{
	for (size_t n = 0; n < sizeof(list_ok) - 1; n++) {
		struct kv_batch b;
		struct json_err err = {""};
		kv_batch_init(&b);
		assert_int_equal(json_consul_list(list_ok, n, &b, &err), -EINVAL);
		kv_batch_clear(&b);
	}
}

/* ------------------------------------------------------------ txn bodies */

#define K(lit) .key = lit, .klen = sizeof(lit) - 1

static void test_txn_req(void **state)
{
	const struct kv_op ops[] = {
		{.kind = KV_PUT, K("a"), .val = "hi", .vlen = 2, .expect = KV_ANY},
		{.kind = KV_PUT, K("b"), .val = "", .vlen = 0, .expect = KV_ABSENT, .flags = 7},
		{.kind = KV_PUT,
		 K("c\"\0"),
		 .val = "x",
		 .vlen = 1,
		 .expect = 12,
		 .flags = UINT64_MAX},
		{.kind = KV_DELETE, K("d"), .expect = KV_ANY},
		{.kind = KV_DELETE, K("e"), .expect = 5},
		{.kind = KV_DELETE_PREFIX, K("f/"), .expect = 3},
		{.kind = KV_CHECK, K("g"), .expect = KV_ABSENT},
		{.kind = KV_CHECK, K("h"), .expect = 9},
	};
	static const char want[] =
		"[{\"KV\":{\"Verb\":\"set\",\"Key\":\"a\",\"Value\":\"aGk=\",\"Flags\":0}},"
		"{\"KV\":{\"Verb\":\"cas\",\"Key\":\"b\",\"Value\":\"\",\"Index\":0,\"Flags\":7}},"
		"{\"KV\":{\"Verb\":\"cas\",\"Key\":\"c\\\"\\u0000\",\"Value\":\"eA==\",\"Index\":"
		"12,"
		"\"Flags\":18446744073709551615}},"
		"{\"KV\":{\"Verb\":\"delete\",\"Key\":\"d\"}},"
		"{\"KV\":{\"Verb\":\"delete-cas\",\"Key\":\"e\",\"Index\":5}},"
		"{\"KV\":{\"Verb\":\"delete-tree\",\"Key\":\"f/\"}},"
		"{\"KV\":{\"Verb\":\"check-not-exists\",\"Key\":\"g\"}},"
		"{\"KV\":{\"Verb\":\"check-index\",\"Key\":\"h\",\"Index\":9}}]";
	char *s = json_consul_txn_req(ops, ARRAY_SIZE(ops));

	assert_non_null(s);
	assert_string_equal(s, want);
	free(s);

	s = json_consul_txn_req(ops, 0);
	assert_string_equal(s, "[]");
	free(s);
}

/* Consul could not list a key that is not UTF-8, so it is never sent. */
static void test_txn_req_refuses_non_utf8(void **state)
{
	const struct kv_op ops[] = {
		{.kind = KV_PUT, K("ok"), .val = "x", .vlen = 1, .expect = KV_ANY},
		{.kind = KV_DELETE, K("bad\xff"), .expect = KV_ANY},
	};

	assert_null(json_consul_txn_req(ops, 2));
	assert_null(json_consul_get_req(S("bad\xc0")));
}

static void test_get_req(void **state)
{
	char *s = json_consul_get_req(S("a/\0b"));

	assert_string_equal(s, "[{\"KV\":{\"Verb\":\"get\",\"Key\":\"a/\\u0000b\"}}]");
	free(s);
}

/* ------------------------------------------------------------ txn answers */

static void test_txn_resp(void **state)
{
	struct json_err err = {""};
	char what[64];
	bool denied = true;
	int64_t rev = -1;
	long op = 7;

	static const char ok[] =
		"{\"Results\":[{\"KV\":{\"LockIndex\":0,\"Key\":\"a\",\"Flags\":"
		"18446744073709551615,"
		"\"Value\":null,\"CreateIndex\":20,\"ModifyIndex\":21}}],\"Errors\":null}";
	assert_int_equal(
		json_consul_txn_resp(S(ok), 200, &rev, &denied, &op, what, sizeof(what), &err), 0);
	assert_int_equal(rev, 21);
	assert_false(denied);

	/* A check-index result reports the older index it checked; the commit's is higher. */
	static const char checked[] =
		"{\"Results\":[{\"KV\":{\"LockIndex\":0,\"Key\":\"old/"
		"a\",\"Flags\":0,\"Value\":null,"
		"\"CreateIndex\":5,\"ModifyIndex\":6}},{\"KV\":{\"LockIndex\":0,\"Key\":\"new/a\","
		"\"Flags\":0,\"Value\":null,\"CreateIndex\":30,\"ModifyIndex\":30}}],\"Errors\":"
		"null}";
	assert_int_equal(
		json_consul_txn_resp(S(checked), 200, &rev, &denied, &op, what, sizeof(what), &err),
		0);
	assert_int_equal(rev, 30);

	/* Deletes report no index. */
	assert_int_equal(json_consul_txn_resp(S("{\"Results\":null,\"Errors\":null}"), 200, &rev,
					      &denied, &op, what, sizeof(what), &err),
			 0);
	assert_int_equal(rev, 0);

	static const char stale[] = "{\"Results\":null,\"Errors\":[{\"OpIndex\":0,\"What\":"
				    "\"failed to set key \\\"a\\\", index is stale\"}]}";
	assert_int_equal(
		json_consul_txn_resp(S(stale), 409, &rev, &denied, &op, what, sizeof(what), &err),
		0);
	assert_false(denied);
	assert_int_equal(op, 0);
	assert_string_equal(what, "failed to set key \"a\", index is stale");

	/* The op that failed, when it is not the first. */
	static const char second[] = "{\"Results\":null,\"Errors\":[{\"OpIndex\":3,\"What\":"
				     "\"failed to delete key, index is stale\"}]}";
	assert_int_equal(
		json_consul_txn_resp(S(second), 409, &rev, &denied, &op, what, sizeof(what), &err),
		0);
	assert_int_equal(op, 3);

	static const char acl[] =
		"{\"Results\":null,\"Errors\":[{\"OpIndex\":0,\"What\":\"Permission denied\"}]}";
	assert_int_equal(
		json_consul_txn_resp(S(acl), 409, &rev, &denied, &op, what, sizeof(what), &err), 0);
	assert_true(denied);

	/* A long reason is cut to the buffer, never overflows it. */
	char tiny[8];
	assert_int_equal(
		json_consul_txn_resp(S(stale), 409, &rev, &denied, &op, tiny, sizeof(tiny), &err),
		0);
	assert_string_equal(tiny, "failed ");
}

static void test_txn_resp_hostile(void **state)
{
	static const struct {
		const char *body;
		long status;
	} bad[] = {
		{"", 200},
		{"[]", 200},
		{"nonsense", 409},
		{"{\"Results\":[{\"KV\":{\"ModifyIndex\":-3}}]}", 200},
		{"{\"Results\":[{\"KV\":{\"ModifyIndex\":\"x\"}}]}", 200},
		{"{\"Errors\":[]}", 409},
		{"{\"Errors\":[{\"What\":5}]}", 409},
		{"{}", 409},
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct json_err err = {""};
		char what[64];
		bool denied;
		int64_t rev;
		long op;
		if (json_consul_txn_resp(bad[i].body, strlen(bad[i].body), bad[i].status, &rev,
					 &denied, &op, what, sizeof(what), &err) != -EINVAL)
			fail_msg("accepted: %s", bad[i].body);
		assert_reason(&err);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_list_scan),
		cmocka_unit_test(test_list_since),
		cmocka_unit_test(test_list_uint64_flags),
		cmocka_unit_test(test_list_hostile),
		cmocka_unit_test(test_list_truncated),
		cmocka_unit_test(test_txn_req),
		cmocka_unit_test(test_txn_req_refuses_non_utf8),
		cmocka_unit_test(test_get_req),
		cmocka_unit_test(test_txn_resp),
		cmocka_unit_test(test_txn_resp_hostile),
	};

	json_global_init();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
