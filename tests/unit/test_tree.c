/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the mirror (tree.c) through its public API: store batches in, what the kernel sees out. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "blob.h"
#include "kv.h"
#include "names.h"
#include "tree.h"
#include "util.h"

#define PFX "app/"

struct fx {
	struct tree *t;
	struct kv_batch b;
	struct change_list inv; /* what the kernel is told */
	uint64_t replays[64];	/* inv's files (the first 64) */
	size_t nreplays;	/* all of them */
};

/* The files a change hands on to those who act once the kernel has them (inotify replay). */
static void split_replays(struct fx *f)
{
	f->nreplays = f->inv.nfiles;
	for (size_t i = 0; i < f->inv.nfiles && i < 64; i++)
		f->replays[i] = f->inv.files[i];
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->t = tree_new(S(PFX));
	kv_batch_init(&f->b);
	change_list_init(&f->inv);
	*state = f;
	return f->t ? 0 : -1;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	kv_batch_clear(&f->b);
	change_list_clear(&f->inv);
	tree_free(f->t);
	free(f);
	return 0;
}

/* ------------------------------------------------------------ building batches */

static void putn(struct kv_batch *b, const char *key, size_t klen, const char *val, size_t vlen,
		 int64_t mod, int64_t create)
{
	struct kv_meta m = {.mod_rev = mod, .create_rev = create, .version = mod - create + 1};
	struct blob *v = blob_from(val, vlen);

	assert_non_null(v);
	assert_int_equal(kv_batch_push(b, key, klen, v, &m), 0);
}

static void put(struct kv_batch *b, const char *key, const char *val, int64_t mod, int64_t create)
{
	putn(b, key, strlen(key), val, strlen(val), mod, create);
}

static void deln(struct kv_batch *b, const char *key, size_t klen, int64_t mod)
{
	struct kv_meta m = {.mod_rev = mod};

	assert_int_equal(kv_batch_push(b, key, klen, NULL, &m), 0);
}

static void del(struct kv_batch *b, const char *key, int64_t mod)
{
	deln(b, key, strlen(key), mod);
}

static struct timespec at(long sec)
{
	struct timespec ts = {sec, 0};

	return ts;
}

/*
 * Apply f->b as seen at time sec; f->inv receives just this batch's
 * invalidations. The gate of a multi-file batch stays closed, as it does
 * until the notifier has sent everything before it.
 */
static void apply_gated(struct fx *f, long sec)
{
	struct timespec now = at(sec);

	change_list_clear(&f->inv);
	assert_int_equal(tree_apply(f->t, &f->b, &now, &f->inv), 0);
	split_replays(f);
	kv_batch_clear(&f->b);
}

/* Open the gates in f->inv, as the notifier does when it reaches them. */
static void open_gates(struct fx *f)
{
	for (size_t i = 0; i < f->inv.n; i++)
		if (f->inv.v[i].kind == INVAL_GATE)
			tree_open_gate(f->t, f->inv.v[i].ino);
}

/* Apply and let the notifier catch up: what most tests want to observe. */
static void apply(struct fx *f, long sec)
{
	apply_gated(f, sec);
	open_gates(f);
}

/* ------------------------------------------------------------ observing */

/*
 * Look up a '/'-separated path of file names from the root, as the kernel
 * would. Unless keep, every lookup is forgotten again, so the test does not
 * change what the kernel is deemed to know.
 */
static int resolve(struct tree *t, const char *path, bool keep, struct node_attr *a)
{
	uint64_t ino = TREE_ROOT_INO;

	if (!*path)
		return tree_getattr(t, TREE_ROOT_INO, a);
	while (*path) {
		char name[NAMES_MAX + 1];
		size_t n = strcspn(path, "/");

		assert_true(n <= NAMES_MAX);
		memcpy(name, path, n);
		name[n] = '\0';
		int rc = tree_lookup(t, ino, name, a);
		if (rc)
			return rc;
		if (!keep)
			tree_forget(t, a->ino, 1);
		ino = a->ino;
		path += n;
		if (*path == '/')
			path++;
	}
	return 0;
}

static uint64_t ino_of(struct tree *t, const char *path)
{
	struct node_attr a;
	int rc = resolve(t, path, false, &a);

	if (rc)
		fail_msg("lookup of \"%s\" failed: %d", path, rc);
	return a.ino;
}

static uint64_t hold(struct tree *t, const char *path)
{
	struct node_attr a;
	int rc = resolve(t, path, true, &a);

	if (rc)
		fail_msg("lookup of \"%s\" failed: %d", path, rc);
	return a.ino;
}

static struct node_attr attr_of(struct tree *t, const char *path)
{
	struct node_attr a;
	int rc = resolve(t, path, false, &a);

	if (rc)
		fail_msg("lookup of \"%s\" failed: %d", path, rc);
	return a;
}

/* What a read must see the kernel hold first; these tests have no kernel. */
static struct read_check chk;

static void assert_gone(struct tree *t, const char *path)
{
	struct node_attr a;

	assert_int_equal(resolve(t, path, false, &a), -ENOENT);
}

static void assert_valuen(struct tree *t, uint64_t ino, const char *val, size_t vlen)
{
	struct blob *b = NULL;

	assert_int_equal(tree_read(t, ino, &b, &chk), 0);
	assert_non_null(b);
	assert_int_equal(b->len, vlen);
	assert_memory_equal(b->data, val, vlen);
	assert_int_equal(b->data[vlen], '\0');
	blob_unref(b);
}

static void assert_value(struct tree *t, uint64_t ino, const char *val)
{
	assert_valuen(t, ino, val, strlen(val));
}

static void assert_keyn(struct tree *t, uint64_t ino, const char *key, size_t klen)
{
	struct node_info info;

	assert_int_equal(tree_info(t, ino, &info), 0);
	assert_non_null(info.key);
	assert_int_equal(info.klen, klen);
	assert_memory_equal(info.key, key, klen);
	assert_int_equal(info.key[klen], '\0');
	free(info.key);
}

static void assert_key(struct tree *t, uint64_t ino, const char *key)
{
	assert_keyn(t, ino, key, strlen(key));
}

struct listing {
	char **names;
	struct node_attr *attr;
	uint64_t *next;
	size_t n, cap;
	size_t limit; /* entries taken per tree_readdir call; 0: all */
	size_t taken;
};

static bool collect(void *ctx, const char *name, const struct node_attr *a, uint64_t next_off)
{
	struct listing *l = ctx;

	if (l->limit && l->taken == l->limit)
		return false;
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->names = realloc(l->names, l->cap * sizeof(*l->names));
		l->attr = realloc(l->attr, l->cap * sizeof(*l->attr));
		l->next = realloc(l->next, l->cap * sizeof(*l->next));
		assert_true(l->names && l->attr && l->next);
	}
	l->names[l->n] = strdup(name);
	l->attr[l->n] = *a;
	l->next[l->n] = next_off;
	l->n++;
	l->taken++;
	return true;
}

static void listing_free(struct listing *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	free(l->attr);
	free(l->next);
	memset(l, 0, sizeof(*l));
}

static size_t listing_count(const struct listing *l, const char *name)
{
	size_t c = 0;

	for (size_t i = 0; i < l->n; i++)
		c += strcmp(l->names[i], name) == 0;
	return c;
}

static void list_dir(struct tree *t, uint64_t ino, bool plus, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	assert_int_equal(tree_readdir(t, ino, 0, plus, collect, l), 0);
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_NAMES ((const char *const[]){NULL})

/* Directory ino lists ".", "..", then exactly the names in want (any order). */
static void assert_entries(struct tree *t, uint64_t ino, const char *const *want)
{
	struct listing l;
	size_t nwant = 0;

	list_dir(t, ino, false, &l);
	assert_true(l.n >= 2);
	assert_string_equal(l.names[0], ".");
	assert_string_equal(l.names[1], "..");
	assert_int_equal(l.attr[0].ino, ino);
	for (; want[nwant]; nwant++)
		if (listing_count(&l, want[nwant]) != 1)
			fail_msg("\"%s\" listed %zu times", want[nwant],
				 listing_count(&l, want[nwant]));
	if (l.n - 2 != nwant) {
		for (size_t i = 2; i < l.n; i++)
			fprintf(stderr, "  listed: \"%s\"\n", l.names[i]);
		fail_msg("%zu entries listed, expected %zu", l.n - 2, nwant);
	}
	listing_free(&l);
}

/* Index of the first invalidation matching kind and (where it applies) parent, ino and name. */
static ssize_t find_inval(const struct change_list *l, enum inval_kind kind, uint64_t parent,
			  uint64_t ino, const char *name)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct inval *e = &l->v[i];
		if (e->kind != kind)
			continue;
		if (kind == INVAL_INODE && e->ino != ino)
			continue;
		if ((kind == INVAL_ENTRY || kind == INVAL_DELETE) &&
		    (e->parent != parent || !e->name || e->namelen != strlen(name) ||
		     memcmp(e->name, name, e->namelen) != 0))
			continue;
		if (kind == INVAL_DELETE && e->ino != ino)
			continue;
		return (ssize_t)i;
	}
	return -1;
}

static size_t count_inval(const struct change_list *l, enum inval_kind kind)
{
	size_t c = 0;

	for (size_t i = 0; i < l->n; i++)
		c += l->v[i].kind == kind;
	return c;
}

static void dump_invals(const struct change_list *l)
{
	static const char *const kinds[] = {"INODE", "ENTRY", "DELETE", "READS", "PROBE", "GATE"};

	for (size_t i = 0; i < l->n; i++)
		fprintf(stderr, "  inval[%zu] %s parent=%llu ino=%llu name=%s\n", i,
			kinds[l->v[i].kind], (unsigned long long)l->v[i].parent,
			(unsigned long long)l->v[i].ino, l->v[i].name ? l->v[i].name : "-");
}

static ssize_t must_find(const struct change_list *l, enum inval_kind kind, uint64_t parent,
			 uint64_t ino, const char *name)
{
	ssize_t i = find_inval(l, kind, parent, ino, name);

	if (i < 0) {
		dump_invals(l);
		fail_msg("invalidation kind %d parent %llu ino %llu name %s missing", kind,
			 (unsigned long long)parent, (unsigned long long)ino, name ? name : "-");
	}
	return i;
}

/* ------------------------------------------------------------ basic mapping */

static void test_put_creates_file(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	struct node_info info;

	put(&f->b, "app/db/host", "localhost", 5, 5);
	apply(f, 100);

	struct node_attr db = attr_of(f->t, "db");
	assert_int_equal(db.kind, NODE_DIR);
	assert_int_equal(db.nlink, 2);
	assert_int_equal(db.size, 1);
	struct node_attr host = attr_of(f->t, "db/host");
	assert_int_equal(host.kind, NODE_FILE);
	assert_int_equal(host.size, 9);
	assert_int_equal(host.nlink, 1);
	assert_int_equal(host.mtime.tv_sec, 100);
	assert_false(host.transient);
	assert_true(host.ino > db.ino && db.ino > TREE_ROOT_INO);
	assert_value(f->t, host.ino, "localhost");

	assert_int_equal(tree_getattr(f->t, host.ino, &a), 0);
	assert_int_equal(a.ino, host.ino);
	assert_int_equal(a.size, 9);
	assert_int_equal(tree_getattr(f->t, TREE_ROOT_INO, &a), 0);
	assert_int_equal(a.kind, NODE_DIR);
	assert_int_equal(a.nlink, 3); /* ".", its entry, and db's ".." */
	assert_int_equal(a.mtime.tv_sec, 100);

	assert_int_equal(tree_info(f->t, host.ino, &info), 0);
	assert_int_equal(info.kind, NODE_FILE);
	assert_true(info.has_meta);
	assert_int_equal(info.meta.mod_rev, 5);
	assert_int_equal(info.meta.create_rev, 5);
	assert_int_equal(info.meta.version, 1);
	assert_int_equal(info.klen, 11);
	assert_string_equal(info.key, "app/db/host");
	free(info.key);

	assert_int_equal(tree_info(f->t, db.ino, &info), 0);
	assert_int_equal(info.kind, NODE_DIR);
	assert_false(info.has_meta); /* implied by its children, no key of its own */
	assert_string_equal(info.key, "app/db/");
	free(info.key);
	assert_key(f->t, TREE_ROOT_INO, "app/");
	assert_int_equal(tree_revision(f->t), 5);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("db"));
	assert_entries(f->t, db.ino, NAMES("host"));
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	struct node_info info;
	struct blob *b = NULL;
	struct listing l = {0};

	put(&f->b, "app/d/file", "x", 1, 1);
	apply(f, 1);
	uint64_t d = ino_of(f->t, "d"), file = ino_of(f->t, "d/file");

	assert_int_equal(tree_read(f->t, d, &b, &chk), -EISDIR);
	assert_int_equal(tree_read(f->t, 424242, &b, &chk), -ENOENT);
	assert_null(b);
	assert_int_equal(tree_lookup(f->t, file, "x", &a), -ENOTDIR);
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "nope", &a), -ENOENT);
	assert_int_equal(tree_lookup(f->t, 424242, "d", &a), -ENOENT);
	/* Lookups are by exact encoded name. */
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "D", &a), -ENOENT);
	assert_int_equal(tree_lookup(f->t, d, "file/", &a), -ENOENT);
	assert_int_equal(tree_readdir(f->t, file, 0, false, collect, &l), -ENOTDIR);
	assert_int_equal(tree_readdir(f->t, 424242, 0, false, collect, &l), -ENOENT);
	assert_int_equal(l.n, 0);
	assert_int_equal(tree_getattr(f->t, 424242, &a), -ENOENT);
	assert_int_equal(tree_info(f->t, 424242, &info), -ENOENT);
	/* Forgetting what does not exist, or the root, changes nothing. */
	tree_forget(f->t, 424242, 1);
	tree_forget(f->t, TREE_ROOT_INO, 100);
	assert_int_equal(tree_getattr(f->t, TREE_ROOT_INO, &a), 0);
}

static void test_update(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/k", "v1", 5, 5);
	apply(f, 100);
	struct node_attr a0 = attr_of(f->t, "k");
	assert_int_equal(a0.mtime.tv_sec, 100);

	put(&f->b, "app/k", "version2", 6, 5);
	apply(f, 200);
	struct node_attr a1 = attr_of(f->t, "k");
	assert_int_equal(a1.ino, a0.ino);
	assert_int_equal(a1.mtime.tv_sec, 200);
	assert_int_equal(a1.size, 8);
	assert_value(f->t, a1.ino, "version2");

	/* Stale news: an older or equal revision than the mirror holds. */
	put(&f->b, "app/k", "old", 4, 5);
	apply(f, 300);
	put(&f->b, "app/k", "same rev", 6, 5);
	apply(f, 300);
	del(&f->b, "app/k", 5);
	apply(f, 300);
	del(&f->b, "app/k", 6);
	apply(f, 300);
	struct node_attr a2 = attr_of(f->t, "k");
	assert_int_equal(a2.ino, a0.ino);
	assert_int_equal(a2.mtime.tv_sec, 200);
	assert_value(f->t, a2.ino, "version2");
	struct node_info info;
	assert_int_equal(tree_info(f->t, a2.ino, &info), 0);
	assert_int_equal(info.meta.mod_rev, 6);
	free(info.key);

	del(&f->b, "app/k", 7);
	apply(f, 400);
	assert_gone(f->t, "k");
	struct node_attr a;
	assert_int_equal(tree_getattr(f->t, a0.ino, &a), -ENOENT);

	/* A new life of the key is a new file: numbers are never reused. */
	put(&f->b, "app/k", "again", 8, 8);
	apply(f, 500);
	assert_true(ino_of(f->t, "k") > a0.ino);
}

/* A create_revision change means deleted and created again while we were not watching. */
static void test_update_new_life(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/k", "v1", 5, 5);
	apply(f, 100);
	uint64_t old = ino_of(f->t, "k");
	put(&f->b, "app/k", "v2", 9, 9);
	apply(f, 200);
	uint64_t now = ino_of(f->t, "k");
	assert_true(now > old);
	assert_value(f->t, now, "v2");
	struct node_attr a;
	assert_int_equal(tree_getattr(f->t, old, &a), -ENOENT);

	/* Same for a key in an implied directory that the removal would collapse. */
	put(&f->b, "app/d/only", "v1", 10, 10);
	apply(f, 300);
	uint64_t o2 = ino_of(f->t, "d/only");
	put(&f->b, "app/d/only", "v2", 12, 12);
	apply(f, 400);
	assert_true(ino_of(f->t, "d/only") > o2);
	assert_value(f->t, ino_of(f->t, "d/only"), "v2");
}

static void test_delete_collapses(void **state)
{
	struct fx *f = *state;
	struct node_attr a;

	put(&f->b, "app/x/y/z", "deep", 1, 1);
	put(&f->b, "app/keep", "k", 2, 2);
	apply(f, 1);
	uint64_t x = ino_of(f->t, "x"), y = ino_of(f->t, "x/y");

	del(&f->b, "app/x/y/z", 3);
	apply(f, 2);
	assert_gone(f->t, "x");
	assert_int_equal(tree_getattr(f->t, x, &a), -ENOENT);
	assert_int_equal(tree_getattr(f->t, y, &a), -ENOENT);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("keep"));

	del(&f->b, "app/keep", 4);
	apply(f, 3);
	assert_entries(f->t, TREE_ROOT_INO, NO_NAMES);
	assert_int_equal(tree_getattr(f->t, TREE_ROOT_INO, &a), 0);
	assert_int_equal(a.nlink, 2);
	assert_int_equal(a.size, 0);

	/* Deletes of keys that never existed, under missing or file parents. */
	put(&f->b, "app/file", "f", 5, 5);
	apply(f, 4);
	del(&f->b, "app/none", 6);
	del(&f->b, "app/no/such/dir", 6);
	del(&f->b, "app/file/child", 6);
	del(&f->b, "app/file/", 6);
	apply(f, 5);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("file"));

	/* A delete without a revision is never stale. */
	put(&f->b, "app/q", "v", 50, 50);
	apply(f, 6);
	del(&f->b, "app/q", 0);
	apply(f, 7);
	assert_gone(f->t, "q");

	/* A sibling keeps the implied directory alive. */
	put(&f->b, "app/s/a", "1", 60, 60);
	put(&f->b, "app/s/b", "2", 60, 60);
	apply(f, 8);
	del(&f->b, "app/s/a", 61);
	apply(f, 9);
	assert_entries(f->t, ino_of(f->t, "s"), NAMES("b"));
}

/* ------------------------------------------------------------ value and prefix */

static void test_value_and_prefix(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/a", "A", 1, 1);
	apply(f, 1);
	struct node_attr file = attr_of(f->t, "a");
	assert_int_equal(file.kind, NODE_FILE);

	put(&f->b, "app/a/b", "B", 2, 2);
	apply(f, 2);
	struct node_attr dir = attr_of(f->t, "a");
	assert_int_equal(dir.kind, NODE_DIR);
	assert_int_not_equal(dir.ino, file.ino);
	assert_entries(f->t, dir.ino, NAMES("b", NAMES_VALUE));
	assert_entries(f->t, TREE_ROOT_INO, NAMES("a"));
	/* The value keeps the inode number it had as a plain file. */
	uint64_t v = ino_of(f->t, "a/" NAMES_VALUE);
	assert_int_equal(v, file.ino);
	assert_value(f->t, v, "A");
	assert_key(f->t, v, "app/a");
	assert_key(f->t, dir.ino, "app/a/");
	assert_key(f->t, ino_of(f->t, "a/b"), "app/a/b");

	/* Updating the value while it sits in the directory. */
	put(&f->b, "app/a", "A2", 3, 1);
	apply(f, 3);
	assert_int_equal(ino_of(f->t, "a/" NAMES_VALUE), file.ino);
	assert_value(f->t, file.ino, "A2");

	del(&f->b, "app/a/b", 4);
	apply(f, 4);
	struct node_attr back = attr_of(f->t, "a");
	assert_int_equal(back.kind, NODE_FILE);
	assert_int_equal(back.ino, file.ino);
	assert_value(f->t, back.ino, "A2");
	assert_key(f->t, back.ino, "app/a");
	struct node_attr a;
	assert_int_equal(tree_getattr(f->t, dir.ino, &a), -ENOENT);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("a"));
}

static void test_value_and_prefix_reverse(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/r/b", "B", 1, 1);
	apply(f, 1);
	uint64_t dir = ino_of(f->t, "r");
	put(&f->b, "app/r", "R", 2, 2);
	apply(f, 2);
	assert_int_equal(ino_of(f->t, "r"), dir);
	assert_entries(f->t, dir, NAMES("b", NAMES_VALUE));
	uint64_t v = ino_of(f->t, "r/" NAMES_VALUE);
	assert_value(f->t, v, "R");
	assert_key(f->t, v, "app/r");

	del(&f->b, "app/r/b", 3);
	apply(f, 3);
	struct node_attr back = attr_of(f->t, "r");
	assert_int_equal(back.kind, NODE_FILE);
	assert_int_equal(back.ino, v);
	assert_value(f->t, v, "R");
	assert_key(f->t, v, "app/r");

	/* Deleting the value first leaves a plain implied directory. */
	put(&f->b, "app/c/d", "D", 5, 5);
	put(&f->b, "app/c", "C", 6, 6);
	apply(f, 4);
	del(&f->b, "app/c", 7);
	apply(f, 5);
	assert_int_equal(attr_of(f->t, "c").kind, NODE_DIR);
	assert_entries(f->t, ino_of(f->t, "c"), NAMES("d"));

	/* Both in one batch. */
	put(&f->b, "app/s", "S", 8, 8);
	put(&f->b, "app/s/t", "T", 8, 8);
	apply(f, 6);
	assert_value(f->t, ino_of(f->t, "s/" NAMES_VALUE), "S");
	assert_value(f->t, ino_of(f->t, "s/t"), "T");
}

/*
 * The value node created directly as NAMES_VALUE (child first, then the key)
 * takes the directory's name when the child goes: names longer than
 * NAMES_VALUE must fit.
 */
static void test_value_and_prefix_long_name(void **state)
{
	struct fx *f = *state;
	char name[200], key[256], child[300];

	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(key, sizeof(key), PFX "%s", name);
	snprintf(child, sizeof(child), "%s/c", key);

	put(&f->b, child, "C", 1, 1);
	apply(f, 1);
	put(&f->b, key, "V", 2, 2);
	apply(f, 2);
	char vpath[300];
	snprintf(vpath, sizeof(vpath), "%s/%s", name, NAMES_VALUE);
	uint64_t v = ino_of(f->t, vpath);

	/*
	 * Regression (fixed): collapse() renames the NAMES_VALUE node to the directory's 199-byte
	 * name with node_set_name(), but put_key() allocated that node with room
	 * for NAMES_VALUE_LEN + 1 bytes only: a heap overflow (glibc aborts with
	 * "malloc(): corrupted top size"; valgrind: invalid write in collapse).
	 */
	del(&f->b, child, 3);
	apply(f, 3);
	struct node_attr a = attr_of(f->t, name);
	assert_int_equal(a.kind, NODE_FILE);
	assert_int_equal(a.ino, v);
	assert_value(f->t, v, "V");
	assert_key(f->t, v, key);
	assert_entries(f->t, TREE_ROOT_INO, NAMES(name));
}

/* ------------------------------------------------------------ directory markers */

static void test_dir_marker(void **state)
{
	struct fx *f = *state;
	struct node_info info;

	put(&f->b, "app/d/", "", 1, 1);
	apply(f, 1);
	struct node_attr d = attr_of(f->t, "d");
	assert_int_equal(d.kind, NODE_DIR);
	assert_int_equal(d.size, 0);
	assert_entries(f->t, d.ino, NO_NAMES);
	assert_int_equal(tree_info(f->t, d.ino, &info), 0);
	assert_true(info.has_meta);
	assert_int_equal(info.meta.mod_rev, 1);
	assert_string_equal(info.key, "app/d/");
	free(info.key);

	del(&f->b, "app/d/", 2);
	apply(f, 2);
	assert_gone(f->t, "d");

	/* With a value, the key is the file "%" inside its directory. */
	put(&f->b, "app/d/", "x", 3, 3);
	apply(f, 3);
	uint64_t d2 = ino_of(f->t, "d");
	assert_entries(f->t, d2, NAMES("%"));
	uint64_t pct = ino_of(f->t, "d/%");
	assert_value(f->t, pct, "x");
	assert_key(f->t, pct, "app/d/");
	assert_int_equal(tree_info(f->t, d2, &info), 0);
	assert_false(info.has_meta);
	assert_string_equal(info.key, "app/d/");
	free(info.key);

	/* The same key emptied: back to a marker, the file goes. */
	put(&f->b, "app/d/", "", 4, 3);
	apply(f, 4);
	assert_int_equal(ino_of(f->t, "d"), d2);
	assert_entries(f->t, d2, NO_NAMES);
	assert_int_equal(tree_info(f->t, d2, &info), 0);
	assert_true(info.has_meta);
	assert_int_equal(info.meta.mod_rev, 4);
	free(info.key);

	/* A marker outlives its children... */
	put(&f->b, "app/d/x", "1", 5, 5);
	apply(f, 5);
	del(&f->b, "app/d/x", 6);
	apply(f, 6);
	assert_int_equal(ino_of(f->t, "d"), d2);
	assert_entries(f->t, d2, NO_NAMES);
	/* ...ignores stale deletes... */
	del(&f->b, "app/d/", 4);
	apply(f, 7);
	assert_int_equal(ino_of(f->t, "d"), d2);
	/* ...and goes with its own delete. */
	del(&f->b, "app/d/", 8);
	apply(f, 8);
	assert_gone(f->t, "d");

	/* A marker with children: deleting the marker keeps the children. */
	put(&f->b, "app/e/", "", 9, 9);
	put(&f->b, "app/e/c", "c", 9, 9);
	apply(f, 9);
	del(&f->b, "app/e/", 10);
	apply(f, 10);
	assert_entries(f->t, ino_of(f->t, "e"), NAMES("c"));
	del(&f->b, "app/e/c", 11);
	apply(f, 11);
	assert_gone(f->t, "e");
}

/* A file key and its "dir/" marker: the directory holds the value, and gives it back. */
static void test_dir_marker_over_file(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/m", "v", 1, 1);
	apply(f, 1);
	uint64_t file = ino_of(f->t, "m");
	put(&f->b, "app/m/", "", 2, 2);
	apply(f, 2);
	assert_int_equal(attr_of(f->t, "m").kind, NODE_DIR);
	assert_int_equal(ino_of(f->t, "m/" NAMES_VALUE), file);
	del(&f->b, "app/m/", 3);
	apply(f, 3);
	struct node_attr a = attr_of(f->t, "m");
	assert_int_equal(a.kind, NODE_FILE);
	assert_int_equal(a.ino, file);
	assert_value(f->t, file, "v");

	/* Deleting the file under a marker leaves the empty directory. */
	put(&f->b, "app/m/", "", 4, 4);
	apply(f, 4);
	del(&f->b, "app/m", 5);
	apply(f, 5);
	assert_int_equal(attr_of(f->t, "m").kind, NODE_DIR);
	assert_entries(f->t, ino_of(f->t, "m"), NO_NAMES);
}

/* ------------------------------------------------------------ odd keys */

static void test_empty_segments(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app//x", "1", 1, 1);
	put(&f->b, "app/x/", "v", 2, 2);
	put(&f->b, "app/a//b", "2", 3, 3);
	put(&f->b, "app///", "3", 4, 4);
	apply(f, 1);

	assert_entries(f->t, TREE_ROOT_INO, NAMES("%", "x", "a"));
	uint64_t pct = ino_of(f->t, "%");
	assert_int_equal(attr_of(f->t, "%").kind, NODE_DIR);
	assert_entries(f->t, pct, NAMES("x", "%"));
	assert_key(f->t, pct, "app//");
	assert_key(f->t, ino_of(f->t, "%/x"), "app//x");
	assert_value(f->t, ino_of(f->t, "%/x"), "1");
	assert_int_equal(attr_of(f->t, "x").kind, NODE_DIR);
	assert_key(f->t, ino_of(f->t, "x/%"), "app/x/");
	assert_value(f->t, ino_of(f->t, "x/%"), "v");
	assert_key(f->t, ino_of(f->t, "a/%/b"), "app/a//b");
	assert_key(f->t, ino_of(f->t, "%/%/%"), "app///");
	assert_value(f->t, ino_of(f->t, "%/%/%"), "3");
}

/* Prefixes other than "app/": a leading slash, and the whole key space. */
static void test_other_prefixes(void **state)
{
	struct kv_batch b;
	struct change_list inv;
	struct timespec now = at(1);
	struct tree *t = tree_new(S("/app/"));

	assert_non_null(t);
	kv_batch_init(&b);
	change_list_init(&inv);
	put(&b, "/app/k", "1", 1, 1);
	put(&b, "app/k", "ignored", 1, 1);
	put(&b, "/app//k2", "2", 2, 2);
	put(&b, "//app/k3", "ignored", 2, 2);
	assert_int_equal(tree_apply(t, &b, &now, &inv), 0);
	kv_batch_clear(&b);
	assert_entries(t, TREE_ROOT_INO, NAMES("k", "%"));
	assert_key(t, ino_of(t, "k"), "/app/k");
	assert_key(t, ino_of(t, "%/k2"), "/app//k2");
	assert_key(t, TREE_ROOT_INO, "/app/");
	tree_free(t);

	t = tree_new("", 0);
	assert_non_null(t);
	put(&b, "/a/b", "1", 1, 1);
	put(&b, "x", "2", 1, 1);
	put(&b, "a", "3", 1, 1);
	assert_int_equal(tree_apply(t, &b, &now, &inv), 0);
	kv_batch_clear(&b);
	assert_entries(t, TREE_ROOT_INO, NAMES("%", "x", "a"));
	assert_key(t, ino_of(t, "%/a/b"), "/a/b");
	assert_key(t, ino_of(t, "x"), "x");
	assert_key(t, ino_of(t, "%"), "/");
	assert_keyn(t, TREE_ROOT_INO, "", 0);
	tree_free(t);
	change_list_clear(&inv);
}

static const struct {
	const char *key;
	size_t klen;
	const char *path;
} odd_keys[] = {
	{S("app/%"), "%25"},
	{S("app/."), "%2E"},
	{S("app/.."), "%2E%2E"},
	{S("app/..."), "..."},
	{S("app/.hidden"), ".hidden"},
	{S("app/a%2Eb"), "a%252Eb"},
	{S("app/%value"), "%25value"},
	{S("app/%2E%2E"), "%252E%252E"},
	{S("app/x/./y"), "x/%2E/y"},
	{S("app/x/../etc/passwd"), "x/%2E%2E/etc/passwd"},
	{S("app/nul\0in\0key"), "nul%00in%00key"},
	{S("app/\0"), "%00"},
	{S("app/\0\0\0/\0\0"), "%00%00%00/%00%00"},
	{S("app/\x01\xff\x80"), "\x01\xff\x80"},
	{S("app/ sp ace "), " sp ace "},
	{S("app/h\xc3\xa9llo"), "h\xc3\xa9llo"},
	{S("app/%%%/%%/%00"), "%25%25%25/%25%25/%2500"},
	{S("app/q\n"), "q\n"},
	{S("app/p/%value/v"), "p/%25value/v"},
	{S("app/tab\there"), "tab\there"},
};

/* Odd keys land at their escaped paths, and the path gives back the exact key. */
static void test_escaping_roundtrip(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < ARRAY_SIZE(odd_keys); i++)
		putn(&f->b, odd_keys[i].key, odd_keys[i].klen, odd_keys[i].key, odd_keys[i].klen,
		     (int64_t)i + 1, (int64_t)i + 1);
	apply(f, 1);
	for (size_t i = 0; i < ARRAY_SIZE(odd_keys); i++) {
		struct node_attr a;
		int rc = resolve(f->t, odd_keys[i].path, false, &a);
		if (rc)
			fail_msg("key #%zu: path \"%s\" not found", i, odd_keys[i].path);
		if (a.kind != NODE_FILE)
			fail_msg("key #%zu: path \"%s\" is not a file", i, odd_keys[i].path);
		assert_valuen(f->t, a.ino, odd_keys[i].key, odd_keys[i].klen);
		assert_keyn(f->t, a.ino, odd_keys[i].key, odd_keys[i].klen);
	}
	struct tree_stats st;
	tree_stats(f->t, &st);
	assert_int_equal(st.files, ARRAY_SIZE(odd_keys));

	/* Deleting through the raw keys empties the tree again. */
	for (size_t i = 0; i < ARRAY_SIZE(odd_keys); i++)
		deln(&f->b, odd_keys[i].key, odd_keys[i].klen, 100);
	apply(f, 2);
	assert_entries(f->t, TREE_ROOT_INO, NO_NAMES);
}

static bool hashed_name(const char *name)
{
	size_t n = strlen(name);

	return n <= NAMES_MAX && n > NAMES_HASH_LEN &&
	       memcmp(name + n - NAMES_HASH_LEN, "%#", 2) == 0;
}

/* The only entry of directory ino, which must be a hashed name; copied to out. */
static void only_entry(struct tree *t, uint64_t ino, char *out)
{
	struct listing l;

	list_dir(t, ino, false, &l);
	assert_int_equal(l.n, 3);
	assert_true(hashed_name(l.names[2]));
	strcpy(out, l.names[2]);
	listing_free(&l);
}

static void test_long_segment(void **state)
{
	struct fx *f = *state;
	char key[4 + 400 + 1 + 4 + 1], name[NAMES_MAX + 1], path[2 * NAMES_MAX];

	memcpy(key, PFX, 4);
	memset(key + 4, 'k', 400);
	putn(&f->b, key, 404, S("long"), 1, 1);
	apply(f, 1);
	only_entry(f->t, TREE_ROOT_INO, name);
	uint64_t ino = ino_of(f->t, name);
	assert_value(f->t, ino, "long");
	assert_keyn(f->t, ino, key, 404);
	del(&f->b, "app/", 0); /* not this key: nothing changes */
	deln(&f->b, key, 404, 2);
	apply(f, 2);
	assert_entries(f->t, TREE_ROOT_INO, NO_NAMES);

	/* As a directory. */
	memcpy(key + 404, "/leaf", 6);
	putn(&f->b, key, 409, S("leaf"), 3, 3);
	apply(f, 3);
	only_entry(f->t, TREE_ROOT_INO, name);
	snprintf(path, sizeof(path), "%s/leaf", name);
	assert_keyn(f->t, ino_of(f->t, path), key, 409);
	char dkey[4 + 400 + 1];
	memcpy(dkey, key, 405);
	assert_keyn(f->t, ino_of(f->t, name), dkey, 405);
	deln(&f->b, key, 409, 4);
	apply(f, 4);
	assert_entries(f->t, TREE_ROOT_INO, NO_NAMES);

	/* Two long segments that only differ past the shown part get two entries. */
	char k2[404];
	memcpy(k2, key, 404);
	k2[403] = 'z';
	putn(&f->b, key, 404, S("one"), 5, 5);
	putn(&f->b, k2, 404, S("two"), 5, 5);
	apply(f, 5);
	struct listing l;
	list_dir(f->t, TREE_ROOT_INO, false, &l);
	assert_int_equal(l.n, 4);
	assert_string_not_equal(l.names[2], l.names[3]);
	for (size_t i = 2; i < 4; i++) {
		uint64_t x = ino_of(f->t, l.names[i]);
		struct node_info info;
		assert_int_equal(tree_info(f->t, x, &info), 0);
		assert_int_equal(info.klen, 404);
		struct blob *b;
		assert_int_equal(tree_read(f->t, x, &b, &chk), 0);
		assert_memory_equal(info.key, b->data[0] == 'o' ? key : k2, 404);
		blob_unref(b);
		free(info.key);
	}
	listing_free(&l);
}

/* A long key that is also a prefix keeps its full key through both shapes. */
static void test_long_segment_value_and_prefix(void **state)
{
	struct fx *f = *state;
	char key[4 + 400 + 2], name[NAMES_MAX + 1], path[2 * NAMES_MAX];

	memcpy(key, PFX, 4);
	memset(key + 4, 'v', 400);
	memcpy(key + 404, "/c", 2);

	putn(&f->b, key, 404, S("val"), 1, 1);
	apply(f, 1);
	only_entry(f->t, TREE_ROOT_INO, name);
	uint64_t v = ino_of(f->t, name);
	putn(&f->b, key, 406, S("child"), 2, 2);
	apply(f, 2);
	char dname[NAMES_MAX + 1];
	only_entry(f->t, TREE_ROOT_INO, dname);
	assert_string_equal(dname, name);
	snprintf(path, sizeof(path), "%s/%s", name, NAMES_VALUE);
	assert_int_equal(ino_of(f->t, path), v);
	assert_keyn(f->t, v, key, 404);
	snprintf(path, sizeof(path), "%s/c", name);
	assert_keyn(f->t, ino_of(f->t, path), key, 406);

	deln(&f->b, key, 406, 3);
	apply(f, 3);
	struct node_attr a = attr_of(f->t, name);
	assert_int_equal(a.kind, NODE_FILE);
	assert_int_equal(a.ino, v);
	assert_keyn(f->t, v, key, 404);
	assert_value(f->t, v, "val");
}

/* The other order: the value is born inside the directory, then takes its hashed name. */
static void test_long_segment_value_born_inside(void **state)
{
	struct fx *f = *state;
	char key[4 + 400 + 2], name[NAMES_MAX + 1], path[2 * NAMES_MAX];

	memcpy(key, PFX, 4);
	memset(key + 4, 'v', 400);
	memcpy(key + 404, "/c", 2);
	putn(&f->b, key, 406, S("child"), 5, 5);
	apply(f, 5);
	putn(&f->b, key, 404, S("val2"), 6, 6);
	apply(f, 6);
	only_entry(f->t, TREE_ROOT_INO, name);
	snprintf(path, sizeof(path), "%s/%s", name, NAMES_VALUE);
	uint64_t v2 = ino_of(f->t, path);
	/* Regression (fixed): same heap overflow as test_value_and_prefix_long_name, with a
	 * 255-byte name. */
	deln(&f->b, key, 406, 7);
	apply(f, 7);
	struct node_attr a = attr_of(f->t, name);
	assert_int_equal(a.kind, NODE_FILE);
	assert_int_equal(a.ino, v2);
	assert_keyn(f->t, v2, key, 404);
	assert_value(f->t, v2, "val2");
}

static void test_outside_prefix(void **state)
{
	struct fx *f = *state;
	struct tree_stats st;

	put(&f->b, "other/x", "no", 1, 1);
	put(&f->b, "ap", "no", 2, 2);
	put(&f->b, "app", "no", 3, 3);
	put(&f->b, "apq/x", "no", 4, 4);
	put(&f->b, "APP/x", "no", 5, 5);
	put(&f->b, "xapp/x", "no", 6, 6);
	put(&f->b, "app/in", "yes", 7, 7);
	del(&f->b, "other/y", 99);
	apply(f, 1);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("in"));
	tree_stats(f->t, &st);
	assert_int_equal(st.files, 1);
	assert_int_equal(st.bytes, 3);
	/* The batch still brings the mirror to the store revision it carries. */
	assert_int_equal(tree_revision(f->t), 99);

	/* The prefix itself: a marker for the root, or with a value, file "%". */
	put(&f->b, "app/", "", 100, 100);
	apply(f, 2);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("in"));
	put(&f->b, "app/", "root value", 101, 100);
	apply(f, 3);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("in", "%"));
	assert_key(f->t, ino_of(f->t, "%"), "app/");
	del(&f->b, "app/", 102);
	apply(f, 4);
	assert_entries(f->t, TREE_ROOT_INO, NAMES("in"));
	assert_int_equal(tree_getattr(f->t, TREE_ROOT_INO, &(struct node_attr){0}), 0);
}

/* ------------------------------------------------------------ readdir */

/* Read a whole directory two entries per call while keys come and go in between. */
static void test_readdir_resume(void **state)
{
	struct fx *f = *state;
	char key[64];
	int64_t rev = 1;

	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "app/dir/e%02d", i);
		put(&f->b, key, "v", rev, rev);
		rev++;
	}
	apply(f, 1);
	uint64_t dir = ino_of(f->t, "dir");
	static const int victims[] = {3, 5, 10, 20, 28, 29};

	struct listing l = {.limit = 2};
	uint64_t off = 0;
	for (int step = 0;; step++) {
		size_t before = l.n;
		l.taken = 0;
		assert_int_equal(tree_readdir(f->t, dir, off, false, collect, &l), 0);
		if (l.n == before)
			break;
		assert_true(l.n - before <= 2);
		for (size_t i = before; i < l.n; i++) {
			assert_true(l.next[i] > off);
			off = l.next[i];
		}
		/* Churn for a while (then let the listing end): new, deleted, short-lived keys. */
		if (step >= 12)
			continue;
		snprintf(key, sizeof(key), "app/dir/n%02d", step);
		put(&f->b, key, "new", rev, rev);
		rev++;
		if ((size_t)step < ARRAY_SIZE(victims)) {
			snprintf(key, sizeof(key), "app/dir/e%02d", victims[step]);
			del(&f->b, key, rev++);
		}
		if (step > 2) {
			snprintf(key, sizeof(key), "app/dir/n%02d", step - 2);
			del(&f->b, key, rev++);
		}
		apply(f, step + 2);
		assert_true(step < 100);
	}
	assert_true(l.n >= 2);
	assert_string_equal(l.names[0], ".");
	assert_string_equal(l.names[1], "..");
	for (size_t i = 0; i < l.n; i++)
		if (listing_count(&l, l.names[i]) != 1)
			fail_msg("\"%s\" listed %zu times", l.names[i],
				 listing_count(&l, l.names[i]));
	for (int i = 0; i < 30; i++) {
		bool victim = false;
		for (size_t v = 0; v < ARRAY_SIZE(victims); v++)
			victim |= victims[v] == i;
		snprintf(key, sizeof(key), "e%02d", i);
		if (!victim && listing_count(&l, key) != 1)
			fail_msg("\"%s\" existed throughout but was listed %zu times", key,
				 listing_count(&l, key));
	}
	listing_free(&l);
}

/* Resuming from any offset a listing handed out gives exactly the rest of it. */
static void test_readdir_offsets(void **state)
{
	struct fx *f = *state;
	char key[64];

	for (int i = 0; i < 12; i++) {
		snprintf(key, sizeof(key), "app/f%02d", i);
		put(&f->b, key, "v", i + 1, i + 1);
	}
	apply(f, 1);
	struct listing all;
	list_dir(f->t, TREE_ROOT_INO, false, &all);
	assert_int_equal(all.n, 14);
	assert_int_equal(all.next[0], 1);
	assert_int_equal(all.next[1], 2);
	for (size_t k = 0; k < all.n; k++) {
		struct listing rest = {0};
		uint64_t off = all.next[k];
		assert_int_equal(tree_readdir(f->t, TREE_ROOT_INO, off, false, collect, &rest), 0);
		assert_int_equal(rest.n, all.n - k - 1);
		for (size_t i = 0; i < rest.n; i++) {
			assert_string_equal(rest.names[i], all.names[k + 1 + i]);
			assert_int_equal(rest.next[i], all.next[k + 1 + i]);
			assert_int_equal(rest.attr[i].ino, all.attr[k + 1 + i].ino);
		}
		listing_free(&rest);
	}
	/* A callback that takes nothing gets nothing counted and ends the listing. */
	struct listing none = {.limit = 0};
	none.limit = 1;
	none.taken = 1;
	assert_int_equal(tree_readdir(f->t, TREE_ROOT_INO, 0, false, collect, &none), 0);
	assert_int_equal(none.n, 0);
	listing_free(&none);
	listing_free(&all);
}

/* readdirplus counts a lookup for each entry it hands out, and only for those. */
static void test_readdirplus_counts(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	struct listing l;

	put(&f->b, "app/d/f1", "one", 1, 1);
	put(&f->b, "app/d/f2", "two", 2, 2);
	apply(f, 1);
	uint64_t d = ino_of(f->t, "d");
	uint64_t f1 = ino_of(f->t, "d/f1"), f2 = ino_of(f->t, "d/f2");

	list_dir(f->t, d, true, &l);
	assert_int_equal(l.n, 4);
	listing_free(&l);
	list_dir(f->t, d, true, &l);
	listing_free(&l);
	l = (struct listing){.limit = 3}; /* ".", "..", f1 */
	assert_int_equal(tree_readdir(f->t, d, 0, true, collect, &l), 0);
	assert_int_equal(l.n, 3);
	listing_free(&l);

	del(&f->b, "app/d/f1", 3);
	del(&f->b, "app/d/f2", 4);
	apply(f, 2);
	assert_gone(f->t, "d");
	/* "." is not an entry handed out: the directory was not counted. */
	assert_int_equal(tree_getattr(f->t, d, &a), -ENOENT);
	/* f1 was counted three times, f2 twice. */
	assert_int_equal(tree_getattr(f->t, f1, &a), 0);
	assert_int_equal(a.nlink, 0);
	assert_value(f->t, f1, "one");
	assert_value(f->t, f2, "two");
	tree_forget(f->t, f2, 1);
	assert_int_equal(tree_getattr(f->t, f2, &a), 0);
	tree_forget(f->t, f2, 1);
	assert_int_equal(tree_getattr(f->t, f2, &a), -ENOENT);
	tree_forget(f->t, f1, 2);
	assert_int_equal(tree_getattr(f->t, f1, &a), 0);
	tree_forget(f->t, f1, 1);
	assert_int_equal(tree_getattr(f->t, f1, &a), -ENOENT);
	struct blob *b = NULL;
	assert_int_equal(tree_read(f->t, f1, &b, &chk), -ENOENT);
}

/* A plain readdir counts nothing. */
static void test_readdir_counts_nothing(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	struct listing l;

	put(&f->b, "app/g", "x", 1, 1);
	apply(f, 1);
	uint64_t g = ino_of(f->t, "g");
	list_dir(f->t, TREE_ROOT_INO, false, &l);
	listing_free(&l);
	del(&f->b, "app/g", 2);
	apply(f, 2);
	assert_int_equal(tree_getattr(f->t, g, &a), -ENOENT);
}

/* ------------------------------------------------------------ orphans */

static void test_orphan(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	struct node_info info;
	struct blob *b = NULL;

	put(&f->b, "app/o", "last", 1, 1);
	apply(f, 1);
	uint64_t o = hold(f->t, "o");
	del(&f->b, "app/o", 2);
	apply(f, 2);

	assert_gone(f->t, "o");
	assert_value(f->t, o, "last");
	assert_int_equal(tree_getattr(f->t, o, &a), 0);
	assert_int_equal(a.nlink, 0);
	assert_int_equal(a.size, 4);
	/* It has no key any more, and nothing written to it would reach the store. */
	assert_int_equal(tree_info(f->t, o, &info), 0);
	assert_null(info.key);
	assert_false(info.has_meta);
	assert_int_equal(info.state, TREE_LOCAL);

	/* The key coming back is a new file; the orphan keeps the old value. */
	put(&f->b, "app/o", "new", 3, 3);
	apply(f, 3);
	uint64_t o2 = ino_of(f->t, "o");
	assert_int_not_equal(o2, o);
	assert_value(f->t, o, "last");
	assert_value(f->t, o2, "new");

	tree_forget(f->t, o, 1);
	assert_int_equal(tree_getattr(f->t, o, &a), -ENOENT);
	assert_int_equal(tree_read(f->t, o, &b, &chk), -ENOENT);
	assert_value(f->t, o2, "new");

	/* Counts add up and forgetting more than was looked up is harmless. */
	uint64_t h = hold(f->t, "o");
	hold(f->t, "o");
	del(&f->b, "app/o", 4);
	apply(f, 4);
	tree_forget(f->t, h, 1);
	assert_int_equal(tree_getattr(f->t, h, &a), 0);
	tree_forget(f->t, h, 5);
	assert_int_equal(tree_getattr(f->t, h, &a), -ENOENT);
}

static void test_orphan_dir(void **state)
{
	struct fx *f = *state;
	struct node_attr a;

	put(&f->b, "app/od/f", "v", 1, 1);
	apply(f, 1);
	uint64_t od = hold(f->t, "od");
	del(&f->b, "app/od/f", 2);
	apply(f, 2);
	assert_gone(f->t, "od");
	assert_int_equal(tree_getattr(f->t, od, &a), 0);
	assert_int_equal(a.kind, NODE_DIR);
	assert_int_equal(a.nlink, 0);
	assert_entries(f->t, od, NO_NAMES);
	assert_int_equal(tree_lookup(f->t, od, "f", &a), -ENOENT);
	tree_forget(f->t, od, 1);
	assert_int_equal(tree_getattr(f->t, od, &a), -ENOENT);
}

/* ------------------------------------------------------------ invalidations */

/* Only what the kernel has looked up (and the root) is ever invalidated. */
static void test_inval_known_only(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/top", "t", 1, 1);
	put(&f->b, "app/d/leaf", "l", 2, 2);
	apply(f, 1);
	must_find(&f->inv, INVAL_ENTRY, TREE_ROOT_INO, 0, "top");
	must_find(&f->inv, INVAL_ENTRY, TREE_ROOT_INO, 0, "d");
	assert_int_equal(count_inval(&f->inv, INVAL_ENTRY), 2); /* not "leaf": d is unknown */
	/* New files are unknown; only the root's cached listing is dropped. */
	must_find(&f->inv, INVAL_INODE, 0, TREE_ROOT_INO, NULL);
	assert_int_equal(count_inval(&f->inv, INVAL_INODE), 1);
	assert_int_equal(count_inval(&f->inv, INVAL_DELETE), 0);

	uint64_t d = hold(f->t, "d");
	put(&f->b, "app/d/leaf2", "l2", 3, 3);
	apply(f, 2);
	must_find(&f->inv, INVAL_ENTRY, d, 0, "leaf2");
	must_find(&f->inv, INVAL_INODE, 0, d, NULL); /* d's listing */
	assert_int_equal(f->inv.n, 2);

	/* A content change of a file nobody looked up needs no invalidation. */
	put(&f->b, "app/d/leaf", "l-2", 4, 2);
	apply(f, 3);
	assert_int_equal(f->inv.n, 0);

	/* A file the kernel knows is gated (see test_gate_order). */
	uint64_t leaf = hold(f->t, "d/leaf");
	put(&f->b, "app/d/leaf", "l-3", 5, 2);
	apply(f, 4);
	must_find(&f->inv, INVAL_INODE, 0, leaf, NULL);
	assert_int_equal(count_inval(&f->inv, INVAL_INODE), 2);
	must_find(&f->inv, INVAL_PROBE, 0, leaf, NULL);
	assert_int_equal(count_inval(&f->inv, INVAL_GATE), 1);
	assert_int_equal(f->inv.n, 5);

	uint64_t leaf2 = ino_of(f->t, "d/leaf2");
	del(&f->b, "app/d/leaf2", 6);
	apply(f, 5);
	must_find(&f->inv, INVAL_DELETE, d, leaf2, "leaf2");
	must_find(&f->inv, INVAL_INODE, 0, d, NULL);
	assert_int_equal(f->inv.n, 2);

	/* Turning a known file into a directory replaces its name. */
	put(&f->b, "app/top/sub", "s", 7, 7);
	apply(f, 6);
	must_find(&f->inv, INVAL_ENTRY, TREE_ROOT_INO, 0, "top");

	/* With no list given (initial load), nothing is reported. */
	struct timespec now = at(7);
	put(&f->b, "app/d/leaf", "l-4", 8, 2);
	assert_int_equal(tree_apply(f->t, &f->b, &now, NULL), 0);
	kv_batch_clear(&f->b);
	assert_value(f->t, leaf, "l-4");
}

static void test_resync_known(void **state)
{
	struct fx *f = *state;
	struct kv_batch snap;
	struct timespec now = at(200);

	put(&f->b, "app/a", "A", 1, 1);
	put(&f->b, "app/b", "B", 2, 2);
	put(&f->b, "app/c", "C", 3, 3);
	apply(f, 100);
	uint64_t a = hold(f->t, "a"), b = hold(f->t, "b"), c = hold(f->t, "c");

	kv_batch_init(&snap);
	put(&snap, "app/a", "A", 1, 1);
	put(&snap, "app/b", "B2", 5, 2);
	put(&snap, "app/d", "D", 6, 6);
	put(&snap, "other/z", "Z", 7, 7);
	snap.revision = 10;
	change_list_clear(&f->inv);
	assert_int_equal(tree_resync(f->t, &snap, &now, &f->inv), 0);
	split_replays(f);
	kv_batch_clear(&snap);

	struct node_attr aa = attr_of(f->t, "a");
	assert_int_equal(aa.ino, a);
	assert_int_equal(aa.mtime.tv_sec, 100);
	assert_int_equal(ino_of(f->t, "b"), b);
	assert_gone(f->t, "c");
	assert_value(f->t, c, "C"); /* orphan: the kernel still holds it */
	assert_entries(f->t, TREE_ROOT_INO, NAMES("a", "b", "d"));
	assert_int_equal(tree_revision(f->t), 10);

	must_find(&f->inv, INVAL_INODE, 0, b, NULL);
	must_find(&f->inv, INVAL_DELETE, TREE_ROOT_INO, c, "c");
	must_find(&f->inv, INVAL_ENTRY, TREE_ROOT_INO, 0, "d");
	/* The unchanged key keeps its cached pages and names. */
	assert_int_equal(find_inval(&f->inv, INVAL_INODE, 0, a, NULL), -1);
	assert_int_equal(find_inval(&f->inv, INVAL_ENTRY, TREE_ROOT_INO, 0, "a"), -1);
	assert_int_equal(find_inval(&f->inv, INVAL_ENTRY, TREE_ROOT_INO, 0, "b"), -1);
	assert_int_equal(count_inval(&f->inv, INVAL_ENTRY), 1);
	assert_int_equal(count_inval(&f->inv, INVAL_DELETE), 1);

	/* b and d changed together: gated like any multi-file change. */
	ssize_t g = must_find(&f->inv, INVAL_GATE, 0, 0, NULL);
	assert_value(f->t, b, "B"); /* previous value until the gate opens */
	tree_open_gate(f->t, f->inv.v[g].ino);
	assert_value(f->t, b, "B2");
	assert_int_equal(attr_of(f->t, "b").mtime.tv_sec, 200);
	assert_value(f->t, ino_of(f->t, "d"), "D");
}

/* The same resync one level down, with the directory unknown and then known. */
static void test_resync_subdir(void **state)
{
	struct fx *f = *state;
	struct timespec now = at(200);
	struct kv_batch snap;

	for (int known = 0; known < 2; known++) {
		put(&f->b, "app/sub/a", "A", 1, 1);
		put(&f->b, "app/sub/b", "B", 2, 2);
		put(&f->b, "app/sub/c", "C", 3, 3);
		apply(f, 100);
		uint64_t sub = known ? hold(f->t, "sub") : ino_of(f->t, "sub");
		uint64_t b = ino_of(f->t, "sub/b"), c = ino_of(f->t, "sub/c");

		kv_batch_init(&snap);
		put(&snap, "app/sub/a", "A", 1, 1);
		put(&snap, "app/sub/b", "B2", 5, 2);
		put(&snap, "app/sub/d", "D", 6, 6);
		snap.revision = 10;
		change_list_clear(&f->inv);
		assert_int_equal(tree_resync(f->t, &snap, &now, &f->inv), 0);
		split_replays(f);
		split_replays(f);
		kv_batch_clear(&snap);

		if (known) {
			must_find(&f->inv, INVAL_ENTRY, sub, 0, "d");
			must_find(&f->inv, INVAL_DELETE, sub, c, "c");
			assert_int_equal(count_inval(&f->inv, INVAL_ENTRY), 1);
			assert_int_equal(count_inval(&f->inv, INVAL_DELETE), 1);
			/* No file was looked up: only sub's listing, once. */
			must_find(&f->inv, INVAL_INODE, 0, sub, NULL);
			assert_int_equal(count_inval(&f->inv, INVAL_INODE), 1);
		} else {
			assert_int_equal(count_inval(&f->inv, INVAL_ENTRY), 0);
			assert_int_equal(count_inval(&f->inv, INVAL_DELETE), 0);
			assert_int_equal(count_inval(&f->inv, INVAL_INODE), 0);
		}
		tree_open_gate(f->t, f->inv.v[must_find(&f->inv, INVAL_GATE, 0, 0, NULL)].ino);
		assert_int_equal(ino_of(f->t, "sub/b"), b);
		assert_value(f->t, b, "B2");
		assert_gone(f->t, "sub/c");
		assert_entries(f->t, sub, NAMES("a", "b", "d"));

		/* Empty the store for the next round. */
		kv_batch_init(&snap);
		assert_int_equal(tree_resync(f->t, &snap, &now, NULL), 0);
		assert_entries(f->t, TREE_ROOT_INO, NO_NAMES);
		if (known)
			tree_forget(f->t, sub, 1);
	}
}

/* A snapshot after an index reset may go backwards; any difference wins. */
static void test_resync_differences(void **state)
{
	struct fx *f = *state;
	struct timespec now = at(300);
	struct kv_batch snap;

	put(&f->b, "app/back", "new", 50, 40);
	put(&f->b, "app/samerev", "one", 51, 51);
	put(&f->b, "app/reborn", "r", 52, 52);
	put(&f->b, "app/m/", "", 53, 53);
	put(&f->b, "app/gone/", "", 54, 54);
	put(&f->b, "app/x/y", "y", 55, 55);
	apply(f, 100);
	uint64_t back = ino_of(f->t, "back"), same = ino_of(f->t, "samerev");
	uint64_t reborn = ino_of(f->t, "reborn"), m = ino_of(f->t, "m");

	kv_batch_init(&snap);
	put(&snap, "app/back", "older", 45, 40);  /* lower revision, other value */
	put(&snap, "app/samerev", "two", 51, 51); /* same revision, other value */
	put(&snap, "app/reborn", "r", 60, 60);	  /* other life */
	put(&snap, "app/m/", "", 53, 53);	  /* marker confirmed */
	del(&snap, "app/x/y", 99);		  /* deletes in a snapshot mean nothing */
	snap.revision = 70;
	assert_int_equal(tree_resync(f->t, &snap, &now, NULL), 0);
	kv_batch_clear(&snap);

	assert_int_equal(ino_of(f->t, "back"), back);
	assert_value(f->t, back, "older");
	assert_int_equal(ino_of(f->t, "samerev"), same);
	assert_value(f->t, same, "two");
	assert_true(ino_of(f->t, "reborn") > reborn);
	assert_int_equal(ino_of(f->t, "m"), m);
	assert_entries(f->t, m, NO_NAMES);
	assert_gone(f->t, "gone");
	assert_gone(f->t, "x");
	assert_entries(f->t, TREE_ROOT_INO, NAMES("back", "samerev", "reborn", "m"));
	assert_int_equal(tree_revision(f->t), 70);
}

/* ------------------------------------------------------------ keys under a prefix */

struct seen_keys {
	char text[512];
};

static int collect_key(void *ctx, const char *key, size_t klen)
{
	struct seen_keys *k = ctx;
	size_t n = strlen(k->text);

	snprintf(k->text + n, sizeof(k->text) - n, "%s%.*s", n ? " " : "", (int)klen, key);
	return 0;
}

static const char *keys_under(struct tree *t, const char *sub)
{
	static struct seen_keys k;

	k.text[0] = '\0';
	assert_int_equal(tree_keys_under(t, sub, strlen(sub), collect_key, &k), 0);
	return k.text;
}

static void test_keys_under(void **state)
{
	struct fx *f = *state;
	struct node_attr a;

	put(&f->b, "app/x", "1", 1, 1);
	put(&f->b, "app/x/a", "2", 2, 2);
	put(&f->b, "app/x/b/", "", 3, 3); /* a directory's own key */
	put(&f->b, "app/xy", "4", 4, 4);
	put(&f->b, "app/y/z", "5", 5, 5);
	apply(f, 100);
	/* In the mirror's order (directory slots), and only whole matches of the prefix. */
	assert_string_equal(keys_under(f->t, "x/"), "app/x/a app/x/b/");
	assert_string_equal(keys_under(f->t, "x"), "app/x app/x/a app/x/b/ app/xy");
	assert_string_equal(keys_under(f->t, "y"), "app/y/z");
	assert_string_equal(keys_under(f->t, "y/z"), "app/y/z");
	assert_string_equal(keys_under(f->t, "z"), "");
	/* A file created here and not committed is not the store's. */
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "y", &a), 0);
	bool arm;
	struct node_attr c;
	assert_int_equal(tree_create(f->t, a.ino, "new", true, 0644, &c, &arm), 0);
	assert_string_equal(keys_under(f->t, "y/"), "app/y/z");
}

/* ------------------------------------------------------------ gates */

static void test_gate_order(void **state)
{
	struct fx *f = *state;
	struct node_attr a;

	put(&f->b, "app/x", "x1", 1, 1);
	put(&f->b, "app/y", "y1", 2, 2);
	put(&f->b, "app/w", "w1", 3, 3);
	apply(f, 100);
	uint64_t x = hold(f->t, "x"), y = hold(f->t, "y"), w = hold(f->t, "w");

	put(&f->b, "app/x", "x2-longer", 4, 1);
	put(&f->b, "app/z", "z", 5, 5);
	del(&f->b, "app/w", 6);
	put(&f->b, "app/y", "y2", 7, 2);
	apply_gated(f, 200);

	/*
	 * ENTRY z, DELETE w (batch order), INODE root (its listing) | INODE x,
	 * INODE y | READS | INODE x, INODE y | PROBE x, PROBE y, PROBE z | GATE:
	 * z too, which the kernel may look up while the gate is closed.
	 */
	const struct inval *v = f->inv.v;
	static const enum inval_kind order[] = {INVAL_ENTRY, INVAL_DELETE, INVAL_INODE, INVAL_INODE,
						INVAL_INODE, INVAL_READS,  INVAL_INODE, INVAL_INODE,
						INVAL_PROBE, INVAL_PROBE,  INVAL_PROBE, INVAL_GATE};
	if (f->inv.n != sizeof(order) / sizeof(order[0]))
		dump_invals(&f->inv);
	assert_int_equal(f->inv.n, sizeof(order) / sizeof(order[0]));
	for (size_t i = 0; i < f->inv.n; i++)
		assert_int_equal(v[i].kind, order[i]);
	assert_int_equal(v[0].parent, TREE_ROOT_INO);
	assert_string_equal(v[0].name, "z");
	assert_int_equal(v[0].namelen, 1);
	assert_int_equal(v[1].parent, TREE_ROOT_INO);
	assert_int_equal(v[1].ino, w);
	assert_string_equal(v[1].name, "w");
	assert_int_equal(v[2].ino, TREE_ROOT_INO);
	assert_int_equal(v[3].ino, x);
	assert_int_equal(v[4].ino, y);
	uint64_t seq = v[5].ino;
	assert_true(seq > 0);
	assert_int_equal(v[11].ino, seq);
	assert_int_equal(v[6].ino, x);
	assert_int_equal(v[7].ino, y);
	assert_int_equal(v[8].ino, x);
	assert_int_equal(v[9].ino, y);
	uint64_t z = v[10].ino;
	assert_int_equal(ino_of(f->t, "z"), z);
	assert_true(tree_is_known(f->t, x));
	assert_false(tree_is_known(f->t, z));

	/* Gate closed: the previous values, without blocking, and uncacheable attributes. */
	assert_value(f->t, x, "x1");
	assert_value(f->t, y, "y1");
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "x", &a), 0);
	tree_forget(f->t, a.ino, 1);
	assert_true(a.transient);
	assert_int_equal(a.size, 2);
	assert_int_equal(a.mtime.tv_sec, 100);
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "z", &a), 0);
	assert_true(tree_is_known(f->t, z)); /* its probe is due now */
	tree_forget(f->t, a.ino, 1);
	assert_false(tree_is_known(f->t, z));
	assert_true(a.transient);

	tree_open_gate(f->t, seq);
	assert_value(f->t, x, "x2-longer");
	assert_value(f->t, y, "y2");
	assert_value(f->t, ino_of(f->t, "z"), "z");
	a = attr_of(f->t, "x");
	assert_false(a.transient);
	assert_int_equal(a.size, 9);
	assert_int_equal(a.mtime.tv_sec, 200);
	assert_int_equal(tree_getattr(f->t, x, &a), 0);
	assert_false(a.transient);
	assert_int_equal(a.size, 9);

	/* One file the kernel knows: gated too, for its size (see tree.h). */
	put(&f->b, "app/x", "x3", 8, 1);
	apply_gated(f, 300);
	assert_int_equal(count_inval(&f->inv, INVAL_GATE), 1);
	must_find(&f->inv, INVAL_PROBE, 0, x, NULL);
	assert_value(f->t, x, "x2-longer");
	open_gates(f);
	assert_value(f->t, x, "x3");
	assert_false(attr_of(f->t, "x").transient);

	/* One file nobody looked up: nothing to keep together, no gate. */
	put(&f->b, "app/z", "z2", 9, 5);
	apply_gated(f, 400);
	assert_int_equal(count_inval(&f->inv, INVAL_GATE), 0);
	assert_value(f->t, ino_of(f->t, "z"), "z2");
}

/*
 * The phases of a gate (tree.h): closed, reads (a read returns the new value
 * and says which size the kernel must hold first; attributes still show the
 * previous value), sizes (attributes show the new value), open.
 */
static void test_gate_phases(void **state)
{
	struct fx *f = *state;
	struct read_check rc;
	struct node_attr a;
	struct blob *b;

	put(&f->b, "app/x", "x1", 1, 1);
	apply(f, 100);
	uint64_t x = hold(f->t, "x");
	put(&f->b, "app/x", "x2-longer", 2, 1);
	apply_gated(f, 200);
	uint64_t seq = f->inv.v[must_find(&f->inv, INVAL_GATE, 0, 0, NULL)].ino;

	/* Closed. */
	assert_int_equal(tree_read(f->t, x, &b, &rc), 0);
	assert_memory_equal(b->data, "x1", 2);
	assert_false(rc.need);
	blob_unref(b);
	assert_int_equal(tree_getattr(f->t, x, &a), 0);
	assert_true(a.transient);
	assert_int_equal(a.size, 2);

	/*
	 * Reads: until the second page invalidation of x returned with no read
	 * of the previous value meanwhile, reads still return it (no wait: that
	 * invalidation may be waiting for this read's page).
	 */
	tree_gate_reads(f->t, seq);
	uint32_t served = tree_prev_served(f->t, x);
	assert_int_equal(tree_read(f->t, x, &b, &rc), 0);
	assert_memory_equal(b->data, "x1", 2);
	assert_false(rc.need);
	blob_unref(b);
	/* That read may have come after the kernel looked: send it again. */
	assert_false(tree_pages_dropped(f->t, x, seq, served, false));
	served = tree_prev_served(f->t, x);
	/* Another gate's word on x changes nothing: reads still return x1. */
	assert_true(tree_pages_dropped(f->t, x, seq + 1, served, false));
	assert_int_equal(tree_read(f->t, x, &b, &rc), 0);
	assert_memory_equal(b->data, "x1", 2);
	blob_unref(b);
	served = tree_prev_served(f->t, x);
	assert_true(tree_pages_dropped(f->t, x, seq, served, false));
	assert_int_equal(tree_read(f->t, x, &b, &rc), 0);
	assert_int_equal(b->len, 9);
	blob_unref(b);
	assert_true(rc.need);
	assert_int_equal(rc.size, 9);
	assert_int_equal(rc.mtime.tv_sec, 200);
	/* What to serve if the kernel never takes the new size: the old value, as it was. */
	assert_non_null(rc.prev);
	assert_int_equal(rc.prev->len, 2);
	assert_memory_equal(rc.prev->data, "x1", 2);
	assert_int_equal(rc.prev_mtime.tv_sec, 100);
	assert_int_equal(rc.prev_rev, 1);
	tree_served_prev(f->t, x, &rc);
	blob_unref(rc.prev);
	assert_int_equal(tree_getattr(f->t, x, &a), 0);
	assert_true(a.transient);
	assert_int_equal(a.size, 2);
	assert_int_equal(a.mtime.tv_sec, 100);

	tree_gate_sizes(f->t, seq);
	assert_int_equal(tree_getattr(f->t, x, &a), 0);
	assert_false(a.transient);
	assert_int_equal(a.size, 9);
	assert_int_equal(a.mtime.tv_sec, 200);
	assert_int_equal(tree_read(f->t, x, &b, &rc), 0);
	blob_unref(b);
	blob_unref(rc.prev);
	assert_true(rc.need);

	tree_open_gate(f->t, seq);
	assert_int_equal(tree_read(f->t, x, &b, &rc), 0);
	assert_int_equal(b->len, 9);
	blob_unref(b);
	assert_false(rc.need);
	assert_null(rc.prev);
	assert_true(tree_wait_gates(f->t, 0));
}

static void test_gate_sequence(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/x", "x1", 1, 1);
	put(&f->b, "app/y", "y1", 2, 2);
	apply(f, 100);
	uint64_t x = hold(f->t, "x"), y = hold(f->t, "y");

	put(&f->b, "app/x", "x2", 3, 1);
	put(&f->b, "app/y", "y2", 3, 2);
	apply_gated(f, 200);
	uint64_t g1 = f->inv.v[must_find(&f->inv, INVAL_GATE, 0, 0, NULL)].ino;
	put(&f->b, "app/x", "x3", 4, 1);
	put(&f->b, "app/y", "y3", 4, 2);
	apply_gated(f, 300);
	uint64_t g2 = f->inv.v[must_find(&f->inv, INVAL_GATE, 0, 0, NULL)].ino;
	assert_true(g2 > g1);

	assert_value(f->t, x, "x1");
	assert_int_equal(attr_of(f->t, "x").mtime.tv_sec, 100);
	tree_open_gate(f->t, g1);
	/* Gate 2 still covers x and y: the value from before both stays. */
	assert_value(f->t, x, "x1");
	assert_value(f->t, y, "y1");
	assert_true(attr_of(f->t, "y").transient);
	tree_open_gate(f->t, g2);
	assert_value(f->t, x, "x3");
	assert_value(f->t, y, "y3");
	assert_false(attr_of(f->t, "y").transient);
	assert_int_equal(attr_of(f->t, "y").mtime.tv_sec, 300);

	/* Opening an old gate again changes nothing. */
	tree_open_gate(f->t, g1);
	assert_value(f->t, x, "x3");

	/* Gated files that nobody looked up still switch together. */
	put(&f->b, "app/p", "p1", 5, 5);
	put(&f->b, "app/q", "q1", 5, 5);
	apply(f, 400);
	uint64_t p = ino_of(f->t, "p");
	put(&f->b, "app/p", "p2", 6, 5);
	put(&f->b, "app/q", "q2", 6, 5);
	apply_gated(f, 500);
	ssize_t gi = must_find(&f->inv, INVAL_GATE, 0, 0, NULL);
	assert_int_equal(count_inval(&f->inv, INVAL_INODE), 0);
	assert_value(f->t, p, "p1");
	tree_open_gate(f->t, f->inv.v[gi].ino);
	assert_value(f->t, p, "p2");
}

/*
 * A watch response can carry several revisions of the same key: that is still
 * one file changing, which needs neither a gate nor a second invalidation.
 */
static void test_gate_one_file_twice(void **state)
{
	struct fx *f = *state;

	put(&f->b, "app/x", "x1", 1, 1);
	apply(f, 100);
	uint64_t x = hold(f->t, "x");
	put(&f->b, "app/x", "x2", 2, 1);
	put(&f->b, "app/x", "x3", 3, 1);
	apply_gated(f, 200);
	/*
	 * Regression (fixed): finish() once counted changes, not files, so this batch emitted
	 * its invalidations twice. One file: one invalidation before the reads phase, one
	 * after, one probe.
	 */
	if (count_inval(&f->inv, INVAL_INODE) != 2)
		dump_invals(&f->inv);
	assert_int_equal(count_inval(&f->inv, INVAL_GATE), 1);
	assert_int_equal(count_inval(&f->inv, INVAL_INODE), 2);
	assert_int_equal(count_inval(&f->inv, INVAL_PROBE), 1);
	must_find(&f->inv, INVAL_INODE, 0, x, NULL);
	assert_value(f->t, x, "x1");
	open_gates(f);
	assert_value(f->t, x, "x3");
}

/* Without an invalidation list (loading before the mount) nothing is gated. */
static void test_gate_not_reported(void **state)
{
	struct fx *f = *state;
	struct timespec now = at(100);

	put(&f->b, "app/x", "x1", 1, 1);
	put(&f->b, "app/y", "y1", 2, 2);
	assert_int_equal(tree_apply(f->t, &f->b, &now, NULL), 0);
	kv_batch_clear(&f->b);
	uint64_t x = hold(f->t, "x");
	put(&f->b, "app/x", "x2", 3, 1);
	put(&f->b, "app/y", "y2", 3, 2);
	assert_int_equal(tree_apply(f->t, &f->b, &now, NULL), 0);
	kv_batch_clear(&f->b);
	assert_value(f->t, x, "x2");
	assert_false(attr_of(f->t, "x").transient);
}

/* ------------------------------------------------------------ stats and scale */

static void test_stats(void **state)
{
	struct fx *f = *state;
	struct tree_stats st;

	tree_stats(f->t, &st);
	assert_int_equal(st.files, 0);
	assert_int_equal(st.dirs, 1);
	assert_int_equal(st.bytes, 0);

	put(&f->b, "app/a", "12345", 1, 1);
	put(&f->b, "app/b/c", "xy", 2, 2);
	apply(f, 1);
	tree_stats(f->t, &st);
	assert_int_equal(st.files, 2);
	assert_int_equal(st.dirs, 2);
	assert_int_equal(st.bytes, 7);

	put(&f->b, "app/a", "1", 3, 1);
	apply(f, 2);
	tree_stats(f->t, &st);
	assert_int_equal(st.bytes, 3);

	put(&f->b, "app/a/z", "", 4, 4);
	put(&f->b, "app/e/", "", 5, 5);
	apply(f, 3);
	tree_stats(f->t, &st);
	assert_int_equal(st.files, 3); /* a's value, c, z */
	assert_int_equal(st.dirs, 4);  /* root, a, b, e */
	assert_int_equal(st.bytes, 3);

	del(&f->b, "app/a", 6);
	del(&f->b, "app/a/z", 6);
	del(&f->b, "app/b/c", 6);
	del(&f->b, "app/e/", 6);
	apply(f, 4);
	tree_stats(f->t, &st);
	assert_int_equal(st.files, 0);
	assert_int_equal(st.dirs, 1);
	assert_int_equal(st.bytes, 0);
}

static void test_many_keys(void **state)
{
	struct fx *f = *state;
	enum { N = 20000, DIRS = 100 };
	char key[64], val[16];

	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "app/g%02d/k%05d", i % DIRS, i);
		snprintf(val, sizeof(val), "v%05d", i);
		put(&f->b, key, val, i + 1, i + 1);
	}
	apply(f, 1);
	struct tree_stats st;
	tree_stats(f->t, &st);
	assert_int_equal(st.files, N);
	assert_int_equal(st.dirs, DIRS + 1);
	assert_int_equal(st.bytes, 6 * N);
	for (int i = 0; i < N; i++) {
		snprintf(key, sizeof(key), "g%02d/k%05d", i % DIRS, i);
		snprintf(val, sizeof(val), "v%05d", i);
		assert_value(f->t, ino_of(f->t, key), val);
	}
	struct listing l;
	list_dir(f->t, ino_of(f->t, "g07"), false, &l);
	assert_int_equal(l.n, 2 + N / DIRS);
	listing_free(&l);
	assert_int_equal(tree_revision(f->t), N);
}

/*
 * The watch may bring the echo of a put committed here after this host has
 * already deleted the key (mkdir d; rmdir d): history, not a new key. A put
 * newer than the delete is news again.
 */
static void test_local_delete_outlives_older_echo(void **state)
{
	struct fx *f = *state;
	struct tree_txn x;
	uint64_t pending = 0;
	char *saved;

	put(&f->b, PFX "x", "1", 2, 2);
	f->b.revision = 2;
	apply(f, 1);
	change_list_clear(&f->inv);
	assert_int_equal(tree_unlink(f->t, TREE_ROOT_INO, "x", &pending, &f->inv), 0);
	assert_int_not_equal(pending, 0);
	assert_int_equal(tree_delete_begin(f->t, pending, false, &x), 0);
	assert_int_equal(tree_txn_end(f->t, &x, 0, 4, &saved, NULL, &f->inv), 0);
	tree_txn_clear(&x);
	assert_gone(f->t, "x");

	put(&f->b, PFX "x", "3", 3, 2); /* committed here before the delete */
	f->b.revision = 3;
	apply(f, 2);
	assert_gone(f->t, "x");
	del(&f->b, PFX "x", 4); /* the delete's own echo */
	f->b.revision = 4;
	apply(f, 3);
	put(&f->b, PFX "x", "5", 5, 5);
	f->b.revision = 5;
	apply(f, 4);
	assert_int_equal(attr_of(f->t, "x").size, 1);
	assert_int_equal(tree_revision(f->t), 5);
}

/*
 * rm deletes what the mirror holds, not what this host last read (issue 9):
 * the guard of the deferred delete, and of the check unlink asks at once, is
 * the mirror's revision at the unlink. A change that arrives after the unlink
 * survives the delete (it is refused); one the store did not answer is sent
 * again (the name stays hidden).
 */
static void test_unlink_guards(void **state)
{
	struct fx *f = *state;
	struct tree_txn x;
	uint64_t pending = 0;
	struct blob *b;
	char *saved;

	put(&f->b, PFX "x", "1", 2, 2);
	apply(f, 1);
	uint64_t ino = hold(f->t, "x");
	assert_int_equal(tree_read(f->t, ino, &b, &chk), 0); /* this host read revision 2 */
	blob_unref(b);
	put(&f->b, PFX "x", "2", 3, 2); /* another host's change */
	apply(f, 2);

	assert_int_equal(tree_unlink(f->t, TREE_ROOT_INO, "x", &pending, &f->inv), 0);
	assert_int_equal(pending, ino);
	assert_int_equal(tree_delete_begin(f->t, pending, true, &x), 0);
	assert_int_equal(x.nops, 1);
	assert_int_equal(x.ops[0].kind, KV_CHECK);
	assert_int_equal(x.ops[0].expect, 3);
	assert_int_equal(tree_txn_end(f->t, &x, 0, 0, &saved, NULL, &f->inv), 0);
	tree_txn_clear(&x);
	assert_gone(f->t, "x"); /* checked: still hidden */

	assert_int_equal(tree_delete_begin(f->t, pending, false, &x), 0);
	assert_int_equal(x.ops[0].kind, KV_DELETE);
	assert_int_equal(x.ops[0].expect, 3);
	/* The store did not answer: still hidden, and sent again. */
	assert_int_equal(tree_txn_end(f->t, &x, -ECONNREFUSED, 0, &saved, NULL, &f->inv),
			 -ECONNREFUSED);
	tree_txn_clear(&x);
	assert_gone(f->t, "x");
	assert_int_equal(tree_delete_begin(f->t, pending, false, &x), 0);
	/* A change that came after the unlink wins: the name is back with it. */
	assert_int_equal(tree_txn_end(f->t, &x, -ESTALE, 0, &saved, NULL, &f->inv), -ESTALE);
	tree_txn_clear(&x);
	assert_int_equal(ino_of(f->t, "x"), ino);

	/* A failed check brings the name back at once, whatever the reason. */
	assert_int_equal(tree_unlink(f->t, TREE_ROOT_INO, "x", &pending, &f->inv), 0);
	assert_int_equal(tree_delete_begin(f->t, pending, true, &x), 0);
	assert_int_equal(tree_txn_end(f->t, &x, -ECONNREFUSED, 0, &saved, NULL, &f->inv),
			 -ECONNREFUSED);
	tree_txn_clear(&x);
	assert_int_equal(ino_of(f->t, "x"), ino);
}

/*
 * A create of a name whose deferred delete is on its way to the store must
 * not take over the key being deleted (its commit would then be refused and
 * its bytes set aside): it waits for the answer (issue 15).
 */
static void test_create_while_delete_in_flight(void **state)
{
	struct fx *f = *state;
	struct tree_txn x;
	struct node_attr a;
	uint64_t pending = 0;
	bool arm;
	char *saved;

	put(&f->b, PFX "x", "1", 2, 2);
	apply(f, 1);
	assert_int_equal(tree_unlink(f->t, TREE_ROOT_INO, "x", &pending, &f->inv), 0);
	assert_int_equal(tree_delete_begin(f->t, pending, false, &x), 0);
	assert_int_equal(tree_create(f->t, TREE_ROOT_INO, "x", false, 0644, &a, &arm),
			 -EINPROGRESS);
	assert_int_equal(tree_txn_end(f->t, &x, 0, 3, &saved, NULL, &f->inv), 0);
	tree_txn_clear(&x);
	assert_int_equal(tree_create(f->t, TREE_ROOT_INO, "x", false, 0644, &a, &arm), 0);
	tree_forget(f->t, a.ino, 1);
	assert_true(arm);
	assert_int_not_equal(a.ino, pending);
	/* A new key: its commit expects none. */
	assert_int_equal(tree_commit_begin(f->t, a.ino, &x), 0);
	assert_int_equal(x.ops[0].expect, KV_ABSENT);
	tree_txn_clear(&x);
}

/*
 * A descriptor open on a key that is unlinked keeps what was written through it until its
 * last close, as POSIX has it; none of it is committed (issue 15).
 */
static void test_unlink_keeps_open_session(void **state)
{
	struct fx *f = *state;
	struct tree_txn x;
	struct blob *b;
	uint64_t pending = 0;
	bool arm, update;

	put(&f->b, PFX "x", "old", 4, 2);
	apply(f, 1);
	struct node_attr a;
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "x", &a), 0); /* an open descriptor */
	uint64_t ino = a.ino;
	assert_int_equal(tree_write(f->t, ino, "new bytes", 9, 0, 1 << 20, &arm, &update), 9);
	assert_int_equal(tree_unlink(f->t, TREE_ROOT_INO, "x", &pending, &f->inv), 0);
	assert_int_equal(pending, ino);
	assert_int_equal(tree_write(f->t, ino, "!", 1, 9, 1 << 20, &arm, &update), 1);
	assert_false(arm);
	assert_int_equal(tree_read(f->t, ino, &b, &chk), 0);
	assert_int_equal(b->len, 10);
	assert_memory_equal(b->data, "new bytes!", 10);
	blob_unref(b);
	assert_int_equal(tree_commit_begin(f->t, ino, &x), -ENODATA);
	tree_txn_clear(&x);
	/* Deleted in the store: the orphan still reads its bytes until the kernel lets go. */
	assert_int_equal(tree_delete_begin(f->t, ino, false, &x), 0);
	char *saved;
	assert_int_equal(tree_txn_end(f->t, &x, 0, 3, &saved, NULL, &f->inv), 0);
	tree_txn_clear(&x);
	assert_int_equal(tree_lookup(f->t, TREE_ROOT_INO, "x", &a), -ENOENT);
	assert_int_equal(tree_read(f->t, ino, &b, &chk), 0);
	assert_memory_equal(b->data, "new bytes!", 10);
	blob_unref(b);
	tree_forget(f->t, ino, 1);
}

/* chmod, chown and utime change the ctime and leave the mtime as it was (issue 15). */
static void test_status_change_time(void **state)
{
	struct fx *f = *state;
	struct tree_setattr sa = {.set_mtime = true, .mtime = {978307200, 0}}; /* 2001 */
	struct node_attr a;
	bool arm;

	put(&f->b, PFX "x", "1", 2, 2);
	apply(f, 1);
	uint64_t ino = ino_of(f->t, "x");
	assert_int_equal(tree_setattr(f->t, ino, &sa, 1 << 20, &a, &arm), 0);
	assert_int_equal(a.mtime.tv_sec, 978307200);
	assert_true(a.ctime.tv_sec > 978307200);
	struct timespec before = a.ctime;
	sa = (struct tree_setattr){.set_mode = true, .mode = 0600};
	assert_int_equal(tree_setattr(f->t, ino, &sa, 1 << 20, &a, &arm), 0);
	assert_int_equal(a.mtime.tv_sec, 978307200);
	assert_true(a.ctime.tv_sec > before.tv_sec ||
		    (a.ctime.tv_sec == before.tv_sec && a.ctime.tv_nsec >= before.tv_nsec));
	assert_int_equal(a.mode, 0600 | TREE_MODE_SET);
	sa = (struct tree_setattr){.set_mode = true, .mode = 0};
	assert_int_equal(tree_setattr(f->t, ino, &sa, 1 << 20, &a, &arm), 0);
	assert_int_equal(a.mode, TREE_MODE_SET); /* 0000, not "the default" */
}

/* The mount's root has no %value: its key would be the prefix, which no mount shows. */
static void test_no_value_file_at_root(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	bool arm;

	put(&f->b, PFX "d/x", "1", 2, 2);
	apply(f, 1);
	assert_int_equal(tree_create(f->t, TREE_ROOT_INO, "%value", false, 0644, &a, &arm),
			 -EINVAL);
	assert_int_equal(tree_create(f->t, ino_of(f->t, "d"), "%value", false, 0644, &a, &arm), 0);
	tree_forget(f->t, a.ino, 1);
}

/*
 * Every file whose content the store changed is handed on for inotify
 * watchers, known to the kernel or not, once per batch; deletes and echoes
 * of what the mirror has already are not news.
 */
static void test_replays(void **state)
{
	struct fx *f = *state;

	put(&f->b, PFX "a", "1", 2, 2);
	put(&f->b, PFX "d/b", "1", 2, 2);
	apply(f, 1);
	assert_int_equal(f->nreplays, 2);
	uint64_t a = ino_of(f->t, "a"), b = ino_of(f->t, "d/b");
	assert_true((f->replays[0] == a && f->replays[1] == b) ||
		    (f->replays[0] == b && f->replays[1] == a));

	/* One file changed twice in a batch: one replay. */
	put(&f->b, PFX "a", "2", 3, 2);
	put(&f->b, PFX "a", "3", 4, 2);
	apply(f, 2);
	assert_int_equal(f->nreplays, 1);
	assert_int_equal(f->replays[0], a);

	/* The same revision again (an echo): nothing. */
	put(&f->b, PFX "a", "3", 4, 2);
	apply(f, 3);
	assert_int_equal(f->nreplays, 0);

	/* A delete: the kernel is told, watchers of the directory are not. */
	del(&f->b, PFX "d/b", 5);
	apply(f, 4);
	assert_int_equal(f->nreplays, 0);

	/* A resync reports what changed only. */
	struct kv_batch snap;
	struct timespec now = at(5);
	kv_batch_init(&snap);
	put(&snap, PFX "a", "3", 4, 2);
	put(&snap, PFX "c", "new", 6, 6);
	snap.revision = 6;
	change_list_clear(&f->inv);
	assert_int_equal(tree_resync(f->t, &snap, &now, &f->inv), 0);
	split_replays(f);
	assert_int_equal(f->nreplays, 1);
	assert_int_equal(f->replays[0], ino_of(f->t, "c"));
	kv_batch_clear(&snap);
}

static void test_path(void **state)
{
	struct fx *f = *state;
	char *p;

	put(&f->b, PFX "d/sub/f", "1", 2, 2);
	apply(f, 1);
	assert_int_equal(tree_path(f->t, ino_of(f->t, "d/sub/f"), "/mnt", &p), 0);
	assert_string_equal(p, "/mnt/d/sub/f");
	free(p);
	assert_int_equal(tree_path(f->t, ino_of(f->t, "d"), NULL, &p), 0);
	assert_string_equal(p, "d");
	free(p);
	assert_int_equal(tree_path(f->t, TREE_ROOT_INO, "/mnt", &p), 0);
	assert_string_equal(p, "/mnt/");
	free(p);
	assert_int_equal(tree_path(f->t, 999, "/mnt", &p), -ENOENT);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

/* An optional argument selects tests by name pattern, e.g. "test_gate*". */
int main(int argc, char **argv)
{
	if (argc > 1)
		cmocka_set_test_filter(argv[1]);

	const struct CMUnitTest tests[] = {
		T(test_put_creates_file),
		T(test_errors),
		T(test_update),
		T(test_update_new_life),
		T(test_delete_collapses),
		T(test_value_and_prefix),
		T(test_value_and_prefix_reverse),
		T(test_dir_marker),
		T(test_dir_marker_over_file),
		T(test_empty_segments),
		T(test_other_prefixes),
		T(test_escaping_roundtrip),
		T(test_long_segment),
		T(test_long_segment_value_and_prefix),
		T(test_outside_prefix),
		T(test_readdir_resume),
		T(test_readdir_offsets),
		T(test_readdirplus_counts),
		T(test_readdir_counts_nothing),
		T(test_orphan),
		T(test_orphan_dir),
		T(test_inval_known_only),
		T(test_resync_known),
		T(test_resync_subdir),
		T(test_resync_differences),
		T(test_keys_under),
		T(test_gate_order),
		T(test_gate_sequence),
		T(test_gate_phases),
		T(test_gate_one_file_twice),
		T(test_gate_not_reported),
		T(test_stats),
		T(test_many_keys),
		T(test_local_delete_outlives_older_echo),
		T(test_unlink_guards),
		T(test_create_while_delete_in_flight),
		T(test_replays),
		T(test_unlink_keeps_open_session),
		T(test_no_value_file_at_root),
		T(test_status_change_time),
		T(test_path),
		/* Last: it corrupts the heap while the bug it exposes is there. */
		T(test_value_and_prefix_long_name),
		T(test_long_segment_value_born_inside),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
