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

char *json_dump_compact(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return s;
}
