/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes store URL parsing (url.c), the host list also as the stores' tools' variables give it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *text)
{
	struct store_url u;
	char err[256] = "";

	if (store_url_parse(text, &u, err, sizeof(err)) != 0) {
		if (!err[0] || u.hosts || u.prefix)
			abort(); /* says why, keeps nothing */
		return;
	}
	if (!u.driver || u.nhosts == 0 || !u.prefix || !u.text || u.prefix[u.plen] != '\0' ||
	    (u.plen && u.prefix[u.plen - 1] != '/'))
		abort();
	/* Every host is "host:port", the port 1-65535. */
	for (size_t i = 0; i < u.nhosts; i++) {
		const char *colon = strrchr(u.hosts[i], ':');
		if (!colon || colon == u.hosts[i] || atoi(colon + 1) < 1 || atoi(colon + 1) > 65535)
			abort();
	}
	store_url_free(&u);
}

/*
 * Layout: the URL, then optionally a NUL and the value of the endpoint
 * variables (ETCDCTL_ENDPOINTS, CONSUL_HTTP_ADDR), used when the URL names
 * no host.
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);

	memcpy(text, data, size);
	text[size] = '\0';
	size_t ul = strlen(text);
	if (ul < size) {
		setenv("ETCDCTL_ENDPOINTS", text + ul + 1, 1);
		setenv("CONSUL_HTTP_ADDR", text + ul + 1, 1);
	} else {
		unsetenv("ETCDCTL_ENDPOINTS");
		unsetenv("CONSUL_HTTP_ADDR");
	}
	check(text);
	free(text);
	return 0;
}
