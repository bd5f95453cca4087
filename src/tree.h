/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The mirror: the mounted key space as a tree of nodes with inode numbers; no FUSE, no network. */
#ifndef CFGFS_TREE_H
#define CFGFS_TREE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "kv.h"

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

enum node_kind { NODE_DIR = 1, NODE_FILE = 2 };

/* A consistent copy of a node's attributes, taken under the lock. */
struct node_attr {
	uint64_t ino;
	enum node_kind kind;
	uint64_t size; /* value length; entry count for directories */
	uint32_t nlink;
	struct timespec mtime; /* when the mirror saw this revision; also the ctime */
	bool transient;	       /* a gate is closed: do not let the kernel cache these */
};

/*
 * What the kernel has to be told after the mirror changed, in this order.
 *
 * A batch that changes several files must not be seen half-applied (a new
 * certificate with the old key), yet the kernel serves cached pages without
 * asking us. So such a batch closes a gate on its files while the tree lock
 * is still held. Until the gate opens, reads of those files return the
 * previous value, getattr waits, and lookups report the previous attributes
 * with a zero attribute timeout. Meanwhile the kernel drops their pages and
 * attributes (INVAL_INODE) and learns about changed names; then the gate
 * opens (INVAL_GATE) and the pages are dropped once more, for mmap readers
 * that may have faulted in the previous value. Reads never block on a gate
 * while a page invalidation could be waiting for them, only getattr does,
 * which holds no page lock: the order below cannot deadlock.
 */
enum inval_kind {
	INVAL_INODE,  /* content and attributes of ino changed: drop pages too */
	INVAL_ENTRY,  /* name in parent now means something else: created or replaced */
	INVAL_DELETE, /* name in parent, which referred to ino, is gone */
	INVAL_GATE,   /* everything before, for gate seq, is done: tree_open_gate(seq) */
};

struct inval {
	enum inval_kind kind;
	uint64_t parent;
	uint64_t ino; /* INVAL_GATE: the gate sequence number */
	char *name;   /* owned; only for ENTRY and DELETE */
	size_t namelen;
};

struct inval_list {
	struct inval *v;
	size_t n, cap;
};

void inval_list_init(struct inval_list *l);

/* Free all entries; the list stays usable. */
void inval_list_clear(struct inval_list *l);

/* Move every entry of src to the end of dst; src is left empty. Returns 0 or -ENOMEM. */
int inval_list_splice(struct inval_list *dst, struct inval_list *src);

/* A new, empty mirror of the keys under prefix (which ends in '/' or is empty). */
struct tree *tree_new(const char *prefix, size_t plen);

void tree_free(struct tree *t);

/*
 * Apply one batch of store changes as a unit: every change lands before the
 * lock is released, so no reader sees half of a revision. Changes older than
 * what the mirror holds are ignored. The invalidations the kernel needs are
 * appended to out, for the caller to send after this returns.
 * Returns 0 or -ENOMEM (the mirror then holds a prefix of the batch).
 */
int tree_apply(struct tree *t, const struct kv_batch *b, const struct timespec *now,
	       struct inval_list *out);

/*
 * Make the mirror equal to a full snapshot (after a compaction or an index
 * reset): changed keys are updated, missing ones deleted, unchanged ones left
 * alone with their inode numbers and cached pages.
 */
int tree_resync(struct tree *t, const struct kv_batch *snap, const struct timespec *now,
		struct inval_list *out);

/*
 * Open gates up to seq: waiting reads proceed. The notifier calls this when
 * it reaches INVAL_GATE; UINT64_MAX opens everything (shutdown).
 */
void tree_open_gate(struct tree *t, uint64_t seq);

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

/* A new reference to the value of file ino; 0, -ENOENT or -EISDIR. Waits on ino's gate. */
int tree_read(struct tree *t, uint64_t ino, struct blob **out);

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

/* Store-side facts about a node, for extended attributes. */
struct node_info {
	enum node_kind kind;
	bool has_meta; /* files, and directories kept by a "dir/" key */
	struct kv_meta meta;
	char *key; /* full store key (directories end in '/'); malloc'd, caller frees */
	size_t klen;
};

/* Fill info for ino; 0, -ENOENT or -ENOMEM. */
int tree_info(struct tree *t, uint64_t ino, struct node_info *info);

struct tree_stats {
	uint64_t files, dirs, bytes;
};

void tree_stats(struct tree *t, struct tree_stats *st);

#endif
