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
#include "fs.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "options.h"
#include "store.h"
#include "tree.h"

/* Startup failures end here: one line on stderr, non-zero exit, nothing mounted. */
static int die(const char *msg)
{
	fprintf(stderr, "cfgfs: %s\n", msg);
	return 1;
}

/*
 * The Consul ACL token: from -o token_file, else CONSUL_HTTP_TOKEN. It is
 * never taken from the command line (ps would show it) and never logged.
 */
static int load_token(const struct cfgfs_opts *o, char **token, char *err, size_t errlen)
{
	char buf[4097];

	*token = NULL;
	if (o->url.kind != STORE_CONSUL) {
		if (o->token_file || o->dc) {
			snprintf(err, errlen, "-o token_file and -o dc are for consul:// stores");
			return -1;
		}
		return 0;
	}
	if (!o->token_file) {
		const char *env = getenv("CONSUL_HTTP_TOKEN");
		if (env && *env && !(*token = strdup(env))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	FILE *f = fopen(o->token_file, "r");
	if (!f) {
		snprintf(err, errlen, "token file %s: %s", o->token_file, strerror(errno));
		return -1;
	}
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	if (n == 0 || n == sizeof(buf) - 1 || strchr(buf, '\n')) {
		snprintf(err, errlen, "token file %s does not hold one token", o->token_file);
		return -1;
	}
	*token = strdup(buf);
	if (!*token) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int check_mountpoint(const char *path, char *err, size_t errlen)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "mountpoint %s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "mountpoint %s is not a directory", path);
		return -1;
	}
	return 0;
}

/*
 * Whether a failed first read of the store lets the cache file stand in: the
 * store could not be reached or did not answer sensibly. A store that
 * refused us (a wrong token) or a prefix it cannot serve is a mistake to
 * report, not an outage to ride out.
 */
static bool cache_may_stand_in(int err)
{
	return err != -EACCES && err != -EINVAL && err != -ENOMEM;
}

/* The cache file must live somewhere writable; after daemonizing the working directory is "/". */
static int check_cache_file(struct cfgfs_opts *o, char *err, size_t errlen)
{
	char *abs = NULL;

	if (o->cache_file[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		if (!cwd || asprintf(&abs, "%s/%s", cwd, o->cache_file) < 0) {
			free(cwd);
			snprintf(err, errlen, "cache_file %s: %s", o->cache_file, strerror(errno));
			return -1;
		}
		free(cwd);
		free(o->cache_file);
		o->cache_file = abs;
	}
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
static int load_cache(const struct cfgfs_opts *o, const struct store *store, struct kv_batch *b,
		      char *err, size_t errlen)
{
	struct cachefile_hdr h = {
		.store = store->ops->name, .prefix = o->url.prefix, .plen = o->url.plen};
	char why[200], when[64];
	int64_t saved_at;
	/* store_error() is per thread and would be overwritten; the line stays short. */
	char reason[200];

	snprintf(reason, sizeof(reason), "%s", store_error());
	kv_batch_clear(b);
	if (cachefile_load(o->cache_file, &h, b, &saved_at, why, sizeof(why))) {
		snprintf(err, errlen, "cannot load %.100s: %s; cache file %.100s: %s", o->url.text,
			 reason, o->cache_file, why);
		return -1;
	}
	time_t t = (time_t)saved_at;
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z", localtime_r(&t, &tm));
	log_warn("cannot load %s: %s; serving the tree saved in %s at %s (revision %lld, %zu "
		 "keys) until the store is back",
		 o->url.text, reason, o->cache_file, when, (long long)b->revision, b->n);
	return 0;
}

int main(int argc, char **argv)
{
	struct cfgfs_opts o;
	struct store *store = NULL;
	struct tree *tree = NULL;
	struct kv_batch snap;
	struct inval_list none;
	struct timespec now;
	char err[1024];
	int rc;

	switch (options_parse(argc, argv, &o, err, sizeof(err))) {
	case OPTIONS_EXIT:
		return 0;
	case OPTIONS_ERROR:
		return die(err);
	case OPTIONS_OK:
		break;
	}
	log_set_verbose(o.debug);
	if (check_mountpoint(o.mountpoint, err, sizeof(err)) ||
	    (o.cache_file && check_cache_file(&o, err, sizeof(err)))) {
		options_free(&o);
		return die(err);
	}

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

	char *token;
	if (load_token(&o, &token, err, sizeof(err)))
		goto fail;
	struct store_params sp = {.timeout_ms = o.timeout_ms, .token = token, .dc = o.dc};
	rc = store_open(&o.url, &sp, &store);
	if (token) {
		/* The store keeps its own copy in a request header; wipe ours. */
		memset(token, 0, strlen(token));
		free(token);
	}
	if (rc) {
		snprintf(err, sizeof(err), "cannot use %s: %s", o.url.text,
			 rc == -EINVAL ? store_error() : strerror(-rc));
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
		snprintf(err, sizeof(err), "cannot load %s: %s", o.url.text, store_error());
		goto fail;
	}
	tree = tree_new(o.url.prefix, o.url.plen);
	if (!tree) {
		kv_batch_clear(&snap);
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	tree_set_counts_versions(tree, store->counts_versions);
	inval_list_init(&none);
	clock_gettime(CLOCK_REALTIME, &now);
	rc = tree_resync(tree, &snap, &now, NULL);
	int64_t rev = snap.revision;
	log_debug("loaded %zu keys at revision %lld", snap.n, (long long)rev);
	kv_batch_clear(&snap);
	if (rc) {
		snprintf(err, sizeof(err), "out of memory loading %s", o.url.text);
		goto fail;
	}
	/* No connection may outlive the fork into the background. */
	store_http_release(store);
	/*
	 * Parsing the snapshot churned through memory the mirror does not keep;
	 * give it back, so the daemon's size is the mirror's size.
	 */
	malloc_trim(0);

	rc = fs_serve(&o, tree, store, rev, from_cache);

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
