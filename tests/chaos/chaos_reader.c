/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The readers of the chaos run (tests/chaos/chaos.py): many threads read the
 * files a remote writer rewrites in multi-key transactions and check every
 * read and every pass.
 *
 *   chaos_reader SECONDS THREADS FILE...
 *   prints "reads=R corrupt=C torn=T errors=E passes=P"
 *
 * FILE i (0-based) holds values "G|L|fII|mMMMMM|x...x|G": G the generation
 * (one per transaction), L the value's whole length in bytes, II the file's
 * own index, MMMMM (hex) the set of file indexes that transaction G wrote,
 * padding, and G again. Even threads hold one descriptor per file and pread
 * from offset 0; odd threads open, read and close each time. Every read asks
 * for more than the largest value, so one read() returns the whole file.
 *
 * corrupt: a read that is not one whole value (wrong length, head and tail
 * of different generations, another file's value).
 * torn: a read older than what this thread already saw. Each thread keeps,
 * per file b, the newest generation g it has seen on any file whose
 * transaction also wrote b. cfgfs makes a revision visible as a unit (the
 * files of one revision show their new contents together, README
 * "Consistency"), and a file never goes back to an older revision; so once
 * one file of transaction g was read at g, every later read (in real time:
 * the same thread, later) of another file of g must return g or newer. That
 * holds although reads of different files are not atomic together: only the
 * order of one thread's reads is used. It is torn_reader's check, extended
 * to transactions that write 2-5 of the files.
 * Stops early when the file named by env CHAOS_STOP appears.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXF 32
#define BUF (64 * 1024)

static char **files;
static int nfiles;
static double end_time;
static const char *stop_file;
static atomic_ulong reads, corrupt, torn, errors, passes;
static atomic_int printed;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(const char *what, const char *path, const char *b, ssize_t n, const char *detail)
{
	if (atomic_fetch_add(&printed, 1) >= 10)
		return;
	int show = n > 60 ? 60 : (n < 0 ? 0 : (int)n);
	fprintf(stderr, "%s read of %s: %zd bytes: '%.*s'...'%.*s'%s%s\n", what, path, n, show, b,
		(int)(n > 30 ? 30 : 0), n > 30 ? b + n - 30 : "", detail ? " " : "",
		detail ? detail : "");
}

/* Parses b[0..n) as a value of file idx: its generation and mask, or -1. */
static int parse(const char *b, size_t n, int idx, unsigned long *gen, unsigned long *mask)
{
	char tmp[128];
	size_t k = n < sizeof tmp - 1 ? n : sizeof tmp - 1;

	memcpy(tmp, b, k);
	tmp[k] = '\0';
	char *p = tmp, *e;
	unsigned long g = strtoul(p, &e, 10);
	if (e == p || *e != '|')
		return -1;
	p = e + 1;
	unsigned long len = strtoul(p, &e, 10);
	if (e == p || *e != '|' || len != n)
		return -1;
	p = e + 1;
	if (*p != 'f')
		return -1;
	long i = strtol(p + 1, &e, 10);
	if (e == p + 1 || *e != '|' || i != idx)
		return -1;
	p = e + 1;
	if (*p != 'm')
		return -1;
	unsigned long m = strtoul(p + 1, &e, 16);
	if (e == p + 1 || *e != '|' || !(m & (1UL << idx)))
		return -1;
	/* the tail: "|G" */
	char tail[32];
	int tl = snprintf(tail, sizeof tail, "|%lu", g);
	if ((size_t)tl >= n || memcmp(b + n - tl, tail, (size_t)tl) != 0)
		return -1;
	*gen = g;
	*mask = m;
	return 0;
}

static void *reader(void *arg)
{
	long id = (long)arg;
	char *b = malloc(BUF);
	int fds[MAXF];
	unsigned long floor_gen[MAXF] = {0};
	unsigned long local_reads = 0;

	if (!b)
		exit(2);
	if (id % 2 == 0) {
		for (int i = 0; i < nfiles; i++) {
			fds[i] = open(files[i], O_RDONLY);
			if (fds[i] < 0) {
				perror(files[i]);
				exit(2);
			}
		}
	}
	for (unsigned long pass = 0;; pass++) {
		if ((pass & 15) == 0 &&
		    (now() > end_time || (stop_file && access(stop_file, F_OK) == 0)))
			break;
		for (int j = 0; j < nfiles; j++) {
			int i = (int)((j + pass + (unsigned long)id) % (unsigned long)nfiles);
			ssize_t n;
			if (id % 2 == 0) {
				n = pread(fds[i], b, BUF, 0);
			} else {
				int fd = open(files[i], O_RDONLY);
				if (fd < 0) {
					n = -1;
				} else {
					n = read(fd, b, BUF);
					int e = errno;
					close(fd);
					errno = e;
				}
			}
			local_reads++;
			if (n < 0) {
				char d[64];
				snprintf(d, sizeof d, "(%s)", strerror(errno));
				atomic_fetch_add(&errors, 1);
				report("failed", files[i], "", 0, d);
				continue;
			}
			unsigned long gen, mask;
			if (parse(b, (size_t)n, i, &gen, &mask) != 0) {
				char d[96];
				const char *nul = memchr(b, '\0', (size_t)n);
				snprintf(d, sizeof d, "(first NUL byte at offset %zd)",
					 nul ? nul - b : (ssize_t)-1);
				atomic_fetch_add(&corrupt, 1);
				report("corrupt", files[i], b, n, d);
				continue;
			}
			if (gen < floor_gen[i]) {
				char d[160];
				snprintf(d, sizeof d,
					 "(generation %lu, but this thread already saw %lu, "
					 "which wrote this file too)",
					 gen, floor_gen[i]);
				atomic_fetch_add(&torn, 1);
				report("torn", files[i], b, n, d);
			}
			for (int k = 0; k < nfiles; k++)
				if ((mask & (1UL << k)) && floor_gen[k] < gen)
					floor_gen[k] = gen;
		}
		atomic_fetch_add(&passes, 1);
		if ((pass & 63) == 0) {
			atomic_fetch_add(&reads, local_reads);
			local_reads = 0;
		}
	}
	atomic_fetch_add(&reads, local_reads);
	free(b);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc - 3 > MAXF) {
		fprintf(stderr, "usage: chaos_reader SECONDS THREADS FILE...\n");
		return 2;
	}
	end_time = now() + atof(argv[1]);
	int nthreads = atoi(argv[2]);
	files = argv + 3;
	nfiles = argc - 3;
	stop_file = getenv("CHAOS_STOP");
	if (nthreads < 1 || nthreads > 64)
		return 2;
	pthread_t th[64];
	for (long i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, reader, (void *)i))
			return 2;
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	printf("reads=%lu corrupt=%lu torn=%lu errors=%lu passes=%lu\n", atomic_load(&reads),
	       atomic_load(&corrupt), atomic_load(&torn), atomic_load(&errors),
	       atomic_load(&passes));
	return 0;
}
