/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes the etcd gateway answers (json_etcd.c) and the watch stream framing (json_stream.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The values one feeding produced, end to end, each after its length. */
struct frames {
	char *buf;
	size_t len, cap, n;
	bool stop_on_bad; /* return -EIO for a message that does not parse, as etcd.c does */
};

static int on_value(void *ctx, const char *p, size_t n)
{
	struct frames *fr = ctx;

	if (fr->len + n + sizeof(n) > fr->cap) {
		fr->cap = (fr->len + n + sizeof(n)) * 2;
		fr->buf = realloc(fr->buf, fr->cap);
		if (!fr->buf)
			abort();
	}
	memcpy(fr->buf + fr->len, &n, sizeof(n));
	memcpy(fr->buf + fr->len + sizeof(n), p, n);
	fr->len += n + sizeof(n);
	fr->n++;

	/* Each framed value reaches the parser, as in the watch. */
	struct etcd_watch_msg m = {0};
	struct json_err err;
	kv_batch_init(&m.events);
	int rc = json_etcd_watch_msg(p, n, &m, &err);
	if (rc == 0 && strlen(m.reason) >= sizeof(m.reason))
		abort();
	for (size_t i = 0; rc == 0 && i < m.events.n; i++)
		if (m.events.v[i].klen == 0)
			abort();
	kv_batch_clear(&m.events);
	return rc && fr->stop_on_bad ? -EIO : 0;
}

/* Feed s[0..n) in chunks whose sizes come from cuts (cycled); the framer's result. */
static int feed(const char *s, size_t n, const uint8_t *cuts, size_t ncuts, size_t max,
		struct frames *fr)
{
	struct json_framer f;
	int rc = 0;

	json_framer_init(&f, max);
	for (size_t at = 0, k = 0; at < n && rc == 0; k++) {
		size_t len = ncuts ? (size_t)cuts[k % ncuts] + 1 : n;
		if (len > n - at)
			len = n - at;
		rc = json_framer_feed(&f, s + at, len, on_value, fr);
		at += len;
	}
	json_framer_free(&f);
	return rc;
}

static void whole_answers(const char *s, size_t n)
{
	struct kv_batch b;
	struct etcd_header hdr;
	struct json_err err;
	bool more, ok;
	int64_t current[3];
	char msg[64];
	int code;

	kv_batch_init(&b);
	if (json_etcd_range_resp(s, n, &b, &more, NULL, &hdr, &err) == 0) {
		for (size_t i = 0; i < b.n; i++)
			if (b.v[i].klen == 0 || !b.v[i].val)
				abort();
	} else if (!err.msg[0]) {
		abort(); /* a refusal always says why */
	}
	kv_batch_clear(&b);
	json_etcd_txn_resp(s, n, &ok, current, 3, &hdr, &err);
	json_etcd_error(s, n, &code, msg, sizeof(msg));
	if (strlen(msg) >= sizeof(msg))
		abort();
	free(json_etcd_auth_resp(s, n, &err));
}

/*
 * Layout: byte 0 holds the number of cut sizes (low 3 bits), whether a bad
 * message stops the stream (bit 3) and the framer's limit (high bits); then
 * the cut sizes, then the stream.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t ncuts = data[0] & 7;
	bool stop = data[0] & 8;
	size_t max = data[0] >> 4 ? (size_t)(data[0] >> 4) * 24 : (size_t)1 << 20;
	if (size < 1 + ncuts)
		return 0;
	const uint8_t *cuts = data + 1;
	const char *s = (const char *)data + 1 + ncuts;
	size_t n = size - 1 - ncuts;
	/* A copy of exactly the stream's bytes: ASan sees any read past it. */
	char *copy = malloc(n ? n : 1);
	memcpy(copy, s, n);

	whole_answers(copy, n);

	/* However the stream is cut, the same values come out, then the same result. */
	struct frames one = {.stop_on_bad = stop}, split = {.stop_on_bad = stop};
	int rc1 = feed(copy, n, NULL, 0, max, &one);
	int rc2 = feed(copy, n, cuts, ncuts, max, &split);
	if (rc1 != rc2 || one.n != split.n || one.len != split.len ||
	    (one.len && memcmp(one.buf, split.buf, one.len) != 0)) {
		fprintf(stderr, "framer: whole %d (%zu values), cut %d (%zu values)\n", rc1, one.n,
			rc2, split.n);
		abort();
	}
	free(one.buf);
	free(split.buf);
	free(copy);
	return 0;
}
