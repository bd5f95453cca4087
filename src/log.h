/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Logging: to stderr until the daemon detaches, to syslog afterwards. */
#ifndef CFGFS_LOG_H
#define CFGFS_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Send log lines to syslog instead of stderr (called after daemonizing). */
void log_use_syslog(bool on);

/* Print debug-level lines too. */
void log_set_verbose(bool on);

/* Log one line at a syslog level (LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG). */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
