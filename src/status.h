/* SPDX-License-Identifier: GPL-2.0-or-later */
/* cfgfs status: what each cfgfs mount says about itself, for operators and monitoring. */
#ifndef CFGFS_STATUS_H
#define CFGFS_STATUS_H

/* Exit codes of cfgfs status. */
#define STATUS_OK 0	   /* every mount shown is healthy */
#define STATUS_UNHEALTHY 1 /* one is disconnected, dead, hung, or kept refused bytes */
#define STATUS_USAGE 2	   /* bad arguments, or a path that is not a cfgfs mount */

/*
 * `cfgfs status [--json] [MOUNTPOINT...]`, argv[0] being "status". Reads
 * only the extended attributes of each mount's root, each in a child
 * process given a few seconds, so a hung daemon cannot hang the command.
 * Returns the exit code.
 */
int status_main(int argc, char **argv);

#endif
