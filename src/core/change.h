/* SPDX-License-Identifier: GPL-2.0-or-later */
/* What a change of the mirror means: kernel invalidations in order, and the files it changed. */
#ifndef CFGFS_CHANGE_H
#define CFGFS_CHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * What the kernel has to be told after the mirror changed, in this order.
 *
 * The kernel serves cached pages and reads a file's size without asking us.
 * It takes a new size or time only from an attribute reply to a request it
 * sent after the file's last invalidation (it drops older replies), sets the
 * size first and drops the file's pages after. A reader copies the pages it
 * found with the size it finds right after: bytes of one value with the
 * size of another are a value cut short or padded with NUL bytes. And a
 * reader of a revision that changed several files must not see some of
 * them changed and others not.
 *
 * So a batch that changes a file the kernel knows, or several files, closes
 * a gate on them under the tree lock, and they pass four phases:
 *
 *   closed  reads and attributes show the previous value (attributes with a
 *           zero timeout, so nothing caches them); the kernel learns about
 *           changed names, listings, then drops the files' pages and
 *           attributes (INVAL_INODE);
 *   reads   (INVAL_READS) the notifier drops each file's pages again (pages
 *           a read cached meanwhile). Until that returns, reads of the file
 *           still return the previous value without waiting, since the
 *           invalidation may be waiting for the page being read; one that
 *           did so while it ran may have added its page after the kernel
 *           looked, so the file's pages are dropped once more
 *           (tree_pages_dropped). After that, a read returns the new value
 *           only once the size and time the kernel holds are the new ones,
 *           and waits for that; attributes still show the previous value;
 *   sizes   once every file's pages are gone, the prober thread makes
 *           attributes show the new value and the kernel take it
 *           (INVAL_PROBE: a stat through the mount, then a look at what the
 *           kernel holds). Every file of the gate is probed that the kernel
 *           knows by then, also one it first looked up while the gate was
 *           closed: it was given the previous size, which a getattr answered
 *           before this phase and taken after it would otherwise leave in
 *           the kernel for reads of the new value;
 *   open    (INVAL_GATE) reads return the new value without looking.
 *
 * A size that changes while the kernel holds a page of the other value is
 * seen by a reader as that value cut short, padded with NUL bytes, or (a
 * smaller size zeroes the rest of the page while a reader that took the
 * old size copies it) its head and then zeros: hence no new size until the
 * pages are gone, and no page of the previous value after they are.
 *
 * Reads never wait while a page invalidation of their file may be waiting
 * for them. A read that waits for a new size holds a page no invalidation of
 * this gate waits for, and what it waits for comes from the prober, which
 * waits for nothing it holds; the kernel writes the size before it locks any
 * page.
 */
enum inval_kind {
	INVAL_INODE,  /* content and attributes of ino changed: drop pages too */
	INVAL_ENTRY,  /* name in parent now means something else: created or replaced */
	INVAL_DELETE, /* name in parent, which referred to ino, is gone */
	INVAL_READS,  /* gate ino (a sequence number) enters the reads phase */
	INVAL_PROBE,  /* the kernel must take the new size and time of file ino */
	INVAL_GATE,   /* everything before, for gate ino, is done: tree_open_gate */
	INVAL_ATTR,   /* only the attributes of ino changed (its owner or mode) */
};

struct inval {
	enum inval_kind kind;
	uint64_t parent;
	uint64_t ino; /* INVAL_GATE: the gate sequence number */
	char *name;   /* owned; only for ENTRY and DELETE */
	size_t namelen;
};

/*
 * What one change of the mirror means to those who keep something derived
 * from it (run/bus.h): the kernel's invalidations, in order, and the files
 * whose content the store changed or created (known to the kernel or not),
 * for those who act once the kernel holds the new content (inotify replay,
 * reload hooks).
 */
struct change_list {
	struct inval *v;
	size_t n, cap;
	uint64_t *files;
	size_t nfiles, files_cap;
};

void change_list_init(struct change_list *l);

/* Free all entries; the list stays usable. */
void change_list_clear(struct change_list *l);

/* Move every entry of src to the end of dst; src is left empty. Returns 0 or -ENOMEM. */
int change_list_splice(struct change_list *dst, struct change_list *src);

/* Room for more entries in l->v; 0 or -ENOMEM. */
int change_list_reserve(struct change_list *l, size_t more);

/* Add file ino to l->files; 0 or -ENOMEM. */
int change_list_add_file(struct change_list *l, uint64_t ino);

/* Whether l says nothing at all. */
bool change_list_empty(const struct change_list *l);

#endif
