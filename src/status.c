/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cfgfs status: finds cfgfs mounts, asks each one's root for its state, reports it. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "status.h"

/*
 * A live daemon answers getxattr from memory in well under a millisecond;
 * one that has not answered in this long is hung (SIGSTOP, a deadlock) and
 * would block the reader for ever.
 */
#define ANSWER_MS 3000

/* What each mount is asked, in this order; the first one tells whether the daemon answers. */
enum attr {
	A_URL,
	A_ENDPOINT,
	A_CONNECTED,
	A_DISCONNECTED,
	A_REV,
	A_STORE_REV,
	A_KEYS,
	A_PENDING,
	A_REFUSED,
	A_REJECTED,
	A_LAST_ERROR,
	A_COUNT
};

static const char *const attr_names[A_COUNT] = {
	[A_URL] = "user.cfgfs.url",
	[A_ENDPOINT] = "user.cfgfs.endpoint",
	[A_CONNECTED] = "user.cfgfs.connected",
	[A_DISCONNECTED] = "user.cfgfs.disconnected_since",
	[A_REV] = "user.cfgfs.revision",
	[A_STORE_REV] = "user.cfgfs.store_revision",
	[A_KEYS] = "user.cfgfs.keys",
	[A_PENDING] = "user.cfgfs.pending",
	[A_REFUSED] = "user.cfgfs.refused",
	[A_REJECTED] = "user.cfgfs.rejected",
	[A_LAST_ERROR] = "user.cfgfs.last_error",
};

/* Values larger than this are not ours (the rejected list is bounded by the daemon). */
#define VALUE_MAX 65536

enum daemon_state { D_ANSWERS, D_GONE, D_HUNG, D_UNREADABLE };

struct mount {
	char *dir;    /* the mountpoint */
	char *source; /* what mountinfo says was mounted: the URL, even when the daemon is gone */
	/* Filled by the query: */
	pid_t child;
	int fd; /* the child's answers, -1 once read */
	char *buf;
	size_t len, cap;
	enum daemon_state state;
	int err;	    /* why the root could not be read (D_GONE, D_UNREADABLE) */
	char *val[A_COUNT]; /* NULL: the attribute is absent */
	char **rejected;    /* the kept files that still exist, absolute paths */
	size_t nrejected;
};

struct mount_list {
	struct mount *v;
	size_t n, cap;
};

static void usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "cfgfs status: ");
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
}

static void oom(void)
{
	fprintf(stderr, "cfgfs status: out of memory\n");
	exit(STATUS_USAGE);
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n);
	if (!p)
		oom();
	return p;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);
	if (!d)
		oom();
	return d;
}

/* ------------------------------------------------------------ finding mounts */

/* mountinfo writes space, tab, newline and backslash as \ooo; undo that in place. */
static void unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; o++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 4;
		} else {
			*o = *p++;
		}
	}
	*o = '\0';
}

/*
 * Every cfgfs mount this process can see, in mount order. Mounts stacked
 * on one directory are listed once, as the top one: that is the one a
 * path reaches.
 */
static int find_mounts(struct mount_list *l)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t n = 0;

	if (!f)
		return -errno;
	while (getline(&line, &n, f) > 0) {
		line[strcspn(line, "\n")] = '\0';
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER */
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		char *save = NULL, *dir = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		dir = tok;
		char *type = strtok_r(sep + 3, " ", &save);
		char *source = strtok_r(NULL, " ", &save);
		if (!dir || !type || strcmp(type, "fuse.cfgfs") != 0)
			continue;
		unescape(dir);
		if (source)
			unescape(source);
		size_t i;
		for (i = 0; i < l->n && strcmp(l->v[i].dir, dir) != 0; i++)
			;
		if (i == l->n) {
			if (l->n == l->cap) {
				l->cap = l->cap ? l->cap * 2 : 8;
				l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
			}
			l->v[l->n++] = (struct mount){.dir = xstrdup(dir), .fd = -1};
		}
		free(l->v[i].source);
		l->v[i].source = xstrdup(source ? source : "");
	}
	free(line);
	fclose(f);
	return 0;
}

/*
 * path made absolute without asking the filesystem: the root of a mount
 * whose daemon is gone or hung cannot be stat'ed (realpath would fail or
 * hang), and those are exactly the mounts an operator asks about.
 */
static char *lexical_path(const char *path)
{
	char *cwd = path[0] == '/' ? NULL : getcwd(NULL, 0);
	size_t len = (cwd ? strlen(cwd) : 0) + strlen(path) + 2;
	char *in = xrealloc(NULL, len), *out = xrealloc(NULL, len);
	size_t o = 0;

	snprintf(in, len, "%s/%s", cwd ? cwd : "", path);
	free(cwd);
	for (char *save = NULL, *c = strtok_r(in, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			while (o > 0 && out[--o] != '/')
				;
			continue;
		}
		o += (size_t)sprintf(out + o, "/%s", c);
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	free(in);
	return out;
}

static struct mount *mount_named(struct mount_list *all, const char *abs)
{
	for (size_t i = 0; i < all->n; i++)
		if (strcmp(all->v[i].dir, abs) == 0)
			return &all->v[i];
	return NULL;
}

/*
 * The mount whose mountpoint is path: as written, then through symlinks.
 * The path itself is never resolved as a whole: resolving the root of a
 * hung mount would hang here. Its parent is, and a symlink it names is
 * followed (a few levels at most).
 */
static struct mount *mount_at(struct mount_list *all, const char *path, int depth)
{
	char *abs = lexical_path(path);
	struct mount *m = mount_named(all, abs);

	if (m || depth > 8 || strcmp(abs, "/") == 0) {
		free(abs);
		return m;
	}
	char *slash = strrchr(abs, '/');
	*slash = '\0';
	char *parent = realpath(abs[0] ? abs : "/", NULL);
	char *full = NULL;
	if (parent && asprintf(&full, "%s/%s", strcmp(parent, "/") ? parent : "", slash + 1) >= 0) {
		char target[PATH_MAX];
		ssize_t n = readlink(full, target, sizeof(target) - 1);
		m = mount_named(all, full);
		if (!m && n > 0) {
			target[n] = '\0';
			char *next = NULL;
			if (target[0] == '/')
				m = mount_at(all, target, depth + 1);
			else if (asprintf(&next, "%s/%s", parent, target) >= 0)
				m = mount_at(all, next, depth + 1);
			free(next);
		}
	}
	free(full);
	free(parent);
	free(abs);
	return m;
}

/* ------------------------------------------------------------ asking a mount */

/* The child's side of the pipe: one record per attribute, then the kept files that exist. */
static void put_record(int fd, uint8_t what, int32_t err, const char *v, uint32_t len)
{
	char hdr[9];

	hdr[0] = (char)what;
	memcpy(hdr + 1, &err, 4);
	memcpy(hdr + 5, &len, 4);
	if (write(fd, hdr, sizeof(hdr)) != (ssize_t)sizeof(hdr) || (len && write(fd, v, len) < 0))
		_exit(1);
}

/* getxattr into a malloc'd, NUL-terminated buffer; 0 or an errno. */
static int read_attr(const char *dir, const char *name, char **out, size_t *len)
{
	ssize_t n = getxattr(dir, name, NULL, 0);

	for (int tries = 0; n >= 0 && tries < 4; tries++) {
		size_t cap = (size_t)n + 1;
		char *buf = malloc(cap);
		if (!buf)
			return ENOMEM;
		ssize_t got = getxattr(dir, name, buf, cap - 1);
		if (got >= 0) {
			buf[got] = '\0';
			*out = buf;
			*len = (size_t)got;
			return 0;
		}
		free(buf);
		if (errno != ERANGE)
			return errno;
		/* It grew between the two calls. */
		n = getxattr(dir, name, NULL, 0);
	}
	return n < 0 ? errno : ERANGE;
}

static void child_query(const char *dir, int fd)
{
	char *kept = NULL;

	for (int i = 0; i < A_COUNT; i++) {
		char *v = NULL;
		size_t len = 0;
		int err = read_attr(dir, attr_names[i], &v, &len);
		if (len > VALUE_MAX)
			len = VALUE_MAX;
		put_record(fd, (uint8_t)i, err, v, (uint32_t)len);
		if (i == A_REJECTED && !err) {
			kept = v;
			continue;
		}
		free(v);
		/* The daemon is gone or refuses us: the rest would say the same. */
		if (i == A_URL && err)
			_exit(0);
	}
	/*
	 * The kept files an operator has not dealt with yet (merged and moved
	 * back, or removed): those make the mount unhealthy. Looked at here,
	 * where a hung daemon costs only this child.
	 */
	for (char *save = NULL, *p = kept ? strtok_r(kept, "\n", &save) : NULL; p;
	     p = strtok_r(NULL, "\n", &save)) {
		char *full = NULL;
		struct stat st;
		if (asprintf(&full, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, p) < 0)
			break;
		if (lstat(full, &st) == 0)
			put_record(fd, A_COUNT, 0, full, (uint32_t)strlen(full));
		free(full);
	}
	free(kept);
	_exit(0);
}

static void start_query(struct mount *m)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC)) {
		m->state = D_UNREADABLE;
		m->err = errno;
		return;
	}
	fflush(NULL);
	m->child = fork();
	if (m->child == 0) {
		close(p[0]);
		child_query(m->dir, p[1]);
	}
	close(p[1]);
	if (m->child < 0) {
		m->state = D_UNREADABLE;
		m->err = errno;
		close(p[0]);
		return;
	}
	m->fd = p[0];
}

static void parse_answers(struct mount *m)
{
	size_t off = 0;
	bool got_url = false;

	while (m->len - off >= 9) {
		uint8_t what = (uint8_t)m->buf[off];
		int32_t err;
		uint32_t len;
		memcpy(&err, m->buf + off + 1, 4);
		memcpy(&len, m->buf + off + 5, 4);
		if (len > m->len - off - 9)
			break;
		char *v = xrealloc(NULL, len + 1);
		memcpy(v, m->buf + off + 9, len);
		v[len] = '\0';
		off += 9 + len;
		if (what == A_COUNT) {
			m->rejected = xrealloc(m->rejected, (m->nrejected + 1) * sizeof(char *));
			m->rejected[m->nrejected++] = v;
			continue;
		}
		if (what == A_URL) {
			got_url = true;
			if (err) {
				m->state = err == ENOTCONN ? D_GONE : D_UNREADABLE;
				m->err = err;
			}
		}
		if (what < A_COUNT && !err && !m->val[what])
			m->val[what] = v;
		else
			free(v);
	}
	if (!got_url && m->state == D_ANSWERS) {
		m->state = D_UNREADABLE;
		m->err = EIO;
	}
}

/* Ask every mount at once; a mount that has not answered within ANSWER_MS is hung. */
static void query_all(struct mount **ms, size_t n)
{
	struct pollfd *pf = xrealloc(NULL, (n ? n : 1) * sizeof(*pf));
	int64_t deadline = mono_ms() + ANSWER_MS;

	for (size_t i = 0; i < n; i++)
		start_query(ms[i]);
	for (;;) {
		size_t k = 0;
		for (size_t i = 0; i < n; i++)
			if (ms[i]->fd >= 0)
				pf[k++] = (struct pollfd){.fd = ms[i]->fd, .events = POLLIN};
		int64_t left = deadline - mono_ms();
		if (k == 0 || left <= 0)
			break;
		if (poll(pf, k, (int)left) < 0 && errno != EINTR)
			break;
		for (size_t j = 0, i = 0; j < k; j++) {
			/* Only a descriptor poll reported: a read of another would block. */
			while (ms[i]->fd != pf[j].fd)
				i++;
			struct mount *m = ms[i];
			if (!pf[j].revents)
				continue;
			if (m->cap - m->len < 4096) {
				m->cap = m->cap ? m->cap * 2 : 8192;
				m->buf = xrealloc(m->buf, m->cap);
			}
			ssize_t r = read(m->fd, m->buf + m->len, m->cap - m->len);
			if (r < 0 && errno == EINTR)
				continue;
			if (r > 0) {
				m->len += (size_t)r;
				continue;
			}
			close(m->fd);
			m->fd = -1;
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct mount *m = ms[i];
		if (m->fd >= 0) {
			/* Still waiting in a FUSE request: FUSE lets SIGKILL end it. */
			close(m->fd);
			m->fd = -1;
			m->state = D_HUNG;
			kill(m->child, SIGKILL);
		}
		if (m->child > 0)
			waitpid(m->child, NULL, 0);
		if (m->state == D_ANSWERS)
			parse_answers(m);
	}
	free(pf);
}

/* ------------------------------------------------------------ reporting */

/* A decimal attribute, or -1 when absent or not a number. */
static long long number(const struct mount *m, enum attr a)
{
	const char *v = m->val[a];
	char *end;

	if (!v || !*v)
		return -1;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	return errno || *end || n < 0 ? -1 : n;
}

static bool connected(const struct mount *m)
{
	return m->state == D_ANSWERS && m->val[A_CONNECTED] &&
	       strcmp(m->val[A_CONNECTED], "1") == 0;
}

/* The problems that make m unhealthy, as short phrases; returns how many. */
static size_t problems(const struct mount *m, const char *out[4])
{
	size_t n = 0;

	if (m->state == D_GONE)
		out[n++] = "daemon not running";
	else if (m->state == D_HUNG)
		out[n++] = "daemon not answering";
	else if (m->state == D_UNREADABLE)
		out[n++] = "cannot read its status";
	else if (!connected(m))
		out[n++] = "disconnected";
	if (m->nrejected)
		out[n++] = "refused changes kept";
	return n;
}

/* "SECONDS TEXT" (user.cfgfs.last_error) split; false when malformed. */
static bool split_error(const char *v, long long *at, const char **text)
{
	char *end;

	if (!v)
		return false;
	*at = strtoll(v, &end, 10);
	if (end == v || *end != ' ')
		return false;
	*text = end + 1;
	return true;
}

static void iso_time(long long t, char *buf, size_t len, bool json)
{
	time_t tt = (time_t)t;
	struct tm tm;

	strftime(buf, len, json ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M:%S UTC",
		 gmtime_r(&tt, &tm));
}

static void ago(long long t, char *buf, size_t len)
{
	long long d = (long long)time(NULL) - t;

	if (d < 0)
		d = 0;
	if (d < 120)
		snprintf(buf, len, "%llds", d);
	else if (d < 7200)
		snprintf(buf, len, "%lldm%02llds", d / 60, d % 60);
	else if (d < 172800)
		snprintf(buf, len, "%lldh%02lldm", d / 3600, d / 60 % 60);
	else
		snprintf(buf, len, "%lldd%02lldh", d / 86400, d / 3600 % 24);
}

static const char *shown(const char *v)
{
	return v && *v ? v : "unknown";
}

static void print_text(const struct mount *m)
{
	const char *why[4];
	size_t np = problems(m, why);
	char when[64], since[32];

	printf("%s: %s", m->dir, np ? "unhealthy (" : "healthy");
	for (size_t i = 0; i < np; i++)
		printf("%s%s", i ? ", " : "", why[i]);
	printf("%s\n", np ? ")" : "");
	if (m->state != D_ANSWERS) {
		printf("  store       %s\n", shown(m->source));
		if (m->state == D_HUNG)
			printf("  daemon      no answer within %d s\n", ANSWER_MS / 1000);
		else if (m->err == EACCES)
			/* FUSE lets only the mounting user in, unless mounted with allow_other. */
			printf("  daemon      %s (mounted without -o allow_other?)\n",
			       strerror(m->err));
		else
			printf("  daemon      %s\n", strerror(m->err));
		return;
	}
	printf("  store       %s\n", shown(m->val[A_URL]));
	printf("  member      %s\n", shown(m->val[A_ENDPOINT]));
	long long lost = number(m, A_DISCONNECTED);
	if (connected(m)) {
		printf("  connected   yes\n");
	} else if (lost > 0) {
		iso_time(lost, when, sizeof(when), false);
		ago(lost, since, sizeof(since));
		printf("  connected   no, since %s (%s)\n", when, since);
	} else {
		printf("  connected   no\n");
	}
	long long rev = number(m, A_REV), srev = number(m, A_STORE_REV);
	printf("  revision    %s", shown(m->val[A_REV]));
	if (!connected(m))
		printf(" (how far behind the store: unknown while disconnected)\n");
	else if (srev < 0 || rev < 0)
		printf(" (how far behind the store: unknown)\n");
	else if (srev <= rev)
		printf(" (the store's latest known: %lld, up to date)\n", srev);
	else
		printf(" (the store's latest known: %lld, %lld behind)\n", srev, srev - rev);
	printf("  keys        %s\n", shown(m->val[A_KEYS]));
	printf("  pending     %s\n", shown(m->val[A_PENDING]));
	printf("  refused     %s%s", shown(m->val[A_REFUSED]),
	       m->val[A_REFUSED] ? " since mounted" : "");
	if (m->nrejected)
		printf("; bytes kept in:\n");
	else
		printf("\n");
	for (size_t i = 0; i < m->nrejected; i++)
		printf("                %s\n", m->rejected[i]);
	long long at;
	const char *text;
	if (split_error(m->val[A_LAST_ERROR], &at, &text)) {
		iso_time(at, when, sizeof(when), false);
		printf("  last error  %s: %s\n", when, text);
	} else {
		printf("  last error  none\n");
	}
}

/*
 * s as a JSON string. JSON is UTF-8: paths and keys may hold any byte, so a
 * byte that does not start a valid sequence is written as U+FFFD.
 */
static void json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (!s) {
		fputs("null", stdout);
		return;
	}
	putchar('"');
	while (*p) {
		unsigned c = *p;
		if (c == '"' || c == '\\') {
			printf("\\%c", c);
			p++;
		} else if (c < 0x20) {
			printf("\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			putchar((int)c);
			p++;
		} else {
			int len = c >= 0xc2 && c <= 0xdf   ? 2
				  : c >= 0xe0 && c <= 0xef ? 3
				  : c >= 0xf0 && c <= 0xf4 ? 4
							   : 0;
			bool ok = len > 0;
			for (int i = 1; ok && i < len; i++)
				ok = (p[i] & 0xc0) == 0x80;
			/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
			if (ok && len == 3)
				ok = !(c == 0xe0 && p[1] < 0xa0) && !(c == 0xed && p[1] >= 0xa0);
			if (ok && len == 4)
				ok = !(c == 0xf0 && p[1] < 0x90) && !(c == 0xf4 && p[1] >= 0x90);
			if (ok) {
				fwrite(p, 1, (size_t)len, stdout);
				p += len;
			} else {
				fputs("\\ufffd", stdout);
				p++;
			}
		}
	}
	putchar('"');
}

static void json_num(long long n)
{
	if (n < 0)
		fputs("null", stdout);
	else
		printf("%lld", n);
}

static void print_json(const struct mount *m)
{
	static const char *const daemon[] = {[D_ANSWERS] = "running",
					     [D_GONE] = "not running",
					     [D_HUNG] = "not answering",
					     [D_UNREADABLE] = "unreadable"};
	const char *why[4];
	size_t np = problems(m, why);
	char when[64];

	printf("{\"mountpoint\": ");
	json_str(m->dir);
	printf(", \"healthy\": %s, \"problems\": [", np ? "false" : "true");
	for (size_t i = 0; i < np; i++) {
		printf("%s", i ? ", " : "");
		json_str(why[i]);
	}
	printf("], \"daemon\": \"%s\", \"error\": ", daemon[m->state]);
	if (m->state == D_GONE || m->state == D_UNREADABLE)
		json_str(strerror(m->err));
	else
		printf("null");
	printf(", \"url\": ");
	json_str(m->state == D_ANSWERS ? m->val[A_URL] : m->source);
	printf(", \"endpoint\": ");
	json_str(m->val[A_ENDPOINT]);
	printf(", \"connected\": %s, \"disconnected_since\": ", m->state != D_ANSWERS ? "null"
								: connected(m)	      ? "true"
										      : "false");
	long long lost = number(m, A_DISCONNECTED);
	if (!connected(m) && lost > 0) {
		iso_time(lost, when, sizeof(when), true);
		json_str(when);
	} else {
		printf("null");
	}
	long long rev = number(m, A_REV), srev = number(m, A_STORE_REV);
	printf(", \"revision\": ");
	json_num(rev);
	printf(", \"store_revision\": ");
	json_num(srev);
	printf(", \"behind\": ");
	json_num(connected(m) && rev >= 0 && srev >= 0 ? (srev > rev ? srev - rev : 0) : -1);
	printf(", \"keys\": ");
	json_num(number(m, A_KEYS));
	printf(", \"pending\": ");
	json_num(number(m, A_PENDING));
	printf(", \"refused\": ");
	json_num(number(m, A_REFUSED));
	printf(", \"rejected\": [");
	for (size_t i = 0; i < m->nrejected; i++) {
		printf("%s", i ? ", " : "");
		json_str(m->rejected[i]);
	}
	printf("], \"last_error\": ");
	long long at;
	const char *text;
	if (split_error(m->val[A_LAST_ERROR], &at, &text)) {
		iso_time(at, when, sizeof(when), true);
		printf("{\"time\": ");
		json_str(when);
		printf(", \"message\": ");
		json_str(text);
		printf("}");
	} else {
		printf("null");
	}
	printf("}");
}

static void mount_clear(struct mount *m)
{
	free(m->dir);
	free(m->source);
	free(m->buf);
	for (int i = 0; i < A_COUNT; i++)
		free(m->val[i]);
	for (size_t i = 0; i < m->nrejected; i++)
		free(m->rejected[i]);
	free(m->rejected);
}

int status_main(int argc, char **argv)
{
	struct mount_list all = {0};
	struct mount **ms = NULL;
	size_t n = 0;
	bool json = false, dashdash = false;
	int rc = STATUS_OK;

	for (int i = 1; i < argc; i++) {
		if (dashdash || argv[i][0] != '-') {
			continue;
		} else if (strcmp(argv[i], "--") == 0) {
			dashdash = true;
		} else if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			printf("usage: cfgfs status [--json] [MOUNTPOINT...]\n"
			       "  the state of each cfgfs mount (all of them by default);\n"
			       "  exit 0: all healthy, 1: one is not, 2: bad arguments\n");
			return STATUS_OK;
		} else {
			usage_error(
				"unknown option %s (usage: cfgfs status [--json] [MOUNTPOINT...])",
				argv[i]);
			return STATUS_USAGE;
		}
	}
	int err = find_mounts(&all);
	if (err) {
		fprintf(stderr, "cfgfs status: cannot read /proc/self/mountinfo: %s\n",
			strerror(-err));
		return STATUS_USAGE;
	}
	ms = xrealloc(NULL, (all.n + (size_t)argc + 1) * sizeof(*ms));
	dashdash = false;
	bool named = false;
	for (int i = 1; i < argc; i++) {
		if (!dashdash && argv[i][0] == '-') {
			dashdash = strcmp(argv[i], "--") == 0;
			continue;
		}
		named = true;
		struct mount *m = mount_at(&all, argv[i], 0);
		if (!m) {
			usage_error("%s is not a cfgfs mount", argv[i]);
			rc = STATUS_USAGE;
			goto out;
		}
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup = dup || ms[j] == m;
		if (!dup)
			ms[n++] = m;
	}
	if (!named)
		for (size_t i = 0; i < all.n; i++)
			ms[n++] = &all.v[i];

	query_all(ms, n);
	const char *why[4];
	for (size_t i = 0; i < n; i++)
		if (problems(ms[i], why))
			rc = STATUS_UNHEALTHY;
	if (json) {
		printf("{\"healthy\": %s, \"mounts\": [", rc ? "false" : "true");
		for (size_t i = 0; i < n; i++) {
			printf("%s", i ? ",\n  " : "\n  ");
			print_json(ms[i]);
		}
		printf("%s]}\n", n ? "\n" : "");
	} else if (n == 0) {
		printf("no cfgfs mounts\n");
	} else {
		for (size_t i = 0; i < n; i++) {
			if (i)
				putchar('\n');
			print_text(ms[i]);
		}
	}
	if (fflush(stdout)) {
		fprintf(stderr, "cfgfs status: cannot write: %s\n", strerror(errno));
		rc = STATUS_USAGE;
	}
out:
	for (size_t i = 0; i < all.n; i++)
		mount_clear(&all.v[i]);
	free(all.v);
	free(ms);
	return rc;
}
