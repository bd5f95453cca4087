/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A background thread with its lock, its wake-ups and its stop: what every cfgfs thread needs. */
#ifndef CFGFS_WORKER_H
#define CFGFS_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The thread's owner keeps its own state (a queue, a deadline) under mu;
 * the thread waits on cv for it to change. Timed waits follow the
 * monotonic clock (clock.h: mono_ms).
 */
struct worker {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop; /* written under mu (atomically), so it may be read without it */
	pthread_t thread;
};

/*
 * Set up mu and cv, then run fn(arg) on a new thread named name (at most 15
 * characters). 0 or a negative errno (all undone).
 */
int worker_start(struct worker *w, const char *name, void *(*fn)(void *), void *arg);

/*
 * With mu held: wait until woken, stopped, or the monotonic time until_ms
 * (0: no deadline). Returns false once the worker is stopping.
 */
bool worker_wait(struct worker *w, int64_t until_ms);

/* Wake the thread (takes mu). */
void worker_wake(struct worker *w);

/*
 * Ask the thread to stop, and wait at most ms (0: as long as it takes).
 * Returns whether it ended; one that did not is left to end with the
 * process, and nothing it may still use may be freed.
 */
bool worker_stop(struct worker *w, unsigned ms);

/* Free mu and cv, once the thread has ended (worker_stop returned true). */
void worker_release(struct worker *w);

#endif
