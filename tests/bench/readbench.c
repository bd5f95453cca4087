/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Times one file operation in a loop and prints the mean nanoseconds per
 * operation, so the benchmark can compare a file in the mount with the same
 * file on tmpfs in the same run.
 *
 *   readbench orc   FILE N     open + read(4096) + close
 *   readbench stat  FILE N     stat
 *   readbench pread FILE N     pread(4096, 0) on one open descriptor
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char buf[4096];
	struct stat st;

	if (argc != 4) {
		fprintf(stderr, "usage: readbench orc|stat|pread FILE N\n");
		return 2;
	}
	const char *mode = argv[1], *path = argv[2];
	long n = atol(argv[3]);
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	double t0 = now_ns();
	for (long i = 0; i < n; i++) {
		if (strcmp(mode, "orc") == 0) {
			int f = open(path, O_RDONLY);
			if (f < 0 || read(f, buf, sizeof(buf)) < 0) {
				perror(path);
				return 1;
			}
			close(f);
		} else if (strcmp(mode, "stat") == 0) {
			if (stat(path, &st)) {
				perror(path);
				return 1;
			}
		} else if (strcmp(mode, "pread") == 0) {
			if (pread(fd, buf, sizeof(buf), 0) < 0) {
				perror(path);
				return 1;
			}
		} else {
			fprintf(stderr, "readbench: unknown mode %s\n", mode);
			return 2;
		}
	}
	double t1 = now_ns();
	close(fd);
	printf("%.1f\n", (t1 - t0) / n);
	return 0;
}
