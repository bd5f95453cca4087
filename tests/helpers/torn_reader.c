/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reads N files in a tight loop through held-open descriptors (page-cache
 * hits, the fastest a reader can be) and counts torn samples: file 0 read
 * before and after the others with the same content, yet some other file
 * different. Writers give every file of one revision the same content.
 *
 *   torn_reader SECONDS FILE...     prints "samples=S torn=T distinct=D"
 *
 * It stops early when the stop file (env TORN_STOP) appears.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAXF 64
#define BUF 64

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static ssize_t rd(int fd, char *b)
{
	ssize_t n = pread(fd, b, BUF - 1, 0);
	if (n < 0) {
		perror("pread");
		exit(2);
	}
	b[n] = '\0';
	return n;
}

int main(int argc, char **argv)
{
	int fd[MAXF], n = argc - 2;
	const char *stop = getenv("TORN_STOP");
	char first[BUF], last[BUF], cur[MAXF][BUF], prev[BUF] = "";
	unsigned long samples = 0, torn = 0, distinct = 0;

	if (argc < 4 || n > MAXF) {
		fprintf(stderr, "usage: torn_reader SECONDS FILE FILE...\n");
		return 2;
	}
	double end = now() + atof(argv[1]);
	for (int i = 0; i < n; i++) {
		fd[i] = open(argv[i + 2], O_RDONLY);
		if (fd[i] < 0) {
			perror(argv[i + 2]);
			return 2;
		}
	}
	for (unsigned long iter = 0;; iter++) {
		if ((iter & 1023) == 0 && (now() > end || (stop && access(stop, F_OK) == 0)))
			break;
		rd(fd[0], first);
		int bad = 0;
		for (int i = 1; i < n; i++) {
			rd(fd[i], cur[i]);
			if (strcmp(cur[i], first) != 0)
				bad = 1;
		}
		rd(fd[0], last);
		if (strcmp(first, last) != 0)
			continue;
		samples++;
		if (strcmp(first, prev) != 0) {
			distinct++;
			strcpy(prev, first);
		}
		if (bad) {
			if (torn < 5) {
				fprintf(stderr, "torn: file0=%s", first);
				for (int i = 1; i < n; i++)
					fprintf(stderr, " %s", cur[i]);
				fprintf(stderr, "\n");
			}
			torn++;
		}
	}
	printf("samples=%lu torn=%lu distinct=%lu\n", samples, torn, distinct);
	return 0;
}
