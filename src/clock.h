/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The monotonic clock in milliseconds, for delays, deadlines and rate limits. */
#ifndef CFGFS_CLOCK_H
#define CFGFS_CLOCK_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

static inline int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static inline int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

/* The deadline mono_ms() == ms, for pthread_cond_timedwait on a mono_cond_init condition. */
static inline struct timespec mono_ts(int64_t ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

	return ts;
}

/* A condition variable whose timed waits follow the monotonic clock (wall-clock jumps do not
 * matter). */
static inline void mono_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

#endif
