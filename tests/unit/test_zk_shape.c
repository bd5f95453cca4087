/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a znode shows as (zk_shape.c): the rule of README "Names", case by case. */
#include <string.h>

#include "util.h"
#include "zk_shape.h"

#define ZN(nm, d, dl, ver, cver, kids, owner)                                                      \
	((struct zk_znode){.name = nm,                                                             \
			   .name_len = sizeof(nm) - 1,                                             \
			   .data = d,                                                              \
			   .data_len = dl,                                                         \
			   .version = ver,                                                         \
			   .cversion = cver,                                                       \
			   .num_children = kids,                                                   \
			   .ephemeral_owner = owner})

static void test_shapes(void **state)
{
	static const struct {
		struct zk_znode z;
		enum zk_shape want;
		const char *why;
	} cases[] = {
		{ZN("conf", "x=1", 3, 0, 0, 0, 0), ZK_FILE, "data, no children"},
		{ZN("conf", "", 0, 0, 0, 0, 0), ZK_FILE, "zero bytes: an empty file"},
		{ZN("conf", "", 0, 3, 0, 0, 0), ZK_FILE, "emptied by a write"},
		{ZN("dir", NULL, -1, 0, 0, 0, 0), ZK_DIR, "null data, never written"},
		{ZN("dir", NULL, -1, 1, 0, 0, 0), ZK_FILE, "null data written since"},
		{ZN("d", NULL, -1, 0, 4, 3, 0), ZK_DIR, "children"},
		{ZN("d", "v", 1, 2, 4, 3, 0), ZK_DIR_VALUE, "children and data"},
		{ZN("d", "", 0, 0, 2, 0, 0), ZK_DIR, "had children"},
		{ZN("d", "v", 1, 0, 2, 0, 0), ZK_DIR_VALUE, "had children, data"},
		{ZN("inst", "", 0, 0, 0, 0, 42), ZK_FILE, "an empty ephemeral"},
		{ZN("inst", NULL, -1, 0, 0, 0, 42), ZK_FILE, "a null ephemeral"},
		{ZN("providers", "10.0.0.5", 8, 0, 0, 0, 0), ZK_DIR, "Curator's address"},
		{ZN("routers", "fe80::1%eth0", 12, 0, 0, 0, 0), ZK_DIR, "an IPv6 address"},
		{ZN("configurators", "", 0, 0, 0, 0, 0), ZK_DIR, "an empty category"},
		{ZN("consumers", NULL, -1, 0, 0, 0, 0), ZK_DIR, "zkclient's null"},
		{ZN("providers", "10.0.0.5", 8, 0, 3, 1, 0), ZK_DIR, "with providers"},
		{ZN("providers", "hello", 5, 0, 0, 0, 0), ZK_FILE, "a category holding text"},
		{ZN("providers", "10.0.0.5", 8, 1, 0, 0, 0), ZK_FILE, "written since"},
		{ZN("other", "10.0.0.5", 8, 0, 0, 0, 0), ZK_FILE, "an address elsewhere is data"},
	};

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
		if (zk_shape(&cases[i].z) != cases[i].want)
			fail_msg("%s: shape %d, want %d", cases[i].why, zk_shape(&cases[i].z),
				 cases[i].want);
	assert_int_equal(zk_shape_keys(ZK_FILE), ZK_KEY_VALUE);
	assert_int_equal(zk_shape_keys(ZK_DIR), ZK_KEY_MARKER);
	assert_int_equal(zk_shape_keys(ZK_DIR_VALUE), ZK_KEY_MARKER | ZK_KEY_VALUE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shapes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
