/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The threads between store and mirror, without a mount or a server: the
 * watcher and the writer over an in-memory store (store/mem.c), with the
 * tree's write path planning what they send.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bus.h"
#include "clock.h"
#include "mem.h"
#include "tree.h"
#include "util.h"
#include "watcher.h"
#include "writer.h"

/* Polls cond for at most 5 s: the threads work on their own. */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		int64_t end_ = mono_ms() + 5000;                                                   \
		while (!(cond) && mono_ms() < end_) {                                              \
			struct timespec ts_ = {0, 1000000};                                        \
			nanosleep(&ts_, NULL);                                                     \
		}                                                                                  \
		assert_true(cond);                                                                 \
	} while (0)

struct fx {
	struct store_cfg cfg;
	struct store *store;
	struct tree *tree;
	struct bus *bus;
	struct watcher *watcher;
	struct writer *writer;
	unsigned changes; /* atomic: what the bus saw published */
};

static void count(void *ctx, const struct change_list *l)
{
	struct fx *f = ctx;

	__atomic_add_fetch(&f->changes, 1, __ATOMIC_RELAXED);
}

/*
 * The sink: there is no kernel to tell, so a change's gates open at once and
 * its files count as delivered, as the notifier would do in a moment.
 */
static void deliver(void *ctx, struct change_list *l)
{
	struct fx *f = ctx;

	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].kind == INVAL_GATE)
			tree_open_gate(f->tree, l->v[i].ino);
	bus_delivered(f->bus, l->files, l->nfiles);
	change_list_clear(l);
}

static void put(struct fx *f, const char *key, const char *val)
{
	mem_store_set(f->store, key, val, strlen(val));
}

/* The store's value of key, malloc'd as a string; NULL when it has none. */
static char *stored(struct fx *f, const char *key)
{
	struct blob *b;
	struct kv_meta meta;

	if (mem_store_get(f->store, key, &b, &meta))
		return NULL;
	char *s = strndup(b->data, b->len);
	blob_unref(b);
	return s;
}

static bool stored_is(struct fx *f, const char *key, const char *want)
{
	char *s = stored(f, key);
	bool same = want ? s && strcmp(s, want) == 0 : s == NULL;

	free(s);
	return same;
}

/* The inode of a '/'-separated path below the root; 0 when there is none (lookups forgotten). */
static uint64_t ino_of(struct tree *t, const char *path)
{
	uint64_t ino = TREE_ROOT_INO;
	char *copy = strdup(path), *save = NULL;

	for (char *name = strtok_r(copy, "/", &save); name; name = strtok_r(NULL, "/", &save)) {
		struct node_attr a;
		if (tree_lookup(t, ino, name, &a)) {
			ino = 0;
			break;
		}
		tree_forget(t, a.ino, 1);
		ino = a.ino;
	}
	free(copy);
	return ino;
}

static bool value_is(struct tree *t, const char *path, const char *want)
{
	struct read_check chk;
	struct blob *b;
	uint64_t ino = ino_of(t, path);

	if (!ino || tree_read(t, ino, &b, &chk))
		return false;
	bool same = b->len == strlen(want) && memcmp(b->data, want, b->len) == 0;
	blob_unref(b);
	return same;
}

/* The mod revision the mirror holds for path, without reading it (a read moves the CAS base). */
static int64_t mod_rev_of(struct tree *t, const char *path)
{
	struct node_info info;
	uint64_t ino = ino_of(t, path);

	if (!ino || tree_info(t, ino, &info))
		return 0;
	free(info.key);
	return info.meta.mod_rev;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct kv_batch snap;
	struct timespec now;

	if (!f)
		return -1;
	f->cfg.url.prefix = strdup("app/");
	f->cfg.url.plen = 4;
	f->cfg.url.text = strdup("mem:///app");
	f->cfg.timeout_ms = 1000;
	if (mem_store_new(&f->cfg, &f->store))
		return -1;
	put(f, "app/a", "A1");
	put(f, "app/d/b", "B1");
	put(f, "other", "outside the prefix");
	f->tree = tree_new("app/", 4);
	kv_batch_init(&snap);
	assert_int_equal(f->store->ops->snapshot(f->store, &snap), 0);
	clock_gettime(CLOCK_REALTIME, &now);
	assert_int_equal(tree_resync(f->tree, &snap, &now, NULL), 0);
	int64_t rev = snap.revision;
	kv_batch_clear(&snap);
	f->bus = bus_new();
	struct bus_observer o = {.changed = count, .ctx = f};
	assert_int_equal(bus_observe(f->bus, &o), 0);
	bus_set_sink(f->bus, deliver, f);
	struct writer_cfg wc = {
		.tree = f->tree,
		.store = f->store,
		.mountpoint = "/nonexistent/cfgfs-test",
		.commit_delay_ms = 10,
		.delete_delay_ms = 50,
		.detach_delay_ms = 50,
		.bus = f->bus,
	};
	assert_int_equal(writer_start(&wc, &f->writer), 0);
	assert_int_equal(watcher_start(f->store, f->tree, rev, false, f->bus, &f->watcher), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	writer_stop(f->writer);
	watcher_stop(f->watcher);
	bus_free(f->bus);
	tree_free(f->tree);
	store_free(f->store);
	free(f->cfg.url.prefix);
	free(f->cfg.url.text);
	free(f);
	return 0;
}

/* The watcher applies another host's changes and publishes each one. */
static void test_watcher_follows_the_store(void **state)
{
	struct fx *f = *state;
	unsigned before = __atomic_load_n(&f->changes, __ATOMIC_RELAXED);

	put(f, "app/a", "A2");
	WAIT_FOR(value_is(f->tree, "a", "A2"));
	put(f, "app/new/deep", "N");
	WAIT_FOR(value_is(f->tree, "new/deep", "N"));
	mem_store_set(f->store, "app/d/b", NULL, 0);
	WAIT_FOR(ino_of(f->tree, "d") == 0);
	put(f, "other", "not ours");
	assert_true(__atomic_load_n(&f->changes, __ATOMIC_RELAXED) >= before + 3);
	WAIT_FOR(watcher_connected(f->watcher));
}

/*
 * The watch drops; while it is away the store moves on and compacts what the
 * watcher would need: it reads everything again, diffs, and keeps up.
 */
static void test_watcher_resyncs_after_compaction(void **state)
{
	struct fx *f = *state;

	WAIT_FOR(watcher_connected(f->watcher));
	mem_store_hold_watches(f->store, true);
	WAIT_FOR(!watcher_connected(f->watcher));
	put(f, "app/a", "A3");
	int64_t rev = mem_store_set(f->store, "app/c", "C", 1);
	mem_store_compact(f->store, rev);
	mem_store_hold_watches(f->store, false);
	WAIT_FOR(value_is(f->tree, "a", "A3") && value_is(f->tree, "c", "C"));
	put(f, "app/a", "A4");
	WAIT_FOR(value_is(f->tree, "a", "A4"));
}

/* fsync commits an edit of an existing key as one guarded put. */
static void test_fsync_commits(void **state)
{
	struct fx *f = *state;
	uint64_t a = ino_of(f->tree, "a");
	bool arm, update;
	unsigned commits = mem_store_commits(f->store);

	assert_int_equal(tree_write(f->tree, a, "A-local", 7, 0, 1 << 20, &arm, &update), 7);
	assert_true(arm && update);
	assert_int_equal(writer_fsync(f->writer, a), 0);
	assert_true(stored_is(f, "app/a", "A-local"));
	assert_int_equal(mem_store_commits(f->store), commits + 1);
	/* Nothing more to send: a second fsync costs nothing. */
	assert_int_equal(writer_fsync(f->writer, a), 0);
	assert_int_equal(mem_store_commits(f->store), commits + 1);
}

/*
 * fsync of a file that is not a key yet creates it before returning: 0 from fsync means
 * the store holds the bytes (issue 15); with the store down it fails to the caller.
 */
static void test_fsync_commits_a_new_file(void **state)
{
	struct fx *f = *state;
	struct node_attr a;
	bool arm, update;

	assert_int_equal(tree_create(f->tree, TREE_ROOT_INO, "fresh", true, 0644, &a, &arm), 0);
	assert_int_equal(tree_write(f->tree, a.ino, "new", 3, 0, 1 << 20, &arm, &update), 3);
	assert_true(stored_is(f, "app/fresh", NULL));
	assert_int_equal(writer_fsync(f->writer, a.ino), 0);
	assert_true(stored_is(f, "app/fresh", "new"));

	assert_int_equal(tree_create(f->tree, TREE_ROOT_INO, "down", true, 0644, &a, &arm), 0);
	assert_int_equal(tree_write(f->tree, a.ino, "lost?", 5, 0, 1 << 20, &arm, &update), 5);
	mem_store_fail_next(f->store, -ECONNREFUSED, 1);
	assert_int_equal(writer_fsync(f->writer, a.ino), -ECONNREFUSED);
	assert_true(stored_is(f, "app/down", NULL));

	/* An editor's swap file stays on this host: nothing to send, whatever fsync is asked. */
	unsigned commits = mem_store_commits(f->store);
	assert_int_equal(tree_create(f->tree, TREE_ROOT_INO, ".a.swp", true, 0644, &a, &arm), 0);
	assert_int_equal(tree_write(f->tree, a.ino, "b0VIM 9", 7, 0, 1 << 20, &arm, &update), 7);
	assert_int_equal(writer_fsync(f->writer, a.ino), 0);
	assert_int_equal(mem_store_commits(f->store), commits);
}

/*
 * An edit based on what this host read is refused when another host
 * changed the key since: the file shows the store's value again, and the
 * bytes are kept in a.rejected, which never reaches the store.
 */
static void test_conflict_keeps_the_bytes(void **state)
{
	struct fx *f = *state;
	uint64_t a = ino_of(f->tree, "a");
	struct read_check chk;
	struct blob *b;
	bool arm, update;

	assert_int_equal(tree_read(f->tree, a, &b, &chk), 0); /* this host reads A1 */
	blob_unref(b);
	int64_t remote = mem_store_set(f->store, "app/a", "A-remote", 8);
	WAIT_FOR(mod_rev_of(f->tree, "a") == remote);
	assert_int_equal(tree_write(f->tree, a, "mine!!!!", 8, 0, 1 << 20, &arm, &update), 8);
	assert_int_equal(writer_fsync(f->writer, a), -ESTALE);
	assert_true(stored_is(f, "app/a", "A-remote"));
	WAIT_FOR(value_is(f->tree, "a", "A-remote"));
	assert_true(value_is(f->tree, "a.rejected", "mine!!!!"));
	assert_true(stored_is(f, "app/a.rejected", NULL));
}

/* A store that does not answer: fsync fails at once and the file reverts. */
static void test_store_down(void **state)
{
	struct fx *f = *state;
	uint64_t a = ino_of(f->tree, "a");
	bool arm, update;

	mem_store_fail_next(f->store, -ECONNREFUSED, 1);
	assert_int_equal(tree_write(f->tree, a, "lost?", 5, 0, 1 << 20, &arm, &update), 5);
	assert_int_equal(writer_fsync(f->writer, a), -ECONNREFUSED);
	assert_true(value_is(f->tree, "a", "A1"));
	assert_true(value_is(f->tree, "a.rejected", "lost?"));
	assert_true(stored_is(f, "app/a", "A1"));
}

/* A rename is one transaction that moves what the mirror holds (issue 9). */
static void test_rename_is_one_transaction(void **state)
{
	struct fx *f = *state;
	struct change_list l;
	struct tree_txn x;
	uint64_t pending;
	bool arm;

	put(f, "app/a", "A-unseen"); /* another host's change, never read here */
	WAIT_FOR(value_is(f->tree, "a", "A-unseen"));
	unsigned commits = mem_store_commits(f->store);
	change_list_init(&l);
	writer_lock(f->writer);
	assert_int_equal(tree_rename_begin(f->tree, TREE_ROOT_INO, "a", TREE_ROOT_INO, "z", false,
					   &x, &pending, &arm, &l),
			 0);
	assert_int_equal(x.nops, 2);
	assert_int_equal(writer_send(f->writer, &x, NULL), 0);
	writer_unlock(f->writer);
	tree_txn_clear(&x);
	change_list_clear(&l);
	assert_int_equal(mem_store_commits(f->store), commits + 1);
	assert_true(stored_is(f, "app/z", "A-unseen"));
	assert_true(stored_is(f, "app/a", NULL));
	assert_true(value_is(f->tree, "z", "A-unseen"));

	/* A directory: every key under it in the same transaction. */
	change_list_init(&l);
	writer_lock(f->writer);
	assert_int_equal(tree_rename_begin(f->tree, TREE_ROOT_INO, "d", TREE_ROOT_INO, "e", false,
					   &x, &pending, &arm, &l),
			 0);
	assert_int_equal(writer_send(f->writer, &x, NULL), 0);
	writer_unlock(f->writer);
	tree_txn_clear(&x);
	change_list_clear(&l);
	assert_int_equal(mem_store_commits(f->store), commits + 2);
	assert_true(stored_is(f, "app/e/b", "B1"));
	assert_true(stored_is(f, "app/d/b", NULL));

	/* Onto an empty directory (its own "dir/" key): no key twice in the transaction. */
	put(f, "app/p/", "");
	put(f, "app/p/f", "F");
	put(f, "app/q/", "");
	WAIT_FOR(value_is(f->tree, "p/f", "F") && ino_of(f->tree, "q") != 0);
	change_list_init(&l);
	writer_lock(f->writer);
	assert_int_equal(tree_rename_begin(f->tree, TREE_ROOT_INO, "p", TREE_ROOT_INO, "q", false,
					   &x, &pending, &arm, &l),
			 0);
	for (size_t i = 0; i < x.nops; i++)
		for (size_t j = i + 1; j < x.nops; j++)
			assert_false(x.ops[i].klen == x.ops[j].klen &&
				     memcmp(x.ops[i].key, x.ops[j].key, x.ops[i].klen) == 0);
	assert_int_equal(writer_send(f->writer, &x, NULL), 0);
	writer_unlock(f->writer);
	tree_txn_clear(&x);
	change_list_clear(&l);
	assert_true(stored_is(f, "app/q/f", "F"));
	assert_true(stored_is(f, "app/q/", ""));
	assert_true(stored_is(f, "app/p/", NULL));
	assert_true(stored_is(f, "app/p/f", NULL));
}

/* mkdir puts "dir/", rmdir deletes it; unlink checks at once and deletes a moment later. */
static void test_mkdir_rmdir_unlink(void **state)
{
	struct fx *f = *state;
	struct change_list l;
	struct tree_txn x;
	struct node_attr a;
	uint64_t pending;

	writer_lock(f->writer);
	assert_int_equal(tree_mkdir_begin(f->tree, TREE_ROOT_INO, "m", 0755, &x), 0);
	assert_int_equal(writer_send(f->writer, &x, &a), 0);
	writer_unlock(f->writer);
	tree_txn_clear(&x);
	tree_forget(f->tree, a.ino, 1);
	assert_true(stored_is(f, "app/m/", ""));
	assert_int_equal(tree_mkdir_begin(f->tree, TREE_ROOT_INO, "m", 0755, &x), -EEXIST);

	writer_lock(f->writer);
	assert_int_equal(tree_rmdir_begin(f->tree, TREE_ROOT_INO, "m", &x), 0);
	assert_int_equal(writer_send(f->writer, &x, NULL), 0);
	writer_unlock(f->writer);
	tree_txn_clear(&x);
	assert_true(stored_is(f, "app/m/", NULL));

	change_list_init(&l);
	assert_int_equal(tree_unlink(f->tree, TREE_ROOT_INO, "a", &pending, &l), 0);
	change_list_clear(&l);
	assert_int_not_equal(pending, 0);
	assert_int_equal(writer_check(f->writer, pending), 0);
	assert_true(stored_is(f, "app/a", "A1")); /* not yet */
	writer_unlinked(f->writer, pending);
	WAIT_FOR(stored_is(f, "app/a", NULL));
}

/* An unlink while the store does not answer fails, and the name is back. */
static void test_unlink_while_down(void **state)
{
	struct fx *f = *state;
	struct change_list l;
	uint64_t pending;

	change_list_init(&l);
	assert_int_equal(tree_unlink(f->tree, TREE_ROOT_INO, "a", &pending, &l), 0);
	change_list_clear(&l);
	mem_store_fail_next(f->store, -ECONNREFUSED, 1);
	assert_int_equal(writer_check(f->writer, pending), -ECONNREFUSED);
	assert_int_not_equal(ino_of(f->tree, "a"), 0);
	assert_true(stored_is(f, "app/a", "A1"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_watcher_follows_the_store),
		T(test_watcher_resyncs_after_compaction),
		T(test_fsync_commits),
		T(test_fsync_commits_a_new_file),
		T(test_conflict_keeps_the_bytes),
		T(test_store_down),
		T(test_rename_is_one_transaction),
		T(test_mkdir_rmdir_unlink),
		T(test_unlink_while_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
