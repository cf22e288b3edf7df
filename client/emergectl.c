/* SPDX-License-Identifier: MIT */
/* emergectl: the command-line client. A thin table of commands; each lives in its own
 * em_cmd_<name>.c. Global options may come before the command (emergectl --json runs). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_cli.h"
#include "em_cmd.h"
#include "emerge.h"

static const struct command {
  const char *name;
  em_cmd_fn fn;
  const char *summary;
} commands[] = {
  {"analyze", em_cmd_analyze, "analyse checkpoint files offline (no daemon)"},
  {"runs", em_cmd_runs, "runs with checkpoint counts by state, last step, last E"},
  {"history", em_cmd_history, "every result of a run in step order, and its other checkpoints"},
  {"status", em_cmd_status, "the daemon: uptime, queue, workers, last seq, endpoints, database"},
  {"watch", em_cmd_watch, "stored results, then live results, alerts and failed checkpoints, until Ctrl-C"},
  {"plot", em_cmd_plot, "E ± 2 SE against step for runs overlaid, and their spectra, as a standalone SVG"},
  {"export", em_cmd_export, "all stored values of a run, spectra included (--csv or --json)"},
  {"alerts", em_cmd_alerts, "early-stop alerts raised (alerts clear RUN removes the run's stop file)"},
  {"backtest", em_cmd_backtest, "where an early-stop rule would have fired on a run's history"},
  {"compare", em_cmd_compare, "several runs' E ± SE side by side, one row per step (--svg: plotted)"},
  {"stop", em_cmd_stop, "stop a run by hand: an alert of rule manual, its stop file and PUB message"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(*commands))

static void usage(FILE *out)
{
  fprintf(out, "emergectl: look at what emerged measured, or analyse checkpoints yourself.\n\n"
               "examples:\n"
               "  emergectl analyze out/checkpoint-*        E ± SE of each checkpoint, offline\n"
               "  emergectl runs                            what the daemon follows\n"
               "  emergectl watch mlp                       results of run mlp as they come\n"
               "  emergectl plot lr1 lr2 --svg sweep.svg    two runs overlaid\n\n"
               "usage: emergectl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
  for (size_t i = 0; i < NCOMMANDS; i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nglobal options (also after the command):\n"
               "  --api ENDPOINT     the daemon's API (tcp://127.0.0.1:5564; EMERGE_API)\n"
               "  --pub ENDPOINT     its PUB socket, for watch (default: the one the daemon names; EMERGE_PUB)\n"
               "  --db FILE|ROOT     read the database directly (EMERGE_DB)\n"
               "  --timeout SECONDS  how long to wait for the daemon (3)\n"
               "  --json             JSON out, and errors as JSON objects on stderr\n"
               "  -h, --help         this; `emergectl COMMAND --help` describes a command\n"
               "  -V, --version      the version\n\n"
               "exit: 0 ok, 1 failure, 2 usage, 69 daemon unreachable\n");
}

/* The options before the command; returns the index of the command, or -exit code. */
static int global_options(int argc, char **argv)
{
  static const struct option longopts[] = {
    {"api", required_argument, NULL, 'a'}, {"pub", required_argument, NULL, 'p'},
    {"db", required_argument, NULL, 'd'},  {"timeout", required_argument, NULL, 't'},
    {"json", no_argument, NULL, 'j'},      {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},   {NULL, 0, NULL, 0},
  };
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+:hV", longopts, NULL)) != -1) {
    switch (c) {
    case 'a': em_cli_globals.api = optarg; break;
    case 'p': em_cli_globals.pub = optarg; break;
    case 'd': em_cli_globals.db = optarg; break;
    case 'j': em_cli_globals.json = true; break;
    case 'h': usage(stdout); return -EM_EXIT_OK;
    case 'V': printf("emergectl %s\n", EM_VERSION); return -EM_EXIT_OK;
    case 't':
      if (em_cli_timeout(NULL, optarg, &em_cli_globals.timeout) != 0)
        return -EM_EXIT_USAGE;
      break;
    default:
      em_cli_error(NULL, "%s '%s' before the command (emergectl --help)",
                   c == ':' ? "a value missing after" : "unknown global option", argv[optind - 1]);
      return -EM_EXIT_USAGE;
    }
  }
  return optind;
}

int main(int argc, char **argv)
{
  em_cli_globals_init();
  int at = global_options(argc, argv);
  if (at <= 0)
    return -at;
  if (at >= argc) {
    usage(stderr);
    return EM_EXIT_USAGE;
  }
  if (strcmp(argv[at], "help") == 0) {
    usage(stdout);
    return EM_EXIT_OK;
  }
  const char *names[NCOMMANDS];
  for (size_t i = 0; i < NCOMMANDS; i++) {
    if (strcmp(argv[at], commands[i].name) == 0)
      return commands[i].fn(argc - at, argv + at);
    names[i] = commands[i].name;
  }
  const char *near = em_cli_nearest(argv[at], names, NCOMMANDS);
  em_cli_error(NULL, "unknown command '%s'%s%s%s (emergectl --help lists them)", argv[at],
               near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
  return EM_EXIT_USAGE;
}
