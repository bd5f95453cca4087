/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Standard base64 (RFC 4648, with padding), as the etcd gateway and Consul use. */
#ifndef CFGFS_BASE64_H
#define CFGFS_BASE64_H

#include <stddef.h>
#include <sys/types.h>

/* Bytes needed to encode n bytes, including the terminating NUL. */
size_t base64_encoded_size(size_t n);

/* Encode in[0..n) into out (base64_encoded_size(n) bytes); returns the length. */
size_t base64_encode(const void *in, size_t n, char *out);

/* Upper bound of the decoded size of n base64 characters. */
size_t base64_decoded_max(size_t n);

/* Decode n base64 characters into out; returns the length or -EINVAL. */
ssize_t base64_decode(const char *in, size_t n, void *out);

#endif
