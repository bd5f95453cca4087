/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Permission rules: parsing a rules file and matching paths against its globs. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "perms.h"

/*
 * A glob's segments are matched by a set of states, one bit per position
 * in the pattern (the NFA of the segment list): linear in path depth times
 * pattern length whatever the "**"s, so a hostile rule costs no more than
 * a long one.
 */
#define SEG_MAX 63
#define GLOB_MAX 4096
#define FILE_MAX (1 << 20)

struct rule {
	char *glob; /* the segments, each NUL-terminated, one after the other */
	const char **seg;
	size_t nseg;
	uint64_t dstar; /* bit i: segment i is "**" */
	struct perms_grant grant;
};

struct perms {
	struct rule *r;
	size_t n;
};

void perms_free(struct perms *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->r[i].glob);
		free(p->r[i].seg);
	}
	free(p->r);
	free(p);
}

size_t perms_count(const struct perms *p)
{
	return p ? p->n : 0;
}

static void fail(char *err, size_t errlen, const char *file, unsigned line, const char *fmt,
		 const char *what)
{
	char msg[256];

	snprintf(msg, sizeof(msg), fmt, what);
	if (file)
		snprintf(err, errlen, "%s line %u: %s", file, line, msg);
	else
		snprintf(err, errlen, "line %u: %s", line, msg);
}

/* A glob into its segments; NULL and a reason in *why when it is not one. */
static int parse_glob(const char *s, size_t len, struct rule *r, const char **why)
{
	if (len && s[0] == '/') {
		s++;
		len--;
	}
	while (len && s[len - 1] == '/')
		len--;
	if (len == 0) {
		*why = "an empty glob (the mount root is \"**\" or a rule for everything)";
		return -1;
	}
	if (len > GLOB_MAX) {
		*why = "a glob over 4096 bytes";
		return -1;
	}
	r->glob = malloc(len + 1);
	r->seg = calloc(SEG_MAX, sizeof(*r->seg));
	if (!r->glob || !r->seg) {
		*why = "out of memory";
		return -1;
	}
	memcpy(r->glob, s, len);
	r->glob[len] = '\0';
	for (char *p = r->glob;;) {
		char *slash = strchr(p, '/');
		if (slash)
			*slash = '\0';
		if (*p == '\0') {
			*why = "an empty segment (\"//\") in the glob";
			return -1;
		}
		if (strcmp(p, ".") == 0 || strcmp(p, "..") == 0) {
			*why = "a \".\" or \"..\" segment in the glob";
			return -1;
		}
		if (r->nseg == SEG_MAX) {
			*why = "a glob of more than 63 segments";
			return -1;
		}
		if (strcmp(p, "**") == 0)
			r->dstar |= UINT64_C(1) << r->nseg;
		r->seg[r->nseg++] = p;
		if (!slash)
			break;
		p = slash + 1;
	}
	return 0;
}

static bool parse_id(const char *s, bool group, unsigned *out, const char **why)
{
	char *end;
	char buf[16384];

	if (*s == '\0') {
		*why = group ? "an empty group" : "an empty user";
		return false;
	}
	if (*s >= '0' && *s <= '9') {
		errno = 0;
		unsigned long v = strtoul(s, &end, 10);
		if (errno || *end || v >= UINT32_MAX) {
			*why = group ? "a group id that is not a number below 2^32-1"
				     : "a user id that is not a number below 2^32-1";
			return false;
		}
		*out = (unsigned)v;
		return true;
	}
	if (group) {
		struct group gr, *res = NULL;
		if (getgrnam_r(s, &gr, buf, sizeof(buf), &res) || !res) {
			*why = "a group this host does not know";
			return false;
		}
		*out = res->gr_gid;
	} else {
		struct passwd pw, *res = NULL;
		if (getpwnam_r(s, &pw, buf, sizeof(buf), &res) || !res) {
			*why = "a user this host does not know";
			return false;
		}
		*out = res->pw_uid;
	}
	return true;
}

/* "UID:GID" and "MODE" into r->grant. */
static bool parse_grant(char *owner, const char *mode, struct rule *r, const char **why)
{
	char *colon = strchr(owner, ':');
	unsigned uid, gid;

	if (!colon) {
		*why = "an owner that is not UID:GID";
		return false;
	}
	*colon = '\0';
	if (!parse_id(owner, false, &uid, why) || !parse_id(colon + 1, true, &gid, why))
		return false;
	size_t n = strlen(mode);
	if (n == 0 || n > 6 || strspn(mode, "01234567") != n) {
		*why = "a mode that is not octal (like 0640)";
		return false;
	}
	unsigned long m = strtoul(mode, NULL, 8);
	if (m > 0777) {
		*why = "a mode with more than permission bits (at most 0777)";
		return false;
	}
	r->grant.uid = uid;
	r->grant.gid = gid;
	r->grant.mode = (mode_t)m;
	return true;
}

/* Split line (NUL-terminated, writable) into at most max whitespace-separated fields. */
static size_t fields(char *line, char **f, size_t max)
{
	size_t n = 0;

	for (char *p = line; *p;) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			break; /* the rest is a comment */
		if (n == max)
			return max + 1;
		f[n++] = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return n;
}

static int parse_line(char *line, struct perms *p, const char *file, unsigned lineno, char *err,
		      size_t errlen)
{
	char *f[5];
	size_t n = fields(line, f, 4);
	const char *why = NULL;

	if (n == 0)
		return 0;
	if (n != 3) {
		fail(err, errlen, file, lineno, "%s", "expected GLOB UID:GID MODE");
		return -1;
	}
	struct rule *nr = realloc(p->r, (p->n + 1) * sizeof(*p->r));
	if (!nr) {
		fail(err, errlen, file, lineno, "%s", "out of memory");
		return -1;
	}
	p->r = nr;
	struct rule *r = &p->r[p->n++];
	memset(r, 0, sizeof(*r));
	r->grant.line = lineno;
	if (parse_glob(f[0], strlen(f[0]), r, &why) || !parse_grant(f[1], f[2], r, &why)) {
		fail(err, errlen, file, lineno, "%s", why);
		return -1;
	}
	return 0;
}

int perms_parse(const char *text, size_t len, const char *file, struct perms **out, char *err,
		size_t errlen)
{
	struct perms *p = calloc(1, sizeof(*p));
	char *copy = malloc(len + 1);
	unsigned lineno = 0;
	int rc = 0;

	*out = NULL;
	if (!p || !copy) {
		free(copy);
		free(p);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (memchr(text, '\0', len)) {
		snprintf(err, errlen, "%s%sa NUL byte: not a rules file", file ? file : "",
			 file ? ": " : "");
		free(copy);
		free(p);
		return -1;
	}
	memcpy(copy, text, len);
	copy[len] = '\0';
	for (char *line = copy; line && rc == 0;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		size_t l = strlen(line);
		if (l && line[l - 1] == '\r')
			line[l - 1] = '\0';
		rc = parse_line(line, p, file, ++lineno, err, errlen);
		line = nl ? nl + 1 : NULL;
	}
	free(copy);
	if (rc) {
		perms_free(p);
		return -1;
	}
	*out = p;
	return 0;
}

int perms_load(const char *path, struct perms **out, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0 || fstat(fd, &st)) {
		snprintf(err, errlen, "cannot read the rules file %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	const char *bad = !S_ISREG(st.st_mode)	  ? "not a regular file"
			  : st.st_mode & S_IWOTH  ? "writable by every user, who could then "
						    "grant themselves any file"
			  : st.st_size > FILE_MAX ? "over 1 MiB"
						  : NULL;
	if (bad) {
		snprintf(err, errlen, "the rules file %s is %s", path, bad);
		close(fd);
		return -1;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	ssize_t r = 0;
	while (buf && got <= (size_t)st.st_size &&
	       (r = read(fd, buf + got, (size_t)st.st_size + 1 - got)) > 0)
		got += (size_t)r;
	int e = errno;
	close(fd);
	if (!buf || r < 0) {
		snprintf(err, errlen, "cannot read the rules file %s: %s", path,
			 buf ? strerror(e) : "out of memory");
		free(buf);
		return -1;
	}
	if (got > (size_t)st.st_size) {
		snprintf(err, errlen, "the rules file %s grew while it was read", path);
		free(buf);
		return -1;
	}
	int rc = perms_parse(buf, got, path, out, err, errlen);
	free(buf);
	return rc;
}

static uint64_t closure(const struct rule *r, uint64_t s)
{
	for (size_t i = 0; i < r->nseg; i++)
		if ((s >> i & 1) && (r->dstar >> i & 1))
			s |= UINT64_C(1) << (i + 1);
	return s;
}

static bool rule_matches(const struct rule *r, char *const *seg, size_t nseg)
{
	uint64_t s = closure(r, 1);

	for (size_t k = 0; k < nseg && s; k++) {
		uint64_t t = 0;
		for (size_t i = 0; i < r->nseg; i++) {
			if (!(s >> i & 1))
				continue;
			if (r->dstar >> i & 1)
				t |= UINT64_C(1) << i;
			else if (fnmatch(r->seg[i], seg[k], 0) == 0)
				t |= UINT64_C(1) << (i + 1);
		}
		s = closure(r, t);
	}
	return s >> r->nseg & 1;
}

bool perms_match(const struct perms *p, const char *path, struct perms_grant *g)
{
	char stack[512], *copy;
	char *segst[64], **seg;
	size_t len = strlen(path), nseg = 0, maxseg = 1;
	bool found = false;

	if (!p || p->n == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		maxseg += path[i] == '/';
	copy = len < sizeof(stack) ? stack : malloc(len + 1);
	seg = maxseg <= 64 ? segst : malloc(maxseg * sizeof(*seg));
	if (!copy || !seg)
		goto out;
	memcpy(copy, path, len + 1);
	for (char *q = copy; len;) {
		seg[nseg++] = q;
		char *slash = strchr(q, '/');
		if (!slash)
			break;
		*slash = '\0';
		q = slash + 1;
	}
	for (size_t i = p->n; i-- > 0;) {
		if (rule_matches(&p->r[i], seg, nseg)) {
			*g = p->r[i].grant;
			found = true;
			break;
		}
	}
out:
	if (copy != stack)
		free(copy);
	if (seg != segst)
		free(seg);
	return found;
}
