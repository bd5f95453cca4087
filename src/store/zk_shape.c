/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a znode shows as: a file, a directory, or both. Pure functions, no ZooKeeper client. */
#include <arpa/inet.h>
#include <string.h>

#include "zk_shape.h"

/* Curator's default data: the creating host's address, IPv6 perhaps with a "%scope". */
static bool ip_literal(const char *d, int32_t len)
{
	char buf[64];
	unsigned char addr[16];

	if (len <= 0 || len >= (int32_t)sizeof(buf))
		return false;
	memcpy(buf, d, (size_t)len);
	buf[len] = '\0';
	char *scope = strchr(buf, '%');
	if (scope)
		*scope = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

static bool dubbo_category(const char *n, size_t len)
{
	static const char *const names[] = {"providers", "consumers", "routers", "configurators"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && memcmp(names[i], n, len) == 0)
			return true;
	return false;
}

enum zk_shape zk_shape(const struct zk_znode *z)
{
	bool dir;

	if (z->num_children > 0)
		dir = true;
	else if (z->ephemeral_owner != 0)
		dir = false;
	else if (z->cversion > 0)
		dir = true;
	else if (z->data_len < 0 && z->version == 0)
		dir = true;
	else
		dir = z->version == 0 && dubbo_category(z->name, z->name_len) &&
		      (z->data_len <= 0 || ip_literal(z->data, z->data_len));
	if (!dir)
		return ZK_FILE;
	/* A dubbo category's address is Curator's filler, not a value anybody set. */
	if (z->data_len <= 0 || (z->version == 0 && dubbo_category(z->name, z->name_len) &&
				 ip_literal(z->data, z->data_len)))
		return ZK_DIR;
	return ZK_DIR_VALUE;
}

unsigned zk_shape_keys(enum zk_shape s)
{
	/*
	 * A directory is its own key ("x/"), children or not: the znode stays
	 * when its children go, and rmdir must delete it.
	 */
	if (s == ZK_FILE)
		return ZK_KEY_VALUE;
	return s == ZK_DIR_VALUE ? ZK_KEY_MARKER | ZK_KEY_VALUE : ZK_KEY_MARKER;
}
