/* SPDX-License-Identifier: MIT */
/* What every emergectl command shares: exit codes and message helpers (clig.dev: data on
 * stdout, messages on stderr). */
#ifndef EM_CLI_H
#define EM_CLI_H

#include <stdio.h>

#define EM_EXIT_OK 0
#define EM_EXIT_FAIL 1
#define EM_EXIT_USAGE 2
#define EM_EXIT_UNAVAILABLE 69

/* "emergectl: <cmd>: message\n" on stderr. */
void em_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A command: argv[0] is the command's own name. Returns the exit code. */
typedef int (*em_cmd_fn)(int argc, char **argv);

int em_cmd_analyze(int argc, char **argv);

#endif
