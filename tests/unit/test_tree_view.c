/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests what views see of the mirror (tree_view.c): a subtree's keys, and the stamps of change. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "kv.h"
#include "tree.h"
#include "util.h"

static int64_t rev;

static void apply(struct tree *t, const char *key, const char *val)
{
	struct kv_batch b;
	struct change_list inv;
	struct timespec now = {1000 + rev, 0};
	struct kv_meta m = {.mod_rev = ++rev, .create_rev = 1, .version = rev};

	kv_batch_init(&b);
	change_list_init(&inv);
	assert_int_equal(
		kv_batch_push(&b, key, strlen(key), val ? blob_from(val, strlen(val)) : NULL, &m),
		0);
	b.revision = rev;
	assert_int_equal(tree_apply(t, &b, &now, &inv), 0);
	/* Nobody else opens the gates here. */
	tree_open_gate(t, UINT64_MAX);
	kv_batch_clear(&b);
	change_list_clear(&inv);
}

static uint64_t ino_of(struct tree *t, uint64_t dir, const char *name)
{
	struct node_attr a;

	assert_int_equal(tree_lookup(t, dir, name, &a), 0);
	tree_forget(t, a.ino, 1);
	return a.ino;
}

static uint64_t stamp(struct tree *t, uint64_t dir)
{
	uint64_t s;

	tree_view_stamps(t, &dir, &s, 1);
	return s;
}

/* The collected entries as "path=value" or "path/" lines, in the order given. */
static char *listing(struct tree *t, uint64_t dir)
{
	struct tree_items it;
	static char buf[4096];
	size_t n = 0;

	assert_int_equal(tree_collect(t, dir, &it), 0);
	assert_int_equal(it.stamp, stamp(t, dir));
	buf[0] = '\0';
	for (size_t i = 0; i < it.n; i++) {
		const struct tree_item *x = &it.v[i];
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%.*s%s%.*s;", (int)x->len,
				      it.paths + x->off, x->val ? "=" : "/",
				      x->val ? (int)x->val->len : 0, x->val ? x->val->data : "");
	}
	tree_items_clear(&it);
	return buf;
}

static void test_collect(void **state)
{
	struct tree *t = tree_new("app/", 4);

	apply(t, "app/db/host", "h");
	apply(t, "app/db/port", "p");
	apply(t, "app/a", "A");
	apply(t, "app/a/b", "B");
	apply(t, "app/empty/", "");
	/* Depth first, each directory's entries in the order they came. */
	assert_string_equal(listing(t, TREE_ROOT_INO),
			    "db/;a/;empty/;a/%value=A;a/b=B;db/host=h;db/port=p;");
	uint64_t db = ino_of(t, TREE_ROOT_INO, "db");
	assert_string_equal(listing(t, db), "host=h;port=p;");
	/* A file created here is not in the store yet: not in a view. */
	struct node_attr a;
	bool arm;
	assert_int_equal(tree_create(t, db, "new", true, 0644, &a, &arm), 0);
	assert_string_equal(listing(t, db), "host=h;port=p;");
	struct tree_items it;
	assert_int_equal(tree_collect(t, ino_of(t, db, "host"), &it), -ENOTDIR);
	assert_int_equal(it.n, 0);
	assert_int_equal(tree_collect(t, 999999, &it), -ENOENT);
	tree_free(t);
}

static void test_stamps(void **state)
{
	struct tree *t = tree_new("app/", 4);

	apply(t, "app/x/y/z", "1");
	apply(t, "app/w/v", "1");
	uint64_t x = ino_of(t, TREE_ROOT_INO, "x"), w = ino_of(t, TREE_ROOT_INO, "w");
	uint64_t y = ino_of(t, x, "y");
	uint64_t s_root = stamp(t, TREE_ROOT_INO), s_x = stamp(t, x), s_y = stamp(t, y),
		 s_w = stamp(t, w);
	/* A value below y: every ancestor's stamp moves, the sibling's does not. */
	apply(t, "app/x/y/z", "2");
	assert_true(stamp(t, TREE_ROOT_INO) > s_root);
	assert_true(stamp(t, x) > s_x);
	assert_true(stamp(t, y) > s_y);
	assert_int_equal(stamp(t, w), s_w);
	/* The same value again at a later revision: nothing a view shows changed... */
	s_y = stamp(t, y);
	/* ...a new key and a deleted one do change it. */
	apply(t, "app/x/y/n", "new");
	assert_true(stamp(t, y) > s_y);
	s_y = stamp(t, y);
	apply(t, "app/x/y/n", NULL);
	assert_true(stamp(t, y) > s_y);
	assert_int_equal(stamp(t, w), s_w);
	/* A directory that went: no stamp. */
	apply(t, "app/w/v", NULL);
	assert_int_equal(stamp(t, w), TREE_NO_STAMP);
	uint64_t dirs[] = {TREE_ROOT_INO, w, y}, out[3];
	tree_view_stamps(t, dirs, out, 3);
	assert_int_equal(out[0], stamp(t, TREE_ROOT_INO));
	assert_int_equal(out[1], TREE_NO_STAMP);
	assert_int_equal(out[2], stamp(t, y));
	tree_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collect),
		cmocka_unit_test(test_stamps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
