/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Command line and store URL parsing; fills a plain struct, performs no I/O. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hooks.h"
#include "options.h"
#include "perms.h"

/* ------------------------------------------------------------ command line */

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_UID,
	KEY_GID,
	KEY_UMASK,
	KEY_TIMEOUT,
	KEY_COMMIT_DELAY,
	KEY_CACHE_FILE,
	KEY_HOOK,
	KEY_HOOK_WAIT,
	KEY_HOOK_TIMEOUT,
	KEY_HOOK_PATH,
	KEY_PERMS,
};

struct parse_state {
	struct cfgfs_opts *o;
	char *url;
	char *mountpoint;
	int nonopt;
	bool help, version;
	unsigned uid, gid, umask; /* UNSET_ID until given */
	double timeout;
	double commit_delay;
	char *bad;     /* the first option that did not parse, malloc'd */
	char why[160]; /* what was wrong with it, when more than "bad value" helps */
	double hook_min, hook_max, hook_timeout;
	bool hook_tuned; /* a hook_* option was given */
};

#define UNSET_ID UINT_MAX

static const struct fuse_opt opt_spec[] = {
	FUSE_OPT_KEY("uid=", KEY_UID),
	FUSE_OPT_KEY("gid=", KEY_GID),
	FUSE_OPT_KEY("umask=", KEY_UMASK),
	FUSE_OPT_KEY("timeout=", KEY_TIMEOUT),
	FUSE_OPT_KEY("commit_delay=", KEY_COMMIT_DELAY),
	FUSE_OPT_KEY("cache_file=", KEY_CACHE_FILE),
	FUSE_OPT_KEY("hook=", KEY_HOOK),
	FUSE_OPT_KEY("hook_wait=", KEY_HOOK_WAIT),
	FUSE_OPT_KEY("hook_timeout=", KEY_HOOK_TIMEOUT),
	FUSE_OPT_KEY("hook_path=", KEY_HOOK_PATH),
	FUSE_OPT_KEY("perms=", KEY_PERMS),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-V", KEY_VERSION),
	FUSE_OPT_KEY("--version", KEY_VERSION),
	FUSE_OPT_END,
};

/*
 * Options in /etc/fstab that mean something to mount(8) or systemd, not to
 * us or to libfuse (which would refuse them). fuse_opt cannot match
 * "x-systemd.<anything>", so they are recognized here.
 */
static bool fstab_only(const char *opt)
{
	static const char *const exact[] = {"_netdev", "nofail", "auto",  "noauto",
					    "user",    "nouser", "users", "defaults"};

	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (strcmp(opt, exact[i]) == 0)
			return true;
	return strncmp(opt, "x-systemd.", 10) == 0 || strncmp(opt, "comment=", 8) == 0;
}

/* Whole-string unsigned number in base; false on anything else. */
static bool parse_uint(const char *s, int base, unsigned *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(s, &end, base);
	if (errno || *end || v > UINT_MAX - 1)
		return false;
	*out = v;
	return true;
}

/* Whole-string number of seconds in [0, max]; false on anything else. */
static bool parse_seconds(const char *s, const char *end_at, double max, double *out)
{
	char *end;

	if (s == end_at || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*out = strtod(s, &end);
	return !errno && end == end_at && *out >= 0 && *out <= max;
}

/* hook_wait=MIN:MAX, or MIN alone (MAX is then 4 * MIN, as in consul-template). */
static bool parse_hook_wait(struct parse_state *ps, const char *v, char *why, size_t whylen)
{
	const char *colon = strchr(v, ':');

	if (!parse_seconds(v, colon ? colon : v + strlen(v), 3600, &ps->hook_min) ||
	    (colon &&
	     !parse_seconds(colon + 1, colon + 1 + strlen(colon + 1), 3600, &ps->hook_max))) {
		snprintf(why, whylen,
			 "bad option value 'hook_wait=%.60s': want MIN:MAX in seconds (e.g. 0.2:2)",
			 v);
		return false;
	}
	if (!colon)
		ps->hook_max = 4 * ps->hook_min > 3600 ? 3600 : 4 * ps->hook_min;
	if (ps->hook_min > ps->hook_max) {
		snprintf(why, whylen, "bad option value 'hook_wait=%.60s': MIN is greater than MAX",
			 v);
		return false;
	}
	return true;
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct parse_state *ps = data;
	const char *val = strchr(arg, '=');
	bool ok = true;
	char why[sizeof(ps->why)] = "";

	switch (key) {
	case KEY_HELP:
		ps->help = true;
		return 0;
	case KEY_VERSION:
		ps->version = true;
		return 0;
	case KEY_UID:
		ok = parse_uint(val + 1, 10, &ps->uid);
		break;
	case KEY_GID:
		ok = parse_uint(val + 1, 10, &ps->gid);
		break;
	case KEY_UMASK:
		ok = parse_uint(val + 1, 8, &ps->umask) && ps->umask <= 0777;
		break;
	case KEY_TIMEOUT: {
		char *end;
		errno = 0;
		ps->timeout = strtod(val + 1, &end);
		/*
		 * The store gets whole milliseconds, and 0 ms means no limit to curl:
		 * a positive timeout shorter than 1 ms would become none at all.
		 */
		ok = !errno && end != val + 1 && !*end && ps->timeout * 1000 >= 1 &&
		     ps->timeout <= 3600;
		break;
	}
	case KEY_COMMIT_DELAY: {
		char *end;
		errno = 0;
		ps->commit_delay = strtod(val + 1, &end);
		ok = !errno && end != val + 1 && !*end && ps->commit_delay >= 0.01 &&
		     ps->commit_delay <= 60;
		break;
	}
	case KEY_CACHE_FILE:
		free(ps->o->cache_file);
		ps->o->cache_file = strdup(val + 1);
		ok = ps->o->cache_file && val[1] && val[strlen(val) - 1] != '/';
		break;
	case KEY_PERMS:
		free(ps->o->perms_file);
		ps->o->perms_file = strdup(val + 1);
		ok = ps->o->perms_file && val[1];
		break;
	case KEY_HOOK: {
		int sig;
		const char *pidfile;
		free(ps->o->hook);
		ps->o->hook = strdup(val + 1);
		ok = ps->o->hook && val[1];
		if (ok && strncmp(val + 1, "signal:", 7) == 0 &&
		    !hooks_parse_signal(val + 1, &sig, &pidfile)) {
			snprintf(why, sizeof(why),
				 "bad option value '%.80s': want signal:SIG:PIDFILE (SIG: HUP, "
				 "USR1, "
				 "...)",
				 arg);
			ok = false;
		}
		break;
	}
	case KEY_HOOK_WAIT:
		ps->hook_tuned = true;
		ok = parse_hook_wait(ps, val + 1, why, sizeof(why));
		break;
	case KEY_HOOK_TIMEOUT:
		ps->hook_tuned = true;
		ok = parse_seconds(val + 1, val + 1 + strlen(val + 1), 86400, &ps->hook_timeout) &&
		     ps->hook_timeout > 0;
		break;
	case KEY_HOOK_PATH:
		ps->hook_tuned = true;
		free(ps->o->hook_path);
		ps->o->hook_path = strdup(val + 1);
		ok = ps->o->hook_path != NULL;
		break;
	case FUSE_OPT_KEY_NONOPT:
		/*
		 * The store URL, then the mountpoint: kept from libfuse, which resolves it at
		 * once and would refuse the dead mount of a killed cfgfs that we can clear.
		 */
		if (ps->nonopt == 0)
			ps->url = strdup(arg);
		else if (ps->nonopt == 1)
			ps->mountpoint = strdup(arg);
		ps->nonopt++;
		return 0;
	case FUSE_OPT_KEY_OPT: {
		if (fstab_only(arg))
			return 0;
		/* A store driver's own option (-o dc=NAME): the store checks it when opened. */
		int taken = store_cfg_add_opt(&ps->o->store, arg);
		if (taken < 0 && !ps->bad)
			ps->bad = strdup(arg);
		if (taken)
			return 0;
		if (strcmp(arg, "ro") == 0)
			ps->o->read_only = true;
		if (strcmp(arg, "views") == 0) {
			ps->o->views = true;
			return 0;
		}
		if (strcmp(arg, "noinotify") == 0) {
			ps->o->no_inotify = true;
			return 0;
		}
		/* libfuse 3 dropped it (mounts anywhere); cfgfs checks, so it means something. */
		if (strcmp(arg, "nonempty") == 0) {
			ps->o->nonempty = true;
			return 0;
		}
		return 1;
	}
	default:
		return 1;
	}
	if (!ok && !ps->bad) {
		ps->bad = strdup(arg);
		memcpy(ps->why, why, sizeof(why));
	}
	return 0;
}

/*
 * libfuse prints its complaints, sometimes one in several pieces ("unknown option(s): `",
 * "-o ", "bogus'"): gather them into our single error line.
 */
static __thread char fuse_complaint[256];

static void capture_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	(void)level;
	size_t n = strlen(fuse_complaint);
	vsnprintf(fuse_complaint + n, sizeof(fuse_complaint) - n, fmt, ap);
	n = strlen(fuse_complaint);
	while (n && fuse_complaint[n - 1] == '\n')
		fuse_complaint[--n] = '\0';
}

/* The complaint as one plain line: "fuse: unknown option(s): `-o bogus'" -> "unknown ...". */
static void complaint_line(char *err, size_t errlen, const char *fallback)
{
	char *c = fuse_complaint;

	if (strncmp(c, "fuse: ", 6) == 0)
		c += 6;
	for (char *q = c; *q; q++)
		if (*q == '`' || *q == '\'' || *q == '\n')
			*q = *q == '\n' ? ' ' : '"';
	if (!c[0])
		c = (char *)fallback;
	/*
	 * An unknown option's value is not repeated: it may be a secret typed where it must
	 * not be (-o password=..., -o token=...), and the error line reaches logs.
	 */
	char line[sizeof(fuse_complaint) * 2];
	size_t w = 0;
	for (const char *r = c; *r && w + 4 < sizeof(line);) {
		line[w++] = *r;
		if (*r++ == '=') {
			while (*r && *r != ',' && *r != '"' && *r != ' ')
				r++;
			memcpy(line + w, "...", 3);
			w += 3;
		}
	}
	line[w] = '\0';
	snprintf(err, errlen, "%s%s", line, strstr(line, "option") ? " (see --help)" : "");
}

/*
 * Options left for libfuse are only checked when the session is made, after the store was
 * read; check them now on a copy, so a typo is one line before anything is contacted.
 * Making a session opens nothing.
 */
static int fuse_args_ok(const struct fuse_args *args, char *err, size_t errlen)
{
	struct fuse_args copy = FUSE_ARGS_INIT(0, NULL);
	static const struct fuse_lowlevel_ops none;

	for (int i = 0; i < args->argc; i++)
		if (fuse_opt_add_arg(&copy, args->argv[i])) {
			fuse_opt_free_args(&copy);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	fuse_complaint[0] = '\0';
	fuse_set_log_func(capture_fuse_log);
	struct fuse_session *se = fuse_session_new(&copy, &none, sizeof(none), NULL);
	fuse_set_log_func(NULL);
	fuse_opt_free_args(&copy);
	if (!se) {
		complaint_line(err, errlen, "bad FUSE options");
		return -1;
	}
	fuse_session_destroy(se);
	return 0;
}

static void usage(const char *prog)
{
	printf("usage: %s [options] STORE-URL MOUNTPOINT\n"
	       "\n"
	       "Mount a subtree of a key/value store as a directory tree.\n"
	       "\n"
	       "STORE-URL:\n"
	       "    etcd://HOST[:PORT][,HOST[:PORT]...]/PREFIX\n"
	       "        keys under PREFIX/ of etcd v3 (default port 2379); several\n"
	       "        endpoints are tried in turn. etcd://HOST//PREFIX mounts keys\n"
	       "        that start with '/'. %%XX escapes in PREFIX are decoded.\n"
	       "    consul://HOST[:PORT][,HOST[:PORT]...]/PREFIX\n"
	       "        keys under PREFIX/ of Consul KV (default port 8500); the ACL\n"
	       "        token comes from CONSUL_HTTP_TOKEN or -o token_file.\n"
	       "    etcds://..., consuls://...\n"
	       "        the same over TLS (HTTPS). With no HOST (etcds:///PREFIX) the\n"
	       "        endpoints come from ETCDCTL_ENDPOINTS or CONSUL_HTTP_ADDR.\n"
	       "\n"
	       "cfgfs options:\n"
	       "    -o uid=N               owner of every file (default: the mounting user)\n"
	       "    -o gid=N               group of every file (default: the mounting group)\n"
	       "    -o umask=OOO           permission bits removed from 0777/0666 (default 022)\n"
	       "    -o timeout=SECONDS     limit for one store request (default 5)\n"
	       "    -o commit_delay=SECONDS  quiet time before a new file that was not fsynced\n"
	       "                           or renamed is committed (default 0.1)\n"
	       "    -o ro                  read-only mount\n"
	       "    -o token_file=PATH     Consul ACL token, read from PATH\n"
	       "    -o dc=NAME             Consul datacenter\n"
	       "    -o cacert=PATH         CA bundle that signed the store's certificate\n"
	       "                           (default: the system's)\n"
	       "    -o cert=PATH,key=PATH  client certificate and key\n"
	       "    -o insecure            do not verify the store's certificate\n"
	       "    -o tls_server_name=NAME  the name the store's certificate carries\n"
	       "    -o username=NAME       etcd user (password: -o password_file=PATH or\n"
	       "                           ETCDCTL_PASSWORD; never on the command line)\n"
	       "    -o check_interval=SECONDS  how often the member serving the change\n"
	       "                           stream must answer a check (default 1; 0: never)\n"
	       "    -o views               read-only files rendering each directory's subtree:\n"
	       "                           %%#json, %%#yaml, %%#env, %%#properties\n"
	       "    -o noinotify           do not replay store changes for inotify watchers\n"
	       "    -o nonempty            mount over a directory that has files\n"
	       "    -o cache_file=PATH     keep the last known tree in PATH, and mount it\n"
	       "                           when the store cannot be reached at startup\n"
	       "    -o hook=CMD            run CMD (/bin/sh -c) once changes are readable;\n"
	       "                           hook=signal:HUP:PIDFILE signals the pid in PIDFILE\n"
	       "    -o hook_wait=MIN:MAX   run it MIN seconds after the last change, at most\n"
	       "                           MAX after the first (default 0.2:2)\n"
	       "    -o hook_timeout=SECONDS  kill a hook that runs longer (default 30)\n"
	       "    -o hook_path=SUBDIR    only changes at or below SUBDIR run the hook\n"
	       "    -o perms=FILE          owner, group and mode by path glob, from lines\n"
	       "                           'GLOB UID:GID MODE'; re-read on SIGHUP\n"
	       "\n"
	       "Unmount with: fusermount3 -u MOUNTPOINT\n"
	       "\n"
	       "FUSE options:\n",
	       prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

static int add_opt(struct fuse_args *args, const char *fmt, const char *val)
{
	/* Commas and backslashes separate and escape -o values in libfuse. */
	size_t n = strlen(val);
	char *esc = malloc(2 * n + 1), *opt = NULL;
	size_t o = 0;
	int rc;

	if (!esc)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (val[i] == ',' || val[i] == '\\')
			esc[o++] = '\\';
		esc[o++] = val[i];
	}
	esc[o] = '\0';
	rc = asprintf(&opt, fmt, esc) < 0
		     ? -1
		     : fuse_opt_add_arg(args, "-o") || fuse_opt_add_arg(args, opt);
	free(esc);
	free(opt);
	return rc;
}

enum options_result options_parse(int argc, char **argv, struct cfgfs_opts *o, char *err,
				  size_t errlen)
{
	struct parse_state ps = {.o = o,
				 .uid = UNSET_ID,
				 .gid = UNSET_ID,
				 .umask = 022,
				 .timeout = 5.0,
				 .commit_delay = 0.1,
				 .hook_min = 0.2,
				 .hook_max = 2,
				 .hook_timeout = 30};
	struct fuse_cmdline_opts cmd = {0};
	enum options_result res = OPTIONS_ERROR;

	memset(o, 0, sizeof(*o));
	o->args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	if (fuse_opt_parse(&o->args, &ps, opt_spec, opt_proc) == -1) {
		snprintf(err, errlen, "bad options (see --help)");
		goto out;
	}
	if (ps.bad) {
		if (ps.why[0])
			snprintf(err, errlen, "%s", ps.why);
		else
			snprintf(err, errlen, "bad option value '%s' (see --help)", ps.bad);
		goto out;
	}
	if (ps.hook_tuned && !o->hook) {
		snprintf(err, errlen, "hook_wait, hook_timeout and hook_path need -o hook=CMD");
		goto out;
	}
	if (ps.help) {
		usage(argv[0]);
		res = OPTIONS_EXIT;
		goto out;
	}
	if (ps.version) {
		printf("cfgfs %s\n", PACKAGE_VERSION);
		printf("FUSE library version %s\n", fuse_pkgversion());
		res = OPTIONS_EXIT;
		goto out;
	}
	if (!ps.url) {
		snprintf(err, errlen,
			 "no store URL given (usage: cfgfs [options] STORE-URL MOUNTPOINT)");
		goto out;
	}
	if (ps.nonopt > 2) {
		snprintf(err, errlen,
			 "too many arguments (usage: cfgfs [options] STORE-URL MOUNTPOINT)");
		goto out;
	}
	if (store_url_parse(ps.url, &o->store.url, err, errlen))
		goto out;
	fuse_complaint[0] = '\0';
	fuse_set_log_func(capture_fuse_log);
	int bad = fuse_parse_cmdline(&o->args, &cmd);
	fuse_set_log_func(NULL);
	if (bad) {
		complaint_line(err, errlen, "bad FUSE options");
		goto out;
	}
	if (!ps.mountpoint) {
		snprintf(err, errlen,
			 "no mountpoint given (usage: cfgfs [options] STORE-URL MOUNTPOINT)");
		goto out;
	}
	o->mountpoint = ps.mountpoint;
	ps.mountpoint = NULL;
	o->foreground = cmd.foreground;
	o->debug = cmd.debug;
	o->single_thread = cmd.singlethread;
	o->clone_fd = cmd.clone_fd;
	o->max_idle_threads = cmd.max_idle_threads;
	o->max_threads = cmd.max_threads;
	o->uid = ps.uid != UNSET_ID ? ps.uid : getuid();
	o->gid = ps.gid != UNSET_ID ? ps.gid : getgid();
	o->umask = ps.umask;
	o->store.timeout_ms = (unsigned)(ps.timeout * 1000);
	o->commit_delay_ms = (unsigned)(ps.commit_delay * 1000);
	o->cache_timeout = 86400.0;
	o->hook_wait_min_ms = (unsigned)(ps.hook_min * 1000 + 0.5);
	o->hook_wait_max_ms = (unsigned)(ps.hook_max * 1000 + 0.5);
	o->hook_timeout_ms = (unsigned)(ps.hook_timeout * 1000 + 0.5);
	/*
	 * The kernel checks permissions from our mode bits (users other than the
	 * owner are only let in with allow_other, and then by those bits), and
	 * /proc/mounts shows the store URL and "fuse.cfgfs".
	 */
	if (add_opt(&o->args, "%sdefault_permissions", "") ||
	    add_opt(&o->args, "fsname=%s", o->store.url.text) ||
	    add_opt(&o->args, "subtype=%s", "cfgfs")) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (fuse_args_ok(&o->args, err, errlen))
		goto out;
	res = OPTIONS_OK;
out:
	free(ps.url);
	free(ps.mountpoint);
	free(ps.bad);
	free(cmd.mountpoint);
	if (res != OPTIONS_OK)
		options_free(o);
	return res;
}

void options_free(struct cfgfs_opts *o)
{
	free(o->cache_file);
	o->cache_file = NULL;
	free(o->hook);
	o->hook = NULL;
	free(o->hook_path);
	o->hook_path = NULL;
	free(o->perms_file);
	o->perms_file = NULL;
	perms_free(o->perms);
	o->perms = NULL;
	store_cfg_free(&o->store);
	free(o->mountpoint);
	fuse_opt_free_args(&o->args);
	o->mountpoint = NULL;
}
