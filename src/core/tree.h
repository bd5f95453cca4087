/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror: the mounted key space as a tree of nodes with inode numbers; no FUSE, no network. */
#ifndef CFGFS_TREE_H
#define CFGFS_TREE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "change.h"
#include "kv.h"
#include "names.h"

/*
 * Locking: every function takes the tree's own rwlock and releases it before
 * returning, so callers never hold it across network I/O or a kernel notify.
 * Readers (lookup, getattr, read, readdir) share it; applying store changes
 * and forgetting inodes take it exclusively.
 *
 * Inode numbers come from a counter and are never reused. A node keeps its
 * number for the life of its key, including when the key's file moves
 * between "a" and "a/%value" because "a/..." keys come and go. A node that
 * leaves the tree while the kernel still holds it (lookup count > 0) stays
 * readable by inode number until the kernel forgets it.
 */

#define TREE_ROOT_INO 1

enum node_kind { NODE_DIR = 1, NODE_FILE = 2, NODE_LINK = 3 };

/* A consistent copy of a node's attributes, taken under the lock. */
struct node_attr {
	uint64_t ino;
	enum node_kind kind;
	uint64_t size; /* value length; entry count for directories */
	uint32_t nlink;
	struct timespec mtime; /* when the mirror saw this revision */
	struct timespec ctime; /* mtime, or a later status change made here */
	bool transient;	       /* a gate is closed: do not let the kernel cache these */
	uint32_t mode;	       /* bits set through the mount, with TREE_MODE_SET; 0: default */
	/* A session owns the key (a ZooKeeper ephemeral): a write outlives nothing, show it
	 * read-only. */
	bool owned;
};

/* A new, empty mirror of the keys under prefix (which ends in '/' or is empty). */
struct tree *tree_new(const char *prefix, size_t plen);

void tree_free(struct tree *t);

/* In a node's mode: the bits were set through the mount (0000 included), not the default. */
#define TREE_MODE_SET 0x10000u

/* What the mirror must know of the store's data model (see struct store_caps). */
struct tree_model {
	/*
	 * How the store counts a key's version, so that the metadata this host
	 * sets after its own commit is the store's: whether a put adds one, and
	 * a new key's version (etcd 1, ZooKeeper's dataVersion 0).
	 */
	bool counts_versions;
	int64_t first_version;
	enum names_style names; /* how key segments become file names */
	/* A file whose flags are not 0 belongs to a session (ZooKeeper's ephemeral owner). */
	bool owner_flags;
};

/* Default: etcd's model. Call before the mirror is loaded. */
void tree_set_model(struct tree *t, const struct tree_model *m);

/*
 * Apply one batch of store changes as a unit: every change lands before the
 * lock is released, so no reader sees half of a revision. Changes older than
 * what the mirror holds are ignored. The invalidations the kernel needs are
 * appended to out, for the caller to send after this returns.
 * Returns 0 or -ENOMEM (the mirror then holds a prefix of the batch).
 */
int tree_apply(struct tree *t, const struct kv_batch *b, const struct timespec *now,
	       struct change_list *out);

/*
 * Like tree_apply, for changes read when tree_local_epoch() was epoch: if a
 * local change was committed since, they may predate it, and a store that
 * does not say at which index a delete was committed (Consul) leaves no
 * tombstone to hold them back; then nothing is applied and 1 is returned.
 */
int tree_apply_since(struct tree *t, const struct kv_batch *b, uint64_t epoch,
		     const struct timespec *now, struct change_list *out);

/*
 * Make the mirror equal to a full snapshot (after a compaction or an index
 * reset): changed keys are updated, missing ones deleted, unchanged ones left
 * alone with their inode numbers and cached pages.
 */
int tree_resync(struct tree *t, const struct kv_batch *snap, const struct timespec *now,
		struct change_list *out);

/*
 * Gates up to seq enter the reads phase, then the sizes phase (see above):
 * from then on lookups and getattrs of their files give the new sizes.
 */
void tree_gate_reads(struct tree *t, uint64_t seq);
void tree_gate_sizes(struct tree *t, uint64_t seq);

/*
 * Whether the kernel holds inode ino (looked up and not forgotten). Asked
 * after tree_gate_sizes, false means no lookup gave it a gated file's
 * previous size: none needs making to take the new one.
 */
bool tree_is_known(struct tree *t, uint64_t ino);

/*
 * Open gates up to seq: waiting reads proceed. The notifier calls this when
 * it reaches INVAL_GATE; UINT64_MAX opens everything (shutdown).
 */
void tree_open_gate(struct tree *t, uint64_t seq);

/* Wait (at most ms) until every gate closed so far is open; false on timeout. */
bool tree_wait_gates(struct tree *t, unsigned ms);

/*
 * Like tree_resync, for a listing requested when tree_local_epoch() was
 * epoch: if a local change was committed since, the listing may not show it
 * yet and would undo it; then nothing is applied and 1 is returned.
 */
int tree_resync_since(struct tree *t, const struct kv_batch *snap, uint64_t epoch,
		      const struct timespec *now, struct change_list *out);

/* How many local changes have been committed to the store so far. */
uint64_t tree_local_epoch(struct tree *t);

/* Record that the store reported everything up to rev (never moves backwards). */
void tree_note_revision(struct tree *t, int64_t rev);

/* The store revision the mirror is known to be complete at. */
int64_t tree_revision(struct tree *t);

/* Find name in directory parent; on success counts one kernel lookup. 0, -ENOENT or -ENOTDIR. */
int tree_lookup(struct tree *t, uint64_t parent, const char *name, struct node_attr *out);

/* Attributes of ino; 0 or -ENOENT. Waits while ino's gate is closed. */
int tree_getattr(struct tree *t, uint64_t ino, struct node_attr *out);

/* The kernel dropped nlookup references to ino. */
void tree_forget(struct tree *t, uint64_t ino, uint64_t nlookup);

/*
 * The inodes the kernel holds (the root and every node it looked up and has
 * not forgotten), malloc'd into *out: for telling it that attributes it
 * cached no longer hold. 0 or -ENOMEM.
 */
int tree_known(struct tree *t, uint64_t **out, size_t *n);

/*
 * What a read must see the kernel hold before it may return its bytes: the
 * size and time of the value it returns (need false: nothing).
 */
struct read_check {
	bool need;
	uint64_t size;
	struct timespec mtime;
	/*
	 * The value before this change (a reference the caller drops), with
	 * its size and time: what to serve instead if the kernel still holds
	 * those after the wait (a host too slow for the wait's bound), so the
	 * bytes always match the size the kernel reads against. NULL: none.
	 */
	struct blob *prev;
	struct timespec prev_mtime;
	int64_t prev_rev;
};

/*
 * How many reads returned the previous value of file ino while its gate was
 * closed: taken before a page invalidation of it, for tree_pages_dropped.
 */
uint32_t tree_prev_served(struct tree *t, uint64_t ino);

/*
 * The second page invalidation of file ino for gate seq returned, and
 * tree_prev_served said served before it was sent. Unless a read returned
 * the previous value since (its page may have come after the kernel looked:
 * false, send another), reads of ino now wait for the new size. force marks
 * it regardless. True also when ino no longer belongs to gate seq.
 */
bool tree_pages_dropped(struct tree *t, uint64_t ino, uint64_t seq, uint32_t served, bool force);

/*
 * The caller served chk->prev after all: a later edit of ino is based on
 * that revision (so a commit of it is refused rather than overwriting what
 * came after it unseen).
 */
void tree_served_prev(struct tree *t, uint64_t ino, const struct read_check *chk);

/*
 * A new reference to the value of file ino; 0, -ENOENT or -EISDIR. Waits on
 * ino's gate when ino is new; *chk says what the caller must wait for.
 */
int tree_read(struct tree *t, uint64_t ino, struct blob **out, struct read_check *chk);

/*
 * Called for each directory entry, under the read lock; returns false when it
 * could not take the entry (buffer full), which ends the listing there.
 */
typedef bool (*tree_dirent_fn)(void *ctx, const char *name, const struct node_attr *attr,
			       uint64_t next_off);

/*
 * List directory ino from offset off ("." and ".." included). Offsets are
 * stable across changes, so a listing resumed after a change neither repeats
 * nor skips entries that existed throughout. With plus, each entry taken
 * (except "." and "..") counts one kernel lookup.
 */
int tree_readdir(struct tree *t, uint64_t ino, uint64_t off, bool plus, tree_dirent_fn fn,
		 void *ctx);

/* What a file is, for the user.cfgfs.state attribute. */
enum tree_state {
	TREE_SYNCED,  /* what the store has */
	TREE_PENDING, /* changed here, to be committed */
	TREE_LOCAL,   /* scratch that never leaves this host */
};

/* Store-side facts about a node, for extended attributes. */
struct node_info {
	enum node_kind kind;
	enum tree_state state;
	bool has_meta; /* files, and directories kept by a "dir/" key */
	struct kv_meta meta;
	char *key; /* full store key (directories end in '/'); malloc'd, caller frees */
	size_t klen;
};

/*
 * Fill info for ino; 0, -ENOENT or -ENOMEM. A file removed while still open
 * (an orphan) is TREE_LOCAL, with no key and no metadata: nothing written
 * through its descriptors reaches the store.
 */
int tree_info(struct tree *t, uint64_t ino, struct node_info *info);

/* ------------------------------------------------------------------ write path
 *
 * Local changes: the tree keeps them as sessions and never talks to the
 * store; writer.c sends them (begin/end pairs: take what to send under the
 * lock, send without it, settle under it). Between begin and end the caller
 * holds the fence (tree_fence_lock), which store batches wait for.
 */

void tree_fence_lock(struct tree *t);
void tree_fence_unlock(struct tree *t);

/*
 * Create file name in parent (counts one lookup). A name just unlinked or
 * renamed away here is taken over: the new file will replace that key, in
 * one update. *arm tells whether a commit must be scheduled.
 * -EEXIST (excl), -ENOENT, -ENOTDIR, -EINVAL (a name no key maps to);
 * -EINPROGRESS: the name's delete is on its way to the store: call again
 * holding the fence, which its settling releases.
 */
int tree_create(struct tree *t, uint64_t parent, const char *name, bool excl, uint32_t mode,
		struct node_attr *out, bool *arm);

/* A local-only symlink (editors' lock files). */
int tree_symlink(struct tree *t, uint64_t parent, const char *name, const char *target,
		 struct node_attr *out);

/* The target of symlink ino, malloc'd into *out. */
int tree_readlink(struct tree *t, uint64_t ino, char **out);

/*
 * Write into file ino at off; -EFBIG beyond max bytes. Returns len or an
 * errno. *update: the file now holds new bytes for a key the store has.
 */
ssize_t tree_write(struct tree *t, uint64_t ino, const char *buf, size_t len, off_t off, size_t max,
		   bool *arm, bool *update);

struct tree_setattr {
	bool set_size, set_mode, set_mtime;
	bool set_ctime; /* chown (accepted, not kept) and the like: only the ctime changes */
	uint64_t size;
	uint32_t mode;
	struct timespec mtime;
};

int tree_setattr(struct tree *t, uint64_t ino, const struct tree_setattr *sa, size_t max,
		 struct node_attr *out, bool *arm);

/*
 * State of file ino: what user.cfgfs.state shows, and when it last changed.
 * *update tells whether a pending change is new bytes for a key the store
 * already has, which may be committed as soon as the writer closes the file;
 * a new file waits for the quiet period, as it may be a temporary file that
 * is about to be renamed, and so does a bare truncate, which may be followed
 * by the write.
 */
int tree_state(struct tree *t, uint64_t ino, enum tree_state *st, int64_t *last_ms, bool *update);

/* Path of ino: base, '/', its path below the mount root; malloc'd. 0, -ENOENT or -ENOMEM. */
int tree_path(struct tree *t, uint64_t ino, const char *base, char **out);

/*
 * One store transaction the tree wants sent: ops point into this struct,
 * which owns their keys and values.
 */
struct tree_txn {
	struct kv_op *ops;
	size_t nops, cap;
	char **keys; /* owned; one per op */
	struct blob **vals;
	/* what end() needs to settle it */
	int kind;
	uint64_t ino, other, parent;
	uint64_t gen;
	char *name;
	int64_t create_rev; /* of a key being replaced or committed, to carry on */
	int64_t version;
	uint32_t mode; /* mkdir's mode argument */
};

void tree_txn_clear(struct tree_txn *x);

/* What x does, for log lines: "commit", "delete", "mkdir", "rmdir", "rename". */
const char *tree_txn_what(const struct tree_txn *x);

/*
 * Prepare the commit of file ino's session (a new file becomes a key; an editor's
 * scratch file never does). -ENODATA: nothing to send.
 */
int tree_commit_begin(struct tree *t, uint64_t ino, struct tree_txn *x);

/*
 * Unlink name from parent. Files only here go at once (0). A key in the
 * store is hidden and *pending gets its inode: its delete is sent after a
 * grace period (tree_delete_begin) unless a create of the name takes it
 * over first, which makes unlink + create (install, mv across filesystems)
 * one update of the key.
 */
int tree_unlink(struct tree *t, uint64_t parent, const char *name, uint64_t *pending,
		struct change_list *out);

/*
 * Prepare the delete of hidden ino, guarded by what the mirror showed when it
 * was unlinked; with check, only the guard (nothing is written: unlink asks
 * it at once, so that an unreachable store or a key that moved on fails the
 * unlink). -ENODATA when it was taken over, is gone, or is being deleted.
 */
int tree_delete_begin(struct tree *t, uint64_t ino, bool check, struct tree_txn *x);

/*
 * Whether a transaction's error says the store did not answer (as opposed to
 * refusing): a delete that failed so is sent again.
 */
bool tree_err_unanswered(int err);

/* mkdir: prepare the "dir/" key. */
int tree_mkdir_begin(struct tree *t, uint64_t parent, const char *name, uint32_t mode,
		     struct tree_txn *x);

/* Inodes of the hidden entries (pending deletes) of directory name in parent, malloc'd. */
int tree_hidden_children(struct tree *t, uint64_t parent, const char *name, uint64_t **inos,
			 size_t *n);

/*
 * Inodes of the hidden entries of directory dir (only the one called name,
 * when name is not NULL), malloc'd: deletes a directory fsync, a mkdir or a
 * symlink of that name must send first.
 */
int tree_hidden_in(struct tree *t, uint64_t dir, const char *name, uint64_t **inos, size_t *n);

/* rmdir: prepare deleting its "dir/" key and any hidden entries. */
int tree_rmdir_begin(struct tree *t, uint64_t parent, const char *name, struct tree_txn *x);

/*
 * rename. Returns 0 with x->nops == 0 when it was done locally, 0 with ops
 * to send, or an errno. *pending: a hidden key whose delete must be
 * scheduled (the vim/emacs backup dance); *arm: a commit to schedule.
 */
int tree_rename_begin(struct tree *t, uint64_t parent, const char *name, uint64_t newparent,
		      const char *newname, bool noreplace, struct tree_txn *x, uint64_t *pending,
		      bool *arm, struct change_list *out);

/*
 * Settle a transaction sent for any *_begin above: err is its result, rev
 * the revision it created. On failure of a commit or a delete the local
 * change is reverted (a commit's bytes are kept in a local file next to it,
 * whose name goes to *saved, malloc'd). *attr receives the new entry for
 * mkdir. Returns what the FUSE request should answer.
 */
int tree_txn_end(struct tree *t, struct tree_txn *x, int err, int64_t rev, char **saved,
		 struct node_attr *attr, struct change_list *out);

/*
 * The store's side of the mirror, for the cache file: every key with the
 * value and metadata the store last reported (sessions, scratch and files
 * not committed yet left out), in key order, and b->revision. 0 or -ENOMEM.
 */
int tree_export(struct tree *t, struct kv_batch *out);

/*
 * Hold the tree still (its read lock: no change lands) until tree_thaw: for
 * a fork, whose child then has the tree as it was, to itself.
 */
void tree_freeze(struct tree *t);
void tree_thaw(struct tree *t);

/*
 * tree_export where the tree cannot change and nothing else runs: in the
 * child of a fork made while it was frozen. Takes no lock and logs nothing
 * (a lock another thread held at the fork stays held in the child).
 */
int tree_export_frozen(struct tree *t, struct kv_batch *out);

/* How many keys tree_export would give, counted without copying them. */
size_t tree_count_keys(struct tree *t);

/*
 * Hand fn each key the mirror holds from the store (not scratch, not
 * created here and not yet committed) that starts with the mount's prefix
 * and then sub; fn runs under the read lock and must not call into the
 * tree. 0, -ENOMEM, or what fn returned to stop.
 */
typedef int (*tree_key_fn)(void *ctx, const char *key, size_t klen);
int tree_keys_under(struct tree *t, const char *sub, size_t slen, tree_key_fn fn, void *ctx);

/* ------------------------------------------------------------ views
 *
 * What a view file (-o views) shows of a directory: the store's side of its
 * subtree (every key's value as the mirror last had it from the store;
 * local scratch, files not committed yet and uncommitted edits left out),
 * all of it from one moment of the mirror, so from one store revision.
 */

/* One entry below the directory: a file with its value, or a directory (val NULL). */
struct tree_item {
	size_t off, len;  /* its path in tree_items.paths: names joined by '/' */
	struct blob *val; /* a reference; NULL for a directory */
};

struct tree_items {
	struct tree_item *v;
	size_t n, cap;
	char *paths;
	size_t plen, pcap;
	uint64_t stamp;	       /* the directory's stamp at that moment (tree_view_stamps) */
	struct timespec mtime; /* the latest change among them */
};

/*
 * Collect directory ino's subtree into out (emptied first), under one hold
 * of the lock. 0, -ENOENT, -ENOTDIR or -ENOMEM (out is then empty).
 */
int tree_collect(struct tree *t, uint64_t ino, struct tree_items *out);

void tree_items_clear(struct tree_items *it);

/*
 * The stamps of n directories: a number that changes whenever what
 * tree_collect would report for that directory changes (and, rarely, when
 * it would not); TREE_NO_STAMP for one that is gone.
 */
#define TREE_NO_STAMP UINT64_MAX
void tree_view_stamps(struct tree *t, const uint64_t *dirs, uint64_t *stamps, size_t n);

struct tree_stats {
	uint64_t files, dirs, bytes;
	size_t name_max; /* the longest file name */
};

void tree_stats(struct tree *t, struct tree_stats *st);

#endif
