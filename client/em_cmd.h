/* SPDX-License-Identifier: MIT */
/* What the daemon-facing commands share: their options and request plumbing. */
#ifndef EM_CMD_H
#define EM_CMD_H

#include <cJSON.h>
#include <stdbool.h>

#include "em_result_json.h"
#include "em_source.h"

#define EM_CMD_MAX_RUNS 8

typedef struct em_cmd_opts {
  em_source_t src;
  const char *db;       /* --db as given */
  const char *run;      /* RUN (the first, with EM_RUN_MANY) */
  const char *runs[EM_CMD_MAX_RUNS]; /* EM_RUN_MANY: every RUN given */
  int nruns;
  const char *svg;      /* plot --svg FILE|- */
  const char *pub;      /* watch --pub; NULL: the daemon's own */
  const char *rule;     /* backtest --rule JSON */
  const char *reason;   /* stop --reason TEXT */
  bool json, csv, wait;
} em_cmd_opts_t;

enum { EM_RUN_NONE, EM_RUN_REQUIRED, EM_RUN_OPTIONAL, EM_RUN_MANY /* one or more, at most EM_CMD_MAX_RUNS */ };
/* The options a command takes beside the source options (--api --db --timeout --json). */
enum { EM_OPT_CSV = 1, EM_OPT_SVG = 2, EM_OPT_PUB = 4, EM_OPT_WAIT = 8, EM_OPT_RULE = 16, EM_OPT_REASON = 32 };

/* A command's grammar and its help (what it does, usage, options, examples, exit codes). */
typedef struct em_cmd_spec {
  const char *name;
  int want_run;         /* EM_RUN_* */
  unsigned opts;        /* EM_OPT_* */
  const char *help;
} em_cmd_spec_t;

/* One grammar for every command (getopt_long): --opt=value, unambiguous abbreviations,
 * options before or after RUN, -- ends them, did-you-mean for an unknown one; it starts
 * from em_cli_globals. Returns 0, -1 when --help or --version was printed, or
 * EM_EXIT_USAGE after saying why. */
int em_cmd_parse(const em_cmd_spec_t *spec, int argc, char **argv, em_cmd_opts_t *o);
/* The source options of every daemon-facing command, for help texts. */
#define EM_CMD_SOURCE_HELP                                                                               \
  "source (also before the command; EMERGE_API, EMERGE_DB set defaults; flags win):\n"                   \
  "  --api ENDPOINT     the daemon's API (tcp://127.0.0.1:5564)\n"                                       \
  "  --db FILE|ROOT     read the database directly (works while the daemon is down)\n"                   \
  "  --timeout SECONDS  how long to wait for the daemon (3)\n"                                            \
  "  --json             JSON out (and errors as JSON objects on stderr)\n"
#define EM_CMD_EXIT_HELP "exit: 0 ok, 1 failure (an unknown run names the close ones), 2 usage, 69 daemon unreachable\n"
/* One request for o->run through the chosen source; failures are reported here. */
int em_cmd_request(const char *cmd, em_cmd_opts_t *o, em_api_cmd_t what, cJSON **reply);
void em_cmd_suggest_runs(const char *cmd, em_cmd_opts_t *o, const char *err);
/* v with fmt, or "-" for NaN. */
void em_cmd_fmt_num(char *buf, size_t n, double v, const char *fmt);
/* A checkpoint's place for a table column: "300", "#3" (arrival order: no step), "-". */
void em_cmd_fmt_place(char *buf, size_t n, bool has, int64_t place, bool by_arrival);
/* The same for a result. */
void em_cmd_fmt_result_place(char *buf, size_t n, const em_result_view_t *r);
void em_cmd_print_json(const cJSON *o);
/* The reply without its "ok" member: the document --json prints. */
void em_cmd_print_document(cJSON *reply);
/* "eval_accuracy=0.71 loss=0.21" from a result's trainer metrics. */
void em_cmd_trainer_text(const em_result_view_t *r, char *buf, size_t n);

int em_cmd_runs(int argc, char **argv);
int em_cmd_history(int argc, char **argv);
int em_cmd_status(int argc, char **argv);
int em_cmd_export(int argc, char **argv);
int em_cmd_watch(int argc, char **argv);
int em_cmd_plot(int argc, char **argv);
int em_cmd_alerts(int argc, char **argv);
int em_cmd_backtest(int argc, char **argv);
int em_cmd_stop(int argc, char **argv);
int em_cmd_compare(int argc, char **argv);

#endif
