/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Replays store changes through the mount, so that inotify watchers of the files see them. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "replay.h"
#include "worker.h"

struct replay {
	struct tree *tree;
	char *mountpoint;
	struct worker w;
	uint64_t *q; /* protected by w.mu; in arrival order, without repeats */
	size_t n, cap;
	pid_t tid;   /* the thread's id once it runs, else 0; atomic */
	bool off;    /* replay thread only: the mount refuses us, stop trying */
	bool warned; /* replay thread only: a file refused us, said once */
	dev_t dev;   /* replay thread only: the mount's device, 0 until known */
	bool halted; /* replay_halt was called */
	bool joined; /* the thread has ended */
};

bool replay_is_own(const struct replay *r, pid_t tid)
{
	return r && tid != 0 && tid == __atomic_load_n(&r->tid, __ATOMIC_ACQUIRE);
}

void replay_push(struct replay *r, uint64_t ino)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->w.mu);
	/* A burst of changes to one file is one replay: the queue is short, a scan is cheap. */
	for (size_t i = 0; i < r->n; i++) {
		if (r->q[i] == ino)
			goto out;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		uint64_t *q = realloc(r->q, cap * sizeof(*q));
		if (!q) {
			log_err("out of memory: a store change is not replayed for inotify");
			goto out;
		}
		r->q = q;
		r->cap = cap;
	}
	r->q[r->n++] = ino;
	pthread_cond_signal(&r->w.cv);
out:
	pthread_mutex_unlock(&r->w.mu);
}

static void replay_one(struct replay *r, uint64_t ino)
{
	char *path;
	struct stat st;

	if (r->dev == 0) {
		/* Asked here, not at start: the mount answers only once it serves requests. */
		if (stat(r->mountpoint, &st))
			return;
		r->dev = st.st_dev;
	}
	if (tree_path(r->tree, ino, r->mountpoint, &path))
		return; /* gone again, or not a file of the tree */
	/* No FUSE request: the kernel opens files by itself (zero-message open). */
	int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		/* Read-only: nothing will ever open. A file whose mode forbids us: only it. */
		if (errno == EROFS || ((errno == EACCES || errno == EPERM) && !r->warned)) {
			log_warn("cannot open %s for writing (%s): inotify watchers will not see "
				 "changes made in the store to %s",
				 path, strerror(errno), errno == EROFS ? "any file" : "such files");
			r->warned = true;
		}
		r->off = errno == EROFS;
		free(path);
		return;
	}
	/*
	 * The name may have moved on to another file since the change, and
	 * after an unmount it names a file of the filesystem below: leave
	 * those alone. The fstat must ask the mount (not the kernel's cache):
	 * its request waits while a newer change's gate is closed. A truncate
	 * sent without it would wait there instead, and while a truncate is
	 * pending the kernel ignores the sizes of GETATTR answers, so that
	 * gate's probe could not teach it the new size (a corrupt read under
	 * ThreadSanitizer's timing).
	 */
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_ino == ino && st.st_dev == r->dev) {
		if (ftruncate(fd, st.st_size))
			log_debug("replay of %s: %s", path, strerror(errno));
	}
	close(fd);
	free(path);
}

static void *run(void *arg)
{
	struct replay *r = arg;
	uint64_t *batch = NULL;
	size_t n = 0;

	__atomic_store_n(&r->tid, gettid(), __ATOMIC_RELEASE);
	pthread_mutex_lock(&r->w.mu);
	for (;;) {
		while (!r->w.stop && r->n == 0)
			worker_wait(&r->w, 0);
		if (r->w.stop)
			break;
		/* Take the whole queue; pushes meanwhile go to a fresh one. */
		free(batch);
		batch = r->q;
		n = r->n;
		r->q = NULL;
		r->n = r->cap = 0;
		pthread_mutex_unlock(&r->w.mu);
		for (size_t i = 0;
		     i < n && !r->off && !__atomic_load_n(&r->w.stop, __ATOMIC_RELAXED); i++)
			replay_one(r, batch[i]);
		pthread_mutex_lock(&r->w.mu);
	}
	pthread_mutex_unlock(&r->w.mu);
	free(batch);
	return NULL;
}

int replay_start(const char *mountpoint, struct tree *t, struct replay **out)
{
	struct replay *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->tree = t;
	r->mountpoint = strdup(mountpoint);
	if (!r->mountpoint) {
		free(r);
		return -ENOMEM;
	}
	int err = worker_start(&r->w, "cfgfs-replay", run, r);
	if (err) {
		free(r->mountpoint);
		free(r);
		return err;
	}
	*out = r;
	return 0;
}

void replay_halt(struct replay *r)
{
	if (!r || r->joined || r->halted)
		return;
	/*
	 * When cfgfs stops on a signal the mount is still there but nobody
	 * answers it: a replay caught in a request would never return. Such a
	 * thread ends with the process.
	 */
	r->halted = true;
	r->joined = worker_stop(&r->w, 2000);
	if (!r->joined)
		log_warn("a replay for inotify watchers did not finish; leaving it");
}

void replay_free(struct replay *r)
{
	if (!r)
		return;
	replay_halt(r);
	if (!r->joined)
		return; /* still in use by its thread */
	worker_release(&r->w);
	free(r->q);
	free(r->mountpoint);
	free(r);
}
