/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Sends local changes to the store: commits, deletes, renames; the only writer of the store. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "worker.h"
#include "writer.h"

enum job_kind { JOB_COMMIT, JOB_DELETE, JOB_DETACH };

struct job {
	uint64_t ino;
	enum job_kind kind;
	int64_t due_ms;
	unsigned tries; /* deletes the store did not answer */
};

/* A file with a pending update whose close inotify reports. */
struct watch {
	int wd;
	uint64_t ino;
};

struct writer {
	struct writer_cfg cfg;
	struct worker w;  /* the thread that sends; its mu protects what says so */
	struct job *jobs; /* protected by w.mu; few at a time, so a plain array */
	size_t njobs, cap;
	/*
	 * The kernel tells the daemon nothing when a file is closed, but it
	 * tells inotify (the event comes from the VFS, not from FUSE): a
	 * watch on each file with a pending update ends the session at the
	 * writer's close instead of after a quiet period. -1: not available.
	 */
	int ifd, stopfd;
	bool close_reports; /* atomic; cleared when a file cannot be watched */
	pthread_t closer;
	struct watch *watches; /* protected by w.mu */
	size_t nwatches, wcap;
	/*
	 * For cfgfs status, protected by status_mu, a lock of their own: the
	 * getxattr handler that reads them must not wait behind the job queue.
	 * Only the newest kept files are remembered: the operator needs to
	 * find them, not a history.
	 */
	pthread_mutex_t status_mu;
	uint64_t refused;	     /* changes the store refused as conflicts */
	char *kept[WRITER_KEPT_MAX]; /* paths of NAME.rejected files, oldest first */
	size_t nkept;
	char last_err[256];
	int64_t last_err_at;
};

/* Remember a failure (and the file its bytes were kept in) for cfgfs status. */
static void note_failure(struct writer *w, int err, const char *what, const char *kept)
{
	pthread_mutex_lock(&w->status_mu);
	if (err == -ESTALE)
		w->refused++;
	snprintf(w->last_err, sizeof(w->last_err), "%s", what);
	w->last_err_at = (int64_t)time(NULL);
	char *copy = kept ? strdup(kept) : NULL;
	if (copy) {
		if (w->nkept == WRITER_KEPT_MAX) {
			free(w->kept[0]);
			memmove(w->kept, w->kept + 1, --w->nkept * sizeof(w->kept[0]));
		}
		w->kept[w->nkept++] = copy;
	}
	pthread_mutex_unlock(&w->status_mu);
}

size_t writer_pending(struct writer *w)
{
	pthread_mutex_lock(&w->w.mu);
	size_t n = w->njobs;
	pthread_mutex_unlock(&w->w.mu);
	return n;
}

uint64_t writer_refused(struct writer *w, char **kept)
{
	size_t len = 0;

	pthread_mutex_lock(&w->status_mu);
	for (size_t i = 0; i < w->nkept; i++)
		len += strlen(w->kept[i]) + 1;
	*kept = malloc(len + 1);
	if (*kept) {
		char *p = *kept;
		for (size_t i = 0; i < w->nkept; i++)
			p += sprintf(p, "%s\n", w->kept[i]);
		*p = '\0';
	}
	uint64_t n = w->refused;
	pthread_mutex_unlock(&w->status_mu);
	return n;
}

int64_t writer_last_error(struct writer *w, char *buf, size_t len)
{
	pthread_mutex_lock(&w->status_mu);
	snprintf(buf, len, "%s", w->last_err);
	int64_t at = w->last_err_at;
	pthread_mutex_unlock(&w->status_mu);
	return at;
}

size_t writer_max_value(const struct writer *w)
{
	return w->cfg.store->caps.max_value;
}

/* Queue a job, or move a queued one to the new due time unless keep. */
static void schedule(struct writer *w, uint64_t ino, enum job_kind kind, unsigned delay_ms,
		     bool keep)
{
	int64_t due = mono_ms() + delay_ms;

	pthread_mutex_lock(&w->w.mu);
	for (size_t i = 0; i < w->njobs; i++) {
		if (w->jobs[i].ino == ino && w->jobs[i].kind == kind) {
			if (keep) {
				pthread_mutex_unlock(&w->w.mu);
				return;
			}
			w->jobs[i].due_ms = due;
			goto wake;
		}
	}
	if (w->njobs == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct job *j = realloc(w->jobs, cap * sizeof(*j));
		if (!j) {
			pthread_mutex_unlock(&w->w.mu);
			log_err("out of memory: a change of inode %llu is not sent to the store",
				(unsigned long long)ino);
			return;
		}
		w->jobs = j;
		w->cap = cap;
	}
	w->jobs[w->njobs++] = (struct job){.ino = ino, .kind = kind, .due_ms = due};
wake:
	pthread_cond_signal(&w->w.cv);
	pthread_mutex_unlock(&w->w.mu);
}

static struct watch *find_watch(struct writer *w, uint64_t ino, int wd)
{
	for (size_t i = 0; i < w->nwatches; i++) {
		if (ino ? w->watches[i].ino == ino : w->watches[i].wd == wd)
			return &w->watches[i];
	}
	return NULL;
}

static bool watching(struct writer *w, uint64_t ino)
{
	pthread_mutex_lock(&w->w.mu);
	bool yes = find_watch(w, ino, 0) != NULL;
	pthread_mutex_unlock(&w->w.mu);
	return yes;
}

/*
 * The first change of a session runs the job at once; later ones find it
 * queued and cost nothing here (the job itself waits for the quiet period
 * where it has to). The first write of an update moves the job up, as it may
 * wait for a quiet period that a truncate before it started: running it
 * starts watching the file for its close.
 */
void writer_changed(struct writer *w, uint64_t ino, bool update)
{
	bool move =
		update && __atomic_load_n(&w->close_reports, __ATOMIC_ACQUIRE) && !watching(w, ino);

	schedule(w, ino, JOB_COMMIT, 0, !move);
}

void writer_unlinked(struct writer *w, uint64_t ino)
{
	schedule(w, ino, JOB_DELETE, w->cfg.delete_delay_ms, false);
}

void writer_detached(struct writer *w, uint64_t ino)
{
	schedule(w, ino, JOB_DETACH, w->cfg.detach_delay_ms, false);
}

/* "revision N", "no key" or "another revision", for log lines. */
static const char *rev_text(int64_t rev, char *buf, size_t len)
{
	if (rev > 0)
		snprintf(buf, len, "revision %lld", (long long)rev);
	else
		snprintf(buf, len, "%s", rev == 0 ? "no key" : "another revision");
	return buf;
}

/* Send x (fence held by the caller), settle it, tell the kernel. Returns the FUSE answer. */
static int send_and_settle(struct writer *w, struct tree_txn *x, struct node_attr *attr)
{
	struct change_list l;
	char *saved = NULL;
	struct txn_result res = {.failed = x->nops, .current = -1};
	int err = w->cfg.store->ops->txn(w->cfg.store, x->ops, x->nops, &res);
	int64_t rev = err ? 0 : res.rev;
	char what[256] = "";

	if (err == -ESTALE) {
		/* Name the key whose check failed and both revisions: the change's base, the
		 * store's. */
		char base[40], now[40];
		if (res.failed < x->nops) {
			const struct kv_op *g = &x->ops[res.failed];
			snprintf(
				what, sizeof(what),
				"%s of %.*s refused: the store has %s, this change was based on %s",
				tree_txn_what(x), (int)g->klen, g->key,
				rev_text(res.current, now, sizeof(now)),
				rev_text(g->expect == KV_ABSENT ? 0 : g->expect, base,
					 sizeof(base)));
		} else {
			snprintf(what, sizeof(what),
				 "%s of %.*s refused: a key changed in the store", tree_txn_what(x),
				 x->nops ? (int)x->ops[0].klen : 1, x->nops ? x->ops[0].key : "?");
		}
		log_warn("%s", what);
	} else if (err) {
		/* Keys are bytes, not strings: never print one with plain %s. */
		snprintf(what, sizeof(what), "%s of %.*s failed: %s", tree_txn_what(x),
			 x->nops ? (int)x->ops[0].klen : 1, x->nops ? x->ops[0].key : "?",
			 store_error(w->cfg.store));
		log_warn("%s", what);
	}
	change_list_init(&l);
	int ret = tree_txn_end(w->cfg.tree, x, err, rev, &saved, attr, &l);
	if (saved) {
		log_warn("the rejected bytes are in %s/%s (kept on this host only)",
			 w->cfg.mountpoint, saved);
	}
	if (err)
		note_failure(w, err, what, saved);
	free(saved);
	bus_publish(w->cfg.bus, &l);
	return ret;
}

void writer_lock(struct writer *w)
{
	tree_fence_lock(w->cfg.tree);
}

void writer_unlock(struct writer *w)
{
	tree_fence_unlock(w->cfg.tree);
}

int writer_send(struct writer *w, struct tree_txn *x, struct node_attr *attr)
{
	return send_and_settle(w, x, attr);
}

static int commit(struct writer *w, uint64_t ino)
{
	struct tree_txn x;
	int err;

	tree_fence_lock(w->cfg.tree);
	err = tree_commit_begin(w->cfg.tree, ino, &x);
	if (err == 0)
		err = send_and_settle(w, &x, NULL);
	else if (err == -ENODATA || err == -ENOENT)
		err = 0;
	tree_fence_unlock(w->cfg.tree);
	tree_txn_clear(&x);
	return err;
}

int writer_fsync(struct writer *w, uint64_t ino)
{
	/* A new file too: an fsync that returned 0 for bytes the store does not hold would be
	 * a durability promise nobody keeps (they could end in NAME.rejected). The temporary
	 * file of an fsync-then-rename save is therefore a key until the rename moves it. */
	return commit(w, ino);
}

/* Send the delete (or, with check, only the guard) of hidden ino; 0 or the txn's error. */
static int delete_hidden(struct writer *w, uint64_t ino, bool check)
{
	struct tree_txn x;
	int err = 0;

	tree_fence_lock(w->cfg.tree);
	if (tree_delete_begin(w->cfg.tree, ino, check, &x) == 0)
		err = send_and_settle(w, &x, NULL);
	tree_fence_unlock(w->cfg.tree);
	tree_txn_clear(&x);
	return err;
}

int writer_check(struct writer *w, uint64_t ino)
{
	return delete_hidden(w, ino, true);
}

int writer_delete_now(struct writer *w, const uint64_t *inos, size_t n)
{
	int first = 0;

	for (size_t i = 0; i < n; i++) {
		int err = delete_hidden(w, inos[i], false);
		if (err && !first)
			first = err;
	}
	return first;
}

/* Watch the file open as fd for closes, if it is still ino (a rename may have raced). */
static void watch(struct writer *w, int fd, uint64_t ino)
{
	struct stat st;
	char proc[40];

	if (fstat(fd, &st) || st.st_ino != ino)
		return;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	int wd = inotify_add_watch(w->ifd, proc, IN_CLOSE_WRITE);
	if (wd < 0) {
		/* No /proc, or out of watches (fs.inotify.max_user_watches). */
		if (__atomic_exchange_n(&w->close_reports, false, __ATOMIC_RELAXED))
			log_warn("cannot watch for closes (%s): changes are committed after the "
				 "quiet period",
				 strerror(errno));
		return;
	}
	pthread_mutex_lock(&w->w.mu);
	struct watch *x = find_watch(w, 0, wd);
	if (!x && w->nwatches == w->wcap) {
		size_t cap = w->wcap ? w->wcap * 2 : 16;
		struct watch *a = realloc(w->watches, cap * sizeof(*a));
		if (a) {
			w->watches = a;
			w->wcap = cap;
		}
	}
	if (!x && w->nwatches < w->wcap)
		x = &w->watches[w->nwatches++];
	if (x)
		*x = (struct watch){.wd = wd, .ino = ino};
	pthread_mutex_unlock(&w->w.mu);
	if (!x)
		inotify_rm_watch(w->ifd, wd);
}

/* The session of ino is over: stop pinning its inode. */
static void unwatch(struct writer *w, uint64_t ino)
{
	int wd = -1;

	pthread_mutex_lock(&w->w.mu);
	struct watch *x = find_watch(w, ino, 0);
	if (x) {
		wd = x->wd;
		*x = w->watches[--w->nwatches];
	}
	pthread_mutex_unlock(&w->w.mu);
	if (wd >= 0)
		inotify_rm_watch(w->ifd, wd);
}

/*
 * Whether some process still has file ino open for writing. A read lease is
 * only granted while nobody has the file open for writing, and asking costs
 * no FUSE request (opens and closes are answered by the kernel). If the
 * question cannot be asked (not the file's owner, say), assume closed. With
 * want_watch, the file is watched for closes first, so a close that comes
 * after the answer is reported.
 */
static bool open_for_writing(struct writer *w, uint64_t ino, bool want_watch)
{
	char *path;
	bool busy = false;

	if (tree_path(w->cfg.tree, ino, w->cfg.mountpoint, &path))
		return false;
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return false;
	if (want_watch && __atomic_load_n(&w->close_reports, __ATOMIC_ACQUIRE) && !watching(w, ino))
		watch(w, fd, ino);
	if (fcntl(fd, F_SETLEASE, F_RDLCK) == 0)
		fcntl(fd, F_SETLEASE, F_UNLCK);
	else
		busy = errno == EAGAIN;
	close(fd);
	return busy;
}

/* Run one due job; returns a new due time to reschedule it at, or 0 when done. */
static int64_t run_job(struct writer *w, const struct job *j, bool final)
{
	enum tree_state st;
	int64_t last;
	bool update;

	switch (j->kind) {
	case JOB_COMMIT:
		if (tree_state(w->cfg.tree, j->ino, &st, &last, &update) || st != TREE_PENDING) {
			unwatch(w, j->ino);
			return 0;
		}
		if (!final) {
			/*
			 * New bytes for an existing key go when the last writer has
			 * closed the file; anything else once it has also been quiet
			 * (a new file may be a temporary one about to be renamed).
			 */
			int64_t quiet = last + w->cfg.commit_delay_ms;
			if (!update && mono_ms() < quiet)
				return quiet;
			if (open_for_writing(w, j->ino, update))
				return mono_ms() + w->cfg.commit_delay_ms;
		}
		commit(w, j->ino);
		unwatch(w, j->ino);
		return 0;
	case JOB_DELETE: {
		int err = delete_hidden(w, j->ino, false);
		/*
		 * The unlink was checked with the store a moment ago: a store that
		 * stopped answering since gets the delete later (the name stays
		 * hidden, the state pending), with backoff.
		 */
		if (tree_err_unanswered(err) && !final) {
			unsigned delay = 500u << (j->tries < 6 ? j->tries : 6);
			return mono_ms() + delay;
		}
		return 0;
	}
	case JOB_DETACH:
		/* At unmount an editor's backup dance that never finished leaves the key alone. */
		if (!final)
			delete_hidden(w, j->ino, false);
		return 0;
	}
	return 0;
}

static void *run(void *arg)
{
	struct writer *w = arg;

	pthread_mutex_lock(&w->w.mu);
	for (;;) {
		int64_t now = mono_ms(), next = INT64_MAX;
		size_t due = w->njobs;
		for (size_t i = 0; i < w->njobs; i++) {
			if (w->w.stop || w->jobs[i].due_ms <= now) {
				due = i;
				break;
			}
			if (w->jobs[i].due_ms < next)
				next = w->jobs[i].due_ms;
		}
		if (due == w->njobs) {
			if (w->w.stop)
				break;
			if (next == INT64_MAX) {
				pthread_cond_wait(&w->w.cv, &w->w.mu);
			} else {
				struct timespec until = mono_ts(next);
				pthread_cond_timedwait(&w->w.cv, &w->w.mu, &until);
			}
			continue;
		}
		struct job j = w->jobs[due];
		w->jobs[due] = w->jobs[--w->njobs];
		bool final = w->w.stop;
		pthread_mutex_unlock(&w->w.mu);
		int64_t again = run_job(w, &j, final);
		pthread_mutex_lock(&w->w.mu);
		if (again && !w->w.stop) {
			bool queued = false;
			j.tries++;
			for (size_t i = 0; i < w->njobs; i++)
				queued |= w->jobs[i].ino == j.ino && w->jobs[i].kind == j.kind;
			if (!queued && w->njobs < w->cap) {
				j.due_ms = again;
				w->jobs[w->njobs++] = j;
			} else if (!queued) {
				pthread_mutex_unlock(&w->w.mu);
				schedule(w, j.ino, j.kind, (unsigned)(again - mono_ms()), false);
				pthread_mutex_lock(&w->w.mu);
			}
		} else if (again) {
			/* Stopping: run it once more without waiting. */
			w->jobs[w->njobs++] = j;
		}
	}
	pthread_mutex_unlock(&w->w.mu);
	store_thread_done(w->cfg.store);
	return NULL;
}

static void stop_closer(struct writer *w)
{
	if (w->ifd < 0)
		return;
	uint64_t one = 1;
	if (write(w->stopfd, &one, sizeof(one)) == sizeof(one))
		pthread_join(w->closer, NULL);
	close(w->stopfd);
	close(w->ifd);
	free(w->watches);
}

/* Turns inotify's close reports into due commits. */
static void *closer(void *arg)
{
	struct writer *w = arg;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	struct pollfd p[2] = {{.fd = w->ifd, .events = POLLIN},
			      {.fd = w->stopfd, .events = POLLIN}};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_err("close reports stopped: %s", strerror(errno));
			break;
		}
		if (p[1].revents)
			break;
		ssize_t n = read(w->ifd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		for (char *q = buf; q < buf + n;) {
			const struct inotify_event *e = (const struct inotify_event *)q;
			uint64_t inos[64];
			size_t k = 0;
			q += sizeof(*e) + e->len;
			pthread_mutex_lock(&w->w.mu);
			if (e->mask & IN_Q_OVERFLOW) {
				/* Reports were lost: look at every watched file again. */
				for (size_t i = 0; i < w->nwatches && k < 64; i++)
					inos[k++] = w->watches[i].ino;
			} else {
				struct watch *x = find_watch(w, 0, e->wd);
				if (x && (e->mask & IN_IGNORED))
					*x = w->watches[--w->nwatches];
				else if (x && (e->mask & IN_CLOSE_WRITE))
					inos[k++] = x->ino;
			}
			pthread_mutex_unlock(&w->w.mu);
			for (size_t i = 0; i < k; i++)
				schedule(w, inos[i], JOB_COMMIT, 0, false);
		}
	}
	return NULL;
}

int writer_start(const struct writer_cfg *cfg, struct writer **out)
{
	struct writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->cfg = *cfg;
	w->ifd = w->stopfd = -1;
	pthread_mutex_init(&w->status_mu, NULL);
	int err = worker_start(&w->w, "cfgfs-writer", run, w);
	if (err) {
		pthread_mutex_destroy(&w->status_mu);
		free(w);
		return err;
	}
	/* After the lock it uses exists. */
	w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	w->stopfd = w->ifd >= 0 ? eventfd(0, EFD_CLOEXEC) : -1;
	if (w->ifd >= 0 && (w->stopfd < 0 || pthread_create(&w->closer, NULL, closer, w))) {
		/* Without close reports, every change waits for the quiet period. */
		log_warn("cannot watch for closes (%s): changes are committed after the "
			 "quiet period",
			 strerror(errno));
		close(w->ifd);
		if (w->stopfd >= 0)
			close(w->stopfd);
		w->ifd = w->stopfd = -1;
	}
	if (w->ifd >= 0)
		pthread_setname_np(w->closer, "cfgfs-closes");
	__atomic_store_n(&w->close_reports, w->ifd >= 0, __ATOMIC_RELEASE);
	*out = w;
	return 0;
}

void writer_stop(struct writer *w)
{
	if (!w)
		return;
	/* What is still queued is sent first (run() ends once nothing is due). */
	worker_stop(&w->w, 0);
	worker_release(&w->w);
	stop_closer(w);
	for (size_t i = 0; i < w->nkept; i++)
		free(w->kept[i]);
	pthread_mutex_destroy(&w->status_mu);
	free(w->jobs);
	free(w);
}
