/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reads files whose values check themselves, from many threads, and counts
 * every read that returned bytes no revision held: a value cut short or
 * padded, or one whose head and tail come from different writes.
 *
 *   value_reader SECONDS THREADS FILE...   prints "reads=R corrupt=C"
 *
 * A value is "G|L|padding|G": G a generation, L the value's whole length in
 * bytes, both decimal (tests/integration/harness.py: checked_value). Even
 * threads hold one descriptor per file and pread from offset 0 (page-cache
 * hits); odd threads open, read and close each time. Every read asks for
 * more than the largest value, so one read() returns the whole file. It
 * stops early when the file named by env VALUE_STOP appears.
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

#define MAXF 256
#define BUF (1 << 20)

static char **files;
static int nfiles;
static double end_time;
static const char *stop_file;
static atomic_ulong reads, corrupt;
static atomic_int printed;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Whether b[0..n) is one whole value. */
static int whole(const char *b, size_t n)
{
	char head[32], tail[34];
	const char *bar = memchr(b, '|', n < 24 ? n : 24);

	if (!bar || bar == b)
		return 0;
	size_t glen = bar - b;
	memcpy(head, b, glen);
	head[glen] = '\0';
	char *endp;
	unsigned long len = strtoul(bar + 1, &endp, 10);
	if (endp == bar + 1 || *endp != '|' || len != n)
		return 0;
	tail[0] = '|';
	memcpy(tail + 1, head, glen + 1);
	return n >= glen + 1 && memcmp(b + n - glen - 1, tail, glen + 1) == 0;
}

static void check(const char *path, const char *b, ssize_t n)
{
	atomic_fetch_add(&reads, 1);
	if (n > 0 && whole(b, (size_t)n))
		return;
	atomic_fetch_add(&corrupt, 1);
	if (atomic_fetch_add(&printed, 1) < 5) {
		size_t show = n > 60 ? 60 : (n < 0 ? 0 : (size_t)n);
		fprintf(stderr, "corrupt read of %s: %zd bytes: '%.*s'...'%.*s'\n", path, n,
			(int)show, b, (int)(n > 30 ? 30 : 0), n > 30 ? b + n - 30 : "");
	}
}

static void *reader(void *arg)
{
	long id = (long)arg;
	char *b = malloc(BUF);
	int fds[MAXF];

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
	for (unsigned long iter = (unsigned long)id;; iter++) {
		if ((iter & 255) == 0 &&
		    (now() > end_time || (stop_file && access(stop_file, F_OK) == 0)))
			break;
		int i = (int)(iter % (unsigned long)nfiles);
		ssize_t n;
		if (id % 2 == 0) {
			n = pread(fds[i], b, BUF, 0);
		} else {
			int fd = open(files[i], O_RDONLY);
			if (fd < 0) {
				perror(files[i]);
				exit(2);
			}
			n = read(fd, b, BUF);
			close(fd);
		}
		if (n < 0) {
			perror("read");
			exit(2);
		}
		check(files[i], b, n);
	}
	free(b);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4 || argc - 3 > MAXF) {
		fprintf(stderr, "usage: value_reader SECONDS THREADS FILE...\n");
		return 2;
	}
	end_time = now() + atof(argv[1]);
	int nthreads = atoi(argv[2]);
	files = argv + 3;
	nfiles = argc - 3;
	stop_file = getenv("VALUE_STOP");
	if (nthreads < 1 || nthreads > 64)
		return 2;
	pthread_t th[64];
	for (long i = 0; i < nthreads; i++)
		if (pthread_create(&th[i], NULL, reader, (void *)i))
			return 2;
	for (int i = 0; i < nthreads; i++)
		pthread_join(th[i], NULL);
	printf("reads=%lu corrupt=%lu\n", atomic_load(&reads), atomic_load(&corrupt));
	return 0;
}
