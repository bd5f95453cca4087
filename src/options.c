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

#include "options.h"

static const struct {
	const char *scheme;
	enum store_kind kind;
	const char *default_port;
} schemes[] = {
	{"etcd", STORE_ETCD, "2379"},
	{"consul", STORE_CONSUL, "8500"},
};

void store_url_free(struct store_url *u)
{
	for (size_t i = 0; i < u->nhosts; i++)
		free(u->hosts[i]);
	free(u->hosts);
	free(u->prefix);
	free(u->text);
	memset(u, 0, sizeof(*u));
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool valid_port(const char *p, size_t n)
{
	unsigned long v = 0;

	if (n == 0 || n > 5)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	return v >= 1 && v <= 65535;
}

/* One "host[:port]" of the host list, normalized to "host:port". */
static int parse_host(const char *h, size_t n, const char *defport, char **out, char *err,
		      size_t errlen)
{
	const char *host = h, *port = NULL;
	size_t hlen = n, plen = 0;

	if (n == 0) {
		snprintf(err, errlen, "empty host in the host list");
		return -EINVAL;
	}
	if (h[0] == '[') {
		const char *close = memchr(h, ']', n);
		if (!close || close == h + 1) {
			snprintf(err, errlen, "bad IPv6 address '%.*s'", (int)n, h);
			return -EINVAL;
		}
		hlen = close - h + 1;
		if (hlen < n) {
			if (h[hlen] != ':') {
				snprintf(err, errlen, "bad host '%.*s'", (int)n, h);
				return -EINVAL;
			}
			port = h + hlen + 1;
			plen = n - hlen - 1;
		}
	} else {
		const char *colon = memchr(h, ':', n);
		if (colon) {
			hlen = colon - h;
			port = colon + 1;
			plen = n - hlen - 1;
		}
	}
	if (hlen == 0) {
		snprintf(err, errlen, "empty host name in '%.*s'", (int)n, h);
		return -EINVAL;
	}
	for (size_t i = 0; i < hlen; i++) {
		char c = host[i];
		if (c <= ' ' || c == '/' || c == '?' || c == '#' || c == '@' || c == '%' ||
		    (c == ':' && host[0] != '[')) {
			snprintf(err, errlen, "bad host name '%.*s'", (int)hlen, host);
			return -EINVAL;
		}
	}
	if (port && !valid_port(port, plen)) {
		snprintf(err, errlen, "bad port '%.*s' (expected 1-65535)", (int)plen, port);
		return -EINVAL;
	}
	if (!port) {
		port = defport;
		plen = strlen(defport);
	}
	if (asprintf(out, "%.*s:%.*s", (int)hlen, host, (int)plen, port) < 0)
		return -ENOMEM;
	return 0;
}

/* Decode %XX escapes of the URL path into the raw prefix. */
static int decode_path(const char *p, size_t n, char **out, size_t *outlen, char *err,
		       size_t errlen)
{
	char *o = malloc(n + 2);
	size_t len = 0;

	if (!o)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '%') {
			o[len++] = p[i];
			continue;
		}
		if (i + 2 >= n) {
			free(o);
			snprintf(err, errlen, "bad %%-escape at the end of the prefix");
			return -EINVAL;
		}
		int a = hexval(p[i + 1]), b = hexval(p[i + 2]);
		if (a < 0 || b < 0) {
			free(o);
			snprintf(err, errlen, "bad %%-escape '%.3s' in the prefix", p + i);
			return -EINVAL;
		}
		o[len++] = (char)(a << 4 | b);
		i += 2;
	}
	/* A non-empty prefix names a directory: it always ends in '/'. */
	if (len > 0 && o[len - 1] != '/')
		o[len++] = '/';
	o[len] = '\0';
	*out = o;
	*outlen = len;
	return 0;
}

int options_parse_url(const char *text, struct store_url *u, char *err, size_t errlen)
{
	const char *sep = strstr(text, "://");
	size_t si;
	int rc;

	memset(u, 0, sizeof(*u));
	if (!sep) {
		snprintf(err, errlen,
			 "bad store URL '%s': expected etcd:// or consul://HOST:PORT/PREFIX", text);
		return -EINVAL;
	}
	for (si = 0; si < sizeof(schemes) / sizeof(schemes[0]); si++)
		if (strlen(schemes[si].scheme) == (size_t)(sep - text) &&
		    strncmp(text, schemes[si].scheme, sep - text) == 0)
			break;
	if (si == sizeof(schemes) / sizeof(schemes[0])) {
		snprintf(err, errlen,
			 "unsupported store '%.*s' in '%s': expected etcd:// or consul://",
			 (int)(sep - text), text, text);
		return -EINVAL;
	}
	u->kind = schemes[si].kind;
	const char *auth = sep + 3;
	const char *path = strchr(auth, '/');
	size_t alen = path ? (size_t)(path - auth) : strlen(auth);
	if (alen == 0) {
		snprintf(err, errlen, "bad store URL '%s': no host given", text);
		return -EINVAL;
	}
	/* Count hosts, then parse each. */
	size_t n = 1;
	for (size_t i = 0; i < alen; i++)
		n += auth[i] == ',';
	u->hosts = calloc(n, sizeof(*u->hosts));
	if (!u->hosts)
		goto nomem;
	for (const char *h = auth; h < auth + alen;) {
		const char *comma = memchr(h, ',', auth + alen - h);
		size_t hl = comma ? (size_t)(comma - h) : (size_t)(auth + alen - h);
		char reason[160];
		rc = parse_host(h, hl, schemes[si].default_port, &u->hosts[u->nhosts], reason,
				sizeof(reason));
		if (rc == -ENOMEM)
			goto nomem;
		if (rc) {
			snprintf(err, errlen, "bad store URL '%s': %s", text, reason);
			goto fail;
		}
		u->nhosts++;
		h += hl + (comma ? 1 : 0);
		if (comma && h == auth + alen) {
			snprintf(err, errlen, "bad store URL '%s': empty host in the host list",
				 text);
			goto fail;
		}
	}
	if (path) {
		char reason[160];
		rc = decode_path(path + 1, strlen(path + 1), &u->prefix, &u->plen, reason,
				 sizeof(reason));
		if (rc == -ENOMEM)
			goto nomem;
		if (rc) {
			snprintf(err, errlen, "bad store URL '%s': %s", text, reason);
			goto fail;
		}
	} else {
		u->prefix = strdup("");
		if (!u->prefix)
			goto nomem;
	}
	u->text = strdup(text);
	if (!u->text)
		goto nomem;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	store_url_free(u);
	return -EINVAL;
}

/* ------------------------------------------------------------ command line */

enum {
	KEY_HELP,
	KEY_VERSION,
	KEY_UID,
	KEY_GID,
	KEY_UMASK,
	KEY_TIMEOUT,
	KEY_COMMIT_DELAY,
	KEY_TOKEN_FILE,
	KEY_DC,
	KEY_CACHE_FILE,
};

struct parse_state {
	struct cfgfs_opts *o;
	char *url;
	int nonopt;
	bool help, version;
	unsigned uid, gid, umask; /* UNSET_ID until given */
	double timeout;
	double commit_delay;
	char *bad; /* the first option that did not parse, malloc'd */
};

#define UNSET_ID UINT_MAX

static const struct fuse_opt opt_spec[] = {
	FUSE_OPT_KEY("uid=", KEY_UID),
	FUSE_OPT_KEY("gid=", KEY_GID),
	FUSE_OPT_KEY("umask=", KEY_UMASK),
	FUSE_OPT_KEY("timeout=", KEY_TIMEOUT),
	FUSE_OPT_KEY("commit_delay=", KEY_COMMIT_DELAY),
	FUSE_OPT_KEY("token_file=", KEY_TOKEN_FILE),
	FUSE_OPT_KEY("dc=", KEY_DC),
	FUSE_OPT_KEY("cache_file=", KEY_CACHE_FILE),
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

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct parse_state *ps = data;
	const char *val = strchr(arg, '=');
	bool ok = true;

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
		ok = !errno && end != val + 1 && !*end && ps->timeout > 0 && ps->timeout <= 3600;
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
	case KEY_TOKEN_FILE:
		/* The token itself is never taken from the command line: it would show in ps. */
		free(ps->o->token_file);
		ps->o->token_file = strdup(val + 1);
		ok = ps->o->token_file && val[1];
		break;
	case KEY_DC:
		free(ps->o->dc);
		ps->o->dc = strdup(val + 1);
		ok = ps->o->dc && val[1];
		break;
	case KEY_CACHE_FILE:
		free(ps->o->cache_file);
		ps->o->cache_file = strdup(val + 1);
		ok = ps->o->cache_file && val[1] && val[strlen(val) - 1] != '/';
		break;
	case FUSE_OPT_KEY_NONOPT:
		/* The first plain argument is the store URL; libfuse wants the mountpoint. */
		if (ps->nonopt++ == 0) {
			ps->url = strdup(arg);
			return 0;
		}
		return 1;
	case FUSE_OPT_KEY_OPT:
		if (fstab_only(arg))
			return 0;
		if (strcmp(arg, "ro") == 0)
			ps->o->read_only = true;
		if (strcmp(arg, "noinotify") == 0) {
			ps->o->no_inotify = true;
			return 0;
		}
		return 1;
	default:
		return 1;
	}
	if (!ok && !ps->bad)
		ps->bad = strdup(arg);
	return 0;
}

/* libfuse prints its own complaints; keep the last one for our single error line. */
static __thread char fuse_complaint[256];

static void capture_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	vsnprintf(fuse_complaint, sizeof(fuse_complaint), fmt, ap);
	size_t n = strlen(fuse_complaint);
	while (n && fuse_complaint[n - 1] == '\n')
		fuse_complaint[--n] = '\0';
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
	       "    -o noinotify           do not replay store changes for inotify watchers\n"
	       "    -o cache_file=PATH     keep the last known tree in PATH, and mount it\n"
	       "                           when the store cannot be reached at startup\n"
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
				 .commit_delay = 0.1};
	struct fuse_cmdline_opts cmd = {0};
	enum options_result res = OPTIONS_ERROR;

	memset(o, 0, sizeof(*o));
	o->args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
	if (fuse_opt_parse(&o->args, &ps, opt_spec, opt_proc) == -1) {
		snprintf(err, errlen, "bad options (see --help)");
		goto out;
	}
	if (ps.bad) {
		snprintf(err, errlen, "bad option value '%s' (see --help)", ps.bad);
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
	if (options_parse_url(ps.url, &o->url, err, errlen))
		goto out;
	fuse_complaint[0] = '\0';
	fuse_set_log_func(capture_fuse_log);
	int bad = fuse_parse_cmdline(&o->args, &cmd);
	fuse_set_log_func(NULL);
	if (bad) {
		if (strncmp(fuse_complaint, "fuse: ", 6) == 0)
			memmove(fuse_complaint, fuse_complaint + 6, strlen(fuse_complaint + 6) + 1);
		snprintf(err, errlen, "%s",
			 fuse_complaint[0] ? fuse_complaint : "bad FUSE options (see --help)");
		goto out;
	}
	if (!cmd.mountpoint) {
		snprintf(err, errlen,
			 "no mountpoint given (usage: cfgfs [options] STORE-URL MOUNTPOINT)");
		goto out;
	}
	o->mountpoint = cmd.mountpoint;
	cmd.mountpoint = NULL;
	o->foreground = cmd.foreground;
	o->debug = cmd.debug;
	o->single_thread = cmd.singlethread;
	o->clone_fd = cmd.clone_fd;
	o->max_idle_threads = cmd.max_idle_threads;
	o->max_threads = cmd.max_threads;
	o->uid = ps.uid != UNSET_ID ? ps.uid : getuid();
	o->gid = ps.gid != UNSET_ID ? ps.gid : getgid();
	o->umask = ps.umask;
	o->timeout_ms = (unsigned)(ps.timeout * 1000);
	o->commit_delay_ms = (unsigned)(ps.commit_delay * 1000);
	o->cache_timeout = 86400.0;
	/*
	 * The kernel checks permissions from our mode bits (users other than the
	 * owner are only let in with allow_other, and then by those bits), and
	 * /proc/mounts shows the store URL and "fuse.cfgfs".
	 */
	if (add_opt(&o->args, "%sdefault_permissions", "") ||
	    add_opt(&o->args, "fsname=%s", o->url.text) ||
	    add_opt(&o->args, "subtype=%s", "cfgfs")) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	res = OPTIONS_OK;
out:
	free(ps.url);
	free(ps.bad);
	free(cmd.mountpoint);
	if (res != OPTIONS_OK)
		options_free(o);
	return res;
}

void options_free(struct cfgfs_opts *o)
{
	free(o->token_file);
	free(o->dc);
	free(o->cache_file);
	o->token_file = o->dc = o->cache_file = NULL;
	store_url_free(&o->url);
	free(o->mountpoint);
	fuse_opt_free_args(&o->args);
	o->mountpoint = NULL;
}
