/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The gates' last steps: making the kernel take a new size, and reads that wait for it. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fs_gate.h"
#include "log.h"
#include "worker.h"

/*
 * The longest a gate stays in its reads phase waiting for the notifier's
 * second page invalidation (gates_invalidated). No read it could wait for
 * waits for this thread (those reads return the previous value, see
 * tree_pages_dropped), so this only bounds a stuck notifier: new sizes
 * before the old pages are gone may show a reader a value cut or padded.
 */
#define READS_PHASE_MAX_US 2000000
/* The longest a read waits for the kernel to take a new size. */
#define READ_WAIT_US 250000
/* ... and when the kernel holds neither that size nor the previous one. */
#define READ_WAIT_MAX_US 1000000
/* Immediate attempts to make the kernel take one file's new attributes... */
#define PROBE_TRIES 5
/* ... then, with the kernel asked to drop them, attempts spaced up to this, */
#define PROBE_SPACING_MAX_US 20000
/* asking again at most this often, */
#define REINVAL_EVERY_US 100000
/* for at most this long. */
#define PROBE_MAX_US 2000000

struct job {
	struct change_list e; /* INVAL_PROBE..., INVAL_GATE; the change's files */
	uint64_t seq;
	int64_t sizes_by; /* monotonic us: when the sizes phase starts at the latest */
};

struct gates {
	struct tree *tree;
	char *mountpoint;
	struct bus *bus;
	bool single_thread;
	struct worker w;
	struct job *q; /* protected by w.mu */
	size_t n, cap;
	uint64_t invalidated; /* protected by w.mu: gates whose second invalidation was sent */
	bool halted;	      /* atomic */
	void (*reinval)(void *ctx, uint64_t ino);
	void *reinval_ctx;
	unsigned hold_ms; /* fault injection: see gates_hold_for_tests */
};

/*
 * Whether the kernel holds this size and time for path. statx without sync
 * shows what the kernel has cached and sends no request.
 */
static bool kernel_holds(const char *path, uint64_t size, const struct timespec *mtime)
{
	struct statx sx;

	return statx(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW | AT_STATX_DONT_SYNC,
		     STATX_SIZE | STATX_MTIME, &sx) == 0 &&
	       sx.stx_size == size && sx.stx_mtime.tv_sec == mtime->tv_sec &&
	       sx.stx_mtime.tv_nsec == (uint32_t)mtime->tv_nsec;
}

bool gates_wait_read(struct gates *g, uint64_t ino, const struct read_check *chk)
{
	bool old = false;
	char *path;

	/* With one thread, the request that teaches the kernel could never be served. */
	if (g->single_thread || tree_path(g->tree, ino, g->mountpoint, &path))
		return false;
	int64_t start = mono_us();
	for (unsigned i = 0; !kernel_holds(path, chk->size, &chk->mtime); i++) {
		int64_t waited = mono_us() - start;
		if (waited > READ_WAIT_US) {
			/*
			 * A host too slow for the bound. If the kernel still reads
			 * against the old size, the old bytes are the ones that fit.
			 * If it holds neither size (a value older still), whatever is
			 * served is cut or padded: wait longer for the prober, as far
			 * as a page invalidation queued behind this read can bear.
			 */
			old = chk->prev && kernel_holds(path, chk->prev->len, &chk->prev_mtime);
			if (old || waited > READ_WAIT_MAX_US) {
				log_debug("inode %llu: the kernel did not take its new size in "
					  "%lld us%s",
					  (unsigned long long)ino, (long long)waited,
					  old ? ": serving the previous value" : "");
				if (!old)
					log_warn("inode %llu: after %lld ms the kernel holds "
						 "neither this "
						 "value's size nor the previous one's: a reader "
						 "may see it "
						 "cut or padded",
						 (unsigned long long)ino, (long long)waited / 1000);
				break;
			}
		}
		/* Usually a matter of microseconds: the prober's stat is under way. */
		if (i < 20)
			sched_yield();
		else
			usleep(waited < 1000 ? 20 : 200);
	}
	free(path);
	return old;
}

/*
 * Make the kernel hold file ino's current size and time. A stat sent now is
 * newer than every invalidation of the file, so the kernel takes its
 * answer, unless an invalidation of a later change overtakes it: then ask
 * again. A stat cannot help when the kernel holds attributes it thinks
 * valid: a lookup answered just before the change whose inode the kernel
 * only made after the change's invalidation had found none (the kernel
 * drops an invalidation of an inode it does not have, and keeps what the
 * lookup said for the whole attribute timeout). Then the kernel is asked to
 * drop them once more, until it holds the new ones; the gate stays closed
 * meanwhile, so no read is served against the stale size.
 */
static void probe(struct gates *g, uint64_t ino)
{
	int64_t start = mono_us(), asked = 0;
	struct node_attr a;
	struct stat st;
	char *path;

	/* A stat by path would look it up, only to have the kernel hold one more inode. */
	if (!tree_is_known(g->tree, ino) || tree_path(g->tree, ino, g->mountpoint, &path))
		return;
	for (unsigned i = 0;; i++) {
		/* Once the mount is no longer served, a stat through it would never return. */
		if (__atomic_load_n(&g->halted, __ATOMIC_ACQUIRE) ||
		    tree_getattr(g->tree, ino, &a) ||
		    fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) ||
		    kernel_holds(path, a.size, &a.mtime))
			break;
		if (i < PROBE_TRIES)
			continue;
		int64_t now = mono_us();
		if (now - start > PROBE_MAX_US) {
			log_warn("inode %llu: the kernel did not take its new size in %lld ms: a "
				 "reader may see it cut or padded",
				 (unsigned long long)ino, (long long)(now - start) / 1000);
			break;
		}
		if (g->reinval && (!asked || now - asked >= REINVAL_EVERY_US)) {
			log_debug("inode %llu: the kernel keeps a size of %lld, not %llu: "
				  "invalidating it again",
				  (unsigned long long)ino, (long long)st.st_size,
				  (unsigned long long)a.size);
			g->reinval(g->reinval_ctx, ino);
			asked = now;
		}
		unsigned shift = i - PROBE_TRIES < 7 ? i - PROBE_TRIES : 7;
		usleep(200u << shift < PROBE_SPACING_MAX_US ? 200u << shift : PROBE_SPACING_MAX_US);
	}
	free(path);
}

static void run_job(struct gates *g, struct job *j)
{
	int64_t now = mono_us();

	pthread_mutex_lock(&g->w.mu);
	while (g->invalidated < j->seq && now < j->sizes_by && !g->w.stop &&
	       !__atomic_load_n(&g->halted, __ATOMIC_ACQUIRE)) {
		struct timespec until = {j->sizes_by / 1000000, j->sizes_by % 1000000 * 1000};
		pthread_cond_timedwait(&g->w.cv, &g->w.mu, &until);
		now = mono_us();
	}
	bool late = g->invalidated < j->seq && !g->w.stop &&
		    !__atomic_load_n(&g->halted, __ATOMIC_ACQUIRE);
	pthread_mutex_unlock(&g->w.mu);
	if (late)
		log_warn("gate %llu: the kernel's pages were not all dropped after %d ms; "
			 "going on",
			 (unsigned long long)j->seq, READS_PHASE_MAX_US / 1000);
	if (g->hold_ms) {
		log_warn("fault injection: gate %llu holds its reads phase for %u ms",
			 (unsigned long long)j->seq, g->hold_ms);
		usleep(g->hold_ms * 1000u);
	}
	tree_gate_sizes(g->tree, j->seq);
	for (size_t i = 0; i < j->e.n; i++)
		if (j->e.v[i].kind == INVAL_PROBE)
			probe(g, j->e.v[i].ino);
	tree_open_gate(g->tree, j->seq);
	bus_delivered(g->bus, j->e.files, j->e.nfiles);
	change_list_clear(&j->e);
}

static void *run(void *arg)
{
	struct gates *g = arg;

	pthread_mutex_lock(&g->w.mu);
	for (;;) {
		while (!g->w.stop && g->n == 0)
			pthread_cond_wait(&g->w.cv, &g->w.mu);
		if (g->n == 0)
			break;
		struct job j = g->q[0];
		memmove(g->q, g->q + 1, (g->n - 1) * sizeof(*g->q));
		g->n--;
		pthread_mutex_unlock(&g->w.mu);
		run_job(g, &j);
		pthread_mutex_lock(&g->w.mu);
	}
	pthread_mutex_unlock(&g->w.mu);
	return NULL;
}

void gates_reads(struct gates *g, uint64_t seq, struct change_list *unit)
{
	tree_gate_reads(g->tree, seq);
	pthread_mutex_lock(&g->w.mu);
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 16;
		struct job *q = realloc(g->q, cap * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&g->w.mu);
			log_err("out of memory: a change may be read before the kernel has its "
				"size");
			tree_open_gate(g->tree, seq);
			change_list_clear(unit);
			return;
		}
		g->q = q;
		g->cap = cap;
	}
	struct job *j = &g->q[g->n++];
	j->e = *unit;
	change_list_init(unit);
	j->seq = seq;
	j->sizes_by = mono_us() + READS_PHASE_MAX_US;
	pthread_cond_signal(&g->w.cv);
	pthread_mutex_unlock(&g->w.mu);
}

void gates_invalidated(struct gates *g, uint64_t seq)
{
	pthread_mutex_lock(&g->w.mu);
	if (seq > g->invalidated)
		g->invalidated = seq;
	pthread_cond_broadcast(&g->w.cv);
	pthread_mutex_unlock(&g->w.mu);
}

struct gates *gates_start(struct tree *t, const char *mountpoint, struct bus *bus,
			  bool single_thread)
{
	struct gates *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->tree = t;
	g->bus = bus;
	g->single_thread = single_thread;
	g->mountpoint = strdup(mountpoint);
	if (!g->mountpoint || worker_start(&g->w, "cfgfs-gates", run, g)) {
		free(g->mountpoint);
		free(g);
		return NULL;
	}
	return g;
}

void gates_set_reinvalidate(struct gates *g, void (*fn)(void *ctx, uint64_t ino), void *ctx)
{
	g->reinval = fn;
	g->reinval_ctx = ctx;
}

void gates_hold_for_tests(struct gates *g, unsigned ms)
{
	g->hold_ms = ms;
}

void gates_halt(struct gates *g)
{
	if (!g)
		return;
	pthread_mutex_lock(&g->w.mu);
	__atomic_store_n(&g->halted, true, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&g->w.cv);
	pthread_mutex_unlock(&g->w.mu);
}

void gates_stop(struct gates *g)
{
	if (!g)
		return;
	/*
	 * When cfgfs stops on a signal the mount is still there but nobody
	 * answers it: a stat caught in a request would never return. Such a
	 * thread ends with the process (its gates were opened by the notifier).
	 * What is queued is opened before the thread ends.
	 */
	if (!worker_stop(&g->w, 2000)) {
		log_warn("a stat of a changed file did not finish; leaving it");
		return;
	}
	worker_release(&g->w);
	for (size_t i = 0; i < g->n; i++)
		change_list_clear(&g->q[i].e);
	free(g->q);
	free(g->mountpoint);
	free(g);
}
