/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fuzzes base64 (base64.c): any text decodes without harm, and any bytes round-trip. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Exactly the decoder's bound: a write past it is a heap overflow ASan sees. */
	uint8_t *out = malloc(base64_decoded_max(size) + 1);
	char *text = malloc(base64_encoded_size(size));
	uint8_t *back = malloc(size + 1);

	if (!out || !text || !back)
		abort();
	ssize_t n = base64_decode((const char *)data, size, out);
	if (n >= 0 && (size_t)n > base64_decoded_max(size))
		abort();
	size_t tl = base64_encode(data, size, text);
	if (tl + 1 != base64_encoded_size(size) || text[tl] != '\0')
		abort();
	ssize_t m = base64_decode(text, tl, back);
	if (m < 0 || (size_t)m != size || memcmp(back, data, size) != 0) {
		fprintf(stderr, "base64: decode(encode(x)) != x for %zu bytes\n", size);
		abort();
	}
	free(out);
	free(text);
	free(back);
	return 0;
}
