/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the views' renderer (render.c): each format's structure and its quoting of hostile text. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "names.h"
#include "render.h"
#include "util.h"

#define FILE_(p, v)                                                                                \
	{                                                                                          \
		p, sizeof(p) - 1, v, sizeof(v) - 1, false                                          \
	}
#define DIR_(p)                                                                                    \
	{                                                                                          \
		p, sizeof(p) - 1, NULL, 0, true                                                    \
	}

/* Render v in format f; the caller frees the result. */
static char *run(enum render_format f, struct render_entry *v, size_t n, size_t *len)
{
	char *out;
	size_t l;

	assert_int_equal(render(f, v, n, &out, &l), 0);
	assert_non_null(out);
	assert_int_equal(out[l], '\0');
	if (len)
		*len = l;
	return out;
}

static void expect(enum render_format f, struct render_entry *v, size_t n, const char *want)
{
	size_t len;
	char *got = run(f, v, n, &len);

	if (len != strlen(want) || memcmp(got, want, len) != 0)
		print_error("format %d\n--- got:\n%s\n--- want:\n%s\n", f, got, want);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(got, want, len);
	free(got);
}

/* ------------------------------------------------------------ names */

static const char *const views[] = {"%#json", "%#yaml", "%#env", "%#properties"};

static void test_view_names(void **state)
{
	for (int f = 0; f < RENDER_NFORMATS; f++) {
		const char *name = render_view_name(f);
		assert_string_equal(name, views[f]);
		assert_int_equal(render_view_format(name, strlen(name)), f);
	}
	assert_int_equal(render_view_format(S("%#jso")), -1);
	assert_int_equal(render_view_format(S("%json")), -1);
	assert_int_equal(render_view_format(S("%value")), -1);
	assert_null(render_view_name(RENDER_NFORMATS));
}

/*
 * No key segment maps to a view's name, in either style: the codec
 * decodes every name it makes except shortened ones (which end in "%#" and
 * 16 hex digits), and refuses to decode a view's name.
 */
static void test_view_names_no_key_makes(void **state)
{
	enum names_style styles[] = {NAMES_ESCAPED, NAMES_PLAIN};
	char out[NAMES_MAX + 1];

	for (size_t s = 0; s < ARRAY_SIZE(styles); s++) {
		for (size_t i = 0; i < ARRAY_SIZE(views); i++) {
			size_t len = strlen(views[i]);
			assert_true(names_decode(styles[s], views[i], len, out) < 0);
			assert_true(len < NAMES_HASH_LEN); /* not a shortened name either */
			/* The segment spelled like the view gets another name. */
			bool hashed;
			size_t n = names_encode(styles[s], views[i], len, 0, out, &hashed);
			assert_false(n == len && memcmp(out, views[i], len) == 0);
		}
	}
	/* Why not "%json": ZooKeeper's plain names would give that name to znode "%json". */
	bool hashed;
	size_t n = names_encode(NAMES_PLAIN, S("%json"), 0, out, &hashed);
	assert_int_equal(n, 5);
	assert_memory_equal(out, "%json", 5);
}

/* Random segments, made of the bytes of view names among others, never encode to one. */
static void test_view_names_random_segments(void **state)
{
	const char alphabet[] = "%#!jsonyamlevprti.\0/";
	struct rng r = {0x5eed1234};
	char seg[16], out[NAMES_MAX + 1];

	for (int i = 0; i < 200000; i++) {
		size_t len = 1 + rng_below(&r, sizeof(seg));
		for (size_t k = 0; k < len; k++)
			seg[k] = alphabet[rng_below(&r, sizeof(alphabet) - 1)];
		if (i % 7 == 0) /* also a view's name with a change or two */
			memcpy(seg, views[i % 4], len < 6 ? len : 6);
		for (int st = 0; st < 2; st++) {
			bool hashed;
			size_t n = names_encode(st ? NAMES_PLAIN : NAMES_ESCAPED, seg, len, 0, out,
						&hashed);
			assert_int_equal(render_view_format(out, n), -1);
		}
	}
}

/* ------------------------------------------------------------ JSON */

static void test_json_structure(void **state)
{
	struct render_entry v[] = {
		FILE_("db/port", "5432"),
		FILE_("db/host", "db1"),
		DIR_("empty"),
		DIR_("db"),
		FILE_("a/%value", "top"),
		FILE_("a/b", "{\"x\": [1, true, null]}\n"),
		FILE_("z", ""),
	};
	expect(RENDER_JSON, v, ARRAY_SIZE(v),
	       "{\n"
	       "  \"a\": {\n"
	       "    \"%value\": \"top\",\n"
	       "    \"b\": {\"x\": [1, true, null]}\n"
	       "  },\n"
	       "  \"db\": {\n"
	       "    \"host\": \"db1\",\n"
	       "    \"port\": 5432\n"
	       "  },\n"
	       "  \"empty\": {},\n"
	       "  \"z\": \"\"\n"
	       "}\n");
}

static void test_json_empty(void **state)
{
	expect(RENDER_JSON, NULL, 0, "{}\n");
	expect(RENDER_YAML, NULL, 0, "{}\n");
	expect(RENDER_ENV, NULL, 0, "");
	expect(RENDER_PROPERTIES, NULL, 0, "");
}

static void test_json_hostile_strings(void **state)
{
	struct render_entry v[] = {
		FILE_("q\"uote\\", "a\"b\\c"),
		FILE_("nl\nkey", "line1\nline2\r\t\b\x01\x7f"),
		FILE_("nul", "a\0b"),
		FILE_("bad\xff", "\xc3\x28 \xe2\x82 \xed\xa0\x80 \xc0\xaf ok \xc3\xa9"),
		FILE_("ls", "\xe2\x80\xa8"),
	};
	expect(RENDER_JSON, v, ARRAY_SIZE(v),
	       "{\n"
	       "  \"bad\xef\xbf\xbd\": \"\xef\xbf\xbd( \xef\xbf\xbd\xef\xbf\xbd "
	       "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd ok \xc3\xa9\",\n"
	       "  \"ls\": \"\\u2028\",\n"
	       "  \"nl\\nkey\": \"line1\\nline2\\r\\t\\u0008\\u0001\\u007F\",\n"
	       "  \"nul\": \"a\\u0000b\",\n"
	       "  \"q\\\"uote\\\\\": \"a\\\"b\\\\c\"\n"
	       "}\n");
}

static void test_json_detection(void **state)
{
	const char *yes[] = {"0",
			     "-1.5e+3",
			     "\"s\"",
			     "true",
			     " null \n",
			     "[]",
			     "{}",
			     "[1,[2,[3]]]",
			     "{\"a\":{\"b\":[]}}",
			     "\"\\u00e9\\n\"",
			     "1E9",
			     "\"\xc3\xa9\""};
	const char *no[] = {"",	       " ",	 "007",	       "1.",	  "+1",
			    ".5",      "tru",	 "[1,]",       "{\"a\"}", "{a:1}",
			    "[1] [2]", "'s'",	 "\"\x01\"",   "\"\\x\"", "\"\xff\"",
			    "NaN",     "\"open", "{\"a\":1,}", "1e",	  "--1"};

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++)
		assert_true(render_is_json(yes[i], strlen(yes[i])));
	for (size_t i = 0; i < ARRAY_SIZE(no); i++)
		assert_false(render_is_json(no[i], strlen(no[i])));
	/* Too deep to check: shown as a string, never a crash. */
	char deep[4001];
	memset(deep, '[', 2000);
	memset(deep + 2000, ']', 2000);
	deep[4000] = '\0';
	assert_false(render_is_json(deep, 4000));
	assert_true(render_is_json(deep + 1900, 200));
	/* With a NUL inside: not JSON. */
	assert_false(render_is_json(S("1\0")));
}

static void test_json_deep_nesting(void **state)
{
	char path[2 * 300];
	size_t len = 0;

	for (int i = 0; i < 300; i++) {
		path[len++] = 'd';
		path[len++] = '/';
	}
	path[len - 1] = 'k';
	struct render_entry v[] = {{path, len, "v", 1, false}};
	size_t n;
	char *out = run(RENDER_JSON, v, 1, &n);
	/* 300 levels opened and closed. */
	size_t open = 0, close = 0;
	for (size_t i = 0; i < n; i++) {
		open += out[i] == '{';
		close += out[i] == '}';
	}
	assert_int_equal(open, 300);
	assert_int_equal(close, 300);
	free(out);
	out = run(RENDER_ENV, v, 1, &n);
	assert_int_equal(n, 2 * 300 + 5); /* D_D_..._DK='v'\n */
	free(out);
}

/* A name given twice, or a value where a directory is: the first in path order wins. */
static void test_nested_conflicts(void **state)
{
	struct render_entry v[] = {
		FILE_("a", "file"),
		FILE_("a/b", "under a file"),
		DIR_("a"),
		FILE_("c", "one"),
		FILE_("c", "two"),
		DIR_("d"),
		DIR_("d"),
		FILE_("d/e", "e"),
		FILE_("d", "value over dir"),
	};
	expect(RENDER_JSON, v, ARRAY_SIZE(v),
	       "{\n"
	       "  \"a\": \"file\",\n"
	       "  \"c\": \"one\",\n"
	       "  \"d\": {\n"
	       "    \"e\": \"e\"\n"
	       "  }\n"
	       "}\n");
}

/* ------------------------------------------------------------ YAML */

static void test_yaml(void **state)
{
	struct render_entry v[] = {
		FILE_("db/host", "db1"),
		FILE_("db/port", "5432"),
		DIR_("empty"),
		FILE_("a/%value", "top"),
		FILE_("a/k: v", "- x\n- y: {z}"),
		FILE_("q\"", "\"\\\0\t\r\x1b\x7f"),
		FILE_("u", "\xc2\x85\xe2\x80\xa8\xe2\x80\xa9\xef\xbb\xbf\xc2\x9f\xff ok\xc3\xa9"),
		FILE_("#c", "&anchor *ref !tag |"),
	};
	expect(RENDER_YAML, v, ARRAY_SIZE(v),
	       "\"#c\": \"&anchor *ref !tag |\"\n"
	       "\"a\":\n"
	       "  \"%value\": \"top\"\n"
	       "  \"k: v\": \"- x\\n- y: {z}\"\n"
	       "\"db\":\n"
	       "  \"host\": \"db1\"\n"
	       "  \"port\": \"5432\"\n"
	       "\"empty\": {}\n"
	       "\"q\\\"\": \"\\\"\\\\\\0\\t\\r\\x1B\\x7F\"\n"
	       "\"u\": \"\\N\\L\\P\\uFEFF\\x9F\xef\xbf\xbd ok\xc3\xa9\"\n");
}

/* ------------------------------------------------------------ .env */

static void test_env(void **state)
{
	struct render_entry v[] = {
		FILE_("db/host", "db1"),
		FILE_("db/pass", "it's $HOME `x` \"q\"\nline2"),
		FILE_("%value", "own"),
		FILE_("a/%value", "a's"),
		FILE_("a-b/c.d", "x"),
		FILE_("A_B/c_d", "collides"),
		FILE_("9x", "digit"),
		FILE_("k=v:w", "eq"),
		FILE_("nul", "a\0b"),
		FILE_("empty", ""),
		FILE_("caf\xc3\xa9", "\xff\xfe"),
		FILE_("evil\nname", "v"),
		DIR_("dir"),
	};
	expect(RENDER_ENV, v, ARRAY_SIZE(v),
	       "# skipped \"%value\": it has no name in a .env file\n"
	       "_9X='digit'\n"
	       "A_B_C_D='collides'\n"
	       "A='a'\\''s'\n"
	       "# skipped \"a-b/c.d\": an earlier key has the same name here\n"
	       "CAF__='\xff\xfe'\n"
	       "DB_HOST='db1'\n"
	       "DB_PASS='it'\\''s $HOME `x` \"q\"\nline2'\n"
	       "EMPTY=''\n"
	       "EVIL_NAME='v'\n"
	       "K_V_W='eq'\n"
	       "# skipped \"nul\": a shell variable cannot hold a NUL byte\n");
}

/* The .env output, run through a shell, gives back every value byte for byte. */
static void test_env_through_shell(void **state)
{
	struct render_entry v[] = {
		FILE_("a", "it's '' \\ $(echo no) `no` ${x}"),
		FILE_("b", "\nnew\nlines\n"),
		FILE_("c", "\"double\" 'single' \t tab"),
	};
	size_t n;
	char *env = run(RENDER_ENV, v, ARRAY_SIZE(v), &n);
	char path[] = "/tmp/test_render_XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	assert_non_null(f);
	fwrite(env, 1, n, f);
	fprintf(f, "printf '%%s\\0' \"$A\" \"$B\" \"$C\"\n");
	fclose(f);
	free(env);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "sh %s", path);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char got[512];
	size_t len = fread(got, 1, sizeof(got), p);
	assert_int_equal(pclose(p), 0);
	unlink(path);
	size_t at = 0;
	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		assert_true(at + v[i].vlen < len);
		assert_memory_equal(got + at, v[i].val, v[i].vlen);
		assert_int_equal(got[at + v[i].vlen], '\0');
		at += v[i].vlen + 1;
	}
	assert_int_equal(at, len);
}

/* ------------------------------------------------------------ .properties */

static void test_properties(void **state)
{
	struct render_entry v[] = {
		FILE_("db/host", "db1"),
		FILE_("%value", "own"),
		FILE_("a/%value", "a"),
		FILE_("a/b", "ab"),
		FILE_("a.b", "collides"),
		FILE_("k=v:w #!", " leading space, inner space=:#!"),
		FILE_("esc", "back\\slash\ttab\nnl\rcr\fff"),
		FILE_("nul", "a\0b"),
		FILE_("uni", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xff"),
		FILE_("empty", ""),
		FILE_("nl\nkey", "v"),
	};
	expect(RENDER_PROPERTIES, v, ARRAY_SIZE(v),
	       "=own\n"
	       "a=a\n"
	       "a.b=ab\n"
	       "# skipped a.b: an earlier key has the same name here\n"
	       "db.host=db1\n"
	       "empty=\n"
	       "esc=back\\\\slash\\ttab\\nnl\\rcr\\fff\n"
	       "k\\=v\\:w\\ \\#\\!=\\ leading space, inner space\\=\\:\\#\\!\n"
	       "nl\\nkey=v\n"
	       "nul=a\\u0000b\n"
	       "uni=caf\\u00E9 \\u20AC \\uD83D\\uDE00 \\uFFFD\n");
}

/* ------------------------------------------------------------ size */

static void test_many_keys(void **state)
{
	enum { N = 10000 };
	struct render_entry *v = calloc(N, sizeof(*v));
	char(*paths)[32] = calloc(N, 32);
	assert_non_null(v);
	assert_non_null(paths);
	for (int i = 0; i < N; i++) {
		int len = snprintf(paths[i], 32, "d%02d/s%02d/k%04d", i % 50, i % 7, i);
		v[i] = (struct render_entry){paths[i], (size_t)len, "value", 5, false};
	}
	for (int f = 0; f < RENDER_NFORMATS; f++) {
		size_t n;
		char *out = run(f, v, N, &n);
		size_t lines = 0;
		for (size_t i = 0; i < n; i++)
			lines += out[i] == '\n';
		assert_true(lines >= N);
		free(out);
	}
	free(paths);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_view_names),
		cmocka_unit_test(test_view_names_no_key_makes),
		cmocka_unit_test(test_view_names_random_segments),
		cmocka_unit_test(test_json_structure),
		cmocka_unit_test(test_json_empty),
		cmocka_unit_test(test_json_hostile_strings),
		cmocka_unit_test(test_json_detection),
		cmocka_unit_test(test_json_deep_nesting),
		cmocka_unit_test(test_nested_conflicts),
		cmocka_unit_test(test_yaml),
		cmocka_unit_test(test_env),
		cmocka_unit_test(test_env_through_shell),
		cmocka_unit_test(test_properties),
		cmocka_unit_test(test_many_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
