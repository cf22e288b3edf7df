/* SPDX-License-Identifier: MIT */
/* emergectl alerts [RUN] | alerts clear RUN | backtest RUN --rule JSON.
 * backtest replays the run's stored history through the daemon's own rule code
 * (lib/em_rules), on points built by the daemon's own em_history_points, so it says
 * exactly where a live rule of that definition fires. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "em_alert.h"
#include "em_cli.h"
#include "em_cmd.h"
#include "em_history.h"
#include "em_rules.h"
#include "em_runs.h"
#include "em_wire.h"

#define RULE_HELP "RULE: as in the daemon's config, e.g. '{\"name\":\"p\",\"monitor\":\"emergence\",\"patience\":3}'\n"

static const em_cmd_spec_t alerts_spec = {"alerts", EM_RUN_OPTIONAL, 0,
  "emergectl alerts: the early-stop alerts raised, oldest first, for one run or all.\n"
  "emergectl alerts clear RUN: remove the run's stop file (RUN_DIR/.emerge/STOP), so a resumed job goes on.\n\n"
  "usage: emergectl alerts [RUN] [SOURCE]\n       emergectl alerts clear RUN [SOURCE]\n\n" EM_CMD_SOURCE_HELP
  "\nexamples:\n  emergectl alerts\n  emergectl alerts clear mlp\n\n" EM_CMD_EXIT_HELP};
static const em_cmd_spec_t clear_spec = {"alerts clear", EM_RUN_REQUIRED, 0, NULL};
static const em_cmd_spec_t backtest_spec = {"backtest", EM_RUN_REQUIRED, EM_OPT_RULE,
  "emergectl backtest: where an early-stop rule would have fired on a run's stored history, replayed\n"
  "through the daemon's own rule code (live and backtest cannot disagree).\n\n"
  "usage: emergectl backtest RUN --rule JSON [SOURCE]\n\n  --rule JSON        the rule\n" RULE_HELP
  EM_CMD_SOURCE_HELP "\nexamples:\n"
  "  emergectl backtest mlp --rule '{\"name\":\"p\",\"monitor\":\"emergence\",\"min_delta\":0.001,\"patience\":3}'\n"
  "  emergectl backtest mlp --db /data/out --json --rule '{\"name\":\"o\",\"monitor\":\"emergence\",\"onset\":true}'\n\n"
  EM_CMD_EXIT_HELP};

/* Parses the common options; returns 0, or the exit code after printing help/error. */
static int parse(const em_cmd_spec_t *spec, int argc, char **argv, em_cmd_opts_t *o, bool *done)
{
  em_cmd_spec_t s = *spec;
  if (!s.help)
    s.help = alerts_spec.help;
  int rc = em_cmd_parse(&s, argc, argv, o);
  *done = rc != 0;
  return rc < 0 ? EM_EXIT_OK : rc;
}

/* ---------------------------------------------------------------- alerts */

static void print_alerts(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json) {
    em_cmd_print_document(reply);
    return;
  }
  const cJSON *alerts = cJSON_GetObjectItemCaseSensitive(reply, "alerts");
  if (cJSON_GetArraySize(alerts) == 0) {
    printf("no alerts%s%s\n", o->run ? " for " : "", o->run ? o->run : "");
    return;
  }
  printf("%6s %-20s %10s %-12s %-20s %9s  %s\n", "SEQ", "RUN", "STEP", "RULE", "CONDITION", "VALUE", "REASON");
  const cJSON *a;
  cJSON_ArrayForEach(a, alerts)
  {
    em_alert_t al;
    char value[24], err[200];
    if (em_alert_from_json(a, &al, err, sizeof(err)) != 0) {
      em_cli_error("alerts", "skipping a malformed alert: %s", err);
      continue;
    }
    char step[24];
    em_cmd_fmt_num(value, sizeof(value), al.value, "%+.4f");
    em_cmd_fmt_place(step, sizeof(step), true, al.step, al.by_arrival);
    printf("%6lld %-20s %10s %-12s %-20s %9s  %s\n", (long long)al.seq, al.run, step, al.rule,
           al.has_cond ? em_condition_name(al.cond) : "-", value, al.reason);
    em_alert_free(&al);
  }
}

/* The run's directory, from the runs the source knows. */
static int run_dir(em_cmd_opts_t *o, char *out, size_t len)
{
  cJSON *reply = NULL;
  const char *want = o->run;
  o->run = NULL; /* `runs` takes no run */
  int rc = em_cmd_request("alerts", o, EM_API_RUNS, &reply);
  o->run = want;
  if (rc)
    return rc;
  em_run_info_t *runs = NULL;
  size_t n = 0;
  char why[200];
  if (em_runs_decode(reply, &runs, &n, why, sizeof(why)) != 0)
    em_cli_error("alerts", "malformed reply: %s", why);
  const em_run_info_t *r = em_runs_find(runs, n, want);
  rc = r && r->dir ? (snprintf(out, len, "%s", r->dir), EM_EXIT_OK) : EM_EXIT_FAIL;
  free(runs);
  cJSON_Delete(reply);
  if (rc) {
    char err[1200];
    snprintf(err, sizeof(err), "unknown run '%s'", want);
    em_cmd_suggest_runs("alerts", o, err);
  }
  return rc;
}

static int clear_stop_file(em_cmd_opts_t *o)
{
  char dir[4096], path[4200];
  int rc = run_dir(o, dir, sizeof(dir));
  if (rc)
    return rc;
  if (!em_stop_path(path, sizeof(path), dir)) {
    em_cli_error("alerts", "run directory too long: %s", dir);
    return EM_EXIT_FAIL;
  }
  /* RUN_DIR/.emerge may be a link planted by whoever writes the tree: never followed, so
   * the STOP removed is always this run's own (docs/SECURITY.md). */
  int run = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  int dot = run < 0 ? -1 : openat(run, EM_DOT_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  rc = dot < 0 ? -1 : unlinkat(dot, EM_STOP_FILE, 0);
  int saved = errno;
  if (dot >= 0)
    close(dot);
  if (run >= 0)
    close(run);
  errno = saved;
  if (rc == 0) {
    printf("removed %s\n", path);
    return EM_EXIT_OK;
  }
  if (errno == ELOOP || errno == ENOTDIR) {
    em_cli_error("alerts", "cannot remove %s: %s/" EM_DOT_DIR " is not a directory (a symbolic link is not followed)",
                 path, dir);
    return EM_EXIT_FAIL;
  }
  if (errno == ENOENT) {
    printf("no stop file for %s (%s)\n", o->run, path);
    return EM_EXIT_OK;
  }
  em_cli_error("alerts", "cannot remove %s: %s", path, strerror(errno));
  return EM_EXIT_FAIL;
}

int em_cmd_alerts(int argc, char **argv)
{
  bool clear = argc > 1 && strcmp(argv[1], "clear") == 0;
  em_cmd_opts_t o;
  bool done;
  int rc = clear ? parse(&clear_spec, argc - 1, argv + 1, &o, &done) : parse(&alerts_spec, argc, argv, &o, &done);
  if (done)
    return rc;
  if (clear) {
    rc = clear_stop_file(&o);
  } else {
    cJSON *reply = NULL;
    if ((rc = em_cmd_request("alerts", &o, EM_API_ALERTS, &reply)) == 0)
      print_alerts(reply, &o);
    cJSON_Delete(reply);
  }
  em_source_close(&o.src);
  return rc;
}

/* ---------------------------------------------------------------- backtest */

typedef struct backtest {
  const em_point_t *pts;
  size_t n, cap;
  em_firing_t *fires;
  bool oom;
} backtest_t;

static void on_fire(void *ctx, const em_rule_t *r, const em_firing_t *f)
{
  (void)r;
  backtest_t *b = ctx;
  if (b->n == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 16;
    em_firing_t *grown = realloc(b->fires, cap * sizeof(*grown));
    if (!grown) {
      b->oom = true;
      return;
    }
    b->fires = grown;
    b->cap = cap;
  }
  b->fires[b->n++] = *f;
}

static cJSON *firing_json(const backtest_t *b, const em_firing_t *f)
{
  const em_point_t *p = &b->pts[f->at];
  cJSON *o = cJSON_CreateObject();
  em_json_add_place(o, p->step, p->by_arrival);
  cJSON_AddStringToObject(o, "condition", em_condition_name(f->cond));
  em_json_add_opt(o, "value", isfinite(f->value), f->value);
  cJSON_AddStringToObject(o, "path", p->path ? p->path : "");
  cJSON_AddStringToObject(o, "reason", f->reason);
  return o;
}

/* The series the rule judged: each point's raw monitored value and the value judged
 * (smoothed; null where none is judged, as at the baseline). */
static cJSON *series_json(const em_rule_t *rule, const backtest_t *b, size_t npts, const double *judged)
{
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; a && rule->monitor != EM_MON_NONE && i < npts; i++) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToArray(a, o);
    double raw = b->pts[i].value[rule->monitor - 1];
    em_json_add_place(o, b->pts[i].step, b->pts[i].by_arrival);
    em_json_add_opt(o, "value", !isnan(raw), raw);
    em_json_add_opt(o, "judged", !isnan(judged[i]), judged[i]);
  }
  return a;
}

static void print_series(const em_rule_t *rule, const backtest_t *b, size_t npts, const double *judged)
{
  if (rule->monitor == EM_MON_NONE || npts == 0)
    return;
  printf("%10s %9s %9s   (%s; judged: %s)\n", "STEP", "VALUE", "JUDGED", em_monitor_name(rule->monitor),
         rule->smoothing > 0 ? "smoothed" : "as is, after the baseline");
  for (size_t i = 0; i < npts; i++) {
    char step[24], raw[24], j[24];
    em_cmd_fmt_place(step, sizeof(step), true, b->pts[i].step, b->pts[i].by_arrival);
    em_cmd_fmt_num(raw, sizeof(raw), b->pts[i].value[rule->monitor - 1], "%+.4f");
    em_cmd_fmt_num(j, sizeof(j), judged[i], "%+.4f");
    printf("%10s %9s %9s\n", step, raw, j);
  }
}

static void print_backtest_json(const em_cmd_opts_t *o, const char *spec, size_t npts, const backtest_t *b,
                                cJSON *series)
{
  cJSON *doc = cJSON_CreateObject();
  cJSON_AddStringToObject(doc, "run", o->run);
  cJSON_AddItemToObject(doc, "rule", spec ? cJSON_Parse(spec) : cJSON_CreateNull());
  cJSON_AddNumberToObject(doc, "checkpoints", (double)npts);
  cJSON_AddItemToObject(doc, "series", series);
  cJSON *fires = cJSON_AddArrayToObject(doc, "fires");
  for (size_t i = 0; i < b->n; i++)
    cJSON_AddItemToArray(fires, firing_json(b, &b->fires[i]));
  em_cmd_print_json(doc);
  cJSON_Delete(doc);
}

static void print_backtest(const em_cmd_opts_t *o, const em_rule_t *rule, size_t npts, const backtest_t *b)
{
  char *spec = em_rule_spec(rule);
  double *judged = calloc(npts ? npts : 1, sizeof(*judged));
  if (judged && npts)
    em_rule_judged_values(rule, b->pts, npts, judged);
  if (o->json) {
    print_backtest_json(o, spec, npts, b, judged ? series_json(rule, b, npts, judged) : cJSON_CreateNull());
    free(judged);
    free(spec);
    return;
  }
  printf("rule %s over %zu checkpoints of %s: %s\n", spec ? spec : rule->name, npts, o->run,
         b->n ? "would fire" : "would not fire");
  if (b->n)
    printf("%10s %-20s %9s  %s\n", "STEP", "CONDITION", "VALUE", "REASON");
  for (size_t i = 0; i < b->n; i++) {
    const em_firing_t *f = &b->fires[i];
    char step[24], value[24];
    em_cmd_fmt_place(step, sizeof(step), true, b->pts[f->at].step, b->pts[f->at].by_arrival);
    em_cmd_fmt_num(value, sizeof(value), isfinite(f->value) ? f->value : NAN, "%+.4f");
    printf("%10s %-20s %9s  %s\n", step, em_condition_name(f->cond), value, f->reason);
  }
  if (judged)
    print_series(rule, b, npts, judged);
  free(judged);
  free(spec);
}

/* The rule of --rule, checked as the daemon checks its config. */
static int take_rule(const char *text, em_rule_t *rule)
{
  if (!text) {
    em_cli_error("backtest", "--rule JSON is required");
    return EM_EXIT_USAGE;
  }
  cJSON *j = cJSON_Parse(text);
  char err[512];
  int rc = j ? em_rule_parse(j, 0, rule, err, sizeof(err)) : -EINVAL;
  cJSON_Delete(j);
  if (rc) {
    em_cli_error("backtest", "--rule: %s", j ? err : "not valid JSON");
    return EM_EXIT_USAGE;
  }
  return 0;
}

int em_cmd_backtest(int argc, char **argv)
{
  em_rule_t rule;
  em_cmd_opts_t o;
  bool done;
  int rc = parse(&backtest_spec, argc, argv, &o, &done);
  if (done)
    return rc;
  if ((rc = take_rule(o.rule, &rule)) != 0)
    return rc;
  cJSON *reply = NULL;
  em_history_t h = {0};
  char err[256];
  if ((rc = em_cmd_request("backtest", &o, EM_API_HISTORY, &reply)) == 0 &&
      em_history_decode(reply, &h, err, sizeof(err)) != 0) {
    em_cli_error("backtest", "malformed reply: %s", err);
    rc = EM_EXIT_FAIL;
  } else if (rc == 0) {
    size_t n;
    em_point_t *pts = em_history_points(&h, &n);
    backtest_t b = {.pts = pts};
    if (pts)
      em_rule_replay(&rule, pts, n, on_fire, &b);
    if (b.oom || (!pts && h.n)) {
      em_cli_error("backtest", "out of memory");
      rc = EM_EXIT_FAIL;
    } else {
      print_backtest(&o, &rule, n, &b);
    }
    free(b.fires);
    free(pts);
  }
  em_history_free(&h);
  cJSON_Delete(reply);
  em_source_close(&o.src);
  return rc;
}

/* ---------------------------------------------------------------- stop */

static const em_cmd_spec_t stop_spec = {"stop", EM_RUN_REQUIRED, EM_OPT_REASON,
  "emergectl stop: ask a run's training job to stop, by hand: the daemon records an alert of rule\n"
  "\"manual\" and delivers it as a rule's (the stop file RUN_DIR/.emerge/STOP, alert/<run>/ on PUB, on_alert).\n"
  "It answers once the alert is recorded; the stop file follows a moment later.\n\n"
  "usage: emergectl stop RUN [--reason TEXT] [SOURCE]\n\n"
  "  --reason TEXT      why, for the job's log and the alert (\"stopped by hand\")\n" EM_CMD_SOURCE_HELP
  "  (stop needs the daemon: with --db it uses the daemon the database names)\n\nexamples:\n"
  "  emergectl stop mlp --reason 'E has plateaued and eval loss is flat'\n"
  "  emergectl --json stop sweep/lr3\n\n" EM_CMD_EXIT_HELP};

int em_cmd_stop(int argc, char **argv)
{
  em_cmd_opts_t o;
  bool done;
  int rc = parse(&stop_spec, argc, argv, &o, &done);
  if (done)
    return rc;
  char err[1024];
  bool live = false;
  if (o.db && em_source_open_db(&o.src, o.db, &live, err, sizeof(err)) != 0) {
    em_cli_error("stop", "%s", err);
    return EM_EXIT_FAIL;
  }
  if (o.db && !live) {
    em_cli_error("stop", "no daemon is recorded running for %s: a stop is an alert the daemon records and "
                 "delivers (start emerged, or remove the job's stop file by hand)", o.db);
    em_source_close(&o.src);
    return EM_EXIT_UNAVAILABLE;
  }
  em_api_request_t req = {.cmd = EM_API_STOP, .has_run = true};
  snprintf(req.run, sizeof(req.run), "%s", o.run);
  snprintf(req.reason, sizeof(req.reason), "%s", o.reason ? o.reason : "stopped by hand");
  cJSON *reply = NULL;
  rc = em_source_request(&o.src, false, &req, &reply, err, sizeof(err));
  if (rc == EM_EXIT_FAIL && strncmp(err, "unknown run", 11) == 0)
    em_cmd_suggest_runs("stop", &o, err);
  else if (rc)
    em_cli_error("stop", "%s", err);
  em_alert_t a;
  const cJSON *alert = reply ? cJSON_GetObjectItemCaseSensitive(reply, "alert") : NULL;
  if (!rc && o.json) {
    em_cmd_print_json(alert);
  } else if (!rc && em_alert_from_json(alert, &a, err, sizeof(err)) == 0) {
    char at[64];
    em_place_text(at, sizeof(at), a.step, a.by_arrival);
    printf("stopping %s at %s: alert seq %lld (rule %s): %s\n", a.run, at, (long long)a.seq, a.rule, a.reason);
    em_alert_free(&a);
  } else if (!rc) {
    em_cli_error("stop", "malformed reply: %s", err);
    rc = EM_EXIT_FAIL;
  }
  cJSON_Delete(reply);
  em_source_close(&o.src);
  return rc;
}
