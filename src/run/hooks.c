/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reload hooks: a command or a signal, run once changes under the mount are readable. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "hooks.h"
#include "log.h"
#include "worker.h"

extern char **environ;

/* Bounds that keep a storm of changes from growing memory or the hook's environment. */
#define QUEUE_MAX 8192		/* raw changes waiting to be turned into paths */
#define PATHS_MAX 1000		/* paths in CFGFS_CHANGED */
#define CHANGED_MAX (64 * 1024) /* bytes of CFGFS_CHANGED (one string: at most 128 KiB) */
#define STDERR_KEEP 240		/* bytes of the hook's stderr that reach the log */
#define TERM_GRACE_MS 2000	/* between SIGTERM and SIGKILL */
#define STOP_GRACE_MS 500	/* the same when cfgfs itself stops */
#define ECHO_WAIT_MS 1000	/* for the store's echo of a local commit */

/* A file whose content changed (name NULL), or a name deleted from directory ino (child: its node).
 */
struct item {
	uint64_t ino;
	uint64_t child;
	char *name;
};

struct hooks {
	char *command;
	char *mountpoint;
	char *subtree; /* "" for the whole mount */
	size_t sublen;
	int sig; /* the signal form: the signal, else 0 */
	const char *pidfile;
	unsigned min_ms, max_ms, timeout_ms;
	struct tree *tree;
	struct worker w;
	struct item *q; /* protected by w.mu */
	size_t n, cap;
	bool overflow;	/* protected by w.mu: changes were dropped from q */
	bool local;	/* protected by w.mu: a change made through the mount was committed */
	uint64_t epoch; /* protected by w.mu: tree_local_epoch() when last looked */
	bool echo_wait; /* protected by w.mu: the thread waits for the revision to move */
	/* The thread's own: what the next run will be told, and when it is due. */
	char **paths;
	size_t npaths, bytes;
	bool truncated;
	bool pending;
	bool named;	  /* the pending run has a change the store made */
	int64_t last_rev; /* the revision given to the last run */
	int64_t max_rev;  /* the newest revision of a file seen changed */
	int64_t first_ms, last_ms;
};

int64_t hooks_due(int64_t first_ms, int64_t last_ms, unsigned min_ms, unsigned max_ms)
{
	int64_t quiet = last_ms + min_ms, cap = first_ms + max_ms;

	return quiet < cap ? quiet : cap;
}

static const struct {
	const char *name;
	int sig;
} signals[] = {
	{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},   {"TERM", SIGTERM},
	{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"WINCH", SIGWINCH},
};

bool hooks_parse_signal(const char *command, int *sig, const char **pidfile)
{
	if (strncmp(command, "signal:", 7) != 0)
		return false;
	const char *name = command + 7, *colon = strchr(name, ':');
	if (!colon || !colon[1])
		return false;
	size_t len = colon - name;
	if (len > 3 && strncmp(name, "SIG", 3) == 0) {
		name += 3;
		len -= 3;
	}
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
		if (strlen(signals[i].name) == len && strncmp(signals[i].name, name, len) == 0) {
			*sig = signals[i].sig;
			*pidfile = colon + 1;
			return true;
		}
	}
	return false;
}

/* ------------------------------------------------------------ the observer side */

/* With w.mu held. */
static void queue_item(struct hooks *h, uint64_t ino, uint64_t child, const char *name,
		       size_t namelen)
{
	if (h->n == QUEUE_MAX) {
		h->overflow = true;
		return;
	}
	if (!name) {
		/* A burst of changes to one file is one path: the queue is short, a scan is cheap.
		 */
		for (size_t i = h->n; i-- > 0 && h->n - i <= 64;)
			if (h->q[i].ino == ino && !h->q[i].name)
				return;
	}
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct item *q = realloc(h->q, cap * sizeof(*q));
		if (!q) {
			h->overflow = true;
			return;
		}
		h->q = q;
		h->cap = cap;
	}
	char *copy = NULL;
	if (name) {
		copy = strndup(name, namelen);
		if (!copy) {
			h->overflow = true;
			return;
		}
	}
	h->q[h->n++] = (struct item){.ino = ino, .child = child, .name = copy};
}

void hooks_changed(void *ctx, const struct change_list *l)
{
	struct hooks *h = ctx;
	bool any = false;

	/*
	 * Content changes arrive through hooks_delivered, once readable; a
	 * deletion has no file to deliver, so it is taken here, by name.
	 */
	pthread_mutex_lock(&h->w.mu);
	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].kind == INVAL_DELETE && l->v[i].name) {
			queue_item(h, l->v[i].parent, l->v[i].ino, l->v[i].name, l->v[i].namelen);
			any = true;
		}
	}
	/*
	 * A change made through the mount is delivered to nobody (the kernel
	 * made it), and the store's echo of it changes nothing in the mirror:
	 * its commit, seen here as the local epoch moving, is its one trigger.
	 */
	uint64_t epoch = tree_local_epoch(h->tree);
	if (epoch != h->epoch) {
		h->epoch = epoch;
		h->local = true;
		any = true;
	}
	if (any || h->echo_wait)
		pthread_cond_signal(&h->w.cv);
	pthread_mutex_unlock(&h->w.mu);
}

void hooks_delivered(void *ctx, const uint64_t *inos, size_t n)
{
	struct hooks *h = ctx;

	pthread_mutex_lock(&h->w.mu);
	for (size_t i = 0; i < n; i++)
		queue_item(h, inos[i], 0, NULL, 0);
	pthread_cond_signal(&h->w.cv);
	pthread_mutex_unlock(&h->w.mu);
}

/* ------------------------------------------------------------ the thread: collecting */

static bool in_subtree(const struct hooks *h, const char *path)
{
	if (!h->sublen)
		return true;
	return strncmp(path, h->subtree, h->sublen) == 0 &&
	       (path[h->sublen] == '\0' || path[h->sublen] == '/');
}

/* Takes path (malloc'd). */
static void add_path(struct hooks *h, char *path)
{
	for (size_t i = 0; i < h->npaths; i++) {
		if (strcmp(h->paths[i], path) == 0) {
			free(path);
			return;
		}
	}
	size_t len = strlen(path) + 1;
	char **v = h->npaths < PATHS_MAX && h->bytes + len <= CHANGED_MAX
			   ? realloc(h->paths, (h->npaths + 1) * sizeof(*v))
			   : NULL;
	if (!v) {
		h->truncated = true;
		free(path);
		return;
	}
	h->paths = v;
	h->paths[h->npaths++] = path;
	h->bytes += len;
}

/*
 * Path of a deleted name (malloc'd), or NULL. Its directory may have gone in
 * the same change (the last key under an implicit directory): then it is
 * found among the deleted names of the batch.
 */
static char *deleted_path(struct hooks *h, const struct item *b, size_t n, size_t i, int depth)
{
	char *dir = NULL, *path;

	if (tree_path(h->tree, b[i].ino, NULL, &dir)) {
		for (size_t k = 0; !dir && depth < 64 && k < n; k++)
			if (k != i && b[k].name && b[k].child == b[i].ino)
				dir = deleted_path(h, b, n, k, depth + 1);
		if (!dir)
			return NULL;
	}
	if (asprintf(&path, "%s%s%s", dir, dir[0] ? "/" : "", b[i].name) < 0)
		path = NULL;
	free(dir);
	return path;
}

/* Whether item i of the batch names a change inside the subtree; its path goes to the next run. */
static bool resolve(struct hooks *h, const struct item *b, size_t n, size_t i)
{
	char *path = NULL;

	if (b[i].name)
		path = deleted_path(h, b, n, i, 0);
	else if (tree_path(h->tree, b[i].ino, NULL, &path))
		path = NULL; /* gone again; its deletion, if the kernel knew it, comes by name */
	if (!path)
		return false;
	if (!in_subtree(h, path)) {
		free(path);
		return false;
	}
	add_path(h, path);
	struct node_info info;
	if (!b[i].name && tree_info(h->tree, b[i].ino, &info) == 0) {
		if (info.has_meta && info.meta.mod_rev > h->max_rev)
			h->max_rev = info.meta.mod_rev;
		free(info.key);
	}
	return true;
}

static void forget_paths(struct hooks *h)
{
	for (size_t i = 0; i < h->npaths; i++)
		free(h->paths[i]);
	free(h->paths);
	h->paths = NULL;
	h->npaths = h->bytes = 0;
	h->truncated = false;
	h->pending = h->named = false;
}

/* ------------------------------------------------------------ the thread: running */

static bool stopping(struct hooks *h)
{
	return __atomic_load_n(&h->w.stop, __ATOMIC_ACQUIRE);
}

/* Our variables replace any the daemon inherited under the same names. */
static char **hook_env(struct hooks *h, int64_t rev)
{
	static const char *const ours[] = {"CFGFS_REVISION=", "CFGFS_CHANGED=",
					   "CFGFS_CHANGED_TRUNCATED=", "CFGFS_MOUNTPOINT="};
	size_t n = 0, o = 0;

	while (environ && environ[n])
		n++;
	char **env = calloc(n + 5, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool mine = false;
		for (size_t k = 0; k < sizeof(ours) / sizeof(ours[0]); k++)
			mine = mine || strncmp(environ[i], ours[k], strlen(ours[k])) == 0;
		if (!mine && !(env[o++] = strdup(environ[i])))
			goto fail;
	}
	char *changed = malloc(sizeof("CFGFS_CHANGED=") + h->bytes);
	if (!changed)
		goto fail;
	env[o++] = changed;
	char *p = stpcpy(changed, "CFGFS_CHANGED=");
	for (size_t i = 0; i < h->npaths; i++) {
		if (i)
			*p++ = '\n';
		p = stpcpy(p, h->paths[i]);
	}
	if (asprintf(&env[o++], "CFGFS_REVISION=%lld", (long long)rev) < 0) {
		env[--o] = NULL;
		goto fail;
	}
	if (asprintf(&env[o++], "CFGFS_MOUNTPOINT=%s", h->mountpoint) < 0) {
		env[--o] = NULL;
		goto fail;
	}
	if (h->truncated && !(env[o++] = strdup("CFGFS_CHANGED_TRUNCATED=1")))
		goto fail;
	return env;
fail:
	for (size_t i = 0; i < o; i++)
		free(env[i]);
	free(env);
	return NULL;
}

static void free_env(char **env)
{
	for (size_t i = 0; env && env[i]; i++)
		free(env[i]);
	free(env);
}

/*
 * posix_spawn, not fork: the child shares our memory until it execs, so a
 * large mirror costs nothing to copy, and it runs no code of ours.
 */
static pid_t spawn_hook(const char *command, char **env, int err_w)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	sigset_t none, dfl;
	pid_t pid = -1;
	char *argv[] = {"sh", "-c", (char *)command, NULL};

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&at);
	sigemptyset(&none);
	/* cfgfs ignores SIGPIPE and its threads block signals: neither is the hook's business. */
	sigfillset(&dfl);
	int err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	err = err ? err : posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	err = err ? err : posix_spawn_file_actions_adddup2(&fa, err_w, 2);
	err = err ? err : posix_spawn_file_actions_addchdir_np(&fa, "/");
	/* Above all /dev/fuse: a hook holding it would keep a dead mount alive. */
	err = err ? err : posix_spawn_file_actions_addclosefrom_np(&fa, 3);
	/* Its own process group, so a timeout ends whatever it started too. */
	err = err ? err : posix_spawnattr_setpgroup(&at, 0);
	err = err ? err : posix_spawnattr_setsigmask(&at, &none);
	err = err ? err : posix_spawnattr_setsigdefault(&at, &dfl);
	err = err ? err
		  : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
							  POSIX_SPAWN_SETSIGDEF);
	err = err ? err : posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (err) {
		errno = err;
		return -1;
	}
	return pid;
}

/* Keep the start of the hook's stderr; read and drop the rest. False at end of file. */
static bool read_stderr(int fd, char *keep, size_t *kept)
{
	char buf[4096];
	ssize_t r = read(fd, buf, sizeof(buf));

	if (r < 0)
		return errno == EINTR || errno == EAGAIN;
	if (r == 0)
		return false;
	size_t take = STDERR_KEEP - *kept < (size_t)r ? STDERR_KEEP - *kept : (size_t)r;
	memcpy(keep + *kept, buf, take);
	*kept += take;
	return true;
}

/* The kept stderr as part of one log line: lines joined by " | ", no control bytes. */
static void stderr_line(char *keep, size_t kept, char *out, size_t outlen)
{
	size_t o = 0;

	while (kept && (keep[kept - 1] == '\n' || keep[kept - 1] == ' '))
		kept--;
	for (size_t i = 0; i < kept && o + 4 < outlen; i++) {
		unsigned char c = keep[i];
		if (c == '\n') {
			memcpy(out + o, " | ", 3);
			o += 3;
		} else {
			out[o++] = c < 0x20 || c == 0x7f ? '?' : c;
		}
	}
	out[o] = '\0';
}

static void run_command(struct hooks *h, int64_t rev, size_t npaths)
{
	int64_t start = mono_ms();
	char **env = hook_env(h, rev);
	int errp[2] = {-1, -1};

	if (!env || pipe2(errp, O_CLOEXEC)) {
		log_err("hook not run: %s", env ? strerror(errno) : "out of memory");
		goto out;
	}
	pid_t pid = spawn_hook(h->command, env, errp[1]);
	if (pid < 0) {
		log_err("hook not run: cannot start /bin/sh: %s", strerror(errno));
		goto out;
	}
	close(errp[1]);
	errp[1] = -1;
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	int pidfd = pidfd_open(pid, 0);

	char keep[STDERR_KEEP];
	size_t kept = 0;
	int status = 0, killed = 0;
	int64_t deadline = start + h->timeout_ms, kill_at = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN},
				      {.fd = errp[0], .events = POLLIN}};
		int64_t now = mono_ms(), wait = 50;
		if (!killed && deadline - now < wait)
			wait = deadline - now;
		if (killed == SIGTERM && kill_at - now < wait)
			wait = kill_at - now;
		/* Without a pidfd (an old kernel) the exit is noticed by looking every few ms. */
		if (pidfd < 0 && wait > 10)
			wait = 10;
		if (wait < 0)
			wait = 0;
		if (poll(p, 2, (int)wait) > 0 && (p[1].revents & (POLLIN | POLLHUP)) &&
		    !read_stderr(errp[0], keep, &kept)) {
			close(errp[0]);
			errp[0] = -1;
		}
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid || (r < 0 && errno != EINTR))
			break;
		now = mono_ms();
		if (!killed && (now >= deadline || stopping(h))) {
			kill(-pid, SIGTERM);
			killed = SIGTERM;
			kill_at = now + (stopping(h) ? STOP_GRACE_MS : TERM_GRACE_MS);
		} else if (killed == SIGTERM &&
			   (now >= kill_at || (stopping(h) && kill_at - now > STOP_GRACE_MS))) {
			kill(-pid, SIGKILL);
			killed = SIGKILL;
		}
	}
	if (pidfd >= 0)
		close(pidfd);
	/* What the hook wrote before it ended; a child it left running may write on, unheard. */
	for (ssize_t r = 1; errp[0] >= 0 && kept < STDERR_KEEP && r > 0;) {
		r = read(errp[0], keep + kept, STDERR_KEEP - kept);
		kept += r > 0 ? (size_t)r : 0;
	}

	char err[STDERR_KEEP + STDERR_KEEP / 2];
	stderr_line(keep, kept, err, sizeof(err));
	const char *sep = err[0] ? ": " : "";
	/* "3+ paths": the list the hook was given is incomplete. */
	const char *more = h->truncated ? "+" : "";
	long long ms = mono_ms() - start;
	if (killed && WIFSIGNALED(status) && WTERMSIG(status) == killed) {
		char why[48];
		if (stopping(h))
			snprintf(why, sizeof(why), "ended as cfgfs stops");
		else
			snprintf(why, sizeof(why), "timed out (hook_timeout %g s)",
				 h->timeout_ms / 1000.0);
		log_warn("hook %s after %lld ms: killed by SIG%s (revision %lld, %zu%s paths)%s%s",
			 why, ms, killed == SIGTERM ? "TERM" : "KILL", (long long)rev, npaths, more,
			 sep, err);
	} else if (WIFSIGNALED(status)) {
		log_warn("hook killed by signal %d after %lld ms (revision %lld, %zu%s paths)%s%s",
			 WTERMSIG(status), ms, (long long)rev, npaths, more, sep, err);
	} else if (WEXITSTATUS(status)) {
		log_warn("hook failed with exit status %d after %lld ms (revision %lld, %zu%s "
			 "paths)%s%s",
			 WEXITSTATUS(status), ms, (long long)rev, npaths, more, sep, err);
	} else {
		log_info("hook ran in %lld ms (revision %lld, %zu%s paths)%s%s", ms, (long long)rev,
			 npaths, more, sep, err);
	}
out:
	for (int i = 0; i < 2; i++)
		if (errp[i] >= 0)
			close(errp[i]);
	free_env(env);
}

/* Read at each run: the daemon behind the pid file may have restarted since the last one. */
static void send_signal(struct hooks *h, int64_t rev, size_t npaths)
{
	char buf[32];
	int fd = open(h->pidfile, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	ssize_t r = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	int err = errno;
	const char *name = "?";

	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == h->sig)
			name = signals[i].name;

	if (fd >= 0)
		close(fd);
	if (r < 0) {
		log_warn("hook: cannot read pid file %s: %s (revision %lld not signalled)",
			 h->pidfile, strerror(err), (long long)rev);
		return;
	}
	buf[r] = '\0';
	char *end;
	long pid = strtol(buf, &end, 10);
	while (*end == '\n' || *end == ' ' || *end == '\t')
		end++;
	if (end == buf || *end || pid <= 1 || pid > 0x7fffffff) {
		log_warn("hook: pid file %s holds no pid (revision %lld not signalled)", h->pidfile,
			 (long long)rev);
		return;
	}
	if (kill((pid_t)pid, h->sig)) {
		log_warn("hook: cannot signal pid %ld from %s: %s (revision %lld not signalled)",
			 pid, h->pidfile,
			 errno == ESRCH ? "no such process (a stale pid file?)" : strerror(errno),
			 (long long)rev);
		return;
	}
	log_info("hook sent SIG%s to pid %ld (revision %lld, %zu%s paths)", name, pid,
		 (long long)rev, npaths, h->truncated ? "+" : "");
}

static void run_hook(struct hooks *h)
{
	int64_t rev = tree_revision(h->tree);
	size_t npaths = h->npaths;

	/* Some stores move the mirror's revision a moment after the change itself. */
	if (h->max_rev > rev)
		rev = h->max_rev;
	h->last_rev = rev;

	if (h->sig)
		send_signal(h, rev, npaths);
	else
		run_command(h, rev, npaths);
	forget_paths(h);
}

static void *run(void *arg)
{
	struct hooks *h = arg;

	pthread_mutex_lock(&h->w.mu);
	while (!h->w.stop) {
		if (h->n || h->overflow || h->local) {
			struct item *batch = h->q;
			size_t n = h->n;
			/*
			 * Paths the list cannot name: say it is incomplete. A local
			 * change may lie outside hook_path; an extra reload is
			 * harmless, a missed one is not.
			 */
			bool unnamed = h->overflow || h->local, overflow = h->overflow;
			h->q = NULL;
			h->n = h->cap = 0;
			h->overflow = h->local = false;
			pthread_mutex_unlock(&h->w.mu);
			/* Paths take the tree lock: never with w.mu, which the observers take. */
			bool named = overflow;
			h->truncated = h->truncated || unnamed;
			for (size_t i = 0; i < n; i++)
				named = resolve(h, batch, n, i) || named;
			bool hit = unnamed || named;
			h->named = h->named || named;
			for (size_t i = 0; i < n; i++)
				free(batch[i].name);
			free(batch);
			if (hit) {
				int64_t now = mono_ms();
				if (!h->pending)
					h->first_ms = now;
				h->last_ms = now;
				h->pending = true;
			} else if (!h->pending) {
				forget_paths(h);
			}
			pthread_mutex_lock(&h->w.mu);
			continue;
		}
		if (!h->pending) {
			worker_wait(&h->w, 0);
			continue;
		}
		int64_t due = hooks_due(h->first_ms, h->last_ms, h->min_ms, h->max_ms);
		if (mono_ms() < due) {
			worker_wait(&h->w, due);
			continue;
		}
		pthread_mutex_unlock(&h->w.mu);
		/*
		 * Local commits alone: only one that moved the store's revision
		 * changed anything (the check an unlink makes at once changes
		 * nothing). The revision moves with the store's echo of the
		 * commit, which may still be on its way.
		 */
		if (!h->named && tree_revision(h->tree) <= h->last_rev) {
			pthread_mutex_lock(&h->w.mu);
			if (mono_ms() < h->first_ms + ECHO_WAIT_MS) {
				h->echo_wait = true;
				worker_wait(&h->w, h->first_ms + ECHO_WAIT_MS);
				h->echo_wait = false;
			} else {
				forget_paths(h);
			}
			continue;
		}
		/* Changes that arrive while it runs are queued for the next run. */
		run_hook(h);
		pthread_mutex_lock(&h->w.mu);
	}
	pthread_mutex_unlock(&h->w.mu);
	return NULL;
}

/* ------------------------------------------------------------ life */

int hooks_start(const struct hooks_cfg *cfg, struct hooks **out)
{
	struct hooks *h = calloc(1, sizeof(*h));
	const char *sub = cfg->subtree ? cfg->subtree : "";

	if (!h)
		return -ENOMEM;
	while (*sub == '/')
		sub++;
	h->command = strdup(cfg->command);
	h->mountpoint = strdup(cfg->mountpoint);
	h->subtree = strdup(sub);
	if (!h->command || !h->mountpoint || !h->subtree)
		goto nomem;
	h->sublen = strlen(h->subtree);
	while (h->sublen && h->subtree[h->sublen - 1] == '/')
		h->subtree[--h->sublen] = '\0';
	if (!hooks_parse_signal(h->command, &h->sig, &h->pidfile))
		h->sig = 0;
	h->min_ms = cfg->wait_min_ms;
	h->max_ms = cfg->wait_max_ms;
	h->timeout_ms = cfg->timeout_ms;
	h->tree = cfg->tree;
	h->epoch = tree_local_epoch(h->tree);
	h->last_rev = tree_revision(h->tree);
	int err = worker_start(&h->w, "cfgfs-hooks", run, h);
	if (err) {
		free(h->command);
		free(h->mountpoint);
		free(h->subtree);
		free(h);
		return err;
	}
	*out = h;
	return 0;
nomem:
	free(h->command);
	free(h->mountpoint);
	free(h->subtree);
	free(h);
	return -ENOMEM;
}

void hooks_free(struct hooks *h)
{
	if (!h)
		return;
	/* A running hook gets STOP_GRACE_MS after SIGTERM; the thread ends soon after. */
	if (!worker_stop(&h->w, TERM_GRACE_MS + 3000)) {
		log_warn("the reload hook thread did not end; leaving it");
		return;
	}
	worker_release(&h->w);
	for (size_t i = 0; i < h->n; i++)
		free(h->q[i].name);
	free(h->q);
	forget_paths(h);
	free(h->command);
	free(h->mountpoint);
	free(h->subtree);
	free(h);
}
