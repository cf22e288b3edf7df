/* SPDX-License-Identifier: MIT */
/* The daemon: owns the libuv loop and everything on it (watcher, timers, signals, ZeroMQ
 * sockets), the worker queue and the store thread, and the table of checkpoints it
 * tracks from first sight until their version has a result or a final state. */
#ifndef EM_SERVER_H
#define EM_SERVER_H

#include "em_config.h"

/* Exit codes of emerged. */
#define EM_EXIT_OK 0
#define EM_EXIT_FAIL 1
#define EM_EXIT_USAGE 2

/* Picks the database path for cfg (DESIGN.md "Storage") into out; says why in the log.
 * Sets *network when the root is on a network filesystem (then polling is used). */
int em_server_db_path(const em_config_t *cfg, char *out, size_t len, bool *network, char *err, size_t errlen);

/* Runs the daemon until SIGTERM/SIGINT; returns the exit code. */
int em_server_run(em_config_t *cfg);

#endif
