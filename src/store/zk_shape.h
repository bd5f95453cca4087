/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a znode shows as: a file, a directory, or both. Pure functions, no ZooKeeper client. */
#ifndef CFGFS_ZK_SHAPE_H
#define CFGFS_ZK_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a znode's Stat, name and data say about it. */
struct zk_znode {
	const char *name; /* the last path segment */
	size_t name_len;
	const char *data; /* data_len bytes; NULL when data_len <= 0 */
	int32_t data_len; /* -1: null data (created without any) */
	int32_t version;  /* dataVersion: setData calls since the create */
	int32_t cversion; /* child changes since the create */
	int32_t num_children;
	int64_t ephemeral_owner; /* 0: persistent */
};

/*
 * A znode is both a value and a parent. One with children is a directory
 * (its data, if any, is the directory's value file). A childless one is,
 * first match wins:
 *
 *   ephemeral                                 a file (a registration: a name,
 *                                             perhaps data, never children)
 *   has had children (cversion > 0)           a directory
 *   null data, never written (version 0)      a directory (Kafka, Solr, zkCli,
 *                                             cfgfs's mkdir)
 *   dubbo's providers, consumers, routers or  a directory: Curator stores its
 *   configurators, never written, holding     host's address in every node it
 *   nothing, or only an IP address            creates without data
 *   anything else, empty data included        a file (cfgfs writes an empty file
 *                                             with zero-length data)
 *
 * A directory with data shows it as its value file (names.h NAMES_VALUE).
 */
enum zk_shape {
	ZK_FILE,
	ZK_DIR,
	ZK_DIR_VALUE, /* a directory whose data is its value file */
};

enum zk_shape zk_shape(const struct zk_znode *z);

/* The keys a znode of that shape has, as suffixes of its own key ("x"): bit 0 "x", bit 1 "x/". */
#define ZK_KEY_VALUE 1u
#define ZK_KEY_MARKER 2u
unsigned zk_shape_keys(enum zk_shape s);

#endif
