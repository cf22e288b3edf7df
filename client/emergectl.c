/* SPDX-License-Identifier: MIT */
/* emergectl: the command-line client. A thin table of commands; each lives in its own
 * em_cmd_<name>.c. */
#include <stdio.h>
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
  {"status", em_cmd_status, "the daemon: uptime, queue, workers, last seq, database"},
  {"watch", em_cmd_watch, "follow new results live (full history first), until Ctrl-C"},
  {"plot", em_cmd_plot, "E against step and the spectra of a run, as a standalone SVG"},
  {"export", em_cmd_export, "all stored values of a run, spectra included (--csv or --json)"},
  {"alerts", em_cmd_alerts, "early-stop alerts raised (alerts clear RUN removes the run's stop file)"},
  {"backtest", em_cmd_backtest, "where an early-stop rule would have fired on a run's history"},
};

static void usage(FILE *out)
{
  fprintf(out, "usage: emergectl COMMAND [OPTIONS] [ARGS]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof(commands) / sizeof(*commands); i++)
    fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\n`emergectl COMMAND --help` describes a command.\n");
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    usage(stderr);
    return EM_EXIT_USAGE;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return EM_EXIT_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("emergectl %s\n", EM_VERSION);
    return EM_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(*commands); i++) {
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].fn(argc - 1, argv + 1);
  }
  em_cli_error(NULL, "unknown command '%s'", argv[1]);
  usage(stderr);
  return EM_EXIT_USAGE;
}
