/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Reading /proc/self/mountinfo: for the mountpoint checks and for `cfgfs status`. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mountinfo.h"

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

int mountinfo_each(bool (*fn)(void *ctx, const struct mountinfo_entry *e), void *ctx)
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
		char *save = NULL, *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		char *dir = tok;
		char *type = strtok_r(sep + 3, " ", &save);
		char *source = strtok_r(NULL, " ", &save);
		if (!dir || !type)
			continue;
		unescape(dir);
		if (source)
			unescape(source);
		struct mountinfo_entry e = {dir, type, source ? source : ""};
		if (!fn(ctx, &e))
			break;
	}
	free(line);
	fclose(f);
	return 0;
}
