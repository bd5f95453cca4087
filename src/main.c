/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cfgfs: parse, load the mirror, mount, serve; the order matters and is explained here. */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cachefile.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "mount.h"
#include "mountpoint.h"
#include "options.h"
#include "perms.h"
#include "status.h"
#include "store.h"
#include "tree.h"

/* Startup failures end here: one line on stderr, non-zero exit, nothing mounted. */
static int die(const char *msg)
{
	fprintf(stderr, "cfgfs: %s\n", msg);
	return 1;
}

/*
 * Whether a failed first read of the store lets the cache file stand in: the
 * store could not be reached or did not answer sensibly. A store that
 * refused us (a wrong token or password, a certificate either side does
 * not accept) or a prefix it cannot serve is a mistake to report, not an
 * outage to ride out.
 */
static bool cache_may_stand_in(int err)
{
	return err != -EACCES && err != -EINVAL && err != -ENOMEM && err != -EPROTO &&
	       err != -ENOKEY;
}

/*
 * After daemonizing the working directory is "/": a file named by an option
 * is made absolute first (symlinks kept, so that one swapped later is
 * followed when the file is read again).
 */
static int make_absolute(char **path, const char *what, char *err, size_t errlen)
{
	char *abs = NULL;

	if ((*path)[0] == '/')
		return 0;
	char *cwd = getcwd(NULL, 0);
	if (!cwd || asprintf(&abs, "%s/%s", cwd, *path) < 0) {
		free(cwd);
		snprintf(err, errlen, "%s %s: %s", what, *path, strerror(errno));
		return -1;
	}
	free(cwd);
	free(*path);
	*path = abs;
	return 0;
}

/* The cache file must live somewhere writable. */
static int check_cache_file(struct cfgfs_opts *o, char *err, size_t errlen)
{
	if (make_absolute(&o->cache_file, "cache_file", err, errlen))
		return -1;
	char *dir = strdup(o->cache_file);
	if (!dir) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	*strrchr(dir, '/') = '\0';
	int bad = access(dir[0] ? dir : "/", W_OK | X_OK);
	if (bad)
		snprintf(err, errlen, "cache_file %s: cannot write to %s: %s", o->cache_file,
			 dir[0] ? dir : "/", strerror(errno));
	free(dir);
	return bad ? -1 : 0;
}

/*
 * The store is down: mount the tree saved in the cache file instead, say
 * so, and let the watcher catch up when the store is back.
 */
static int load_cache(const struct cfgfs_opts *o, struct store *store, struct kv_batch *b,
		      char *err, size_t errlen)
{
	const struct store_url *u = &o->store.url;
	struct cachefile_hdr h = {.store = u->driver->scheme, .prefix = u->prefix, .plen = u->plen};
	char why[200], when[64];
	int64_t saved_at;
	/* The line stays short. */
	char reason[200];

	snprintf(reason, sizeof(reason), "%s", store_error(store));
	kv_batch_clear(b);
	if (cachefile_load(o->cache_file, &h, b, &saved_at, why, sizeof(why))) {
		snprintf(err, errlen, "cannot load %.100s: %s; cache file %.100s: %s", u->text,
			 reason, o->cache_file, why);
		return -1;
	}
	time_t t = (time_t)saved_at;
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime_r(&t, &tm));
	log_warn("cannot load %s: %s; serving the tree saved in %s at %s (revision %lld, %zu "
		 "keys) until the store is back",
		 u->text, reason, o->cache_file, when, (long long)b->revision, b->n);
	return 0;
}

int main(int argc, char **argv)
{
	struct cfgfs_opts o;
	struct store *store = NULL;
	struct tree *tree = NULL;
	struct kv_batch snap;
	struct change_list none;
	struct timespec now;
	char err[1024];
	int rc;

	/* A subcommand, not a mount: store URLs always hold "://". */
	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return status_main(argc - 1, argv + 1);
	switch (options_parse(argc, argv, &o, err, sizeof(err))) {
	case OPTIONS_EXIT:
		return 0;
	case OPTIONS_ERROR:
		return die(err);
	case OPTIONS_OK:
		break;
	}
	log_set_verbose(o.debug);
	char *mp = NULL;
	if (mountpoint_prepare(o.mountpoint, o.nonempty, &mp, err, sizeof(err)) ||
	    (o.cache_file && check_cache_file(&o, err, sizeof(err))) ||
	    (o.perms_file && (make_absolute(&o.perms_file, "perms", err, sizeof(err)) ||
			      perms_load(o.perms_file, &o.perms, err, sizeof(err))))) {
		free(mp);
		options_free(&o);
		return die(err);
	}
	free(o.mountpoint);
	o.mountpoint = mp;

	/*
	 * Process-wide library state first, while there is only one thread;
	 * writes to a closed connection must fail with EPIPE, not kill us.
	 */
	signal(SIGPIPE, SIG_IGN);
	if (http_global_init()) {
		options_free(&o);
		return die("cannot initialize libcurl");
	}
	json_global_init();

	char why[sizeof(err) - 64];
	rc = store_open(&o.store, &store, why, sizeof(why));
	if (rc) {
		snprintf(err, sizeof(err), "cannot use %s: %s", o.store.url.text,
			 rc == -EINVAL ? why : strerror(-rc));
		goto fail;
	}

	/*
	 * Load the mirror before mounting: an unreachable store is reported
	 * while nothing is mounted yet, and the first reader finds every key.
	 */
	kv_batch_init(&snap);
	rc = store->ops->snapshot(store, &snap);
	bool from_cache = false;
	if (rc && o.cache_file && cache_may_stand_in(rc)) {
		if (load_cache(&o, store, &snap, err, sizeof(err)))
			goto fail;
		from_cache = true;
	} else if (rc) {
		snprintf(err, sizeof(err), "cannot load %s: %s", o.store.url.text,
			 store_error(store));
		goto fail;
	}
	tree = tree_new(o.store.url.prefix, o.store.url.plen);
	if (!tree) {
		kv_batch_clear(&snap);
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	tree_set_model(tree, &(struct tree_model){
				     .counts_versions = store->caps.counts_versions,
				     .first_version = store->caps.first_version,
				     .names = store->caps.names,
				     .owner_flags = store->caps.owner_flags,
			     });
	change_list_init(&none);
	clock_gettime(CLOCK_REALTIME, &now);
	rc = tree_resync(tree, &snap, &now, NULL);
	int64_t rev = snap.revision;
	log_debug("loaded %zu keys at revision %lld", snap.n, (long long)rev);
	kv_batch_clear(&snap);
	if (rc) {
		snprintf(err, sizeof(err), "out of memory loading %s", o.store.url.text);
		goto fail;
	}
	/* No connection may outlive the fork into the background. */
	store_thread_done(store);
	/*
	 * Parsing the snapshot churned through memory the mirror does not keep;
	 * give it back, so the daemon's size is the mirror's size.
	 */
	malloc_trim(0);

	rc = mount_serve(&o, tree, store, rev, from_cache);

	tree_free(tree);
	store_free(store);
	http_global_cleanup();
	options_free(&o);
	return rc;
fail:
	tree_free(tree);
	store_free(store);
	http_global_cleanup();
	options_free(&o);
	return die(err);
}
