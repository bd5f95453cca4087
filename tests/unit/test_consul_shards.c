/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests how a large Consul prefix is cut into shards (consul_shards.c), and what they cover. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consul_shards.h"
#include "util.h"

static void put(struct kv_batch *b, const char *key, int64_t mod)
{
	struct kv_meta m = {.mod_rev = mod, .create_rev = 1};

	assert_int_equal(kv_batch_push(b, key, strlen(key), blob_from("v", 1), &m), 0);
}

static bool covered(const struct shards *s, const char *name)
{
	return shards_find(s, name, strlen(name)) >= 0;
}

/* Every key of b lies in exactly one shard, whose total and index agree with b. */
static void assert_partition(const struct shards *s, const struct kv_batch *b, size_t plen)
{
	size_t *count = calloc(s->n, sizeof(*count));
	int64_t *max = calloc(s->n, sizeof(*max));

	assert_non_null(count);
	assert_non_null(max);
	for (size_t i = 0; i < b->n; i++) {
		const char *rel = b->v[i].key + plen;
		long at = shards_find(s, rel, b->v[i].klen - plen);
		assert_true(at >= 0);
		size_t hits = 0;
		for (size_t j = 0; j < s->n; j++)
			hits += strncmp(s->v[j].pfx, rel, s->v[j].len) == 0;
		assert_int_equal(hits, 1);
		count[at]++;
		if (b->v[i].meta.mod_rev > max[at])
			max[at] = b->v[i].meta.mod_rev;
	}
	for (size_t j = 0; j < s->n; j++) {
		assert_int_equal(count[j], s->v[j].total);
		assert_int_equal(max[j], s->v[j].index);
		/* Never past the first '/' of a key: top-level names tell what is covered. */
		const char *slash = memchr(s->v[j].pfx, '/', s->v[j].len);
		assert_true(!slash || slash == s->v[j].pfx + s->v[j].len - 1);
		if (j)
			assert_true(strcmp(s->v[j - 1].pfx, s->v[j].pfx) < 0);
	}
	free(count);
	free(max);
}

static void test_directories(void **state)
{
	struct kv_batch b;
	struct shards s = {0};
	char key[64];

	(void)state;
	kv_batch_init(&b);
	/* The benchmark's tree: 500 directories of 20 keys, and one key beside them. */
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "P/d%03d/key-%06d", i % 500, i);
		put(&b, key, 100 + i);
	}
	put(&b, "P/latency", 7);
	assert_int_equal(shards_build(&s, &b, 2, 500, 64), 0);
	assert_true(s.n >= 2 && s.n <= 64);
	assert_partition(&s, &b, 2);
	/* Names that exist are covered, and so are new ones inside a shard. */
	assert_true(covered(&s, "d000/"));
	assert_true(covered(&s, "d499/"));
	assert_true(covered(&s, "latency"));
	assert_true(covered(&s, "latency-2")); /* "l" or "latency" is a shard */
	/* New names outside every shard. */
	assert_false(covered(&s, "d5/"));
	assert_false(covered(&s, "e"));
	assert_false(covered(&s, "A"));
	assert_false(covered(&s, ""));
	/* Rebuilt from a smaller tree, it replaces what it held. */
	kv_batch_truncate(&b, 3);
	assert_int_equal(shards_build(&s, &b, 2, 1, 64), 0);
	assert_partition(&s, &b, 2);
	shards_clear(&s);
	kv_batch_clear(&b);
}

static void test_flat_keys_and_budget(void **state)
{
	struct kv_batch b;
	struct shards s = {0};
	char key[64];

	(void)state;
	kv_batch_init(&b);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "flag-%05d", i * 7);
		put(&b, key, i + 1);
	}
	/* No mount prefix, flat names: cut by the digits. */
	assert_int_equal(shards_build(&s, &b, 0, 100, 40), 0);
	assert_true(s.n >= 2 && s.n <= 40);
	assert_partition(&s, &b, 0);
	assert_false(covered(&s, "other"));
	/* A budget of one: one shard, as long as what all keys share. */
	assert_int_equal(shards_build(&s, &b, 0, 100, 1), 0);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.v[0].pfx, "flag-");
	assert_true(covered(&s, "flag-x"));
	assert_false(covered(&s, "flag"));
	shards_clear(&s);
	kv_batch_clear(&b);
}

static void test_odd_keys(void **state)
{
	struct kv_batch b;
	struct shards s = {0};

	(void)state;
	kv_batch_init(&b);
	/* A key that is the prefix of others stays one shard with them. */
	put(&b, "ab", 1);
	put(&b, "abc", 2);
	put(&b, "abd", 3);
	put(&b, "x/1", 4);
	put(&b, "x/2", 5);
	/* A cut inside a character is fine: Consul matches prefixes by bytes. */
	put(&b, "\xc3\xa9t\xc3\xa9", 6);
	put(&b, "\xc3\xa0", 7);
	/* A delete is not a key. */
	struct kv_meta m = {.mod_rev = 9};
	assert_int_equal(kv_batch_push(&b, "zz", 2, NULL, &m), 0);
	assert_int_equal(shards_build(&s, &b, 0, 1, 64), 0);
	for (size_t j = 0; j < s.n; j++)
		assert_true(strcmp(s.v[j].pfx, "abc") && strcmp(s.v[j].pfx, "abd"));
	assert_true(covered(&s, "\xc3\xa9t\xc3\xa9"));
	assert_true(covered(&s, "\xc3\xa0"));
	assert_true(covered(&s, "ab"));
	assert_true(covered(&s, "abe"));
	assert_true(covered(&s, "x/3"));
	assert_true(covered(&s, "x/"));
	assert_false(covered(&s, "zz"));
	assert_false(covered(&s, "a"));
	/* Nothing at all: one shard, the whole prefix. */
	kv_batch_clear(&b);
	assert_int_equal(shards_build(&s, &b, 0, 1, 64), 0);
	assert_int_equal(s.n, 1);
	shards_clear(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directories),
		cmocka_unit_test(test_flat_keys_and_budget),
		cmocka_unit_test(test_odd_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
