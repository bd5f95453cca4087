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
/*
 * An outage is one episode however many attempts it takes: the log says
 * once that the stream is lost and why, once that it is back, and in
 * between only a reminder this often.
 */
#define REMIND_MS (5 * 60 * 1000)
/* A stream up this long before it failed was healthy: its failure starts a new episode. */
#define HEALTHY_MS 10000
/* Full re-reads in a row, none followed by a change, before they are paced like failures. */
#define RESYNC_BURST 3

struct watcher {
	struct store *store;
	struct tree *tree;
	struct bus *bus;
	struct worker w; /* its cv wakes the backoff sleep on stop */
	bool connected;	 /* atomic */
	int64_t rev;	 /* last revision fully applied; watcher thread only */
	bool reread;	 /* the tree is not from this store's snapshot: resync first */
	unsigned seed;

	/* The failure episode in progress; watcher thread only (callbacks run on it). */
	bool episode;	       /* a loss was logged and nothing has come through since */
	unsigned failures;     /* attempts failed in it */
	int64_t episode_ms;    /* when it started */
	int64_t reminded_ms;   /* when it was last logged */
	int64_t connected_ms;  /* when the stream last came up; 0: down */
	char episode_err[512]; /* its last failure */
	uint64_t applied;      /* changes and progress the stream delivered */
	/* For cfgfs status (read by FUSE handlers): */
	int64_t store_rev;  /* atomic; the newest revision the store reported, 0: none yet */
	int64_t lost_at;    /* atomic; wall-clock second the stream was lost, 0 while up */
	char last_err[512]; /* the last reason the stream failed; protected by w.mu */
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
static void note_lost(struct watcher *w, const char *why)
{
	int64_t now = (int64_t)time(NULL);
	int64_t zero = 0;

	__atomic_compare_exchange_n(&w->lost_at, &zero, now, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->w.mu);
	snprintf(w->last_err, sizeof(w->last_err), "%s", why);
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

/*
 * The store's reason, with the member named when the driver's text does
 * not: a line that says neither what broke nor where sends the reader to a
 * debug log that is not there.
 */
static void failure_text(struct watcher *w, int err, const char *what, char *out, size_t n)
{
	const char *why = store_error(w->store);
	char *at = store_endpoint(w->store);

	if (!strcmp(why, "unknown error"))
		why = strerror(err < 0 ? -err : err);
	if (at && *at && !strstr(why, at))
		snprintf(out, n, "%s%s (member %s)", what, why, at);
	else
		snprintf(out, n, "%s%s", what, why);
	free(at);
}

static unsigned seconds_since(int64_t ms)
{
	return (unsigned)((mono_ms() - ms + 500) / 1000);
}

/* Something came through the stream: an episode in progress is over. */
static void episode_end(struct watcher *w)
{
	if (!w->episode)
		return;
	char *at = store_endpoint(w->store);
	log_info("the change stream of %s is back%s%s after %u failed attempt%s in %u s "
		 "(the last: %s)",
		 w->store->url->text, at && *at ? " at " : "", at ? at : "", w->failures,
		 w->failures == 1 ? "" : "s", seconds_since(w->episode_ms), w->episode_err);
	free(at);
	w->episode = false;
	w->failures = 0;
}

/* An attempt failed: the first of an episode is logged, later ones only now and then. */
static void episode_fail(struct watcher *w, const char *why)
{
	int64_t now = mono_ms();

	if (w->episode && w->connected_ms && now - w->connected_ms >= HEALTHY_MS)
		episode_end(w);
	w->connected_ms = 0;
	snprintf(w->episode_err, sizeof(w->episode_err), "%s", why);
	if (!w->episode) {
		w->episode = true;
		w->failures = 1;
		w->episode_ms = w->reminded_ms = now;
		log_warn("lost the change stream of %s: %s; files keep their last content, "
			 "retrying with backoff",
			 w->store->url->text, why);
		return;
	}
	w->failures++;
	if (now - w->reminded_ms >= REMIND_MS) {
		w->reminded_ms = now;
		log_warn("still no change stream of %s after %u attempts in %u s: %s",
			 w->store->url->text, w->failures, seconds_since(w->episode_ms), why);
	} else {
		log_debug("change stream of %s, attempt %u failed: %s", w->store->url->text,
			  w->failures, why);
	}
}

static void on_connected(void *ctx, int64_t rev)
{
	struct watcher *w = ctx;

	heard(w, rev);
	__atomic_store_n(&w->lost_at, 0, __ATOMIC_RELAXED);
	if (!__atomic_exchange_n(&w->connected, true, __ATOMIC_RELAXED)) {
		char *at = store_endpoint(w->store);
		/* Within an episode a connection proves nothing yet: it may fail at once again. */
		log_msg(w->episode ? LOG_DEBUG : LOG_INFO,
			"watching %s%s%s from revision %lld (store at %lld)", w->store->url->text,
			at && *at ? " at " : "", at ? at : "", (long long)w->rev + 1,
			(long long)rev);
		free(at);
		w->connected_ms = mono_ms();
	}
}

static void on_lost(void *ctx)
{
	struct watcher *w = ctx;
	char why[sizeof(w->episode_err)];

	if (__atomic_exchange_n(&w->connected, false, __ATOMIC_RELAXED)) {
		failure_text(w, -EIO, "", why, sizeof(why));
		note_lost(w, why);
		episode_fail(w, why);
	}
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
	w->applied++;
	episode_end(w);
	return 0;
}

static uint64_t on_epoch(void *ctx)
{
	struct watcher *w = ctx;

	return tree_local_epoch(w->tree);
}

/* A listing (whole, or only its changes: Consul) read when the local epoch was epoch. */
static int apply_listing(struct watcher *w, struct kv_batch *b, uint64_t epoch, bool whole)
{
	struct change_list l;
	struct timespec now;

	change_list_init(&l);
	now_real(&now);
	int err = whole ? tree_resync_since(w->tree, b, epoch, &now, &l)
			: tree_apply_since(w->tree, b, epoch, &now, &l);
	publish(w, &l);
	if (err == 1)
		return 1;
	if (err) {
		log_err("out of memory applying a change: reading the whole prefix again");
		return -ESTALE;
	}
	/* A whole listing may also go back (a store reset); changes only go forward. */
	if (whole || b->revision > w->rev)
		w->rev = b->revision;
	heard(w, w->rev);
	w->applied++;
	episode_end(w);
	return 0;
}

static int on_snapshot(void *ctx, struct kv_batch *b, uint64_t epoch)
{
	return apply_listing(ctx, b, epoch, true);
}

static int on_changes(void *ctx, struct kv_batch *b, uint64_t epoch)
{
	return apply_listing(ctx, b, epoch, false);
}

static int on_keys_under(void *ctx, const char *sub, size_t slen,
			 int (*fn)(void *fctx, const char *key, size_t klen), void *fctx)
{
	struct watcher *w = ctx;

	return tree_keys_under(w->tree, sub, slen, fn, fctx);
}

static void on_progress(void *ctx, int64_t rev)
{
	struct watcher *w = ctx;

	heard(w, rev);
	if (rev > w->rev) {
		w->rev = rev;
		tree_note_revision(w->tree, rev);
	}
	w->applied++;
	episode_end(w);
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
	/* A failure is logged by the caller, once per episode. */
	err = w->store->ops->snapshot(w->store, &b);
	if (!err) {
		now_real(&now);
		err = tree_resync(w->tree, &b, &now, &l);
		publish(w, &l);
		if (!err) {
			log_info("mirror of %s resynchronized at revision %lld (%zu keys)",
				 w->store->url->text, (long long)b.revision, b.n);
			w->rev = b.revision;
			heard(w, w->rev);
			episode_end(w);
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
		.changes = on_changes,
		.keys_under = on_keys_under,
		.epoch = on_epoch,
		.ctx = w,
	};
	unsigned backoff = 0, resyncs = 0;
	bool need_resync = w->reread;

	while (!stopping(w)) {
		bool reading = need_resync;
		int err;

		if (need_resync) {
			err = resync(w);
			/* Done: on to the watch, which is no failure to log or back off from. */
			if (!err) {
				need_resync = false;
				continue;
			}
		} else {
			uint64_t applied = w->applied;
			err = w->store->ops->watch(w->store, w->rev + 1, &cb);
			if (err == -ESTALE) {
				need_resync = true;
				/*
				 * Re-read at once, unless the stream asks for it again and
				 * again with nothing in between: then it is a failure.
				 */
				resyncs = w->applied != applied ? 1 : resyncs + 1;
				if (resyncs <= RESYNC_BURST) {
					backoff = 0;
					__atomic_store_n(&w->connected, false, __ATOMIC_RELAXED);
					continue;
				}
			}
		}
		if (err == -ECANCELED || stopping(w))
			break;
		__atomic_store_n(&w->connected, false, __ATOMIC_RELAXED);
		/* Quick retries only after a stream that worked; a store that fails again at once
		 * gets the growing backoff, even when each attempt connects first. */
		if (!w->episode || (w->connected_ms && mono_ms() - w->connected_ms >= HEALTHY_MS))
			backoff = 0;
		char why[sizeof(w->episode_err)];
		failure_text(w, err, reading ? "re-reading failed: " : "", why, sizeof(why));
		note_lost(w, why);
		episode_fail(w, why);
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
	err = worker_start(&w->w, "cfgfs-watch", run, w);
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
