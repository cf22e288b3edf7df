/* SPDX-License-Identifier: MIT */
/* The daemon: owns the libuv loop and wires what runs on it (walker, timers, signals,
 * ZeroMQ sockets, deliveries) to the worker queue, the store thread and the tracker. */
#ifndef EM_SERVER_H
#define EM_SERVER_H

#include "em_config.h"

/* Exit codes of emerged. */
#define EM_EXIT_OK 0
#define EM_EXIT_FAIL 1
#define EM_EXIT_USAGE 2

/* Runs the daemon until SIGTERM/SIGINT; returns the exit code. */
int em_server_run(em_config_t *cfg);

#endif
