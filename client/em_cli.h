/* SPDX-License-Identifier: MIT */
/* What every emergectl command shares: exit codes, the global options, and messages
 * (clig.dev: data on stdout, messages on stderr; under --json, messages are JSON too). */
#ifndef EM_CLI_H
#define EM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define EM_EXIT_OK 0
#define EM_EXIT_FAIL 1
#define EM_EXIT_USAGE 2
#define EM_EXIT_UNAVAILABLE 69

/* What every command starts from: the defaults, then EMERGE_API, EMERGE_PUB, EMERGE_DB,
 * then the global options given before the command; the command's own flags win. */
typedef struct em_cli_globals {
  const char *api, *pub, *db;
  double timeout;
  bool json;
} em_cli_globals_t;
extern em_cli_globals_t em_cli_globals;

/* Fills em_cli_globals from the environment. */
void em_cli_globals_init(void);

/* "emergectl: <cmd>: message\n" on stderr; {"error":...,"command":...} under --json. */
void em_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Edit distance (capped at 99 for long strings), and the name of names closest to s
 * (at most 2 edits, or s a prefix of it), NULL when none is. */
size_t em_cli_distance(const char *a, const char *b);
const char *em_cli_nearest(const char *s, const char *const *names, size_t n);
/* "--samples, --seed": the option names that s abbreviates, when more than one does
 * (getopt_long refuses such an abbreviation); false otherwise. */
bool em_cli_ambiguous(const char *s, const char *const *names, size_t n, char *out, size_t len);

/* The refusal of option arg ("--samp", "--seed" missing its value, "--s" that abbreviates
 * two of names): the message, with did-you-mean; returns EM_EXIT_USAGE. cmd names the
 * command, NULL before one. */
int em_cli_bad_option(const char *cmd, const char *arg, bool missing, const char *const *names, size_t n);
/* --timeout's value: seconds in (0, 3600]; 0, or EM_EXIT_USAGE after saying why. */
int em_cli_timeout(const char *cmd, const char *text, double *out);

/* A command: argv[0] is the command's own name. Returns the exit code. */
typedef int (*em_cmd_fn)(int argc, char **argv);

int em_cmd_analyze(int argc, char **argv);

#endif
