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
	int pipe[2];  /* the signal handler writes 'h', fs_perms_stop 'q' */
	unsigned gen; /* reloads so far; atomic */
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
	__atomic_add_fetch(&p->gen, 1, __ATOMIC_RELEASE);
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
	if (!err)
		pthread_setname_np(p->thread, "cfgfs-signals");
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

struct perms_fold {
	uid_t uid;
	gid_t gid;
	mode_t mode;
	bool any, mixed_uid, mixed_gid;
};

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

unsigned fs_perms_generation(struct fs_perms *p)
{
	return p ? __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE) : 0;
}

static void fold_init(struct perms_fold *acc)
{
	*acc = (struct perms_fold){.mode = 0444};
}

/* Fold the file at path (a directory with dir) into acc; a directory counts by its x bits. */
static void fold(struct fs_perms *p, const char *path, bool dir, uid_t uid, gid_t gid, mode_t mode,
		 struct perms_fold *acc)
{
	struct stat st = {
		.st_mode = (dir ? S_IFDIR : S_IFREG) | mode, .st_uid = uid, .st_gid = gid};

	fs_perms_apply(p, path, false, &st, NULL);
	mode_t m = st.st_mode & 0777;
	acc->mode &= dir ? (m & 0111) << 2 : m;
	if (!acc->any) {
		acc->uid = st.st_uid;
		acc->gid = st.st_gid;
		acc->any = true;
		return;
	}
	acc->mixed_uid |= acc->uid != st.st_uid;
	acc->mixed_gid |= acc->gid != st.st_gid;
}

static void fold_done(const struct perms_fold *acc, uid_t *uid, gid_t *gid, mode_t *mode)
{
	if (acc->any) {
		/* Readers of files of several owners: only those all of them let in. */
		*uid = acc->mixed_uid ? 0 : acc->uid;
		*gid = acc->mixed_gid ? 0 : acc->gid;
	}
	*mode = acc->mode & 0444;
}

void fs_perms_of_items(struct fs_perms *p, struct tree *t, uint64_t dir,
		       const struct tree_items *it, mode_t umask, uid_t *uid, gid_t *gid,
		       mode_t *mode)
{
	uid_t duid = *uid;
	gid_t dgid = *gid;
	struct perms_fold acc;
	char *base = NULL, *path = NULL;
	const char *last = NULL;
	size_t cap = 0, lastlen = 0;
	bool failed = false;

	fold_init(&acc);
	if (tree_path(t, dir, NULL, &base)) {
		failed = true;
		goto out;
	}
	size_t blen = strlen(base);
	mode_t fmode = 0666 & ~umask, dmode = 0777 & ~umask;
	for (size_t i = 0; i < it->n; i++) {
		const struct tree_item *x = &it->v[i];
		const char *rel = it->paths + x->off;
		if (blen + x->len + 2 > cap) {
			cap = (blen + x->len + 2) * 2;
			char *np = realloc(path, cap);
			if (!np) {
				failed = true;
				goto out;
			}
			path = np;
		}
		size_t at = 0;
		if (blen) {
			memcpy(path, base, blen);
			path[blen] = '/';
			at = blen + 1;
		}
		memcpy(path + at, rel, x->len);
		path[at + x->len] = '\0';
		/* The directories down to it, once per run of entries in the same one. */
		const char *slash = memrchr(rel, '/', x->len);
		size_t dl = slash ? (size_t)(slash - rel) : 0;
		if (dl && !(last && lastlen == dl && memcmp(last, rel, dl) == 0)) {
			for (size_t k = 0; k <= dl; k++) {
				if (k < dl && rel[k] != '/')
					continue;
				path[at + k] = '\0';
				fold(p, path, true, duid, dgid, dmode, &acc);
				path[at + k] = '/';
			}
			last = rel;
			lastlen = dl;
		}
		fold(p, path, !x->val, duid, dgid, x->val ? fmode : dmode, &acc);
	}
out:
	if (failed) {
		acc.any = true;
		acc.mixed_uid = acc.mixed_gid = true;
		acc.mode = 0;
	}
	fold_done(&acc, uid, gid, mode);
	free(base);
	free(path);
}
