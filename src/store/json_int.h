/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the JSON codecs: helpers the etcd and Consul codecs share (jansson's types). */
#ifndef CFGFS_JSON_INT_H
#define CFGFS_JSON_INT_H

#include <jansson.h>
#include <stddef.h>

#include "blob.h"
#include "json.h"

/* Record a reason in err; returns -EINVAL. */
int json_fail(struct json_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A base64 JSON string for bytes p[0..n); a new reference or NULL. */
json_t *json_b64_string(const void *p, size_t n);

/*
 * The bytes of the base64 JSON string v as a new blob in *out; absent is
 * empty, and so is null when null_ok. 0, or -EINVAL with a reason naming what (e.g. "field value").
 */
int json_b64_blob(const json_t *v, bool null_ok, const char *what, struct blob **out,
		  struct json_err *err);

/* Whether a listing read with since hands over an entry with meta (see json_consul_list_since). */
static inline bool json_consul_handed(int64_t since, const struct kv_meta *meta)
{
	return since == 0 || meta->mod_rev > since || meta->create_rev > meta->mod_rev;
}

/* j as compact text, malloc'd (NULL on failure); takes the reference to j. */
char *json_dump_compact(json_t *j);

#endif
