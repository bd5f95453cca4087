/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Command line and store URL parsing; fills a plain struct, performs no I/O. */
#ifndef CFGFS_OPTIONS_H
#define CFGFS_OPTIONS_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/types.h>

enum store_kind { STORE_ETCD = 1, STORE_CONSUL };

/*
 * A parsed store URL: etcd://HOST[:PORT][,HOST[:PORT]...][/PREFIX], or
 * consul:// likewise (default ports 2379 and 8500).
 *
 * PREFIX is everything after the '/' that ends the host list, with %XX
 * escapes decoded, plus a '/' unless it already ends in one: "/app" and
 * "/app/" both mount the keys under "app/". A second leading slash is kept:
 * etcd://h//app mounts "/app/" (keys written as "/app/x"), etcd://h// the
 * keys starting with '/'. An empty prefix mounts the whole key space.
 */
struct store_url {
	enum store_kind kind;
	char **hosts; /* "host:port", IPv6 in brackets, ready to put in an http:// URL */
	size_t nhosts;
	char *prefix; /* raw key bytes, may contain NUL */
	size_t plen;
	char *text; /* the URL as given */
};

/* Parse text; on failure returns -EINVAL and a one-line reason in err. */
int options_parse_url(const char *text, struct store_url *u, char *err, size_t errlen);

void store_url_free(struct store_url *u);

struct cfgfs_opts {
	struct store_url url;
	char *mountpoint;
	bool foreground;
	bool debug;
	bool single_thread;
	bool clone_fd;
	int max_idle_threads;
	unsigned max_threads;
	bool read_only;
	bool no_inotify; /* -o noinotify: do not replay store changes for inotify watchers */
	uid_t uid;
	gid_t gid;
	mode_t umask;
	unsigned timeout_ms;	  /* one store request, writes included */
	unsigned commit_delay_ms; /* quiet period before an unsynced change is committed */
	char *token_file;	  /* Consul ACL token file (-o token_file=PATH), or NULL */
	char *dc;		  /* Consul datacenter (-o dc=NAME), or NULL */
	char *cache_file;	  /* the last known tree on disk (-o cache_file=PATH), or NULL */
	double cache_timeout;	  /* entry and attribute timeout given to the kernel */
	struct fuse_args args;	  /* what is left for libfuse */
};

enum options_result { OPTIONS_OK = 0, OPTIONS_EXIT = 1, OPTIONS_ERROR = -1 };

/*
 * Parse argv. OPTIONS_EXIT means --help or --version was handled (printed to
 * stdout); OPTIONS_ERROR comes with a one-line reason in err.
 */
enum options_result options_parse(int argc, char **argv, struct cfgfs_opts *o, char *err,
				  size_t errlen);

void options_free(struct cfgfs_opts *o);

#endif
