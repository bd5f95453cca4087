/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the permission rules (perms.c): parsing, errors, glob matching, last rule wins. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "perms.h"
#include "util.h"

static struct perms *parse_ok(const char *text)
{
	struct perms *p = NULL;
	char err[512] = "";

	if (perms_parse(text, strlen(text), NULL, &p, err, sizeof(err)))
		fail_msg("%s: %s", text, err);
	return p;
}

static void parse_bad(const char *text, const char *want)
{
	struct perms *p = (struct perms *)1;
	char err[512] = "";

	assert_int_equal(perms_parse(text, strlen(text), "r.perms", &p, err, sizeof(err)), -1);
	assert_null(p);
	if (!strstr(err, want))
		fail_msg("%s: error \"%s\" lacks \"%s\"", text, err, want);
	assert_null(strchr(err, '\n'));
	assert_non_null(strstr(err, "r.perms line "));
}

/* The mode the rules give path, or -1 when none matches. */
static int mode_of(const struct perms *p, const char *path)
{
	struct perms_grant g;

	return perms_match(p, path, &g) ? (int)g.mode : -1;
}

static void test_parse_forms(void **state)
{
	struct perms *p = parse_ok("# secrets\n"
				   "\n"
				   "   \t\n"
				   "secrets/** 0:0 0600   # root only\n"
				   "/app/*.conf 1000:100 644\r\n"
				   "logs/ 12:34 0444\n"
				   "last 0:0 0");
	struct perms_grant g;

	assert_int_equal(perms_count(p), 4);
	assert_true(perms_match(p, "secrets/db/password", &g));
	assert_int_equal(g.uid, 0);
	assert_int_equal(g.mode, 0600);
	assert_int_equal(g.line, 4);
	assert_true(perms_match(p, "app/x.conf", &g));
	assert_int_equal(g.uid, 1000);
	assert_int_equal(g.gid, 100);
	assert_int_equal(g.mode, 0644);
	assert_int_equal(g.line, 5);
	assert_int_equal(mode_of(p, "logs"), 0444);
	assert_int_equal(mode_of(p, "last"), 0);
	perms_free(p);

	p = parse_ok("");
	assert_int_equal(perms_count(p), 0);
	assert_int_equal(mode_of(p, "x"), -1);
	perms_free(p);
}

static void test_parse_names(void **state)
{
	/* Every host knows root, user and group. */
	struct perms *p = parse_ok("a root:root 0640\n");
	struct perms_grant g;

	assert_true(perms_match(p, "a", &g));
	assert_int_equal(g.uid, 0);
	assert_int_equal(g.gid, 0);
	perms_free(p);
}

static void test_parse_errors(void **state)
{
	parse_bad("a 0:0", "expected GLOB UID:GID MODE");
	parse_bad("a 0:0 0644 extra", "expected GLOB UID:GID MODE");
	parse_bad("a 0 0644", "not UID:GID");
	parse_bad("a :0 0644", "an empty user");
	parse_bad("a 0: 0644", "an empty group");
	parse_bad("a 4294967295:0 0644", "a user id that is not a number");
	parse_bad("a 12x:0 0644", "a user id that is not a number");
	parse_bad("a no-such-user-cfgfs:0 0644", "a user this host does not know");
	parse_bad("a 0:no-such-group-cfgfs 0644", "a group this host does not know");
	parse_bad("a 0:0 0648", "not octal");
	parse_bad("a 0:0 rw-r--r--", "not octal");
	parse_bad("a 0:0 04755", "at most 0777");
	parse_bad("a 0:0 01000", "at most 0777");
	parse_bad("/ 0:0 0644", "an empty glob");
	parse_bad("a//b 0:0 0644", "an empty segment");
	parse_bad("a/../b 0:0 0644", "\"..\"");
	parse_bad("./a 0:0 0644", "\".\"");
	parse_bad("# ok\nfine 0:0 0644\nbad\n", "line 3: expected");

	char deep[64 * 2 + 16] = "";
	for (int i = 0; i < 64; i++)
		strcat(deep, "a/");
	strcat(deep, " 0:0 0644");
	parse_bad(deep, "more than 63 segments");

	struct perms *p = (struct perms *)1;
	char err[256];
	assert_int_equal(perms_parse("a 0:0 0644\0", 11, NULL, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "NUL"));
}

static void test_glob_segments(void **state)
{
	struct perms *p = parse_ok("*.conf 1:1 0601\n"
				   "db/?.key 1:1 0602\n"
				   "[ab]x/c 1:1 0603\n");

	assert_int_equal(mode_of(p, "x.conf"), 0601);
	assert_int_equal(mode_of(p, ".hidden.conf"), 0601); /* a leading '.' is not special */
	assert_int_equal(mode_of(p, "dir/x.conf"), -1);	    /* '*' stays within a segment */
	assert_int_equal(mode_of(p, "db/a.key"), 0602);
	assert_int_equal(mode_of(p, "db/ab.key"), -1);
	assert_int_equal(mode_of(p, "db"), -1);
	assert_int_equal(mode_of(p, "ax/c"), 0603);
	assert_int_equal(mode_of(p, "cx/c"), -1);
	assert_int_equal(mode_of(p, ""), -1);
	perms_free(p);
}

static void test_double_star(void **state)
{
	struct perms *p = parse_ok("secrets/** 0:0 0600\n"
				   "**/*.pem 0:0 0400\n"
				   "a/**/z 0:0 0604\n");

	/* "**" is any number of segments, none included. */
	assert_int_equal(mode_of(p, "secrets"), 0600);
	assert_int_equal(mode_of(p, "secrets/x"), 0600);
	assert_int_equal(mode_of(p, "secrets/x/y/z"), 0600);
	assert_int_equal(mode_of(p, "secretsx"), -1);
	assert_int_equal(mode_of(p, "other/secrets/x"), -1);
	assert_int_equal(mode_of(p, "c.pem"), 0400);
	assert_int_equal(mode_of(p, "x/y/c.pem"), 0400);
	assert_int_equal(mode_of(p, "secrets/c.pem"), 0400); /* the later rule wins */
	assert_int_equal(mode_of(p, "a/z"), 0604);
	assert_int_equal(mode_of(p, "a/b/c/z"), 0604);
	assert_int_equal(mode_of(p, "a/b/c/zz"), -1);
	assert_int_equal(mode_of(p, "a/z/q"), -1);
	perms_free(p);

	p = parse_ok("** 5:5 0640\n");
	assert_int_equal(mode_of(p, ""), 0640); /* the mount root */
	assert_int_equal(mode_of(p, "a/b"), 0640);
	perms_free(p);
}

/* Many "**" and a deep path: the matcher stays linear (this would take ages backtracking). */
static void test_hostile_glob(void **state)
{
	char rule[1024] = "";
	char path[8192] = "";

	for (int i = 0; i < 30; i++)
		strcat(rule, "**/a/");
	strcat(rule, "b 0:0 0600");
	struct perms *p = parse_ok(rule);
	for (int i = 0; i < 2000; i++)
		strcat(path, "a/");
	strcat(path, "c");
	assert_int_equal(mode_of(p, path), -1);
	path[strlen(path) - 1] = 'b';
	assert_int_equal(mode_of(p, path), 0600);
	perms_free(p);
}

static void test_last_rule_wins(void **state)
{
	struct perms *p = parse_ok("** 0:0 0644\n"
				   "secrets/** 0:0 0600\n"
				   "secrets/public.txt 0:0 0644\n");

	assert_int_equal(mode_of(p, "x"), 0644);
	assert_int_equal(mode_of(p, "secrets/y"), 0600);
	assert_int_equal(mode_of(p, "secrets/public.txt"), 0644);
	perms_free(p);
}

static void test_dir_mode(void **state)
{
	assert_int_equal(perms_dir_mode(0600), 0700);
	assert_int_equal(perms_dir_mode(0640), 0750);
	assert_int_equal(perms_dir_mode(0644), 0755);
	assert_int_equal(perms_dir_mode(0200), 0200);
	assert_int_equal(perms_dir_mode(0), 0);
}

static void test_load(void **state)
{
	char path[] = "/tmp/cfgfs-test-perms-XXXXXX";
	int fd = mkstemp(path);
	struct perms *p;
	char err[512];

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "x 0:0 0600\n", 11), 11);
	close(fd);
	assert_int_equal(perms_load(path, &p, err, sizeof(err)), 0);
	assert_int_equal(mode_of(p, "x"), 0600);
	perms_free(p);

	/* Anyone who may edit the rules may read every secret: refused. */
	chmod(path, 0666);
	assert_int_equal(perms_load(path, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "writable by every user"));
	unlink(path);

	assert_int_equal(perms_load(path, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "No such file"));
	assert_int_equal(perms_load("/tmp", &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not a regular file"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_forms),    cmocka_unit_test(test_parse_names),
		cmocka_unit_test(test_parse_errors),   cmocka_unit_test(test_glob_segments),
		cmocka_unit_test(test_double_star),    cmocka_unit_test(test_hostile_glob),
		cmocka_unit_test(test_last_rule_wins), cmocka_unit_test(test_dir_mode),
		cmocka_unit_test(test_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
