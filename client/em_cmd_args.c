/* SPDX-License-Identifier: MIT */
/* The grammar every daemon-facing command shares (em_cmd_parse). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_cli.h"
#include "em_cmd.h"
#include "emerge.h"

enum { O_API = 256, O_DB, O_TIMEOUT, O_JSON, O_CSV, O_SVG, O_PUB, O_WAIT, O_RULE, O_REASON };

static const struct {
  struct option opt;
  unsigned needs;       /* EM_OPT_* the command must take, 0: every command */
} table[] = {
  {{"api", required_argument, NULL, O_API}, 0},         {{"db", required_argument, NULL, O_DB}, 0},
  {{"timeout", required_argument, NULL, O_TIMEOUT}, 0}, {{"json", no_argument, NULL, O_JSON}, 0},
  {{"help", no_argument, NULL, 'h'}, 0},                {{"version", no_argument, NULL, 'V'}, 0},
  {{"csv", no_argument, NULL, O_CSV}, EM_OPT_CSV},      {{"svg", required_argument, NULL, O_SVG}, EM_OPT_SVG},
  {{"pub", required_argument, NULL, O_PUB}, EM_OPT_PUB}, {{"wait", no_argument, NULL, O_WAIT}, EM_OPT_WAIT},
  {{"rule", required_argument, NULL, O_RULE}, EM_OPT_RULE}, {{"reason", required_argument, NULL, O_REASON}, EM_OPT_REASON},
};
#define NOPTS (sizeof(table) / sizeof(*table))

/* The long options spec takes, NULL-terminated, and their names for did-you-mean. */
static size_t options_of(const em_cmd_spec_t *spec, struct option *out, const char **names)
{
  size_t n = 0;
  for (size_t i = 0; i < NOPTS; i++)
    if (!table[i].needs || (spec->opts & table[i].needs))
      names[n] = table[i].opt.name, out[n++] = table[i].opt;
  out[n] = (struct option){0};
  return n;
}

static int take_option(const em_cmd_spec_t *spec, int c, em_cmd_opts_t *o)
{
  switch (c) {
  case O_API: o->src.api = optarg; break;
  case O_DB: o->db = optarg; break;
  case O_TIMEOUT: return em_cli_timeout(spec->name, optarg, &o->src.timeout);
  case O_JSON: o->json = em_cli_globals.json = true; break;
  case O_CSV: o->csv = true; break;
  case O_SVG: o->svg = optarg; break;
  case O_PUB: o->pub = optarg; break;
  case O_WAIT: o->wait = true; break;
  case O_RULE: o->rule = optarg; break;
  case O_REASON: o->reason = optarg; break;
  }
  return 0;
}

static int take_runs(const em_cmd_spec_t *spec, int argc, char **argv, em_cmd_opts_t *o)
{
  for (int i = optind; i < argc; i++) {
    bool room = spec->want_run == EM_RUN_MANY ? o->nruns < EM_CMD_MAX_RUNS : spec->want_run && !o->run;
    if (!room && spec->want_run == EM_RUN_MANY) {
      em_cli_error(spec->name, "at most %d runs at once ('%s' is one more)", EM_CMD_MAX_RUNS, argv[i]);
      return EM_EXIT_USAGE;
    }
    if (!room) {
      em_cli_error(spec->name, "unexpected argument '%s' (emergectl %s --help)", argv[i], spec->name);
      return EM_EXIT_USAGE;
    }
    o->runs[o->nruns++] = argv[i];
    o->run = o->runs[0];
  }
  if ((spec->want_run == EM_RUN_REQUIRED || spec->want_run == EM_RUN_MANY) && !o->run) {
    em_cli_error(spec->name, "which run? (emergectl runs lists them)");
    return EM_EXIT_USAGE;
  }
  return 0;
}

int em_cmd_parse(const em_cmd_spec_t *spec, int argc, char **argv, em_cmd_opts_t *o)
{
  memset(o, 0, sizeof(*o));
  o->src.api = em_cli_globals.api;
  o->src.timeout = em_cli_globals.timeout;
  o->db = em_cli_globals.db;
  o->pub = em_cli_globals.pub;
  o->json = em_cli_globals.json;
  struct option longopts[NOPTS + 1];
  const char *names[NOPTS];
  size_t n = options_of(spec, longopts, names);
  optind = 0; /* 0, not 1: GNU getopt re-reads its optstring (main scanned with "+") */
  opterr = 0;
  int c, rc = 0;
  while (rc == 0 && (c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
    if (c == 'h' || c == 'V') {
      if (c == 'h')
        fputs(spec->help, stdout);
      else
        printf("emergectl %s\n", EM_VERSION);
      return -1;
    }
    rc = c == '?' || c == ':' ? em_cli_bad_option(spec->name, argv[optind - 1], c == ':', names, n)
                              : take_option(spec, c, o);
  }
  return rc ? rc : take_runs(spec, argc, argv, o);
}
