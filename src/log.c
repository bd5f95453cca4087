/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Logging: to stderr until the daemon detaches, to syslog afterwards. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

static bool to_syslog;
static bool verbose;

void log_use_syslog(bool on)
{
	if (on && !to_syslog)
		openlog("cfgfs", LOG_PID, LOG_DAEMON);
	to_syslog = on;
}

void log_set_verbose(bool on)
{
	verbose = on;
}

void log_msg(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (level == LOG_DEBUG && !verbose)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (to_syslog) {
		syslog(level, "%s", line);
		return;
	}
	/* One write per line, so lines from several threads never interleave. */
	char out[sizeof(line) + 16];
	int n = snprintf(out, sizeof(out), "cfgfs: %s\n", line);
	if (n > (int)sizeof(out) - 1)
		n = sizeof(out) - 1;
	fwrite(out, 1, n, stderr);
}
