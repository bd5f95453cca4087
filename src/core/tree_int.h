/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inside the mirror: the node structures shared by tree.c, tree_index.c and tree_keys.c. */
#ifndef CFGFS_TREE_INT_H
#define CFGFS_TREE_INT_H

#include <pthread.h>

#include "tree.h"

enum {
	NF_ORPHAN = 1,	/* no longer in the tree; kept while the kernel holds it */
	NF_MARKER = 2,	/* directory kept alive by a "dir/" key with an empty value */
	NF_LOCAL = 4,	/* scratch (swap, lock, backup, rejected bytes, symlink): never committed */
	NF_NEW = 8,	/* created here, not in the store (yet) */
	NF_HIDDEN = 16, /* gone here but still in the store: its delete, or a create, is pending */
	NF_SENDING = 32, /* hidden, and its delete is on its way to the store */
};

/*
 * A write session, or the content of a file that lives only here. Reads
 * are served from it while it exists; the mirror value stays what the store
 * has, so the two can be compared and a failed commit reverted.
 */
struct local {
	char *buf;
	size_t len, cap;
	int64_t base;	      /* KV_ABSENT, or the mod revision this edit started from */
	uint64_t gen;	      /* bumped by every change */
	uint64_t committed;   /* gen the store has; gen == committed: nothing to send */
	int64_t last_ms;      /* monotonic time of the last change */
	uint64_t refused_gen; /* gen + 1 of content a rename onto refused_ino was refused for */
	uint64_t refused_ino;
};

/* A directory slot; node is NULL for a removed entry awaiting compaction. */
struct dslot {
	uint64_t ino;
	struct node *node;
};

/*
 * Children sorted by inode number. Numbers only grow, so a new key appends;
 * readdir offsets are derived from inode numbers and stay valid while the
 * directory changes. Removal leaves a hole that keeps its number, so binary
 * search still works; holes are squeezed out when they outnumber entries.
 */
struct dir {
	struct dslot *slot;
	uint32_t n, cap; /* slots in use, holes included */
	uint32_t live;	 /* entries */
	uint32_t nsubdirs;
	uint64_t vstamp; /* tree.view_gen when something below last changed (tree_view.c) */
};

struct node_ext;

struct node {
	uint64_t ino;
	struct node *parent;	/* NULL for the root and for orphans */
	struct node *ino_next;	/* chain in tree.by_ino */
	struct node *name_next; /* chain in tree.by_name */
	int64_t mtime;		/* nanoseconds since the epoch (see ti_ns) */
	struct kv_meta meta;	/* file: its key's; directory: its "dir/" key's when NF_MARKER */
	union {
		struct blob *val; /* NODE_FILE */
		struct dir *dir;  /* NODE_DIR */
	};
	struct local *loc;    /* NULL: the content is the mirror value */
	int64_t seen_rev;     /* revision of the content last handed to the kernel: the CAS base */
	struct node_ext *ext; /* what few nodes need, or NULL */
	uint32_t mode;	  /* permission bits set through the mount | TREE_MODE_SET; 0: default */
	uint32_t nlookup; /* kernel references: atomic add under the read lock, else write lock */
	uint32_t name_hash;
	uint32_t seen; /* resync epoch that last confirmed this key */
	uint16_t name_len;
	uint16_t name_room; /* bytes of iname, NUL included */
	uint8_t kind;
	uint8_t flags; /* NF_*: written under the write lock, read under either lock */
	/*
	 * The kernel read this content: set atomically by readers under the
	 * read lock, so apart from flags, which other readers read plainly.
	 */
	uint8_t served;
	char *name;   /* iname, or a heap copy when a longer name did not fit */
	char iname[]; /* room for max(first name, NAMES_VALUE) */
};

/*
 * What few nodes need, kept apart so that a plain key costs less memory:
 * gate state (multi-file changes) and the segment behind a hashed name.
 */
struct node_ext {
	uint64_t gate;	   /* the gate of the last batch that changed this file */
	struct blob *prev; /* value shown while that gate is closed (NULL: new file) */
	int64_t prev_mtime;
	int64_t prev_rev;
	/*
	 * The gate whose second page invalidation of this file completed with
	 * no read serving prev meanwhile: from then on, reads wait for the new
	 * size instead (tree.c: tree_pages_dropped).
	 */
	uint64_t clean;
	uint32_t prev_served; /* reads that returned prev: atomic, under the read lock */
	char *raw;	      /* the segment behind a hashed name, else NULL */
	size_t raw_len;
	char *link;    /* symlink target (NODE_LINK, local only) */
	int64_t ctime; /* a status change here (chmod, chown, utime, rename) after mtime, or 0 */
};

/* Times are kept as nanoseconds: half the size of a timespec, on every node. */
static inline int64_t ti_ns(const struct timespec *ts)
{
	return ts->tv_sec * 1000000000LL + ts->tv_nsec;
}

static inline struct timespec ti_ts(int64_t ns)
{
	struct timespec ts = {ns / 1000000000LL, ns % 1000000000LL};
	return ts;
}

static inline uint64_t n_gate(const struct node *n)
{
	return n->ext ? n->ext->gate : 0;
}

static inline struct blob *n_prev(const struct node *n)
{
	return n->ext ? n->ext->prev : NULL;
}

static inline const char *n_raw(const struct node *n)
{
	return n->ext ? n->ext->raw : NULL;
}

static inline size_t n_raw_len(const struct node *n)
{
	return n->ext ? n->ext->raw_len : 0;
}

struct ino_vec {
	uint64_t *v;
	size_t n, cap;
};

struct tree {
	pthread_rwlock_t lock;
	char *prefix;
	size_t plen;
	struct node *root;
	uint64_t next_ino;    /* protected by lock (write) */
	struct node **by_ino; /* protected by lock */
	size_t ino_mask, ino_count;
	struct node **by_name; /* (parent ino, name) -> node */
	size_t name_mask, name_count;
	int64_t revision;
	uint32_t epoch;
	uint64_t nfiles, ndirs, bytes;
	uint64_t gate_next;	 /* last gate handed out; protected by lock (write) */
	pthread_mutex_t gate_mu; /* protects gate_open for waiters; writes under it */
	pthread_cond_t gate_cv;
	uint64_t gate_open;   /* gates up to this are open; atomic reads */
	uint64_t gate_reads;  /* gates up to this are in the reads phase or later; atomic */
	uint64_t gate_sizes;  /* ... in the sizes phase or later; atomic */
	struct ino_vec gated; /* files holding a prev value; protected by lock (write) */
	/*
	 * Held across a local change's round trip to the store (before lock,
	 * never inside it); store batches take it too, so the echo of our own
	 * write never lands between sending it and settling it.
	 */
	pthread_mutex_t fence;
	uint64_t local_epoch; /* successful local commits; written under fence, read atomically */
	bool counts_versions;
	bool owner_flags;	/* see struct tree_model */
	int64_t first_version;	/* a new key's version */
	enum names_style names; /* how segments become names */
	size_t name_max;	/* the longest name that style makes */
	struct tomb *tombs;	/* protected by lock (write) */
	size_t ntombs, tombs_cap;
	uint64_t view_gen;	  /* the last stamp handed out by ti_view_touch; lock (write) */
	unsigned writers_waiting; /* atomic: threads in ti_write_lock, not yet holding lock */
};

/*
 * The write lock, counted while it is waited for: a long holder of the
 * read lock (tree_export) gives way instead of making the watcher wait.
 */
static inline void ti_write_lock(struct tree *t)
{
	__atomic_add_fetch(&t->writers_waiting, 1, __ATOMIC_RELAXED);
	pthread_rwlock_wrlock(&t->lock);
	__atomic_sub_fetch(&t->writers_waiting, 1, __ATOMIC_RELEASE);
}

/*
 * A key (or, with prefix, every key under it) this host deleted at rev. The
 * watch may still bring older events for it (the echo of a put committed
 * here a moment before the delete): they are history, not news. Kept until
 * the mirror's revision reaches rev.
 */
struct tomb {
	char *key;
	size_t klen;
	bool prefix;
	int64_t rev;
};

/* A file whose content changed or appeared, and what it showed before. */
struct change {
	uint64_t ino;
	size_t order;	  /* position in the batch, for a stable sort */
	struct blob *old; /* reference; NULL for a new file */
	int64_t old_mtime;
	int64_t old_rev;
};

/* What one batch changed, gathered while applying it. */
struct changes {
	bool report;		    /* false while loading before mount: nobody to tell */
	struct change_list entries; /* ENTRY and DELETE, in order */
	struct change *files;
	size_t nfiles, cap;
	/*
	 * Directories whose entries changed. inval_entry only reaches a cached
	 * listing through a dentry of the name, and a brand-new name has none:
	 * the listing itself (the directory's pages) must be dropped too.
	 */
	struct ino_vec dirs;
};

/*
 * Everything below runs with the tree lock held (the write lock for
 * anything that changes the tree); the ti_ prefix marks functions internal
 * to the mirror.
 */

/* tree_index.c: hash tables, directory slots, node lifecycle, change records. */
int ti_vec_push(struct ino_vec *iv, uint64_t ino);
struct node *ti_find(const struct tree *t, uint64_t ino);
struct node *ti_child(const struct tree *t, const struct node *dir, const char *name, size_t len);
size_t ti_dir_seek(const struct dir *d, uint64_t ino);
struct node *ti_node_new(struct tree *t, enum node_kind kind, const char *name, size_t len,
			 const struct timespec *now);
void ti_node_destroy(struct tree *t, struct node *n);
int ti_attach(struct tree *t, struct node *parent, struct node *n, const struct timespec *now);
void ti_detach(struct tree *t, struct node *n, const struct timespec *now);
void ti_release(struct tree *t, struct node *n);
int ti_set_name(struct node *n, const char *name, size_t len);
/* n's extension, allocated on first use; NULL on ENOMEM. */
struct node_ext *ti_ext(struct node *n);
/* Set n's raw segment (takes raw, malloc'd; NULL clears it). */
void ti_set_raw(struct node *n, char *raw, size_t len);
void ti_set_value(struct tree *t, struct node *n, struct blob *val);
void ti_push(struct change_list *l, enum inval_kind kind, uint64_t parent, uint64_t ino,
	     const char *name, size_t namelen);
bool ti_knows(const struct tree *t, const struct node *n);
void ti_q_file(struct changes *ch, struct node *n);
void ti_q_dir(struct changes *ch, struct node *dir);
void ti_q_entry(struct tree *t, struct changes *ch, struct node *parent, const char *name,
		size_t len);
void ti_q_delete(struct tree *t, struct changes *ch, struct node *parent, struct node *child);

/* Append what ch recorded (names, listings; no gates) to out, and free it. */
void ti_flush_changes(struct tree *t, struct changes *ch, struct change_list *out);

/* tree_keys.c: where a key lives in the tree, and back. */
bool ti_in_prefix(const struct tree *t, const struct kv *kv);
int ti_put_key(struct tree *t, const struct kv *kv, bool resync, const struct timespec *now,
	       struct changes *ch);
void ti_del_key(struct tree *t, const struct kv *kv, const struct timespec *now,
		struct changes *ch);
void ti_remove_file(struct tree *t, struct node *f, const struct timespec *now, struct changes *ch);
void ti_collapse(struct tree *t, struct node *d, const struct timespec *now, struct changes *ch);
void ti_store_gone(struct tree *t, struct node *f, const struct timespec *now, struct changes *ch);
int ti_build_key(const struct tree *t, const struct node *n, char **key, size_t *klen);
void ti_tomb_add(struct tree *t, const struct kv_op *op, int64_t rev);
void ti_tomb_prune(struct tree *t, bool all);
int ti_child_key(const struct tree *t, const struct node *dir, const char *name, char **key,
		 size_t *klen, bool as_dir);

/*
 * Call fn for directory top and every directory below it that is not only
 * here (each before its children), until fn returns non-zero, which is
 * returned; -ENOMEM when the walk could not go on. fn must not change the tree.
 */
typedef int (*ti_dir_fn)(struct node *dir, void *ctx);
int ti_walk_dirs(struct node *top, ti_dir_fn fn, void *ctx);

void ti_loc_free(struct local *l);
/* Room for len bytes in l; 0 or -ENOMEM. */
int ti_loc_reserve(struct local *l, size_t len);

/*
 * tree_view.c: what a view of a directory shows changed: n was attached,
 * detached, given a value, or its flags changed whether it is a key. Stamps
 * n's ancestors with a new number (see tree_view_stamps).
 */
void ti_view_touch(struct tree *t, const struct node *n);

/* tree.c */
void ti_fill_attr(struct tree *t, const struct node *n, struct node_attr *a);

/* Rename and commit kinds, for tree_txn_end. */
enum {
	TX_COMMIT = 1, /* put one file's session */
	TX_DELETE,     /* delete a hidden key */
	TX_MKDIR,      /* put "dir/" */
	TX_RMDIR,      /* delete "dir/" and hidden entries */
	TX_RENAME,     /* put the new key(s), delete the old */
	TX_REPLACE,    /* a local file's content replaces an existing key */
	TX_CHECK,      /* nothing written: a hidden key is still what the mirror showed */
};

/* tree_session.c: what the local changes share. */
void ti_real_now(struct timespec *ts);
/* Start a session on file n if it has none: a copy of what it shows, based on what was served. */
int ti_loc_start(struct node *n);
/* n's session changed now. */
void ti_loc_touch(struct node *n);
bool ti_scratch_name(struct tree *t, struct node *dir, const char *name);
/* A name a user may create: one a key maps to, or the value of its directory. */
bool ti_creatable(const struct tree *t, const struct node *dir, const char *name);
/* Collapse dir after a local change emptied it, telling the kernel what vanished. */
void ti_tidy(struct tree *t, struct node *dir, const struct timespec *now, struct change_list *out);
/* Move n to name in dir; the only step that can fail (a longer name) goes first. */
int ti_move_node(struct tree *t, struct node *n, struct node *dir, const char *name,
		 const struct timespec *now, struct change_list *out);

/* A status change made here (chmod, chown, utime, rename): the ctime moves, the mtime not. */
void ti_touch_ctime(struct node *n);
/* The directory ino: 0, -ENOENT or -ENOTDIR. */
int ti_find_dir(struct tree *t, uint64_t ino, struct node **out);
/* A visible entry of dir; hidden ones are not there as far as the kernel knows. */
struct node *ti_visible(struct tree *t, struct node *dir, const char *name);
/* n takes over the store binding of hidden h (h leaves the tree). */
void ti_take_binding(struct tree *t, struct node *n, struct node *h, const struct timespec *now);
/* Path of n below the mount root, after base and a '/' when base is set; malloc'd or NULL. */
char *ti_node_path(const struct node *n, const char *base);

/* tree_txn.c */
/* What every tree_*_begin does first (x emptied, the write lock taken) and last (unlocked; x
 * cleared on error): returns err. */
void ti_begin(struct tree *t, struct tree_txn *x);
int ti_begun(struct tree *t, struct tree_txn *x, int err);
/* Append an op; takes key (malloc'd) and a reference to val. 0 or -ENOMEM. */
int ti_add_op(struct tree_txn *x, enum kv_op_kind kind, char *key, size_t klen, struct blob *val,
	      int64_t expect);
/* ti_add_op with a guard on node n's key: sets the op's expect_version from n (see kv.h). */
int ti_add_guarded(struct tree_txn *x, enum kv_op_kind kind, char *key, size_t klen,
		   struct blob *val, const struct node *n, int64_t expect);
/* The content a commit of n sends: a new reference, or NULL on ENOMEM. */
struct blob *ti_session_blob(const struct node *n);

#endif
