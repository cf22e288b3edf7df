/* SPDX-License-Identifier: MIT */
/* emergectl runs | history RUN | status | export RUN --csv|--json: what the daemon (or
 * its database) knows, as a table on stdout or one JSON document with --json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_cli.h"
#include "em_cmd.h"

static const char usage_text[] =
  "usage: emergectl runs [--json] [SOURCE]\n"
  "       emergectl history RUN [--json] [SOURCE]\n"
  "       emergectl status [--json] [SOURCE]\n"
  "       emergectl export RUN --csv|--json [SOURCE]\n"
  "SOURCE: --api ENDPOINT (default " EM_DEFAULT_API ") [--timeout SECONDS] | --db FILE|ROOT\n"
  "exit: 0 ok, 1 failure (e.g. unknown run), 2 usage, 69 daemon unreachable\n";

/* A string field of a reply, "?" when absent: replies are wire input too. */
const char *em_cmd_str(const cJSON *o, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : "?";
}

int em_cmd_parse(const char *cmd, int argc, char **argv, em_cmd_opts_t *o, int want_run)
{
  memset(o, 0, sizeof(*o));
  o->src.api = EM_DEFAULT_API;
  o->src.timeout = 3;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_val = i + 1 < argc;
    if (strcmp(a, "--json") == 0)
      o->json = true;
    else if (strcmp(a, "--csv") == 0)
      o->csv = true;
    else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      return -1;
    else if (strcmp(a, "--api") == 0 && has_val)
      o->src.api = argv[++i];
    else if (strcmp(a, "--db") == 0 && has_val)
      o->db = argv[++i];
    else if (strcmp(a, "--svg") == 0 && has_val)
      o->svg = argv[++i];
    else if (strcmp(a, "--timeout") == 0 && has_val) {
      char *end;
      o->src.timeout = strtod(argv[++i], &end);
      if (*end || !(o->src.timeout > 0) || o->src.timeout > 3600) {
        em_cli_error(cmd, "--timeout: '%s' is not a number of seconds in (0, 3600]", argv[i]);
        return EM_EXIT_USAGE;
      }
    } else if (a[0] == '-' && a[1]) {
      em_cli_error(cmd, "unknown or incomplete option '%s'", a);
      return EM_EXIT_USAGE;
    } else if (want_run && !o->run)
      o->run = a;
    else {
      em_cli_error(cmd, "unexpected argument '%s'", a);
      return EM_EXIT_USAGE;
    }
  }
  if (want_run == EM_RUN_REQUIRED && !o->run) {
    em_cli_error(cmd, "which run? (emergectl runs lists them)");
    return EM_EXIT_USAGE;
  }
  return 0;
}

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

/* Edit distance, capped: enough to call a run name close. */
static size_t distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return 99;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
      best = up + 1 < best ? up + 1 : best;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

/* "unknown run 'x'" with the runs whose names are close. */
void em_cmd_suggest_runs(const char *cmd, em_cmd_opts_t *o, const char *err)
{
  cJSON *runs = NULL;
  em_api_request_t req = {.cmd = EM_API_RUNS};
  char e2[256], close_names[512] = "";
  if (em_source_request(&o->src, o->db != NULL, &req, &runs, e2, sizeof(e2)) == 0) {
    size_t used = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(runs, "runs"))
    {
      const char *name = em_cmd_str(r, "run");
      if ((distance(name, o->run) <= 2 || strstr(name, o->run) || strstr(o->run, name)) &&
          used < sizeof(close_names) - 64)
        used += (size_t)snprintf(close_names + used, sizeof(close_names) - used, "%s%s", used ? ", " : "", name);
    }
    cJSON_Delete(runs);
  }
  em_cli_error(cmd, "%s%s%s", err, close_names[0] ? "; did you mean: " : "", close_names);
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

double em_cmd_num(const cJSON *o, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

void em_cmd_fmt_num(char *buf, size_t n, double v, const char *fmt)
{
  if (isnan(v))
    snprintf(buf, n, "-");
  else
    snprintf(buf, n, fmt, v);
}

static void print_runs(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json) {
    em_cmd_print_document(reply);
    return;
  }
  printf("%-24s %6s %6s %6s %10s %9s\n", "RUN", "CKPTS", "DONE", "OTHER", "LAST STEP", "LAST E");
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(reply, "runs"))
  {
    double total = em_cmd_num(r, "checkpoints"), done = em_cmd_num(cJSON_GetObjectItemCaseSensitive(r, "states"), "done");
    done = isnan(done) ? 0 : done;
    char step[24], e[24];
    em_cmd_fmt_num(step, sizeof(step), em_cmd_num(r, "last_step"), "%.0f");
    em_cmd_fmt_num(e, sizeof(e), em_cmd_num(r, "last_emergence"), "%+.4f");
    printf("%-24s %6.0f %6.0f %6.0f %10s %9s\n", em_cmd_str(r, "run"), total,
           done, total - done, step, e);
  }
}

/* The skeleton of every query command: options, one request, print, clean up. */
typedef void (*print_fn)(cJSON *reply, const em_cmd_opts_t *o);

static int query_command(const char *name, int argc, char **argv, int want_run, em_api_cmd_t what, print_fn print)
{
  em_cmd_opts_t o;
  int rc = em_cmd_parse(name, argc, argv, &o, want_run);
  if (rc)
    return rc < 0 ? (fputs(usage_text, stdout), EM_EXIT_OK) : rc;
  if (strcmp(name, "export") == 0 && o.csv == o.json) {
    em_cli_error(name, "say --csv or --json");
    return EM_EXIT_USAGE;
  }
  cJSON *reply = NULL;
  if ((rc = em_cmd_request(name, &o, what, &reply)) == 0)
    print(reply, &o);
  cJSON_Delete(reply);
  em_source_close(&o.src);
  return rc;
}

int em_cmd_runs(int argc, char **argv)
{
  return query_command("runs", argc, argv, EM_RUN_NONE, EM_API_RUNS, print_runs);
}

/* The two trainer metrics most worth showing: accuracy-like, then loss-like. */
void em_cmd_trainer_text(const cJSON *trainer, char *buf, size_t n)
{
  buf[0] = 0;
  size_t used = 0;
  const cJSON *m;
  if (!cJSON_IsObject(trainer)) /* payloads are untrusted: an array has no names */
    return;
  cJSON_ArrayForEach(m, trainer)
  {
    if (cJSON_IsNumber(m) && m->string && (strstr(m->string, "acc") || strstr(m->string, "loss")) && used < n - 40)
      used += (size_t)snprintf(buf + used, n - used, "%s%s=%.4g", used ? " " : "", m->string, m->valuedouble);
  }
}

static void print_history(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json) {
    em_cmd_print_document(reply);
    return;
  }
  printf("%10s %9s %8s %8s %6s  %s\n", "STEP", "E", "ALPHA0", "WIDTH", "NODES", "TRAINER");
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(reply, "results"))
  {
    char e[24], metrics[256];
    em_cmd_fmt_num(e, sizeof(e), em_cmd_num(r, "emergence"), "%+.4f");
    em_cmd_trainer_text(cJSON_GetObjectItemCaseSensitive(r, "trainer"), metrics, sizeof(metrics));
    printf("%10.0f %9s %8.4f %8.4f %6.0f  %s\n", em_cmd_num(r, "step"), e, em_cmd_num(r, "alpha0"), em_cmd_num(r, "width"),
           em_cmd_num(r, "nodes"), metrics);
  }
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(reply, "checkpoints"))
  {
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r, "error");
    printf("%10.0f %9s  %s%s%s\n", em_cmd_num(r, "step"), em_cmd_str(r, "state"), em_cmd_str(r, "path"), cJSON_IsString(err) ? ": " : "",
           cJSON_IsString(err) ? err->valuestring : "");
  }
}

int em_cmd_history(int argc, char **argv)
{
  return query_command("history", argc, argv, EM_RUN_REQUIRED, EM_API_HISTORY, print_history);
}

static void print_status(cJSON *reply, const em_cmd_opts_t *o)
{
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(reply, "status");
  if (o->json) {
    em_cmd_print_json(st);
    return;
  }
  const cJSON *f;
  cJSON_ArrayForEach(f, st)
  {
    if (cJSON_IsString(f))
      printf("%-10s %s\n", f->string, f->valuestring);
    else if (cJSON_IsNumber(f))
      printf("%-10s %g\n", f->string, f->valuedouble);
    else if (cJSON_IsBool(f))
      printf("%-10s %s\n", f->string, cJSON_IsTrue(f) ? "yes" : "no (read from the database)");
  }
}

int em_cmd_status(int argc, char **argv)
{
  return query_command("status", argc, argv, EM_RUN_NONE, EM_API_STATUS, print_status);
}

/* One CSV field: numbers as they are, text quoted. */
static void csv_value(const cJSON *v)
{
  if (cJSON_IsNumber(v))
    printf("%.17g", v->valuedouble);
  else if (cJSON_IsString(v)) {
    putchar('"');
    for (const char *p = v->valuestring; *p; p++) {
      if (*p == '"')
        putchar('"');
      putchar(*p);
    }
    putchar('"');
  }
}

static void csv_array_header(const char *name, const cJSON *q, size_t n)
{
  size_t i = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, q)
  {
    if (i++ < n)
      printf(",%s[%g]", name, v->valuedouble);
  }
}

static void export_csv(const cJSON *results)
{
  static const char *cols[] = {"step", "path", "seq", "ts", "emergence", "alpha0", "width", "nodes",
                               "baseline_step", "elapsed_ms", "arch"};
  const cJSON *first = cJSON_GetArrayItem(results, 0);
  if (!first)
    return;
  const cJSON *q = cJSON_GetObjectItemCaseSensitive(first, "q");
  size_t nq = (size_t)cJSON_GetArraySize(q);
  cJSON *keys = cJSON_CreateObject(); /* trainer metrics seen in any result */
  const cJSON *r, *m;
  cJSON_ArrayForEach(r, results)
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(r, "trainer"))
      if (!cJSON_GetObjectItemCaseSensitive(keys, m->string))
        cJSON_AddTrueToObject(keys, m->string);
  for (size_t i = 0; i < sizeof(cols) / sizeof(*cols); i++)
    printf("%s%s", i ? "," : "", cols[i]);
  cJSON_ArrayForEach(m, keys)
    printf(",trainer.%s", m->string);
  csv_array_header("tau", q, nq);
  csv_array_header("alpha", q, nq - 1);
  csv_array_header("f", q, nq - 1);
  putchar('\n');
  cJSON_ArrayForEach(r, results)
  {
    for (size_t i = 0; i < sizeof(cols) / sizeof(*cols); i++) {
      if (i)
        putchar(',');
      csv_value(cJSON_GetObjectItemCaseSensitive(r, cols[i]));
    }
    const cJSON *trainer = cJSON_GetObjectItemCaseSensitive(r, "trainer");
    cJSON_ArrayForEach(m, keys)
    {
      putchar(',');
      csv_value(cJSON_GetObjectItemCaseSensitive(trainer, m->string));
    }
    static const char *arrays[] = {"tau", "alpha", "f"};
    for (size_t a = 0; a < 3; a++) {
      const cJSON *v;
      cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(r, arrays[a]))
      {
        putchar(',');
        csv_value(v);
      }
    }
    putchar('\n');
  }
  cJSON_Delete(keys);
}

static void print_export(cJSON *reply, const em_cmd_opts_t *o)
{
  if (o->json)
    em_cmd_print_document(reply);
  else
    export_csv(cJSON_GetObjectItemCaseSensitive(reply, "results"));
}

int em_cmd_export(int argc, char **argv)
{
  return query_command("export", argc, argv, EM_RUN_REQUIRED, EM_API_HISTORY, print_export);
}
