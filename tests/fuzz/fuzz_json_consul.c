/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes Consul's answers (json_consul.c): recursive listings and /v1/txn results. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	if (json_consul_txn_resp(s, size, 200, &rev, &denied, &op, what, sizeof(what), &err) == 0 &&
	    rev < 0)
		abort();
	json_consul_txn_resp(s, size, 409, &rev, &denied, &op, what, sizeof(what), &err);
	if (strlen(what) >= sizeof(what))
		abort();
	free(s);
	return 0;
}
