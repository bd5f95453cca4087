/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The background thread that keeps the mirror current from the store's change stream. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "watcher.h"
#include "worker.h"

/* Reconnect delays: quick at first, because a restarting store is back soon. */
#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 5000

struct watcher {
	struct store *store;
	struct tree *tree;
	struct bus *bus;
	struct worker w; /* its cv wakes the backoff sleep on stop */
	bool connected;	 /* atomic */
	int64_t rev;	 /* last revision fully applied; watcher thread only */
	bool reread;	 /* the tree is not from this store's snapshot: resync first */
	unsigned seed;
	/* For cfgfs status (read by FUSE handlers): */
	int64_t store_rev;  /* atomic; the newest revision the store reported, 0: none yet */
	int64_t lost_at;    /* atomic; wall-clock second the stream was lost, 0 while up */
	char last_err[256]; /* the last reason the stream failed; protected by w.mu */
	int64_t last_err_at;
};

/* Remember rev as the store's newest revision, if it is. */
static void heard(struct watcher *w, int64_t rev)
{
	int64_t old = __atomic_load_n(&w->store_rev, __ATOMIC_RELAXED);

	while (rev > old && !__atomic_compare_exchange_n(&w->store_rev, &old, rev, false,
							 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

/* The stream just went down (or never came up): since when, and why, for cfgfs status. */
static void note_lost(struct watcher *w)
{
	int64_t now = (int64_t)time(NULL);
	int64_t zero = 0;

	__atomic_compare_exchange_n(&w->lost_at, &zero, now, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->w.mu);
	snprintf(w->last_err, sizeof(w->last_err), "%s", store_error(w->store));
	w->last_err_at = now;
	pthread_mutex_unlock(&w->w.mu);
}

int64_t watcher_store_revision(const struct watcher *w)
{
	return __atomic_load_n(&w->store_rev, __ATOMIC_RELAXED);
}

int64_t watcher_disconnected_since(const struct watcher *w)
{
	return __atomic_load_n(&w->lost_at, __ATOMIC_RELAXED);
}

int64_t watcher_last_error(struct watcher *w, char *buf, size_t len)
{
	pthread_mutex_lock(&w->w.mu);
	snprintf(buf, len, "%s", w->last_err);
	int64_t at = w->last_err_at;
	pthread_mutex_unlock(&w->w.mu);
	return at;
}

bool watcher_connected(const struct watcher *w)
{
	return __atomic_load_n(&w->connected, __ATOMIC_RELAXED);
}

static void now_real(struct timespec *ts)
{
	clock_gettime(CLOCK_REALTIME, ts);
}

/* Also without invalidations: a change to files the kernel never saw still changed the tree. */
static void publish(struct watcher *w, struct change_list *l)
{
	bus_publish(w->bus, l);
	/*
	 * The next batch may change the same files: it starts from what the
	 * kernel holds once this one's gates are open (see tree.h).
	 */
	if (!tree_wait_gates(w->tree, 1000))
		log_warn("the kernel has not taken a change within a second");
}

static void on_connected(void *ctx, int64_t rev)
{
	struct watcher *w = ctx;

	heard(w, rev);
	__atomic_store_n(&w->lost_at, 0, __ATOMIC_RELAXED);
	if (!__atomic_exchange_n(&w->connected, true, __ATOMIC_RELAXED)) {
		char *at = store_endpoint(w->store);
		log_info("watching %s%s%s from revision %lld (store at %lld)", w->store->url->text,
			 at && *at ? " at " : "", at ? at : "", (long long)w->rev + 1,
			 (long long)rev);
		free(at);
	}
}

static void on_lost(void *ctx)
{
	struct watcher *w = ctx;

	if (__atomic_load_n(&w->connected, __ATOMIC_RELAXED))
		note_lost(w);
	if (__atomic_exchange_n(&w->connected, false, __ATOMIC_RELAXED))
		log_warn("lost the change stream of %s: %s; files keep their last content, "
			 "reconnecting",
			 w->store->url->text, store_error(w->store));
}

static int on_batch(void *ctx, struct kv_batch *b)
{
	struct watcher *w = ctx;
	struct change_list l;
	struct timespec now;
	int err;

	change_list_init(&l);
	now_real(&now);
	err = tree_apply(w->tree, b, &now, &l);
	/* Even a partly applied batch changed the tree: tell the kernel. */
	publish(w, &l);
	if (err) {
		log_err("out of memory applying a change: reading the whole prefix again");
		return -ESTALE;
	}
	for (size_t i = 0; i < b->n; i++)
		if (b->v[i].meta.mod_rev > w->rev)
			w->rev = b->v[i].meta.mod_rev;
	heard(w, w->rev);
	return 0;
}

static uint64_t on_epoch(void *ctx)
{
	struct watcher *w = ctx;

	return tree_local_epoch(w->tree);
}

static int on_snapshot(void *ctx, struct kv_batch *b, uint64_t epoch)
{
	struct watcher *w = ctx;
	struct change_list l;
	struct timespec now;

	change_list_init(&l);
	now_real(&now);
	int err = tree_resync_since(w->tree, b, epoch, &now, &l);
	publish(w, &l);
	if (err == 1)
		return 1;
	if (err) {
		log_err("out of memory applying a change: reading the whole prefix again");
		return -ESTALE;
	}
	w->rev = b->revision;
	heard(w, w->rev);
	return 0;
}

static void on_progress(void *ctx, int64_t rev)
{
	struct watcher *w = ctx;

	heard(w, rev);
	if (rev > w->rev) {
		w->rev = rev;
		tree_note_revision(w->tree, rev);
	}
}

/* Read everything again and apply only the differences. */
static int resync(struct watcher *w)
{
	struct kv_batch b;
	struct change_list l;
	struct timespec now;
	int err;

	kv_batch_init(&b);
	change_list_init(&l);
	err = w->store->ops->snapshot(w->store, &b);
	if (err && err != -ECANCELED)
		log_warn("re-reading %s failed: %s", w->store->url->text, store_error(w->store));
	if (!err) {
		now_real(&now);
		err = tree_resync(w->tree, &b, &now, &l);
		publish(w, &l);
		if (!err) {
			log_info("mirror of %s resynchronized at revision %lld (%zu keys)",
				 w->store->url->text, (long long)b.revision, b.n);
			w->rev = b.revision;
			heard(w, w->rev);
		}
	}
	kv_batch_clear(&b);
	return err;
}

/* Sleep ms, or less if stopped; returns true when stopping. */
static bool pause_ms(struct watcher *w, unsigned ms)
{
	int64_t until = mono_ms() + ms;

	pthread_mutex_lock(&w->w.mu);
	while (mono_ms() < until && worker_wait(&w->w, until))
		;
	bool stop = w->w.stop;
	pthread_mutex_unlock(&w->w.mu);
	return stop;
}

static bool stopping(struct watcher *w)
{
	pthread_mutex_lock(&w->w.mu);
	bool s = w->w.stop;
	pthread_mutex_unlock(&w->w.mu);
	return s;
}

static void *run(void *arg)
{
	struct watcher *w = arg;
	const struct store_watch_cb cb = {
		.connected = on_connected,
		.lost = on_lost,
		.batch = on_batch,
		.progress = on_progress,
		.snapshot = on_snapshot,
		.epoch = on_epoch,
		.ctx = w,
	};
	unsigned backoff = 0;
	bool need_resync = w->reread;
	int last_err = 0;

	while (!stopping(w)) {
		int err;

		if (need_resync) {
			err = resync(w);
			if (!err)
				need_resync = false;
		} else {
			err = w->store->ops->watch(w->store, w->rev + 1, &cb);
			if (err == -ESTALE) {
				need_resync = true;
				backoff = 0;
				continue;
			}
		}
		if (err == -ECANCELED || stopping(w))
			break;
		if (err)
			note_lost(w);
		bool was_connected = __atomic_exchange_n(&w->connected, false, __ATOMIC_RELAXED);
		if (was_connected)
			backoff = 0;
		/* Say it once per outage, not once per attempt. */
		if (was_connected || err != last_err)
			log_warn("lost the change stream of %s: %s; files keep their last content, "
				 "retrying",
				 w->store->url->text, store_error(w->store));
		last_err = err;
		backoff = backoff ? backoff * 2 : BACKOFF_FIRST_MS;
		if (backoff > BACKOFF_MAX_MS)
			backoff = BACKOFF_MAX_MS;
		/* Jitter, so that many hosts do not reconnect in lockstep. */
		unsigned delay = backoff / 2 + (unsigned)(rand_r(&w->seed) % (backoff / 2 + 1));
		if (pause_ms(w, delay))
			break;
	}
	__atomic_store_n(&w->connected, false, __ATOMIC_RELAXED);
	store_thread_done(w->store);
	return NULL;
}

int watcher_start(struct store *s, struct tree *t, int64_t start_rev, bool reread, struct bus *bus,
		  struct watcher **out)
{
	struct watcher *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	w->store = s;
	w->tree = t;
	w->rev = start_rev;
	w->reread = reread;
	w->bus = bus;
	w->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)w;
	/* Until the stream is up, the mount is not following the store. */
	w->lost_at = (int64_t)time(NULL);
	err = worker_start(&w->w, run, w);
	if (err) {
		free(w);
		return err;
	}
	*out = w;
	return 0;
}

void watcher_stop(struct watcher *w)
{
	if (!w)
		return;
	/* Interrupt a watch in progress first: the thread ends at its next check. */
	store_stop(w->store);
	worker_stop(&w->w, 0);
	worker_release(&w->w);
	free(w);
}
