/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Shared scaffolding for the unit tests: cmocka's required includes and a reproducible PRNG. */
#ifndef CFGFS_TEST_UTIL_H
#define CFGFS_TEST_UTIL_H

/* cmocka.h relies on these being included first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* A string literal and its length, for keys and values holding NUL bytes. */
#define S(lit) lit, sizeof(lit) - 1

/* xorshift64*: fixed seeds keep every failure reproducible. */
struct rng {
	uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 0x2545F4914F6CDD1DULL;
}

static inline uint32_t rng_below(struct rng *r, uint32_t n)
{
	return (uint32_t)(rng_next(r) % n);
}

#endif
