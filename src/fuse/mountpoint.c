/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What is at the mountpoint before we mount there. The kernel lets a FUSE filesystem be
 * mounted over anything, so the mistakes that hide a configuration are caught here: files
 * that the mount would hide, a live cfgfs already there. And the one state a restart must
 * get past without an operator: the dead mount a killed cfgfs leaves behind.
 */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mountpoint.h"

extern char **environ;

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *w = s;

	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

/*
 * The filesystem type and source of the topmost mount at path (canonical), from
 * /proc/self/mountinfo; 0 if found. Later lines are mounted later, so the last match is
 * the one a lookup of path reaches.
 */
static int mounted_at(const char *path, char *type, size_t tlen, char *source, size_t slen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = -1;

	if (!f)
		return -1;
	while (getline(&line, &cap, f) > 0) {
		/* id parent major:minor root mountpoint options [optional...] - type source ... */
		char *save, *fields[5], *tok = strtok_r(line, " \n", &save);
		int i = 0;
		for (; tok && i < 5; tok = strtok_r(NULL, " \n", &save))
			fields[i++] = tok;
		if (i < 5)
			continue;
		unescape(fields[4]);
		if (strcmp(fields[4], path) != 0)
			continue;
		while (tok && strcmp(tok, "-") != 0)
			tok = strtok_r(NULL, " \n", &save);
		char *t = tok ? strtok_r(NULL, " \n", &save) : NULL;
		char *s = t ? strtok_r(NULL, " \n", &save) : NULL;
		if (!s)
			continue;
		unescape(s);
		snprintf(type, tlen, "%s", t);
		snprintf(source, slen, "%s", s);
		found = 0;
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * path made absolute with its directories' symlinks resolved, as mountinfo names it. The
 * last component is not resolved: on a dead mount stat of it fails (ENOTCONN).
 */
static char *canonical(const char *path)
{
	char *d = strdup(path), *b = strdup(path), *out = NULL;

	if (d && b) {
		char *dir = realpath(dirname(d), NULL);
		const char *base = basename(b);
		if (dir && strcmp(base, "/") == 0)
			out = strdup("/");
		else if (dir && (strcmp(base, ".") == 0 || strcmp(base, "..") == 0))
			out = realpath(path, NULL);
		else if (dir &&
			 asprintf(&out, "%s%s%s", dir, strcmp(dir, "/") ? "/" : "", base) < 0)
			out = NULL;
		free(dir);
	}
	free(d);
	free(b);
	return out;
}

/* Lazily unmount path: what `fusermount3 -uz` does, and as that when we are not root. */
static int detach(const char *path)
{
	if (umount2(path, MNT_DETACH) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	char *argv[] = {"fusermount3", "-u", "-z", "-q", (char *)path, NULL};
	pid_t pid;
	int status;
	int err = posix_spawnp(&pid, "fusermount3", NULL, NULL, argv, environ);
	if (err)
		return -err;
	if (waitpid(pid, &status, 0) < 0)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
}

static bool is_cfgfs(const char *type)
{
	return strcmp(type, "fuse.cfgfs") == 0;
}

/*
 * Whether the FUSE mount at path still has a daemon: its attributes may be cached for a day,
 * but statfs always asks. A child asks, so that a daemon that is alive but stuck cannot
 * stick us; a fatal signal ends a FUSE request. 1 alive (or not answering), 0 dead.
 */
static int has_daemon(const char *path)
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct statfs sf;
		_exit(statfs(path, &sf) == 0 ? 0 : errno == ENOTCONN ? 1 : 2);
	}
	for (int i = 0; i < 200; i++) { /* 2 s */
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return !(WIFEXITED(status) && WEXITSTATUS(status) == 1);
		if (r < 0)
			return -errno;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return 1;
}

static int empty_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int empty = 1;

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

int mountpoint_prepare(const char *path, bool nonempty, char **canon_out, char *err, size_t errlen)
{
	char type[64], source[PATH_MAX];
	struct stat st;
	char *canon = canonical(path);
	int rc = -1;

	if (!canon) {
		snprintf(err, errlen, "mountpoint %s: %s", path, strerror(errno));
		return -1;
	}
	bool ours = mounted_at(canon, type, sizeof(type), source, sizeof(source)) == 0 &&
		    is_cfgfs(type);
	if ((ours && has_daemon(canon) == 0) || (stat(path, &st) != 0 && errno == ENOTCONN)) {
		/* A FUSE mount whose daemon is gone: ours is ours to clear, another's is not. */
		if (!ours) {
			snprintf(err, errlen,
				 "mountpoint %s: %s (a filesystem whose daemon died; "
				 "fusermount3 -uz %s clears it)",
				 path, strerror(ENOTCONN), path);
			goto out;
		}
		int e = detach(canon);
		if (e) {
			snprintf(
				err, errlen,
				"mountpoint %s is the dead mount of a cfgfs that stopped (%s), and "
				"detaching it failed: %s",
				path, source, strerror(-e));
			goto out;
		}
		log_warn("mountpoint %s was the dead mount of a cfgfs that stopped (%s): detached "
			 "it",
			 path, source);
	}
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "mountpoint %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "mountpoint %s is not a directory", path);
		goto out;
	}
	if (mounted_at(canon, type, sizeof(type), source, sizeof(source)) == 0 && is_cfgfs(type)) {
		snprintf(err, errlen,
			 "mountpoint %s is already a cfgfs mount of %s (fusermount3 -u %s first)",
			 path, source, path);
		goto out;
	}
	int e = nonempty ? 1 : empty_dir(path);
	if (e < 0) {
		snprintf(err, errlen, "mountpoint %s: %s", path, strerror(-e));
		goto out;
	}
	if (e == 0) {
		snprintf(err, errlen,
			 "mountpoint %s is not empty: the mount would hide its files "
			 "(-o nonempty mounts over them)",
			 path);
		goto out;
	}
	*canon_out = realpath(path, NULL);
	if (!*canon_out) {
		snprintf(err, errlen, "mountpoint %s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(canon);
	return rc;
}
