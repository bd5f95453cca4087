/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests store URL and command line parsing (options.c), including every way to get them wrong. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "options.h"
#include "util.h"

/* fuse_parse_cmdline() resolves the mountpoint with realpath(): it must exist. */
static char mnt[64];
static char mnt_real[PATH_MAX];

static int group_setup(void **state)
{
	/* The stores' tools' variables would change what URLs and options mean. */
	static const char *const vars[] = {
		"ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT",	"ETCDCTL_CERT", "ETCDCTL_KEY",
		"CONSUL_HTTP_ADDR",  "CONSUL_HTTP_SSL", "CONSUL_CACERT"};
	for (size_t i = 0; i < ARRAY_SIZE(vars); i++)
		unsetenv(vars[i]);
	strcpy(mnt, "/tmp/cfgfs-test-XXXXXX");
	if (!mkdtemp(mnt) || !realpath(mnt, mnt_real))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	return rmdir(mnt);
}

/* A reason is one non-empty line. */
static void assert_reason(const char *err)
{
	assert_true(err[0] != '\0');
	assert_null(strchr(err, '\n'));
}

/* ------------------------------------------------------------ store URLs */

static const struct {
	const char *text;
	const char *hosts[4];
	const char *prefix;
	size_t plen;
} url_ok[] = {
	{"etcd://127.0.0.1:2379/app", {"127.0.0.1:2379"}, S("app/")},
	{"etcd://127.0.0.1/app", {"127.0.0.1:2379"}, S("app/")},
	{"etcd://etcd.example.com:1/app", {"etcd.example.com:1"}, S("app/")},
	{"etcd://h:65535/app", {"h:65535"}, S("app/")},
	{"etcd://h1:2379,h2:2380,h3/app", {"h1:2379", "h2:2380", "h3:2379"}, S("app/")},
	{"etcd://[::1]:2379/app", {"[::1]:2379"}, S("app/")},
	{"etcd://[::1]/app", {"[::1]:2379"}, S("app/")},
	{"etcd://[fe80::1:2]:4001,10.0.0.1/x", {"[fe80::1:2]:4001", "10.0.0.1:2379"}, S("x/")},
	/* the prefix names a directory: one trailing '/' either way */
	{"etcd://h/app/", {"h:2379"}, S("app/")},
	{"etcd://h/a/b/c", {"h:2379"}, S("a/b/c/")},
	/* a second slash is part of the key */
	{"etcd://h//app", {"h:2379"}, S("/app/")},
	{"etcd://h//app/", {"h:2379"}, S("/app/")},
	{"etcd://h//", {"h:2379"}, S("/")},
	{"etcd://h///", {"h:2379"}, S("//")},
	/* the whole key space */
	{"etcd://h/", {"h:2379"}, S("")},
	{"etcd://h", {"h:2379"}, S("")},
	{"etcd://h:2379", {"h:2379"}, S("")},
	/* %XX escapes, either case, any byte */
	{"etcd://h/a%2Fb", {"h:2379"}, S("a/b/")},
	{"etcd://h/a%2fb", {"h:2379"}, S("a/b/")},
	{"etcd://h/a%2F", {"h:2379"}, S("a/")},
	{"etcd://h/a%00b", {"h:2379"}, S("a\0b/")},
	{"etcd://h/%00", {"h:2379"}, S("\0/")},
	{"etcd://h/%25", {"h:2379"}, S("%/")},
	{"etcd://h/%ff%C3%A9", {"h:2379"}, S("\xff\xc3\xa9/")},
	{"etcd://h/%2F", {"h:2379"}, S("/")},
	/* Consul: the same syntax, its own default port */
	{"consul://127.0.0.1:8500/app", {"127.0.0.1:8500"}, S("app/")},
	{"consul://c1,c2:18500/app", {"c1:8500", "c2:18500"}, S("app/")},
	{"consul://h", {"h:8500"}, S("")},
#ifdef HAVE_ZOOKEEPER
	/* ZooKeeper, under either name */
	{"zk://z1,z2:2182/dubbo", {"z1:2181", "z2:2182"}, S("dubbo/")},
	{"zookeeper://z/a/b", {"z:2181"}, S("a/b/")},
#endif
};

static void test_url_ok(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(url_ok); i++) {
		struct store_url u;
		char err[256] = "";
		size_t nhosts = 0;

		int rc = store_url_parse(url_ok[i].text, &u, err, sizeof(err));
		if (rc)
			fail_msg("'%s' rejected: %s", url_ok[i].text, err);
		assert_string_equal(u.driver->scheme,
				    strncmp(url_ok[i].text, "consul:", 7) == 0 ? "consul"
				    : strncmp(url_ok[i].text, "z", 1) == 0     ? "zk"
									       : "etcd");
		while (nhosts < ARRAY_SIZE(url_ok[i].hosts) && url_ok[i].hosts[nhosts])
			nhosts++;
		assert_int_equal(u.nhosts, nhosts);
		for (size_t h = 0; h < nhosts; h++)
			assert_string_equal(u.hosts[h], url_ok[i].hosts[h]);
		assert_non_null(u.prefix);
		if (u.plen != url_ok[i].plen || memcmp(u.prefix, url_ok[i].prefix, u.plen) != 0)
			fail_msg("'%s': prefix '%.*s' (%zu bytes)", url_ok[i].text, (int)u.plen,
				 u.prefix, u.plen);
		assert_int_equal(u.prefix[u.plen], '\0');
		assert_string_equal(u.text, url_ok[i].text);
		store_url_free(&u);
		assert_null(u.hosts);
		assert_null(u.prefix);
	}
}

static const char *const url_bad[] = {
	"",
	"app",
	"http://x/app",
	"https://x/app",
	"consul:/x",
	"consul://",
	"redis://h/app",
	"etcd:/h/app",
	"etcd:h/app",
	"etcd://",
	"etcd:///app",
	"etcd:///",
	"etcd://host:notaport/app",
	"etcd://host:0/a",
	"etcd://host:65536/a",
	"etcd://host:99999/a",
	"etcd://host:123456/a",
	"etcd://host:-1/a",
	"etcd://host:/a",
	"etcd://host:+80/a",
	"etcd://host: 80/a",
	"etcd://:2379/a",
	"etcd://h1,,h2/a",
	"etcd://h1,/a",
	"etcd://,h1/a",
	"etcd://,/a",
	"etcd://h1:2379,h2:x/a",
	"etcd://[::1/a",
	"etcd://[]/a",
	"etcd://[]:2379/a",
	"etcd://[::1]x/a",
	"etcd://[::1]:/a",
	"etcd://::1/a",
	"etcd://a b/x",
	"etcd://a\tb/x",
	"etcd://user@h/x",
	"etcd://h%41/x",
	"etcd://h?x/a",
	"etcd://h#x/a",
	"etcd://h/%zz",
	"etcd://h/%g0",
	"etcd://h/%",
	"etcd://h/%2",
	"etcd://h/abc%2",
	"etcd://h/abc%",
	"etcd://h/a%%20",
};

static void test_url_bad(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(url_bad); i++) {
		struct store_url u;
		char err[256] = "";

		int rc = store_url_parse(url_bad[i], &u, err, sizeof(err));
		if (rc == 0) {
			store_url_free(&u);
			fail_msg("'%s' accepted", url_bad[i]);
		}
		assert_int_equal(rc, -EINVAL);
		assert_reason(err);
		/* Nothing to free, and freeing anyway is harmless. */
		assert_null(u.hosts);
		assert_null(u.prefix);
		assert_null(u.text);
		store_url_free(&u);
	}
}

/* A short error buffer gets a cut, terminated reason. */
static void test_url_short_err(void **state)
{
	struct store_url u;
	char err[12];

	memset(err, 'x', sizeof(err));
	assert_int_equal(
		store_url_parse("etcd://h1,,h2/a-rather-long-prefix", &u, err, sizeof(err)),
		-EINVAL);
	assert_int_equal(strlen(err), sizeof(err) - 1);
}

/* TLS schemes, and endpoints from the environment as etcdctl and consul take them. */
static void test_url_tls_env(void **state)
{
	struct store_url u;
	char err[256];

	unsetenv("ETCDCTL_ENDPOINTS");
	unsetenv("CONSUL_HTTP_ADDR");
	unsetenv("CONSUL_HTTP_SSL");
	assert_int_equal(store_url_parse("etcds://h/app", &u, err, sizeof(err)), 0);
	assert_true(u.tls);
	assert_string_equal(u.driver->scheme, "etcd");
	assert_string_equal(u.hosts[0], "h:2379");
	store_url_free(&u);
	assert_int_equal(store_url_parse("consuls://c/app", &u, err, sizeof(err)), 0);
	assert_true(u.tls);
	assert_string_equal(u.hosts[0], "c:8500");
	store_url_free(&u);
	assert_int_equal(store_url_parse("etcd://h/app", &u, err, sizeof(err)), 0);
	assert_false(u.tls);
	store_url_free(&u);

	/* No host: the variable must say. */
	assert_int_equal(store_url_parse("etcd:///app", &u, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "ETCDCTL_ENDPOINTS"));
	assert_reason(err);

	setenv("ETCDCTL_ENDPOINTS", "https://a:1,https://b/", 1);
	assert_int_equal(store_url_parse("etcd:///app", &u, err, sizeof(err)), 0);
	assert_true(u.tls);
	assert_int_equal(u.nhosts, 2);
	assert_string_equal(u.hosts[0], "a:1");
	assert_string_equal(u.hosts[1], "b:2379");
	assert_int_equal(u.plen, 4);
	store_url_free(&u);
	/* Hosts in the URL win over the variable. */
	assert_int_equal(store_url_parse("etcd://z/app", &u, err, sizeof(err)), 0);
	assert_false(u.tls);
	assert_string_equal(u.hosts[0], "z:2379");
	store_url_free(&u);

	setenv("ETCDCTL_ENDPOINTS", "a:1", 1);
	assert_int_equal(store_url_parse("etcd:///app", &u, err, sizeof(err)), 0);
	assert_false(u.tls);
	store_url_free(&u);
	assert_int_equal(store_url_parse("etcds:///app", &u, err, sizeof(err)), 0);
	assert_true(u.tls);
	store_url_free(&u);

	static const char *const bad[] = {"http://a:1,https://b", "unix:///run/etcd.sock",
					  "https://", "https://a:1,", "a:x"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		setenv("ETCDCTL_ENDPOINTS", bad[i], 1);
		if (store_url_parse("etcd:///app", &u, err, sizeof(err)) != -EINVAL)
			fail_msg("ETCDCTL_ENDPOINTS='%s' accepted", bad[i]);
		assert_non_null(strstr(err, "ETCDCTL_ENDPOINTS"));
		assert_reason(err);
	}
	unsetenv("ETCDCTL_ENDPOINTS");

	setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8501", 1);
	setenv("CONSUL_HTTP_SSL", "true", 1);
	assert_int_equal(store_url_parse("consul:///kv", &u, err, sizeof(err)), 0);
	assert_true(u.tls);
	assert_string_equal(u.hosts[0], "127.0.0.1:8501");
	store_url_free(&u);
	unsetenv("CONSUL_HTTP_SSL");
	assert_int_equal(store_url_parse("consul:///kv", &u, err, sizeof(err)), 0);
	assert_false(u.tls);
	store_url_free(&u);
	unsetenv("CONSUL_HTTP_ADDR");
}

/* Driver options: -o first, then the variable the driver names; flags both ways. */
static void test_store_cfg_env(void **state)
{
	struct store_cfg c = {0};
	char err[256];

	unsetenv("ETCDCTL_CACERT");
	unsetenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY");
	assert_int_equal(store_url_parse("etcds://h/app", &c.url, err, sizeof(err)), 0);
	assert_null(store_cfg_opt(&c, "cacert"));
	setenv("ETCDCTL_CACERT", "/env/ca.pem", 1);
	assert_string_equal(store_cfg_opt(&c, "cacert"), "/env/ca.pem");
	assert_string_equal(store_cfg_source(&c, "cacert"), "ETCDCTL_CACERT");
	assert_int_equal(store_cfg_add_opt(&c, "cacert=/opt/ca.pem"), 1);
	assert_string_equal(store_cfg_opt(&c, "cacert"), "/opt/ca.pem");
	assert_string_equal(store_cfg_source(&c, "cacert"), "-o cacert");
	unsetenv("ETCDCTL_CACERT");

	assert_false(store_cfg_flag(&c, "insecure"));
	setenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "true", 1);
	assert_true(store_cfg_flag(&c, "insecure"));
	setenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY", "false", 1);
	assert_false(store_cfg_flag(&c, "insecure"));
	assert_int_equal(store_cfg_add_opt(&c, "insecure"), 1);
	assert_true(store_cfg_flag(&c, "insecure"));
	unsetenv("ETCDCTL_INSECURE_SKIP_TLS_VERIFY");
	/* Not a driver option at all. */
	assert_int_equal(store_cfg_add_opt(&c, "nosuchoption=1"), 0);
	store_cfg_free(&c);

	/* Consul's variable says "verify", so false sets insecure. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_url_parse("consuls://h/app", &c.url, err, sizeof(err)), 0);
	setenv("CONSUL_HTTP_SSL_VERIFY", "false", 1);
	assert_true(store_cfg_flag(&c, "insecure"));
	setenv("CONSUL_HTTP_SSL_VERIFY", "true", 1);
	assert_false(store_cfg_flag(&c, "insecure"));
	unsetenv("CONSUL_HTTP_SSL_VERIFY");
	store_cfg_free(&c);
}

/* ------------------------------------------------------------ command line */

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
#define ARGC(v) ((int)(sizeof(v) / sizeof(char *)) - 1)

/* Run options_parse with stdout captured; returns the printed text (malloc'd). */
static char *parse_quiet(int argc, char **argv, struct cfgfs_opts *o, char *err, size_t errlen,
			 enum options_result *res)
{
	FILE *tmp = tmpfile();
	int saved;

	assert_non_null(tmp);
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	assert_true(saved >= 0);
	assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
	*res = options_parse(argc, argv, o, err, errlen);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);

	long n = ftell(tmp);
	char *out = malloc(n > 0 ? n + 1 : 1);
	assert_non_null(out);
	rewind(tmp);
	size_t got = n > 0 ? fread(out, 1, n, tmp) : 0;
	out[got] = '\0';
	fclose(tmp);
	return out;
}

static enum options_result parse(char **argv, struct cfgfs_opts *o, char *err, size_t errlen)
{
	enum options_result res;
	int argc = 0;

	while (argv[argc])
		argc++;
	err[0] = '\0';
	free(parse_quiet(argc, argv, o, err, errlen, &res));
	return res;
}

/* Whether the arguments left for libfuse hold s as an argument or inside a -o list. */
static bool fuse_args_have(const struct cfgfs_opts *o, const char *s)
{
	size_t n = strlen(s);

	for (int i = 0; i < o->args.argc; i++) {
		const char *a = o->args.argv[i];
		for (const char *p = strstr(a, s); p; p = strstr(p + 1, s))
			if ((p == a || p[-1] == ',') && (p[n] == '\0' || p[n] == ','))
				return true;
	}
	return false;
}

static void test_parse_minimal(void **state)
{
	struct cfgfs_opts o;
	char err[256];

	assert_int_equal(parse(ARGV("cfgfs", "etcd://h/app", mnt), &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_int_equal(o.store.url.nhosts, 1);
	assert_string_equal(o.store.url.hosts[0], "h:2379");
	assert_int_equal(o.store.url.plen, 4);
	assert_string_equal(o.store.url.prefix, "app/");
	assert_string_equal(o.mountpoint, mnt_real);
	assert_false(o.foreground);
	assert_false(o.debug);
	assert_false(o.single_thread);
	assert_false(o.read_only);
	assert_int_equal(o.uid, getuid());
	assert_int_equal(o.gid, getgid());
	assert_int_equal(o.umask, 022);
	assert_int_equal(o.store.timeout_ms, 5000);
	assert_true(o.cache_timeout > 0);
	/* What libfuse gets: our mount options, not our positional arguments. */
	assert_true(fuse_args_have(&o, "fsname=etcd://h/app"));
	assert_true(fuse_args_have(&o, "subtype=cfgfs"));
	assert_true(fuse_args_have(&o, "default_permissions"));
	for (int i = 1; i < o.args.argc; i++) {
		assert_string_not_equal(o.args.argv[i], "etcd://h/app");
		assert_string_not_equal(o.args.argv[i], mnt);
	}
	options_free(&o);
	assert_null(o.mountpoint);
}

static void test_parse_options(void **state)
{
	struct cfgfs_opts o;
	char err[256];

	assert_int_equal(parse(ARGV("cfgfs", "-o", "uid=12,gid=34,umask=077,timeout=2.5",
				    "etcd://h1,h2:1/x", mnt),
			       &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_int_equal(o.uid, 12);
	assert_int_equal(o.gid, 34);
	assert_int_equal(o.umask, 077);
	assert_int_equal(o.store.timeout_ms, 2500);
	assert_int_equal(o.store.url.nhosts, 2);
	assert_false(fuse_args_have(&o, "uid=12")); /* ours, not the kernel's */
	options_free(&o);

	/* Options after the positional arguments, and separate -o groups. */
	assert_int_equal(parse(ARGV("cfgfs", "etcd://h/x", mnt, "-o", "uid=0", "-ogid=0", "-f"), &o,
			       err, sizeof(err)),
			 OPTIONS_OK);
	assert_int_equal(o.uid, 0);
	assert_int_equal(o.gid, 0);
	assert_true(o.foreground);
	options_free(&o);

	assert_int_equal(parse(ARGV("cfgfs", "-s", "etcd://h/x", mnt), &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_true(o.single_thread);
	assert_false(o.foreground);
	options_free(&o);

	assert_int_equal(parse(ARGV("cfgfs", "-d", "etcd://h/x", mnt), &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_true(o.debug);
	assert_true(o.foreground); /* libfuse: debugging implies the foreground */
	options_free(&o);

	/* ro is ours and the kernel's; other mount options pass through. */
	assert_int_equal(parse(ARGV("cfgfs", "-o", "ro,allow_other", "etcd://h/x", mnt), &o, err,
			       sizeof(err)),
			 OPTIONS_OK);
	assert_true(o.read_only);
	assert_true(fuse_args_have(&o, "ro"));
	assert_true(fuse_args_have(&o, "allow_other"));
	assert_false(o.no_inotify);
	options_free(&o);

	/* noinotify is ours alone. */
	assert_int_equal(
		parse(ARGV("cfgfs", "-o", "noinotify", "etcd://h/x", mnt), &o, err, sizeof(err)),
		OPTIONS_OK);
	assert_true(o.no_inotify);
	assert_false(fuse_args_have(&o, "noinotify"));
	assert_false(o.views); /* off by default */
	options_free(&o);

	/* views is ours alone. */
	assert_int_equal(
		parse(ARGV("cfgfs", "-o", "ro,views", "etcd://h/x", mnt), &o, err, sizeof(err)),
		OPTIONS_OK);
	assert_true(o.views);
	assert_false(fuse_args_have(&o, "views"));
	options_free(&o);

	/* fstab noise is dropped rather than handed to the kernel. */
	assert_int_equal(parse(ARGV("cfgfs", "-o",
				    "_netdev,nofail,defaults,noauto,auto,user,users,comment=x",
				    "etcd://h/x", mnt),
			       &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_false(fuse_args_have(&o, "_netdev"));
	assert_false(fuse_args_have(&o, "nofail"));
	assert_false(fuse_args_have(&o, "defaults"));
	assert_false(fuse_args_have(&o, "noauto"));
	assert_false(fuse_args_have(&o, "users"));
	assert_false(fuse_args_have(&o, "comment=x"));
	options_free(&o);

	/* cache_file is ours, kept as given (main makes it absolute), never the kernel's. */
	assert_int_equal(parse(ARGV("cfgfs", "-o", "cache_file=/var/cache/cfgfs/a\\,b.tree",
				    "etcd://h/x", mnt),
			       &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_string_equal(o.cache_file, "/var/cache/cfgfs/a,b.tree");
	assert_false(fuse_args_have(&o, "cache_file=/var/cache/cfgfs/a\\,b.tree"));
	options_free(&o);
	assert_null(o.cache_file);

	/* perms is ours too; the rules are read by main, not here (no I/O). */
	assert_int_equal(parse(ARGV("cfgfs", "-o", "perms=/etc/cfgfs/app.perms", "etcd://h/x", mnt),
			       &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_string_equal(o.perms_file, "/etc/cfgfs/app.perms");
	assert_null(o.perms);
	assert_false(fuse_args_have(&o, "perms=/etc/cfgfs/app.perms"));
	options_free(&o);
	assert_null(o.perms_file);

	/* A URL with a comma survives as a single fsname option. */
	assert_int_equal(parse(ARGV("cfgfs", "etcd://a,b/x", mnt), &o, err, sizeof(err)),
			 OPTIONS_OK);
	assert_true(fuse_args_have(&o, "fsname=etcd://a\\,b/x"));
	options_free(&o);
}

/* systemd's fstab options are meant for systemd; libfuse would refuse to mount with them. */
static void test_parse_fstab_systemd(void **state)
{
	static char *const sys_opts[] = {"x-systemd.automount", "x-systemd.requires=etcd.service",
					 "x-systemd.mount-timeout=30"};

	for (size_t i = 0; i < ARRAY_SIZE(sys_opts); i++) {
		struct cfgfs_opts o;
		char err[256];

		assert_int_equal(parse(ARGV("cfgfs", "-o", sys_opts[i], "etcd://h/x", mnt), &o, err,
				       sizeof(err)),
				 OPTIONS_OK);
		bool passed_on = fuse_args_have(&o, sys_opts[i]);
		options_free(&o);
		/*
		 * Regression (fixed): the templates "x-systemd." and "x-systemd.%s" in opt_spec
		 * never match: fuse_opt only treats "%" as a wildcard after '=' or ' ', so
		 * "-o x-systemd.automount" is handed on to libfuse, which rejects it.
		 */
		if (passed_on)
			fail_msg("-o %s is passed on to libfuse", sys_opts[i]);
	}
}

static const struct {
	char *argv[8];
	const char *why; /* a word the reason must contain */
} cmd_bad[] = {
	{{"cfgfs", NULL}, "URL"},
	{{"cfgfs", "-f", NULL}, "URL"},
	{{"cfgfs", "etcd://h/app", NULL}, "mountpoint"},
	{{"cfgfs", "etcd://h/app", "/", "/tmp", NULL}, "too many"},
	{{"cfgfs", "http://h/app", "/", NULL}, "http"},
	/* libfuse's options are checked before anything is contacted, in one line. */
	{{"cfgfs", "-o", "bogus", "etcd://h/app", "/", NULL}, "unknown option(s): \"-o bogus\""},
	{{"cfgfs", "-x", "etcd://h/app", "/", NULL}, "\"-x\""},
	{{"cfgfs", "-o", "umask=1777", "etcd://h/app", "/", NULL}, "umask"},
	{{"cfgfs", "-o", "umask=abc", "etcd://h/app", "/", NULL}, "umask=abc"},
	{{"cfgfs", "-o", "umask=8", "etcd://h/app", "/", NULL}, "umask=8"},
	{{"cfgfs", "-o", "timeout=0", "etcd://h/app", "/", NULL}, "timeout"},
	{{"cfgfs", "-o", "timeout=-1", "etcd://h/app", "/", NULL}, "timeout"},
	/* Found with the options fuzz target: 0.4 ms became 0 ms, which is no limit. */
	{{"cfgfs", "-o", "timeout=0.0004", "etcd://h/app", "/", NULL}, "timeout=0.0004"},
	{{"cfgfs", "-o", "timeout=1e-9", "etcd://h/app", "/", NULL}, "timeout=1e-9"},
	{{"cfgfs", "-o", "timeout=3601", "etcd://h/app", "/", NULL}, "timeout"},
	{{"cfgfs", "-o", "timeout=soon", "etcd://h/app", "/", NULL}, "timeout=soon"},
	{{"cfgfs", "-o", "uid=root", "etcd://h/app", "/", NULL}, "uid=root"},
	{{"cfgfs", "-o", "cache_file=", "etcd://h/app", "/", NULL}, "cache_file="},
	{{"cfgfs", "-o", "cache_file=/var/cache/", "etcd://h/app", "/", NULL}, "cache_file"},
	{{"cfgfs", "-o", "perms=", "etcd://h/app", "/", NULL}, "perms="},
	{{"cfgfs", "-o", NULL}, ""},
};

/* An unknown option's value may be a secret typed where it must not be: never repeated. */
static void test_unknown_option_value_not_repeated(void **state)
{
	struct cfgfs_opts o;
	char err[256];

	assert_int_equal(parse(ARGV("cfgfs", "-o", "password=hunter2,a=1", "etcd://h/x", "/"), &o,
			       err, sizeof(err)),
			 OPTIONS_ERROR);
	assert_reason(err);
	assert_null(strstr(err, "hunter2"));
	assert_non_null(strstr(err, "password="));
}

static void test_parse_errors(void **state)
{
	for (size_t i = 0; i < ARRAY_SIZE(cmd_bad); i++) {
		struct cfgfs_opts o;
		char err[256];
		enum options_result res = parse((char **)cmd_bad[i].argv, &o, err, sizeof(err));

		if (res == OPTIONS_OK)
			options_free(&o);
		if (res != OPTIONS_ERROR)
			fail_msg("case #%zu (%s ...): %d, expected OPTIONS_ERROR", i,
				 cmd_bad[i].argv[1] ? cmd_bad[i].argv[1] : "", res);
		assert_reason(err);
		if (!strstr(err, cmd_bad[i].why))
			fail_msg("case #%zu: reason '%s' does not mention '%s'", i, err,
				 cmd_bad[i].why);
		/* Everything was released; a caller freeing again does no harm. */
		assert_null(o.mountpoint);
		assert_null(o.store.url.hosts);
		options_free(&o);
	}
}

/*
 * Mount options with trailing junk must not be half-read: "umask=0x22" is a
 * typo for 022, not a request for umask 0 (world-writable files).
 */
static void test_parse_trailing_junk(void **state)
{
	static const char *const opts[] = {"umask=0x22", "umask=088", "uid=12abc", "timeout=5s"};
	size_t accepted = 0;

	for (size_t i = 0; i < ARRAY_SIZE(opts); i++) {
		struct cfgfs_opts o;
		char err[256];
		char **argv = ARGV("cfgfs", "-o", (char *)opts[i], "etcd://h/app", mnt);
		enum options_result res = parse(argv, &o, err, sizeof(err));

		if (res == OPTIONS_OK) {
			print_error("accepted -o %s: uid %u umask %03o timeout %u ms\n", opts[i],
				    (unsigned)o.uid, (unsigned)o.umask, o.store.timeout_ms);
			options_free(&o);
			accepted++;
		}
	}
	/*
	 * Regression (fixed): fuse_opt's "%o", "%u" and "%lf" templates are sscanf() conversions,
	 * which stop at the first bad character: "umask=0x22" and "umask=088"
	 * give umask 0, "uid=12abc" uid 12, "timeout=5s" 5 s, all without error.
	 */
	assert_int_equal(accepted, 0);
}

static void test_parse_help_version(void **state)
{
	static char *const help[][3] = {{"cfgfs", "--help", NULL}, {"cfgfs", "-h", NULL}};
	static char *const version[][3] = {{"cfgfs", "--version", NULL}, {"cfgfs", "-V", NULL}};

	for (size_t i = 0; i < 2; i++) {
		struct cfgfs_opts o;
		char err[256] = "";
		enum options_result res;
		char *out = parse_quiet(2, (char **)help[i], &o, err, sizeof(err), &res);

		assert_int_equal(res, OPTIONS_EXIT);
		assert_non_null(strstr(out, "usage: cfgfs"));
		assert_non_null(strstr(out, "etcd://"));
		free(out);
		options_free(&o);

		out = parse_quiet(2, (char **)version[i], &o, err, sizeof(err), &res);
		assert_int_equal(res, OPTIONS_EXIT);
		assert_non_null(strstr(out, "cfgfs " PACKAGE_VERSION));
		free(out);
		options_free(&o);
	}
	/* --help wins over missing or bad arguments. */
	struct cfgfs_opts o;
	char err[256] = "";
	enum options_result res;
	free(parse_quiet(3, ARGV("cfgfs", "http://bad", "--help"), &o, err, sizeof(err), &res));
	assert_int_equal(res, OPTIONS_EXIT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_ok),
		cmocka_unit_test(test_url_bad),
		cmocka_unit_test(test_url_short_err),
		cmocka_unit_test(test_url_tls_env),
		cmocka_unit_test(test_store_cfg_env),
		cmocka_unit_test(test_parse_minimal),
		cmocka_unit_test(test_parse_options),
		cmocka_unit_test(test_parse_fstab_systemd),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_unknown_option_value_not_repeated),
		cmocka_unit_test(test_parse_trailing_junk),
		cmocka_unit_test(test_parse_help_version),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
