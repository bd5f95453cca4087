/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What the etcd and Consul JSON codecs share. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "base64.h"
#include "json_int.h"

void json_global_init(void)
{
	json_object_seed(0);
}

int json_fail(struct json_err *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

json_t *json_b64_string(const void *p, size_t n)
{
	char *s = malloc(base64_encoded_size(n));
	json_t *j;

	if (!s)
		return NULL;
	size_t len = base64_encode(p, n, s);
	j = json_stringn(s, len);
	free(s);
	return j;
}

int json_b64_blob(const json_t *v, bool null_ok, const char *what, struct blob **out,
		  struct json_err *err)
{
	const char *s = "";
	size_t n = 0;

	if (v && !(null_ok && json_is_null(v))) {
		if (!json_is_string(v))
			return json_fail(err, "%s is not a string", what);
		s = json_string_value(v);
		n = json_string_length(v);
	}
	struct blob *b = blob_new(base64_decoded_max(n));
	if (!b)
		return json_fail(err, "out of memory");
	ssize_t len = base64_decode(s, n, b->data);
	if (len < 0) {
		blob_unref(b);
		return json_fail(err, "%s is not valid base64", what);
	}
	b->len = len;
	b->data[len] = '\0';
	*out = b;
	return 0;
}

char *json_dump_compact(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return s;
}
