/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cfgfs: parse, load the mirror, mount, serve; the order matters and is explained here. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

int main(int argc, char **argv)
{
	struct cfgfs_opts o;
	struct store *store = NULL;
	struct tree *tree = NULL;
	struct kv_batch snap;
	struct inval_list none;
	struct timespec now;
	char err[512];
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
	if (check_mountpoint(o.mountpoint, err, sizeof(err))) {
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

	rc = store_open(&o.url, o.timeout_ms, &store);
	if (rc) {
		snprintf(err, sizeof(err), "cannot open store %s: %s", o.url.text, strerror(-rc));
		goto fail;
	}

	/*
	 * Load the mirror before mounting: an unreachable store is reported
	 * while nothing is mounted yet, and the first reader finds every key.
	 */
	kv_batch_init(&snap);
	rc = store->ops->snapshot(store, &snap);
	if (rc) {
		snprintf(err, sizeof(err), "cannot load %s: %s", o.url.text, store_error());
		goto fail;
	}
	tree = tree_new(o.url.prefix, o.url.plen);
	if (!tree) {
		kv_batch_clear(&snap);
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
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
	store_http_release();

	rc = fs_serve(&o, tree, store, rev);

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
