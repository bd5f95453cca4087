/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes Consul's answers (json_consul.c): recursive listings and /v1/txn results. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the one-pass scanner takes, jansson reads alike, to the byte. */
static void same_listing(const char *s, size_t size, int64_t since)
{
	struct kv_batch a, d;
	struct consul_count ca, cd;
	struct json_err err = {""};

	kv_batch_init(&a);
	kv_batch_init(&d);
	if (json_consul_list_scan(s, size, since, &a, &ca) == 0) {
		if (json_consul_list_dom(s, size, since, &d, &cd, &err) != 0 || a.n != d.n ||
		    ca.total != cd.total || ca.created != cd.created || a.n > ca.total)
			abort();
		for (size_t i = 0; i < a.n; i++)
			if (a.v[i].klen != d.v[i].klen ||
			    memcmp(a.v[i].key, d.v[i].key, a.v[i].klen) != 0 ||
			    a.v[i].val->len != d.v[i].val->len ||
			    memcmp(a.v[i].val->data, d.v[i].val->data, a.v[i].val->len) != 0 ||
			    memcmp(&a.v[i].meta, &d.v[i].meta, sizeof(a.v[i].meta)) != 0)
				abort();
	} else if (a.n != 0) {
		abort(); /* gave up, and left something behind */
	}
	kv_batch_clear(&a);
	kv_batch_clear(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly the answer's bytes: ASan sees any read past it. */
	char *s = malloc(size ? size : 1);
	struct kv_batch b;
	struct json_err err = {""};
	char what[32];
	int64_t rev;
	bool denied;
	long op;

	memcpy(s, data, size);
	kv_batch_init(&b);
	if (json_consul_list(s, size, &b, &err) == 0) {
		for (size_t i = 0; i < b.n; i++)
			if (b.v[i].klen == 0 || !b.v[i].val || b.v[i].meta.mod_rev < 0 ||
			    b.v[i].meta.create_rev < 0 || b.v[i].meta.version < 0)
				abort();
	} else if (!err.msg[0]) {
		abort(); /* a refusal always says why */
	}
	kv_batch_clear(&b);
	same_listing(s, size, 0);
	same_listing(s, size,
		     size ? 1 + data[0] % 8 : 1); /* small indexes: the fuzzer writes them */
	if (json_consul_txn_resp(s, size, 200, &rev, &denied, &op, what, sizeof(what), &err) == 0 &&
	    rev < 0)
		abort();
	json_consul_txn_resp(s, size, 409, &rev, &denied, &op, what, sizeof(what), &err);
	if (strlen(what) >= sizeof(what))
		abort();
	free(s);
	return 0;
}
