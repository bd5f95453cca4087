/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A background thread with its lock, its wake-ups and its stop: what every cfgfs thread needs. */
#include <errno.h>
#include <time.h>

#include "clock.h"
#include "worker.h"

int worker_start(struct worker *w, const char *name, void *(*fn)(void *), void *arg)
{
	w->stop = false;
	pthread_mutex_init(&w->mu, NULL);
	mono_cond_init(&w->cv);
	int err = pthread_create(&w->thread, NULL, fn, arg);
	if (err) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		return -err;
	}
	/* Seen in top -H and /proc/PID/task/TID/comm: which thread of a mount is busy. */
	pthread_setname_np(w->thread, name);
	return 0;
}

bool worker_wait(struct worker *w, int64_t until_ms)
{
	if (w->stop)
		return false;
	if (until_ms <= 0) {
		pthread_cond_wait(&w->cv, &w->mu);
	} else {
		struct timespec until = mono_ts(until_ms);
		pthread_cond_timedwait(&w->cv, &w->mu, &until);
	}
	return !w->stop;
}

void worker_wake(struct worker *w)
{
	pthread_mutex_lock(&w->mu);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

bool worker_stop(struct worker *w, unsigned ms)
{
	pthread_mutex_lock(&w->mu);
	__atomic_store_n(&w->stop, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (ms) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += ms / 1000;
		until.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		return pthread_timedjoin_np(w->thread, NULL, &until) == 0;
	}
	pthread_join(w->thread, NULL);
	return true;
}

void worker_release(struct worker *w)
{
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->cv);
}
