/* SPDX-License-Identifier: MIT */
/* emergectl runs | history RUN | status | export RUN --csv|--json: what the daemon (or
 * its database) knows, as a table on stdout or one JSON document with --json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "em_cli.h"
#include "em_cmd.h"
#include "em_history.h"
#include "em_result_json.h"
#include "em_runs.h"
#include "em_status.h"
#include "em_wire.h"

/* Sends a request through the chosen source; reports failures. */
int em_cmd_request(const char *cmd, em_cmd_opts_t *o, em_api_cmd_t what, cJSON **reply)
{
  char err[1024];
  bool live = false;
  if (o->db && !o->src.db && em_source_open_db(&o->src, o->db, &live, err, sizeof(err)) != 0) {
    em_cli_error(cmd, "%s", err);
    return EM_EXIT_FAIL;
  }
  em_api_request_t req = {.cmd = what};
  if (o->run) {
    snprintf(req.run, sizeof(req.run), "%s", o->run);
    req.has_run = true;
  }
  bool use_db = o->db && !(live && what == EM_API_STATUS);
  int rc = em_source_request(&o->src, use_db, &req, reply, err, sizeof(err));
  if (rc == EM_EXIT_UNAVAILABLE && o->db) /* the daemon the database names is gone or stuck */
    rc = em_source_request(&o->src, true, &req, reply, err, sizeof(err));
  if (rc == EM_EXIT_FAIL && strncmp(err, "unknown run", 11) == 0)
    em_cmd_suggest_runs(cmd, o, err);
  else if (rc)
    em_cli_error(cmd, "%s", err);
  return rc;
}

/* Up to 10 names of v, those close to run (or all when none is), comma-separated. */
static bool list_runs(const em_run_info_t *v, size_t n, const char *run, bool close_only, char *out, size_t len)
{
  size_t used = 0, listed = 0;
  out[0] = 0;
  for (size_t i = 0; i < n && listed < 10 && used < len - 64; i++) {
    const char *name = v[i].run;
    if (close_only && !(em_cli_distance(name, run) <= 2 || strstr(name, run) || strstr(run, name)))
      continue;
    used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "", name);
    listed++;
  }
  if (!close_only && n > listed)
    snprintf(out + used, len - used, ", ... (%zu in all)", n);
  return listed > 0;
}

/* "unknown run 'x'" with the runs whose names are close, else the known ones. */
void em_cmd_suggest_runs(const char *cmd, em_cmd_opts_t *o, const char *err)
{
  cJSON *runs = NULL;
  em_api_request_t req = {.cmd = EM_API_RUNS};
  char e2[256], names[640] = "";
  em_run_info_t *v = NULL;
  size_t n = 0;
  const char *how = "";
  if (em_source_request(&o->src, o->db != NULL, &req, &runs, e2, sizeof(e2)) == 0 &&
      em_runs_decode(runs, &v, &n, e2, sizeof(e2)) == 0)
    how = list_runs(v, n, o->run, true, names, sizeof(names)) ? "; did you mean: "
          : list_runs(v, n, o->run, false, names, sizeof(names)) ? "; known: " : "; no runs yet";
  free(v);
  cJSON_Delete(runs);
  em_cli_error(cmd, "%s%s%s", err, how, names);
}

void em_cmd_print_json(const cJSON *o)
{
  char *s = cJSON_PrintUnformatted(o);
  if (s)
    printf("%s\n", s);
  free(s);
}

/* The reply without its "ok" member: the document --json prints. */
void em_cmd_print_document(cJSON *reply)
{
  cJSON_DeleteItemFromObjectCaseSensitive(reply, "ok");
  em_cmd_print_json(reply);
}

void em_cmd_fmt_num(char *buf, size_t n, double v, const char *fmt)
{
  if (isnan(v))
    snprintf(buf, n, "-");
  else
    snprintf(buf, n, fmt, v);
}

void em_cmd_fmt_place(char *buf, size_t n, bool has, int64_t place, bool by_arrival)
{
  if (!has)
    snprintf(buf, n, "-");
  else
    snprintf(buf, n, by_arrival ? "#%lld" : "%lld", (long long)place);
}

void em_cmd_fmt_result_place(char *buf, size_t n, const em_result_view_t *r)
{
  int64_t place;
  bool by_arrival, has = em_result_place(r, &place, &by_arrival);
  em_cmd_fmt_place(buf, n, has, place, by_arrival);
}

static void print_runs(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json) {
    em_cmd_print_document(reply);
    return;
  }
  em_run_info_t *v;
  size_t n;
  char err[200];
  if (em_runs_decode(reply, &v, &n, err, sizeof(err)) != 0) {
    em_cli_error("runs", "malformed reply: %s", err);
    return;
  }
  printf("%-24s %6s %6s %6s %10s %9s\n", "RUN", "CKPTS", "DONE", "OTHER", "LAST STEP", "LAST E");
  for (size_t i = 0; i < n; i++) {
    char step[24], e[24];
    em_cmd_fmt_num(step, sizeof(step), v[i].has_last_step ? (double)v[i].last_step : NAN, "%.0f");
    em_cmd_fmt_num(e, sizeof(e), v[i].last_emergence, "%+.4f");
    printf("%-24s %6lld %6lld %6lld %10s %9s\n", v[i].run, (long long)v[i].checkpoints, (long long)v[i].done,
           (long long)(v[i].checkpoints - v[i].done), step, e);
  }
  free(v);
}

/* The skeleton of every query command: options, one request, print, clean up. */
typedef void (*print_fn)(cJSON *reply, const em_cmd_opts_t *o);

static int query_command(const em_cmd_spec_t *spec, int argc, char **argv, em_api_cmd_t what, print_fn print)
{
  em_cmd_opts_t o;
  int rc = em_cmd_parse(spec, argc, argv, &o);
  if (rc)
    return rc < 0 ? EM_EXIT_OK : rc;
  if (strcmp(spec->name, "export") == 0 && o.csv == o.json) {
    em_cli_error(spec->name, "say --csv or --json");
    return EM_EXIT_USAGE;
  }
  cJSON *reply = NULL;
  if ((rc = em_cmd_request(spec->name, &o, what, &reply)) == 0)
    print(reply, &o);
  cJSON_Delete(reply);
  em_source_close(&o.src);
  return rc;
}

int em_cmd_runs(int argc, char **argv)
{
  static const em_cmd_spec_t spec = {"runs", EM_RUN_NONE, 0,
    "emergectl runs: the runs the daemon knows, with checkpoint counts by state, the last step and last E.\n\n"
    "usage: emergectl runs [SOURCE]\n\n" EM_CMD_SOURCE_HELP "\nexamples:\n"
    "  emergectl runs\n  emergectl runs --db /data/out --json\n\n" EM_CMD_EXIT_HELP};
  return query_command(&spec, argc, argv, EM_API_RUNS, print_runs);
}

/* The two trainer metrics most worth showing: accuracy-like, then loss-like. */
void em_cmd_trainer_text(const em_result_view_t *r, char *buf, size_t n)
{
  buf[0] = 0;
  size_t used = 0;
  for (size_t i = 0; i < r->nmetrics; i++) {
    const em_metric_t *m = &r->metrics[i];
    if ((strstr(m->name, "acc") || strstr(m->name, "loss")) && used < n - 40)
      used += (size_t)snprintf(buf + used, n - used, "%s%s=%.4g", used ? " " : "", m->name, m->value);
  }
}

static void print_results(const em_result_view_t *v, size_t n)
{
  printf("%10s %9s %7s %8s %8s %6s  %s\n", "STEP", "E", "±SE", "ALPHA0", "WIDTH", "NODES", "TRAINER");
  for (size_t i = 0; i < n; i++) {
    char step[24], e[24], se[24], metrics[256];
    em_cmd_fmt_result_place(step, sizeof(step), &v[i]);
    em_cmd_fmt_num(e, sizeof(e), v[i].emergence, "%+.4f");
    em_cmd_fmt_num(se, sizeof(se), v[i].emergence_se, "%.4f");
    em_cmd_trainer_text(&v[i], metrics, sizeof(metrics));
    printf("%10s %9s %7s %8.4f %8.4f %6.0f  %s\n", step, e, se, v[i].alpha0, v[i].width, v[i].nodes, metrics);
  }
}

/* The checkpoints without a result: queued, failed, unsupported, ... */
static void print_checkpoints(const cJSON *checkpoints)
{
  const cJSON *item;
  cJSON_ArrayForEach(item, checkpoints)
  {
    em_hist_entry_t c;
    if (em_checkpoint_from_json(item, &c) != 0) {
      em_cli_error("history", "skipping a malformed checkpoint object");
      continue;
    }
    char step[24];
    em_cmd_fmt_place(step, sizeof(step), true, c.step, c.by_arrival);
    printf("%10s %9s  %s%s%s\n", step, em_state_name(c.state), c.path ? c.path : "?", c.error ? ": " : "",
           c.error ? c.error : "");
  }
}

static void print_history(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json) {
    em_cmd_print_document(reply);
    return;
  }
  em_result_view_t *v;
  size_t n;
  char err[200];
  if (em_results_decode(reply, &v, &n, err, sizeof(err)) != 0) {
    em_cli_error("history", "malformed reply: %s", err);
    return;
  }
  print_results(v, n);
  print_checkpoints(cJSON_GetObjectItemCaseSensitive(reply, "checkpoints"));
  em_results_free(v, n);
}

int em_cmd_history(int argc, char **argv)
{
  static const em_cmd_spec_t spec = {"history", EM_RUN_REQUIRED, 0,
    "emergectl history: every result of a run in step order (E ± SE, alpha0, width, the trainer's metrics),\n"
    "then its checkpoints without one (queued, failed, vanished, nonfinite, unsupported, with why).\n\n"
    "usage: emergectl history RUN [SOURCE]\n\n" EM_CMD_SOURCE_HELP "\nexamples:\n"
    "  emergectl history mlp\n  emergectl history sweep/lr1 --json | jq '.results[].emergence'\n\n"
    EM_CMD_EXIT_HELP};
  return query_command(&spec, argc, argv, EM_API_HISTORY, print_history);
}

static void print_status(cJSON *reply, const em_cmd_opts_t *o)
{
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(reply, "status");
  if (o->json) {
    em_cmd_print_json(st);
    return;
  }
  em_status_t s;
  if (em_status_from_json(st, &s) != 0) {
    em_cli_error("status", "malformed reply: no status object");
    return;
  }
  if (!s.live) {
    printf("%-10s not answering: what the database knows\n%-10s %s\n%-10s %lld\n", "daemon", "database",
           s.db ? s.db : "?", "last seq", (long long)s.last_seq);
    return;
  }
  long up = isnan(s.uptime) ? 0 : (long)s.uptime;
  char uptime[64], when[64] = "?";
  if (up >= 86400)
    snprintf(uptime, sizeof(uptime), "%ld d %ld h", up / 86400, up % 86400 / 3600);
  else if (up >= 3600)
    snprintf(uptime, sizeof(uptime), "%ld h %ld min", up / 3600, up % 3600 / 60);
  else
    snprintf(uptime, sizeof(uptime), "%ld min %ld s", up / 60, up % 60);
  time_t ts = isnan(s.ts) ? 0 : (time_t)s.ts;
  struct tm tm;
  if (gmtime_r(&ts, &tm))
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
  printf("%-10s running (pid %lld), up %s\n", "daemon", (long long)s.pid, uptime);
  printf("%-10s %s (%s)\n%-10s %s\n", "watch", s.watch ? s.watch : "?", s.mode ? s.mode : "?", "database",
         s.db ? s.db : "?");
  printf("%-10s %lld waiting, %lld running, %lld worker%s\n", "queue", (long long)s.queue, (long long)s.running,
         (long long)s.workers, s.workers == 1 ? "" : "s");
  printf("%-10s %lld\n%-10s PUB %s, API %s, HTTP %s\n%-10s %s\n", "last seq", (long long)s.last_seq, "endpoints",
         s.pub ? s.pub : "?", s.api ? s.api : "?", s.http ? s.http : "off", "time", when);
}

int em_cmd_status(int argc, char **argv)
{
  static const em_cmd_spec_t spec = {"status", EM_RUN_NONE, 0,
    "emergectl status: the daemon: uptime, queue, analyses running, workers, last seq, its endpoints and\n"
    "database; with --db and no daemon, what the database knows.\n\n"
    "usage: emergectl status [SOURCE]\n\n" EM_CMD_SOURCE_HELP "\nexamples:\n"
    "  emergectl status\n  EMERGE_API=ipc:///run/emerge/api emergectl status --json\n\n" EM_CMD_EXIT_HELP};
  return query_command(&spec, argc, argv, EM_API_STATUS, print_status);
}

/* CSV fields: numbers as they are (empty when unknown), text quoted. */
static void csv_num(double v)
{
  if (!isnan(v))
    printf("%.17g", v);
}

static void csv_text(const char *t)
{
  if (!t)
    return;
  putchar('"');
  for (const char *p = t; *p; p++) {
    if (*p == '"')
      putchar('"');
    putchar(*p);
  }
  putchar('"');
}

static double opt_int(bool has, int64_t v)
{
  return has ? (double)v : NAN;
}

/* The trainer metric names seen in any result, in order of first appearance. */
static const char **metric_names(const em_result_view_t *v, size_t n, size_t *count)
{
  size_t cap = 0;
  for (size_t i = 0; i < n; i++)
    cap += v[i].nmetrics;
  const char **names = calloc(cap ? cap : 1, sizeof(*names));
  *count = 0;
  for (size_t i = 0; names && i < n; i++)
    for (size_t k = 0; k < v[i].nmetrics; k++) {
      size_t j = 0;
      while (j < *count && strcmp(names[j], v[i].metrics[k].name) != 0)
        j++;
      if (j == *count)
        names[(*count)++] = v[i].metrics[k].name;
    }
  return names;
}

static void csv_header(const em_result_view_t *first, const char **names, size_t nnames)
{
  fputs("step,path,seq,ts,emergence,emergence_se,alpha0,alpha0_se,width,width_se,nodes,baseline_step,elapsed_ms,"
        "arch,mode,arrival,baseline_arrival", stdout);
  for (size_t j = 0; j < nnames; j++)
    printf(",trainer.%s", names[j]);
  for (size_t i = 0; i < first->nq; i++)
    printf(",tau[%g]", first->q[i]);
  for (const char *arr[] = {"alpha", "f"}, **a = arr; a < arr + 2; a++)
    for (size_t i = 0; i + 1 < first->nq; i++)
      printf(",%s[%g]", *a, first->q[i]);
  putchar('\n');
}

static void csv_row(const em_result_view_t *r, const char **names, size_t nnames)
{
  csv_num(opt_int(r->has_step, r->step));
  putchar(',');
  csv_text(r->path);
  printf(",%lld,", (long long)r->seq);
  csv_num(r->ts);
  const double nums[] = {r->emergence, r->emergence_se, r->alpha0, r->alpha0_se, r->width, r->width_se, r->nodes,
                         opt_int(r->has_baseline_step, r->baseline_step), r->elapsed_ms};
  for (size_t i = 0; i < sizeof(nums) / sizeof(*nums); i++)
    putchar(','), csv_num(nums[i]);
  putchar(',');
  csv_text(r->arch);
  putchar(',');
  csv_text(r->mode);
  putchar(',');
  csv_num(opt_int(r->has_arrival, r->arrival));
  putchar(',');
  csv_num(opt_int(r->has_baseline_arrival, r->baseline_arrival));
  for (size_t j = 0; j < nnames; j++)
    putchar(','), csv_num(em_result_metric(r, names[j]));
  for (size_t i = 0; i < r->nq; i++)
    putchar(','), csv_num(r->tau[i]);
  for (size_t i = 0; i < r->nspec; i++)
    putchar(','), csv_num(r->alpha[i]);
  for (size_t i = 0; i < r->nspec; i++)
    putchar(','), csv_num(r->f[i]);
  putchar('\n');
}

static void export_csv(const cJSON *reply)
{
  em_result_view_t *v;
  size_t n, nnames;
  char err[200];
  if (em_results_decode(reply, &v, &n, err, sizeof(err)) != 0) {
    em_cli_error("export", "malformed reply: %s", err);
    return;
  }
  const char **names = n ? metric_names(v, n, &nnames) : NULL;
  if (names) {
    csv_header(&v[0], names, nnames);
    for (size_t i = 0; i < n; i++)
      csv_row(&v[i], names, nnames);
  }
  free(names);
  em_results_free(v, n);
}

static void print_export(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json)
    em_cmd_print_document(reply);
  else
    export_csv(reply);
}

int em_cmd_export(int argc, char **argv)
{
  static const em_cmd_spec_t spec = {"export", EM_RUN_REQUIRED, EM_OPT_CSV,
    "emergectl export: every stored value of a run, spectra included, as CSV (one row per checkpoint)\n"
    "or JSON (the result objects).\n\n"
    "usage: emergectl export RUN --csv|--json [SOURCE]\n\n" EM_CMD_SOURCE_HELP
    "  --csv              comma-separated values with a header row\n\nexamples:\n"
    "  emergectl export mlp --csv > mlp.csv\n  emergectl export mlp --json --db /data/out\n\n" EM_CMD_EXIT_HELP};
  return query_command(&spec, argc, argv, EM_API_HISTORY, print_export);
}
