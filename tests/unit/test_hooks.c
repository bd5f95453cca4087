/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the reload hooks' debounce and signal spelling (hooks.c) and their options (options.c). */
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "clock.h"
#include "hooks.h"
#include "kv.h"
#include "options.h"
#include "util.h"

static char mnt[64];

static int group_setup(void **state)
{
	/* fuse_parse_cmdline() resolves the mountpoint: it must exist. */
	strcpy(mnt, "/tmp/cfgfs-test-XXXXXX");
	return mkdtemp(mnt) ? 0 : -1;
}

static int group_teardown(void **state)
{
	return rmdir(mnt);
}

/* ------------------------------------------------------------ debounce */

/*
 * A run is due min after the last change, but never more than max after
 * the first: a steady trickle of changes still runs the hook every max.
 */
static void test_due(void **state)
{
	static const struct {
		int64_t first, last;
		unsigned min, max;
		int64_t due;
	} c[] = {
		{1000, 1000, 200, 2000, 1200}, /* one change: the quiet period */
		{1000, 1500, 200, 2000, 1700}, /* a burst: quiet after its end */
		{1000, 2900, 200, 2000, 3000}, /* a long trickle: capped by max */
		{1000, 5000, 200, 2000, 3000}, /* past the cap: due at once */
		{1000, 1000, 0, 0, 1000},      /* 0:0: no debounce at all */
		{1000, 1000, 500, 500, 1500},  /* min == max */
	};

	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		int64_t due = hooks_due(c[i].first, c[i].last, c[i].min, c[i].max);
		if (due != c[i].due)
			fail_msg("case #%zu: due %lld, expected %lld", i, (long long)due,
				 (long long)c[i].due);
	}
}

/* A burst of 20 changes 25 ms apart with the default 0.2:2 runs the hook once, after it. */
static void test_due_burst(void **state)
{
	int64_t first = 10000, runs = 0, due = 0;
	bool pending = false;

	for (int64_t now = first; now < first + 5000; now++) {
		bool change = now < first + 500 && (now - first) % 25 == 0;
		static int64_t f, l;
		if (change) {
			if (!pending)
				f = now;
			l = now;
			pending = true;
		}
		if (pending && now >= hooks_due(f, l, 200, 2000)) {
			runs++;
			due = now;
			pending = false;
		}
	}
	assert_int_equal(runs, 1);
	assert_int_equal(due, first + 475 + 200);
}

/* ------------------------------------------------------------ signal form */

static void test_signal_form(void **state)
{
	int sig = 0;
	const char *pidfile = NULL;

	assert_true(hooks_parse_signal("signal:HUP:/run/nginx.pid", &sig, &pidfile));
	assert_int_equal(sig, SIGHUP);
	assert_string_equal(pidfile, "/run/nginx.pid");
	assert_true(hooks_parse_signal("signal:SIGUSR1:/a:b", &sig, &pidfile));
	assert_int_equal(sig, SIGUSR1);
	assert_string_equal(pidfile, "/a:b");
	assert_false(hooks_parse_signal("signal:FOO:/x", &sig, &pidfile));
	assert_false(hooks_parse_signal("signal:HUP:", &sig, &pidfile));
	assert_false(hooks_parse_signal("signal:HUP", &sig, &pidfile));
	assert_false(hooks_parse_signal("signal:SIG:/x", &sig, &pidfile));
	assert_false(hooks_parse_signal("systemctl reload nginx", &sig, &pidfile));
}

/* ------------------------------------------------------------ the runner */

/* A mirror of "app/" with the keys in kvs (key, value, revision), and what applying them says. */
static struct tree *mirror(const char *const *kvs, size_t n, struct change_list *l)
{
	struct tree *t = tree_new("app/", 4);
	struct kv_batch b;
	struct timespec now = {.tv_sec = 1};

	assert_non_null(t);
	kv_batch_init(&b);
	change_list_init(l);
	for (size_t i = 0; i + 3 <= n; i += 3) {
		struct kv_meta m = {.mod_rev = atoi(kvs[i + 2]), .create_rev = 1, .version = 1};
		struct blob *v = blob_from(kvs[i + 1], strlen(kvs[i + 1]));
		assert_non_null(v);
		assert_int_equal(kv_batch_push(&b, kvs[i], strlen(kvs[i]), v, &m), 0);
	}
	assert_int_equal(tree_apply(t, &b, &now, l), 0);
	kv_batch_clear(&b);
	return t;
}

/* File path once it holds at least lines lines (waiting at most 5 s); malloc'd, or NULL. */
static char *wait_file(const char *path, int lines)
{
	for (int64_t until = mono_ms() + 5000; mono_ms() < until; usleep(5000)) {
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		char buf[4096];
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[n] = '\0';
		int nl = 0;
		for (size_t i = 0; i < n; i++)
			nl += buf[i] == '\n';
		if (nl >= lines)
			return strdup(buf);
	}
	return NULL;
}

/* From delivery to the command: its environment, the subtree, the revision, its cwd. */
static void test_runner_env(void **state)
{
	static const char *const kvs[] = {"app/a", "1",	    "5", "app/sub/b", "2",
					  "7",	   "app/c", "3", "6"};
	char out[128], cmd[512];
	struct change_list l;
	struct tree *t = mirror(kvs, ARRAY_SIZE(kvs), &l);
	struct hooks *h;

	snprintf(out, sizeof(out), "%s/env", mnt);
	snprintf(
		cmd, sizeof(cmd),
		"printf '%%s|%%s|%%s|%%s|%%s' \"$CFGFS_REVISION\" \"$CFGFS_CHANGED\" "
		"\"$CFGFS_MOUNTPOINT\" \"${CFGFS_CHANGED_TRUNCATED:-0}\" \"$(pwd)\" | tr '\\n' '+' "
		">>%s; echo >>%s",
		out, out);
	struct hooks_cfg cfg = {.command = cmd,
				.mountpoint = "/mnt/x",
				.wait_min_ms = 10,
				.wait_max_ms = 100,
				.timeout_ms = 5000,
				.tree = t};
	assert_int_equal(hooks_start(&cfg, &h), 0);
	hooks_changed(h, &l);
	hooks_delivered(h, l.files, l.nfiles);
	hooks_delivered(h, l.files, l.nfiles); /* the same files again: one path each */
	char *got = wait_file(out, 1);
	assert_non_null(got);
	assert_string_equal(got, "7|a+sub/b+c|/mnt/x|0|/\n");
	free(got);
	hooks_free(h);
	unlink(out);

	/* Only sub/: the others run nothing. */
	cfg.subtree = "/sub/";
	assert_int_equal(hooks_start(&cfg, &h), 0);
	hooks_delivered(h, l.files, 1); /* a only */
	usleep(200000);
	assert_int_equal(access(out, F_OK), -1);
	hooks_delivered(h, l.files, l.nfiles);
	got = wait_file(out, 1);
	assert_non_null(got);
	assert_string_equal(got, "7|sub/b|/mnt/x|0|/\n");
	free(got);
	hooks_free(h);
	unlink(out);
	change_list_clear(&l);
	tree_free(t);
}

/* A hook past its timeout is killed, and a change made meanwhile runs it again. */
static void test_runner_timeout(void **state)
{
	static const char *const kvs[] = {"app/a", "1", "5"};
	char out[128], cmd[256];
	struct change_list l;
	struct tree *t = mirror(kvs, ARRAY_SIZE(kvs), &l);
	struct hooks *h;

	snprintf(out, sizeof(out), "%s/runs", mnt);
	snprintf(cmd, sizeof(cmd), "echo run >>%s; sleep 30", out);
	struct hooks_cfg cfg = {.command = cmd, .mountpoint = "/m", .timeout_ms = 200, .tree = t};
	assert_int_equal(hooks_start(&cfg, &h), 0);
	int64_t start = mono_ms();
	hooks_delivered(h, l.files, l.nfiles);
	char *got = wait_file(out, 1);
	assert_non_null(got);
	free(got);
	hooks_delivered(h, l.files, l.nfiles); /* while it runs: for the next run */
	got = wait_file(out, 2);
	assert_non_null(got);
	assert_string_equal(got, "run\nrun\n");
	free(got);
	/* Two runs of 200 ms each: SIGTERM to the group ends the sleep at once. */
	assert_true(mono_ms() - start < 3000);
	/* Stopping ends the second run, without waiting for its timeout. */
	start = mono_ms();
	hooks_free(h);
	assert_true(mono_ms() - start < 1500);
	unlink(out);
	change_list_clear(&l);
	tree_free(t);
}

/* ------------------------------------------------------------ options */

static enum options_result parse(const char *opt1, const char *opt2, struct cfgfs_opts *o,
				 char *err, size_t errlen)
{
	char *argv[8];
	int argc = 0;

	argv[argc++] = "cfgfs";
	if (opt1) {
		argv[argc++] = "-o";
		argv[argc++] = (char *)opt1;
	}
	if (opt2) {
		argv[argc++] = "-o";
		argv[argc++] = (char *)opt2;
	}
	argv[argc++] = "etcd://127.0.0.1/app";
	argv[argc++] = mnt;
	argv[argc] = NULL;
	return options_parse(argc, argv, o, err, errlen);
}

static void test_options_defaults(void **state)
{
	struct cfgfs_opts o;
	char err[256] = "";

	assert_int_equal(parse(NULL, NULL, &o, err, sizeof(err)), OPTIONS_OK);
	assert_null(o.hook);
	options_free(&o);

	assert_int_equal(parse("hook=systemctl reload nginx", NULL, &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_string_equal(o.hook, "systemctl reload nginx");
	assert_null(o.hook_path);
	assert_int_equal(o.hook_wait_min_ms, 200);
	assert_int_equal(o.hook_wait_max_ms, 2000);
	assert_int_equal(o.hook_timeout_ms, 30000);
	options_free(&o);
	assert_null(o.hook);
}

static void test_options_given(void **state)
{
	struct cfgfs_opts o;
	char err[256] = "";

	assert_int_equal(parse("hook=signal:HUP:/run/nginx.pid,hook_wait=0:0",
			       "hook_path=conf/nginx", &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_string_equal(o.hook, "signal:HUP:/run/nginx.pid");
	assert_string_equal(o.hook_path, "conf/nginx");
	assert_int_equal(o.hook_wait_min_ms, 0);
	assert_int_equal(o.hook_wait_max_ms, 0);
	options_free(&o);

	/* MIN alone: MAX is four times it, as in consul-template. */
	assert_int_equal(parse("hook=true,hook_wait=1.5", "hook_timeout=0.5", &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_int_equal(o.hook_wait_min_ms, 1500);
	assert_int_equal(o.hook_wait_max_ms, 6000);
	assert_int_equal(o.hook_timeout_ms, 500);
	options_free(&o);

	/* A comma inside the command, escaped for libfuse. */
	assert_int_equal(parse("hook=echo a\\,b", NULL, &o, err, sizeof(err)), OPTIONS_OK);
	assert_string_equal(o.hook, "echo a,b");
	options_free(&o);
}

static void test_options_bad(void **state)
{
	static const struct {
		const char *opt1, *opt2, *why;
	} c[] = {
		{"hook=true,hook_wait=3:1", NULL, "MIN is greater than MAX"},
		{"hook=true,hook_wait=fast", NULL, "hook_wait=fast"},
		{"hook=true,hook_wait=1:", NULL, "MIN:MAX"},
		{"hook=true,hook_wait=:1", NULL, "MIN:MAX"},
		{"hook=true,hook_wait=-1:2", NULL, "MIN:MAX"},
		{"hook=true,hook_wait=1:2:3", NULL, "MIN:MAX"},
		{"hook=true,hook_wait=0.2s:2", NULL, "MIN:MAX"},
		{"hook=true,hook_timeout=0", NULL, "hook_timeout=0"},
		{"hook=true,hook_timeout=x", NULL, "hook_timeout=x"},
		{"hook=", NULL, "hook="},
		{"hook=signal:BOGUS:/run/x.pid", NULL, "signal:SIG:PIDFILE"},
		{"hook=signal:HUP", NULL, "signal:SIG:PIDFILE"},
		{"hook_wait=1:2", NULL, "need -o hook=CMD"},
		{"hook_path=a", NULL, "need -o hook=CMD"},
		/* The first bad option is the one named. */
		{"hook=true,hook_timeout=x", "hook_wait=3:1", "hook_timeout=x"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(c); i++) {
		struct cfgfs_opts o;
		char err[256] = "";
		enum options_result res = parse(c[i].opt1, c[i].opt2, &o, err, sizeof(err));
		if (res != OPTIONS_ERROR)
			fail_msg("case #%zu (%s): %d, expected OPTIONS_ERROR", i, c[i].opt1, res);
		assert_null(strchr(err, '\n'));
		if (!strstr(err, c[i].why))
			fail_msg("case #%zu: reason '%s' does not mention '%s'", i, err, c[i].why);
		assert_null(o.hook);
		assert_null(o.hook_path);
		options_free(&o);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_due),
		cmocka_unit_test(test_due_burst),
		cmocka_unit_test(test_signal_form),
		cmocka_unit_test(test_runner_env),
		cmocka_unit_test(test_runner_timeout),
		cmocka_unit_test(test_options_defaults),
		cmocka_unit_test(test_options_given),
		cmocka_unit_test(test_options_bad),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
