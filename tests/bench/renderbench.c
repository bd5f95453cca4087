/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Times a view's rendering without FUSE: a mirror of N keys (default
 * 10,000; 50 directories of 7 subdirectories, values of 20 to 40 bytes,
 * every tenth one a JSON object), then tree_collect and render of the root
 * in each format, the median of 21 runs.
 *
 *   renderbench [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blob.h"
#include "render.h"
#include "tree.h"

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* One view of the root, as fs_view.c makes it: collect under the lock, then render. */
static size_t one(struct tree *t, enum render_format f)
{
	struct tree_items it;
	char *out;
	size_t len;

	if (tree_collect(t, TREE_ROOT_INO, &it))
		exit(1);
	struct render_entry *v = malloc((it.n + 1) * sizeof(*v));
	for (size_t i = 0; i < it.n; i++)
		v[i] = (struct render_entry){it.paths + it.v[i].off, it.v[i].len,
					     it.v[i].val ? it.v[i].val->data : NULL,
					     it.v[i].val ? it.v[i].val->len : 0, !it.v[i].val};
	if (render(f, v, it.n, &out, &len))
		exit(1);
	free(out);
	free(v);
	tree_items_clear(&it);
	return len;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 10000;
	struct tree *t = tree_new("app/", 4);
	struct kv_batch b;
	struct change_list inv;
	struct timespec now;
	char key[64], val[64];

	clock_gettime(CLOCK_REALTIME, &now);
	kv_batch_init(&b);
	change_list_init(&inv);
	for (int i = 0; i < n; i++) {
		int kl = snprintf(key, sizeof(key), "app/d%02d/s%d/key-%05d", i % 50, i % 7, i);
		int vl = i % 10 ? snprintf(val, sizeof(val), "value number %d of the tree", i)
				: snprintf(val, sizeof(val), "{\"n\": %d, \"on\": true}", i);
		struct kv_meta m = {.mod_rev = 2, .create_rev = 2, .version = 1};
		kv_batch_push(&b, key, (size_t)kl, blob_from(val, (size_t)vl), &m);
	}
	b.revision = 2;
	if (tree_apply(t, &b, &now, &inv))
		return 1;
	printf("render of the root's views, %d keys (median of 21):\n", n);
	for (int f = 0; f < RENDER_NFORMATS; f++) {
		double ms[21];
		size_t len = 0;
		for (int r = 0; r < 21; r++) {
			double t0 = now_ms();
			len = one(t, f);
			ms[r] = now_ms() - t0;
		}
		qsort(ms, 21, sizeof(ms[0]), cmp_double);
		printf("  %-12s %7.2f ms  %8zu bytes\n", render_view_name(f), ms[10], len);
	}
	kv_batch_clear(&b);
	change_list_clear(&inv);
	tree_free(t);
	return 0;
}
