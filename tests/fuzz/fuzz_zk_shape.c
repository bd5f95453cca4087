/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes the ZooKeeper shape rule (zk_shape.c) with any Stat, name and data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zk_shape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int32_t take32(const uint8_t **p, size_t *n)
{
	uint32_t v = 0;

	for (int i = 0; i < 4 && *n; i++, (*p)++, (*n)--)
		v |= (uint32_t)(*p)[0] << (8 * i);
	return (int32_t)v;
}

/*
 * Layout: data_len selector, version, cversion, num_children (4 bytes
 * each, little-endian), one byte for ephemeral_owner, one for the name's
 * length; then the name and the data.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data;
	size_t n = size;
	struct zk_znode z = {0};
	int32_t sel = take32(&p, &n);

	z.version = take32(&p, &n);
	z.cversion = take32(&p, &n);
	z.num_children = take32(&p, &n);
	z.ephemeral_owner = n ? (int64_t)(*p++ % 3) - 1 : 0;
	n -= n ? 1 : 0;
	size_t nl = n ? *p++ : 0;
	n -= n ? 1 : 0;
	if (nl > n)
		nl = n;
	/* Copies, so ASan sees a read past either. */
	char *name = malloc(nl ? nl : 1);
	memcpy(name, p, nl);
	z.name = name;
	z.name_len = nl;
	p += nl;
	n -= nl;
	char *d = NULL;
	/* The client's contract: data_len is -1 (null data) or the bytes there are. */
	if (sel < 0) {
		z.data_len = -1;
	} else {
		z.data_len = (int32_t)n;
		if (n) {
			d = malloc(n);
			memcpy(d, p, n);
		}
	}
	z.data = d;
	enum zk_shape s = zk_shape(&z);
	if (s != ZK_FILE && s != ZK_DIR && s != ZK_DIR_VALUE)
		abort();
	/* Children need a directory; data on a directory needs its value file. */
	if (z.num_children > 0 && s == ZK_FILE)
		abort();
	unsigned keys = zk_shape_keys(s);
	if (keys == 0 || keys > (ZK_KEY_VALUE | ZK_KEY_MARKER))
		abort();
	free(name);
	free(d);
	return 0;
}
