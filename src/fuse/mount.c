/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Mounting and serving: where the threads of a mount are started, wired and stopped. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cachefile.h"
#include "fs_gate.h"
#include "fs_int.h"
#include "fs_notify.h"
#include "fs_perms.h"
#include "hooks.h"
#include "log.h"
#include "mount.h"
#include "replay.h"
#include "watcher.h"
#include "writer.h"

static void fuse_log_bridge(enum fuse_log_level level, const char *fmt, va_list ap)
{
	char line[512];
	size_t n;

	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	log_msg(level <= FUSE_LOG_ERR	    ? LOG_ERR
		: level == FUSE_LOG_WARNING ? LOG_WARNING
		: level == FUSE_LOG_DEBUG   ? LOG_DEBUG
					    : LOG_INFO,
		"%s", line);
}

/* Observers of the bus: the cache file saves, the inotify replay replays. */
static void cache_changed(void *ctx, const struct change_list *l)
{
	cachefile_changed(ctx);
}

static void replay_delivered(void *ctx, const uint64_t *inos, size_t n)
{
	for (size_t i = 0; i < n; i++)
		replay_push(ctx, inos[i]);
}

/* NAME:MS from env var, MS in 1..60000; false (with a warning if set but malformed) otherwise. */
static bool fault_name_ms(const char *var, char **name, unsigned *ms)
{
	const char *v = getenv(var);
	const char *colon = v ? strrchr(v, ':') : NULL;
	char *end;

	if (!v)
		return false;
	unsigned long n = colon ? strtoul(colon + 1, &end, 10) : 0;
	if (!colon || colon == v || *end || n == 0 || n > 60000) {
		log_warn("%s is not NAME:MS (1..60000); ignored", var);
		return false;
	}
	*name = strndup(v, (size_t)(colon - v));
	*ms = (unsigned)n;
	return *name != NULL;
}

/* The tests' faults (see struct fs); a malformed setting is ignored with a warning. */
static void fault_injection(struct fs *fs)
{
	fault_name_ms("CFGFS_FAULT_LOOKUP_DELAY", &fs->fault_lookup_name, &fs->fault_lookup_ms);
	fault_name_ms("CFGFS_FAULT_GETATTR_DELAY", &fs->fault_getattr_name, &fs->fault_getattr_ms);
}

int mount_serve(struct cfgfs_opts *o, struct tree *t, struct store *s, int64_t start_rev,
		bool from_cache)
{
	struct fs fs = {.tree = t, .store = s, .opts = o, .timeout = o->cache_timeout};
	struct fuse_session *se;
	struct hooks *hooks = NULL;
	struct fs_perms *perms = NULL; /* also the SIGHUP handler, rules or not */
	int ret = 1;

	fuse_set_log_func(fuse_log_bridge);
	fs.bus = bus_new();
	if (!fs.bus)
		return 1;
	/* Views drop renderings a change made stale (what they queue waits for the notifier). */
	struct bus_observer vo = {.changed = fs_view_changed, .ctx = &fs};
	if (o->views && (!(fs.views = fs_view_new(&fs)) || bus_observe(fs.bus, &vo))) {
		fs_view_free(fs.views);
		bus_free(fs.bus);
		return 1;
	}
	se = fuse_session_new(&o->args, fs.views ? fs_view_ops() : &fs_ops, sizeof(fs_ops), &fs);
	if (!se) {
		fs_view_free(fs.views);
		bus_free(fs.bus);
		return 1;
	}
	fault_injection(&fs);
	/*
	 * libfuse's handler ends the mount on SIGHUP, and ours (fs_perms_start) comes only
	 * after the mount exists: a reload sent as soon as the mount shows (systemctl reload
	 * right after start) would unmount. Held back until then, it reaches our handler.
	 */
	sigset_t hup;
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &hup, NULL);
	if (fuse_set_signal_handlers(se))
		goto out_destroy;
	if (fuse_session_mount(se, o->mountpoint))
		goto out_signals;
	/* Tests: a signal while the mount exists and nothing serves it yet (see above). */
	const char *d = getenv("CFGFS_FAULT_MOUNTED_DELAY_MS");
	if (d && atoi(d) > 0 && atoi(d) <= 60000)
		usleep((useconds_t)atoi(d) * 1000);
	/*
	 * The mount exists and the mirror is loaded: the caller may go on now. A host without
	 * syslog (a container, a minimal root) would swallow every later line, refused commits
	 * included: there the daemon keeps the stderr it was started with.
	 */
	struct stat st;
	bool syslog_here = stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode);
	int keep = -1;
	if (!o->foreground && !syslog_here) {
		log_warn("no syslog on this host (/dev/log): the daemon logs to this stderr");
		keep = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
	}
	if (fuse_daemonize(o->foreground)) {
		if (keep >= 0)
			close(keep);
		goto out_unmount;
	}
	if (keep >= 0) {
		dup2(keep, STDERR_FILENO);
		close(keep);
	} else if (!o->foreground) {
		log_use_syslog(true);
	}

	if (!o->read_only && !o->no_inotify) {
		int err = replay_start(o->mountpoint, t, &fs.replay);
		if (err)
			log_warn("inotify watchers will not see changes made in the store: %s",
				 strerror(-err));
	}
	if (fs.replay) {
		struct bus_observer r = {.delivered = replay_delivered, .ctx = fs.replay};
		if (bus_observe(fs.bus, &r))
			log_warn("out of memory: inotify watchers will not see changes made in the "
				 "store");
	}
	fs.gates = gates_start(t, o->mountpoint, fs.bus, o->single_thread);
	const char *hold = getenv("CFGFS_FAULT_GATE_HOLD_MS");
	if (fs.gates && hold && atoi(hold) > 0 && atoi(hold) <= 60000)
		gates_hold_for_tests(fs.gates, (unsigned)atoi(hold));
	fs.notifier = fs.gates ? notifier_new(se, t, fs.bus, fs.gates) : NULL;
	if (fs.notifier)
		gates_set_reinvalidate(fs.gates, notifier_reinvalidate, fs.notifier);
	if (!fs.notifier) {
		log_err("cannot start the invalidation threads");
		gates_stop(fs.gates);
		replay_free(fs.replay);
		goto out_unmount;
	}
	bus_set_sink(fs.bus, notifier_take, fs.notifier);
	int perr = fs_perms_start(o->perms ? o->perms_file : NULL, o->perms ? &o->perms : NULL, t,
				  fs.notifier, &perms);
	if (perr) {
		log_err("cannot start the permission rules: %s", strerror(-perr));
		goto out_notifier;
	}
	/* Threads started from here on take SIGHUP too; those before have it blocked. */
	pthread_sigmask(SIG_UNBLOCK, &hup, NULL);
	/* Handlers look paths up for the rules only when there are rules. */
	fs.perms = o->perms_file ? perms : NULL;
	if (o->hook) {
		struct hooks_cfg hc = {
			.command = o->hook,
			.mountpoint = o->mountpoint,
			.subtree = o->hook_path,
			.wait_min_ms = o->hook_wait_min_ms,
			.wait_max_ms = o->hook_wait_max_ms,
			.timeout_ms = o->hook_timeout_ms,
			.tree = t,
		};
		int err = hooks_start(&hc, &hooks);
		struct bus_observer h = {
			.changed = hooks_changed, .delivered = hooks_delivered, .ctx = hooks};
		if (err || bus_observe(fs.bus, &h)) {
			log_err("cannot start the reload hook: %s", strerror(err ? -err : ENOMEM));
			goto out_notifier;
		}
	}
	if (o->cache_file) {
		int err = cachefile_start(o->cache_file, t, s->driver->scheme, o->store.url.prefix,
					  o->store.url.plen, &fs.cache);
		if (err) {
			log_err("cannot start the thread that saves the tree: %s", strerror(-err));
			goto out_notifier;
		}
		struct bus_observer c = {.changed = cache_changed, .ctx = fs.cache};
		if (bus_observe(fs.bus, &c)) {
			log_err("out of memory");
			goto out_notifier;
		}
		/* A tree fresh from the store is worth saving; one from the cache file is in it. */
		if (!from_cache)
			cachefile_changed(fs.cache);
	}
	struct writer_cfg wc = {
		.tree = t,
		.store = s,
		.mountpoint = o->mountpoint,
		.commit_delay_ms = o->commit_delay_ms,
		/*
		 * unlink then create (install, mv across filesystems, an editor's
		 * rollback) must stay one update even on a busy host.
		 */
		.delete_delay_ms = o->commit_delay_ms > 1000 ? o->commit_delay_ms : 1000,
		.detach_delay_ms = 5000,
		.bus = fs.bus,
	};
	int err = writer_start(&wc, &fs.writer);
	if (err) {
		log_err("cannot start the writer thread: %s", strerror(-err));
		goto out_notifier;
	}
	err = watcher_start(s, t, start_rev, from_cache, fs.bus, &fs.watcher);
	if (err) {
		log_err("cannot start the watcher thread: %s", strerror(-err));
		goto out_writer;
	}
	if (o->single_thread) {
		ret = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		if (!cfg) {
			log_err("out of memory");
			goto out_watcher;
		}
		fuse_loop_cfg_set_clone_fd(cfg, o->clone_fd);
		/*
		 * Reads of a file wait while the kernel learns its new size, for
		 * about one request; the request that teaches it must find a thread.
		 */
		fuse_loop_cfg_set_max_threads(cfg, o->max_threads > 64 ? o->max_threads : 64);
		if (o->max_idle_threads > 0)
			fuse_loop_cfg_set_idle_threads(cfg, o->max_idle_threads);
		ret = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	/* A signal that ended the loop is a normal stop. */
	if (ret > 0)
		ret = 0;
	/* Nobody answers the mount any more: replays and probes through it would hang. */
	replay_halt(fs.replay);
	gates_halt(fs.gates);
out_watcher:
	/* What is still pending goes to the store before the watcher stops listening. */
	writer_stop(fs.writer);
	fs.writer = NULL;
	watcher_stop(fs.watcher);
out_writer:
	writer_stop(fs.writer);
out_notifier:
	/* After the watcher: the last changes it applied are saved too. */
	cachefile_stop(fs.cache);
	/* Before the notifier: a reload in progress tells it what the kernel must drop. */
	fs_perms_stop(perms);
	notifier_free(fs.notifier);
	gates_stop(fs.gates);
	/* After everything that publishes or delivers: observers never leave the bus. */
	hooks_free(hooks);
	replay_free(fs.replay);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out_destroy:
	fuse_session_destroy(se);
	fs_view_free(fs.views);
	bus_free(fs.bus);
	free(fs.fault_lookup_name);
	free(fs.fault_getattr_name);
	return ret == 0 ? 0 : 1;
}
