/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes mount option parsing (options.c) with any command line; nothing is mounted. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 16

/* The input is the arguments after the program's name, separated by NUL bytes. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	char *argv[MAX_ARGS + 2] = {"cfgfs"};
	int argc = 1;
	struct cfgfs_opts o;
	char err[256] = "";

	memcpy(buf, data, size);
	buf[size] = '\0';
	for (size_t at = 0; at <= size && argc <= MAX_ARGS;) {
		argv[argc++] = buf + at;
		at += strlen(buf + at) + 1;
	}
	argv[argc] = NULL;
	enum options_result r = options_parse(argc, argv, &o, err, sizeof(err));
	if (r == OPTIONS_ERROR && !err[0]) {
		fprintf(stderr, "options: an error without a reason: '%s'\n", err);
		abort();
	}
	if (r == OPTIONS_OK) {
		if (!o.mountpoint || !o.store.url.driver || o.umask > 0777 ||
		    o.store.timeout_ms == 0 || o.commit_delay_ms == 0)
			abort();
		options_free(&o);
	}
	free(buf);
	return 0;
}
