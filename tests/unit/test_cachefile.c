/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Tests the cache file (cachefile.c) and the tree's export of the store's view (tree_export). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "cachefile.h"
#include "kv.h"
#include "tree.h"
#include "util.h"

#define PFX "app/"

static const struct cachefile_hdr HDR = {.store = "etcd", .prefix = PFX, .plen = 4};

static void put(struct kv_batch *b, const char *key, size_t klen, const char *val, size_t vlen,
		int64_t mod, uint64_t flags)
{
	struct kv_meta m = {.mod_rev = mod, .create_rev = mod - 1, .version = 3, .flags = flags};
	struct blob *v = blob_from(val, vlen);

	assert_non_null(v);
	assert_int_equal(kv_batch_push(b, key, klen, v, &m), 0);
}

/* A batch with the odd cases: NUL bytes, empty values, "dir/" keys, all 64 bits. In key order. */
static void sample(struct kv_batch *b)
{
	kv_batch_init(b);
	put(b, S("app/a"), S("hello\n"), 10, 0);
	put(b, S("app/dir/"), S(""), 11, 0);
	/* A "dir/" key with a value: the file "%" in directory e. */
	put(b, S("app/e/"), S("v"), 14, 0);
	put(b, S("app/n\0ul"), S("bin\0ary"), 12, UINT64_MAX);
	/* A value and a prefix: x/%value next to x/y. */
	put(b, S("app/x"), S("top"), 15, 0);
	put(b, S("app/x/y/z"), S(""), 13, 42);
	b->revision = 99;
}

/* The sample, encoded under HDR into *buf (malloc'd); returns its length. */
static size_t encoded_sample(char **buf)
{
	struct kv_batch in;
	size_t len;

	sample(&in);
	assert_int_equal(cachefile_encode(&HDR, &in, buf, &len), 0);
	kv_batch_clear(&in);
	return len;
}

static void assert_same(const struct kv_batch *a, const struct kv_batch *b)
{
	assert_int_equal(a->n, b->n);
	assert_int_equal(a->revision, b->revision);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->v[i].klen, b->v[i].klen);
		assert_memory_equal(a->v[i].key, b->v[i].key, a->v[i].klen);
		assert_int_equal(a->v[i].val->len, b->v[i].val->len);
		assert_memory_equal(a->v[i].val->data, b->v[i].val->data, a->v[i].val->len);
		assert_int_equal(b->v[i].val->data[b->v[i].val->len], '\0');
		assert_memory_equal(&a->v[i].meta, &b->v[i].meta, sizeof(a->v[i].meta));
	}
}

static void test_round_trip(void **state)
{
	struct kv_batch in, out;
	struct cachefile_hdr h = HDR;
	char *buf, why[200];
	size_t len;
	int64_t at = 0;

	sample(&in);
	h.saved_at = 1764584400;
	assert_int_equal(cachefile_encode(&h, &in, &buf, &len), 0);
	kv_batch_init(&out);
	assert_int_equal(cachefile_decode(buf, len, &HDR, &out, &at, why, sizeof(why)), 0);
	assert_same(&in, &out);
	assert_int_equal(at, 1764584400);
	kv_batch_clear(&out);
	free(buf);

	/* An empty tree is a tree too. */
	kv_batch_clear(&in);
	assert_int_equal(cachefile_encode(&h, &in, &buf, &len), 0);
	assert_int_equal(cachefile_decode(buf, len, &HDR, &out, &at, why, sizeof(why)), 0);
	assert_int_equal(out.n, 0);
	free(buf);
}

/* A tree of one store or prefix never stands in for another. */
static void test_refuses_other_store_or_prefix(void **state)
{
	struct kv_batch out;
	char *buf, why[200];
	size_t len = encoded_sample(&buf);
	int64_t at;

	kv_batch_init(&out);
	struct cachefile_hdr other = HDR;
	other.store = "consul";
	assert_int_equal(cachefile_decode(buf, len, &other, &out, &at, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "store"));
	other = HDR;
	other.prefix = "apq/";
	assert_int_equal(cachefile_decode(buf, len, &other, &out, &at, why, sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "prefix"));
	other.prefix = "app";
	other.plen = 3;
	assert_int_equal(cachefile_decode(buf, len, &other, &out, &at, why, sizeof(why)), -EINVAL);
	assert_int_equal(out.n, 0);
	free(buf);
}

/* Every truncation and every flipped bit is refused, with a reason, and leaves b empty. */
static void test_damage_is_refused(void **state)
{
	struct kv_batch out;
	char *buf, why[200];
	size_t len = encoded_sample(&buf);
	int64_t at;

	kv_batch_init(&out);
	for (size_t n = 0; n < len; n++) {
		why[0] = '\0';
		assert_int_equal(cachefile_decode(buf, n, &HDR, &out, &at, why, sizeof(why)),
				 -EINVAL);
		assert_true(why[0] != '\0');
		assert_int_equal(out.n, 0);
	}
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			buf[i] ^= (char)(1 << bit);
			if (cachefile_decode(buf, len, &HDR, &out, &at, why, sizeof(why)) !=
			    -EINVAL)
				fail_msg("byte %zu bit %d flipped: accepted", i, bit);
			assert_int_equal(out.n, 0);
			buf[i] ^= (char)(1 << bit);
		}
	}
	free(buf);
}

/* A file whose checksum is right but whose header lies is still refused, never trusted. */
static void test_lying_header_is_refused(void **state)
{
	struct kv_batch in, out;
	char *buf, why[200];
	size_t len;
	int64_t at;

	sample(&in);
	size_t n = in.n;
	in.n = 2; /* encode fewer records than... */
	assert_int_equal(cachefile_encode(&HDR, &in, &buf, &len), 0);
	in.n = n;
	/* ...the count claims, then fix the checksum up as a forger would. */
	buf[32] = 4;
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < len - 8; i++) {
		h ^= (unsigned char)buf[i];
		h *= 1099511628211ULL;
	}
	for (int i = 0; i < 8; i++)
		buf[len - 8 + i] = (char)(h >> (8 * i));
	kv_batch_init(&out);
	assert_int_equal(cachefile_decode(buf, len, &HDR, &out, &at, why, sizeof(why)), -EINVAL);
	assert_int_equal(out.n, 0);
	free(buf);
	kv_batch_clear(&in);
}

/* Entries of directory dir, "." and ".." left out. */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	for (struct dirent *e = readdir(d); e; e = readdir(d))
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

static void test_write_and_load(void **state)
{
	char dir[] = "/tmp/cfgfs-cachefile-XXXXXX", path[100], why[200];
	struct kv_batch in, out;
	struct stat st;
	char *buf;
	size_t len;
	int64_t at;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/app.cache", dir);
	kv_batch_init(&out);
	assert_int_equal(cachefile_load(path, &HDR, &out, &at, why, sizeof(why)), -ENOENT);

	sample(&in);
	assert_int_equal(cachefile_encode(&HDR, &in, &buf, &len), 0);
	assert_int_equal(cachefile_write(path, buf, len), 0);
	assert_int_equal(stat(path, &st), 0);
	/* Values may be secrets. */
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(cachefile_load(path, &HDR, &out, &at, why, sizeof(why)), 0);
	assert_same(&in, &out);
	kv_batch_clear(&out);

	/* Replacing keeps no temporary file behind. */
	assert_int_equal(cachefile_write(path, buf, len / 2), 0);
	assert_int_equal(cachefile_load(path, &HDR, &out, &at, why, sizeof(why)), -EINVAL);
	assert_int_equal(entries(dir), 1);

	/* A directory that cannot take the file: an error, nothing left behind. */
	char missing[120];
	snprintf(missing, sizeof(missing), "%s/missing/app.cache", dir);
	assert_int_equal(cachefile_write(missing, buf, len), -ENOENT);
	assert_int_equal(entries(dir), 1);

	free(buf);
	kv_batch_clear(&in);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

/*
 * Saved through its small buffer, a tree is the same bytes as encoded in
 * memory: records that cross the buffer's end, values larger than it.
 */
static void test_save_streams_the_same_bytes(void **state)
{
	char dir[] = "/tmp/cfgfs-cachefile-XXXXXX", path[100], why[200];
	struct kv_batch in, out;
	char *buf, *file;
	size_t len;
	int64_t at;
	struct stat st;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/app.cache", dir);
	kv_batch_init(&in);
	in.revision = 77;
	for (int i = 0; i < 5000; i++) {
		char key[64];
		int klen = snprintf(key, sizeof(key), PFX "k%05d", i);
		/* Now and then a value of 1 MiB, larger than the buffer. */
		size_t vlen = i % 1000 == 7 ? 1u << 20 : (size_t)(i % 300);
		struct blob *v = blob_new(vlen);
		assert_non_null(v);
		memset(v->data, 'a' + i % 26, vlen);
		v->data[vlen] = '\0';
		struct kv_meta m = {
			.mod_rev = i + 1, .create_rev = i + 1, .version = 1, .flags = i};
		assert_int_equal(kv_batch_push(&in, key, (size_t)klen, v, &m), 0);
	}
	assert_int_equal(cachefile_encode(&HDR, &in, &buf, &len), 0);
	assert_int_equal(cachefile_save(path, &HDR, &in), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal((size_t)st.st_size, len);
	file = malloc(len);
	assert_non_null(file);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(file, 1, len, f), len);
	fclose(f);
	assert_memory_equal(file, buf, len);
	kv_batch_init(&out);
	assert_int_equal(cachefile_load(path, &HDR, &out, &at, why, sizeof(why)), 0);
	assert_same(&in, &out);
	free(file);
	free(buf);
	kv_batch_clear(&in);
	kv_batch_clear(&out);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
}

/* The tree exports what the store has, and a tree loaded from that export is the same. */
static void test_tree_export_round_trip(void **state)
{
	struct tree *t = tree_new(S(PFX)), *t2 = tree_new(S(PFX));
	struct kv_batch in, out, again;
	struct timespec now = {1000, 0};

	sample(&in);
	assert_int_equal(tree_resync(t, &in, &now, NULL), 0);
	kv_batch_init(&out);
	assert_int_equal(tree_export(t, &out), 0);
	/* The sample is in key order already, and so is the export. */
	assert_same(&in, &out);
	assert_int_equal(tree_count_keys(t), out.n);

	assert_int_equal(tree_resync(t2, &out, &now, NULL), 0);
	kv_batch_init(&again);
	assert_int_equal(tree_export(t2, &again), 0);
	assert_same(&in, &again);

	kv_batch_clear(&in);
	kv_batch_clear(&out);
	kv_batch_clear(&again);
	tree_free(t);
	tree_free(t2);
}

/* A file created here and not committed yet is not the store's: it is not exported. */
static void test_tree_export_leaves_out_local_files(void **state)
{
	struct tree *t = tree_new(S(PFX));
	struct kv_batch in, out;
	struct timespec now = {1000, 0};
	struct node_attr a;
	bool arm, update;

	sample(&in);
	assert_int_equal(tree_resync(t, &in, &now, NULL), 0);
	assert_int_equal(tree_create(t, TREE_ROOT_INO, "new", false, 0644, &a, &arm), 0);
	assert_int_equal(tree_create(t, TREE_ROOT_INO, ".a.swp", false, 0644, &a, &arm), 0);
	/* An edit of a key in progress: the store still has the old bytes. */
	assert_int_equal(tree_lookup(t, TREE_ROOT_INO, "a", &a), 0);
	assert_int_equal(tree_write(t, a.ino, "changed", 7, 0, 1 << 20, &arm, &update), 7);
	kv_batch_init(&out);
	assert_int_equal(tree_export(t, &out), 0);
	assert_same(&in, &out);
	assert_int_equal(tree_count_keys(t), out.n); /* the local files are not counted either */
	kv_batch_clear(&in);
	kv_batch_clear(&out);
	tree_free(t);
}

struct pair_writer {
	struct tree *t;
	bool stop; /* atomic */
	int rounds;
};

/* Two keys changed together in every batch: a copy holding them unequal mixed two moments. */
static void *apply_pairs(void *arg)
{
	struct pair_writer *w = arg;
	struct timespec now = {2000, 0};

	/* Until told to stop (bounded all the same), so that every copy overlaps changes. */
	for (int i = 1; i <= 2000000 && !__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE); i++) {
		struct kv_batch b;
		char v[32];
		int n = snprintf(v, sizeof(v), "%d", i);
		kv_batch_init(&b);
		put(&b, S("app/a-pair"), v, (size_t)n, 30000 + i, 0);
		put(&b, S("app/z-pair"), v, (size_t)n, 30000 + i, 0);
		assert_int_equal(tree_apply(w->t, &b, &now, NULL), 0);
		kv_batch_clear(&b);
		__atomic_store_n(&w->rounds, i, __ATOMIC_RELEASE);
	}
	return NULL;
}

static const struct kv *find_key(const struct kv_batch *b, const char *key, size_t klen)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->v[i].klen == klen && memcmp(b->v[i].key, key, klen) == 0)
			return &b->v[i];
	return NULL;
}

/*
 * A copy of a large tree gives way to the watcher's changes (it starts over)
 * rather than making them wait: every copy is still one moment of the tree,
 * with all its keys, whatever the writer did meanwhile.
 */
static void test_tree_export_is_one_moment_while_changes_land(void **state)
{
	struct tree *t = tree_new(S(PFX));
	struct kv_batch in;
	struct timespec now = {1000, 0};
	char key[32];

	/* The pair first and last: a copy reaches the two at different times. */
	kv_batch_init(&in);
	put(&in, S("app/a-pair"), S("0"), 30000, 0);
	for (int i = 0; i < 20000; i++) {
		int n = snprintf(key, sizeof(key), "app/k/%05d", i);
		put(&in, key, (size_t)n, S("v"), 2 + i, 0);
	}
	put(&in, S("app/z-pair"), S("0"), 30000, 0);
	in.revision = 30000;
	assert_int_equal(tree_resync(t, &in, &now, NULL), 0);
	kv_batch_clear(&in);

	/* Static: a failed assertion leaves this function with the writer still running. */
	static struct pair_writer w;
	w = (struct pair_writer){.t = t};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, apply_pairs, &w), 0);
	/*
	 * The writer under way before the first copy: valgrind runs one thread at
	 * a time, and let 20 copies pass before the writer's first change.
	 */
	for (int i = 0; i < 10000 && !__atomic_load_n(&w.rounds, __ATOMIC_ACQUIRE); i++)
		usleep(1000);
	for (int copies = 0; copies < 20; copies++) {
		struct kv_batch out;
		kv_batch_init(&out);
		assert_int_equal(tree_export(t, &out), 0);
		assert_int_equal(out.n, 20002);
		const struct kv *a = find_key(&out, S("app/a-pair")),
				*b = find_key(&out, S("app/z-pair"));
		assert_non_null(a);
		assert_non_null(b);
		assert_int_equal(a->val->len, b->val->len);
		assert_memory_equal(a->val->data, b->val->data, a->val->len);
		/* The copy's revision is the pair's. */
		assert_int_equal(out.revision, a->meta.mod_rev);
		kv_batch_clear(&out);
	}
	__atomic_store_n(&w.stop, true, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	assert_true(__atomic_load_n(&w.rounds, __ATOMIC_ACQUIRE) > 0);
	tree_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_tree_export_is_one_moment_while_changes_land),
		cmocka_unit_test(test_refuses_other_store_or_prefix),
		cmocka_unit_test(test_damage_is_refused),
		cmocka_unit_test(test_lying_header_is_refused),
		cmocka_unit_test(test_write_and_load),
		cmocka_unit_test(test_save_streams_the_same_bytes),
		cmocka_unit_test(test_tree_export_round_trip),
		cmocka_unit_test(test_tree_export_leaves_out_local_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
