/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Command line and store URL parsing; fills a plain struct, performs no I/O. */
#ifndef CFGFS_OPTIONS_H
#define CFGFS_OPTIONS_H

#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <sys/types.h>

#include "store.h"

struct cfgfs_opts {
	struct store_cfg store; /* the URL, the request timeout, the driver's options */
	char *mountpoint;
	bool foreground;
	bool debug;
	bool single_thread;
	bool clone_fd;
	int max_idle_threads;
	unsigned max_threads;
	bool read_only;
	bool no_inotify; /* -o noinotify: do not replay store changes for inotify watchers */
	bool nonempty;	 /* -o nonempty: mount over a directory that has files */
	bool views;	 /* -o views: %#json, %#yaml, %#env, %#properties in every directory */
	uid_t uid;
	gid_t gid;
	mode_t umask;
	unsigned commit_delay_ms;  /* quiet period before an unsynced change is committed */
	char *cache_file;	   /* the last known tree on disk (-o cache_file=PATH), or NULL */
	double cache_timeout;	   /* entry and attribute timeout given to the kernel */
	char *hook;		   /* -o hook=CMD (or signal:SIG:PIDFILE), or NULL */
	char *hook_path;	   /* -o hook_path=SUBDIR: only changes below it, or NULL */
	unsigned hook_wait_min_ms; /* -o hook_wait=MIN:MAX: quiet period after a change */
	unsigned hook_wait_max_ms; /* ... and the longest wait after the first one */
	unsigned hook_timeout_ms;  /* -o hook_timeout=SECONDS: then the hook is killed */
	char *perms_file;	   /* -o perms=FILE: the rules file, made absolute by main */
	struct perms *perms;	   /* its rules, loaded by main; NULL without -o perms */
	struct fuse_args args;	   /* what is left for libfuse */
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
