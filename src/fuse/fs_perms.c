/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The permission rules in force: who reads them, and the thread that re-reads them on SIGHUP. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs_perms.h"
#include "log.h"

struct fs_perms {
	pthread_rwlock_t lock; /* readers: every attribute reply; writer: a reload */
	struct perms *rules;
	char *file;
	struct tree *tree;
	struct notifier *notifier;
	int pipe[2]; /* the signal handler writes 'h', fs_perms_stop 'q' */
	pthread_t thread;
};

/*
 * A signal handler may only write to a pipe. The handler is the process's,
 * not a thread's: libfuse's threads block signals, but the store library's
 * may not, and whichever thread takes SIGHUP only wakes the reloader.
 */
static int hup_fd = -1;

static void on_hup(int sig)
{
	int saved = errno;
	char c = 'h';

	(void)sig;
	if (write(hup_fd, &c, 1) < 0) {
		/* The pipe is full: a reload is pending already. */
	}
	errno = saved;
}

static void reload(struct fs_perms *p)
{
	struct perms *fresh, *old;
	char err[512];

	if (!p->file) {
		log_info("SIGHUP: nothing to re-read (no -o perms); SIGTERM stops cfgfs");
		return;
	}
	if (perms_load(p->file, &fresh, err, sizeof(err))) {
		pthread_rwlock_rdlock(&p->lock);
		size_t n = perms_count(p->rules);
		pthread_rwlock_unlock(&p->lock);
		log_warn("SIGHUP: %s; the %zu rules in force stay", err, n);
		return;
	}
	pthread_rwlock_wrlock(&p->lock);
	old = p->rules;
	p->rules = fresh;
	pthread_rwlock_unlock(&p->lock);
	perms_free(old);
	log_info("SIGHUP: %zu permission rules from %s in force", perms_count(fresh), p->file);

	/* The kernel checks access against the attributes it holds: they must go. */
	uint64_t *inos;
	size_t n;
	if (tree_known(p->tree, &inos, &n)) {
		log_err("out of memory: the kernel keeps the owners and modes it has");
		return;
	}
	notifier_attrs(p->notifier, inos, n);
	free(inos);
}

static void *run(void *arg)
{
	struct fs_perms *p = arg;
	char buf[64];

	for (;;) {
		struct pollfd pfd = {.fd = p->pipe[0], .events = POLLIN};
		if (poll(&pfd, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			log_err("the rules reloader stops: %s", strerror(errno));
			return NULL;
		}
		ssize_t got = read(p->pipe[0], buf, sizeof(buf));
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0 || memchr(buf, 'q', (size_t)got))
			return NULL;
		/* A burst of signals is one reload. */
		reload(p);
	}
}

int fs_perms_start(const char *file, struct perms **rules, struct tree *t, struct notifier *n,
		   struct fs_perms **out)
{
	struct fs_perms *p = calloc(1, sizeof(*p));
	sigset_t all, old;
	int err;

	if (!p || (file && !(p->file = strdup(file)))) {
		free(p);
		return -ENOMEM;
	}
	if (pipe2(p->pipe, O_CLOEXEC | O_NONBLOCK)) {
		err = -errno;
		free(p->file);
		free(p);
		return err;
	}
	pthread_rwlock_init(&p->lock, NULL);
	p->rules = rules ? *rules : NULL;
	p->tree = t;
	p->notifier = n;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&p->thread, NULL, run, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		close(p->pipe[0]);
		close(p->pipe[1]);
		pthread_rwlock_destroy(&p->lock);
		free(p->file);
		free(p);
		return err;
	}
	if (rules)
		*rules = NULL;
	/* After libfuse's handlers, which would end the mount on SIGHUP. */
	hup_fd = p->pipe[1];
	struct sigaction sa = {.sa_handler = on_hup, .sa_flags = SA_RESTART};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	*out = p;
	return 0;
}

void fs_perms_stop(struct fs_perms *p)
{
	char q = 'q';

	if (!p)
		return;
	struct sigaction sa = {.sa_handler = SIG_IGN};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	/* The pipe may be full of 'h': make room for the 'q'. */
	while (write(p->pipe[1], &q, 1) < 0 && errno == EAGAIN) {
		char drain[64];
		if (read(p->pipe[0], drain, sizeof(drain)) < 0 && errno != EAGAIN)
			break;
	}
	pthread_join(p->thread, NULL);
	hup_fd = -1;
	close(p->pipe[0]);
	close(p->pipe[1]);
	perms_free(p->rules);
	pthread_rwlock_destroy(&p->lock);
	free(p->file);
	free(p);
}

bool fs_perms_apply(struct fs_perms *p, const char *path, bool owned, struct stat *st,
		    struct perms_grant *g)
{
	struct perms_grant mine;

	if (!g)
		g = &mine;
	pthread_rwlock_rdlock(&p->lock);
	bool hit = perms_match(p->rules, path, g);
	pthread_rwlock_unlock(&p->lock);
	if (!hit || !st)
		return hit;
	st->st_uid = g->uid;
	st->st_gid = g->gid;
	if (S_ISLNK(st->st_mode))
		return true; /* a symlink's mode means nothing */
	mode_t m = S_ISDIR(st->st_mode) ? perms_dir_mode(g->mode) : g->mode;
	if (owned)
		m &= ~0222;
	st->st_mode = (st->st_mode & S_IFMT) | m;
	return true;
}
