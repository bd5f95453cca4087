/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes the cache file decoder (cachefile.c): any file is refused or read back exactly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cachefile.h"
#include "kv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The file's checksum (FNV-1a, as cachefile.c writes it), so the fuzzer gets past it. */
static void fix_sum(char *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;

	if (n < 8)
		return;
	for (size_t i = 0; i < n - 8; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	for (int i = 0; i < 8; i++)
		p[n - 8 + i] = (char)(h >> (8 * i));
}

static void check(const char *buf, size_t len, const char *store, const char *prefix)
{
	struct cachefile_hdr h = {.store = store, .prefix = prefix, .plen = strlen(prefix)};
	struct kv_batch b;
	int64_t saved_at = 0;
	char why[64] = "";

	kv_batch_init(&b);
	if (cachefile_decode(buf, len, &h, &b, &saved_at, why, sizeof(why)) != 0) {
		if (!why[0] || b.n)
			abort(); /* refused: says why, keeps nothing */
		return;
	}
	for (size_t i = 0; i < b.n; i++)
		if (b.v[i].klen < h.plen || memcmp(b.v[i].key, prefix, h.plen) != 0 || !b.v[i].val)
			abort();
	/* What was read is what would be written: only the reserved word may differ. */
	char *again;
	size_t alen;
	h.saved_at = saved_at;
	if (cachefile_encode(&h, &b, &again, &alen) != 0)
		abort();
	if (alen != len || memcmp(again, buf, 12) != 0 ||
	    memcmp(again + 16, buf + 16, len - 24) != 0) {
		fprintf(stderr, "cachefile: a file read back differs when written again\n");
		abort();
	}
	free(again);
	kv_batch_clear(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size ? size : 1);

	memcpy(buf, data, size);
	/* Now and then as damaged as it came, mostly with a checksum that matches. */
	if (size % 16)
		fix_sum(buf, size);
	check(buf, size, "etcd", "app/");
	check(buf, size, "consul", "");
	free(buf);
	return 0;
}
