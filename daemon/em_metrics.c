/* SPDX-License-Identifier: MIT */
#include "em_metrics.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_utf8.h"
#include "emerge.h"

const double em_duration_bounds[EM_DURATION_BUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                        0.5,   1,     2.5,  5,     10,   30,  120};

void em_durations_observe(em_durations_t *d, double seconds)
{
  for (int i = 0; i < EM_DURATION_BUCKETS; i++)
    if (seconds <= em_duration_bounds[i])
      d->le[i]++;
  d->count++;
  d->sum += seconds;
}

/* A label value as the exposition format wants it: UTF-8 (a byte that is not becomes
 * U+FFFD: one bad name must not fail the whole scrape), with \\, \" and \n escaped. */
static void label(FILE *f, const char *v)
{
  for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p;) {
    size_t n = em_utf8_char(p);
    if (*p == '\\' || *p == '"')
      fputc('\\', f), fputc(*p, f);
    else if (*p == '\n')
      fputs("\\n", f);
    else if (n)
      fwrite(p, 1, n, f);
    else
      fputs("\xEF\xBF\xBD", f);
    p += n ? n : 1;
  }
}

static void number(FILE *f, double v)
{
  if (isnan(v))
    fputs("NaN", f);
  else if (isinf(v))
    fputs(v > 0 ? "+Inf" : "-Inf", f);
  else {
    char text[32];
    snprintf(text, sizeof(text), "%.15g", v); /* the shortest that reads back the same, as cJSON prints */
    if (strtod(text, NULL) != v)
      snprintf(text, sizeof(text), "%.17g", v);
    fputs(text, f);
  }
}

static void family(FILE *f, const char *name, const char *type, const char *help)
{
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void gauge(FILE *f, const char *name, const char *help, double v)
{
  family(f, name, "gauge", help);
  fprintf(f, "%s ", name);
  number(f, v);
  fputc('\n', f);
}

/* ---------------------------------------------------------------- per run */

typedef struct latest {
  char *run, *mode;
  int64_t step;
  bool named, has_e, has_se;
  double e, se, alpha0, width;
} latest_t;

static const char sql_latest[] =
  "SELECT r.name, c.step, c.named, x.emergence, x.emergence_se, x.alpha0, x.width, COALESCE(x.mode, 'sampled') "
  "FROM runs r JOIN checkpoints c ON c.id = (SELECT c2.id FROM checkpoints c2 JOIN results x2 ON "
  "x2.checkpoint_id = c2.id AND x2.version = c2.version WHERE c2.run_id = r.id ORDER BY c2.step DESC, c2.id DESC "
  "LIMIT 1) JOIN results x ON x.checkpoint_id = c.id AND x.version = c.version ORDER BY r.name";

static char *column_text(sqlite3_stmt *st, int col)
{
  const char *t = (const char *)sqlite3_column_text(st, col);
  return strdup(t ? t : "");
}

/* Every run's latest result (highest step); -1 on a database error or OOM. */
static int load_latest(em_db_t *db, latest_t **out, size_t *n)
{
  sqlite3_stmt *st = em_sql_prepare(db, sql_latest, NULL);
  size_t cap = 0;
  int rc = st ? SQLITE_ROW : SQLITE_ERROR;
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (*n == cap) {
      latest_t *grown = realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof(**out));
      if (!grown)
        break;
      *out = grown;
    }
    (*out)[(*n)++] = (latest_t){.run = column_text(st, 0), .step = sqlite3_column_int64(st, 1),
                                .named = sqlite3_column_int(st, 2) != 0,
                                .has_e = sqlite3_column_type(st, 3) != SQLITE_NULL,
                                .e = sqlite3_column_double(st, 3),
                                .has_se = sqlite3_column_type(st, 4) != SQLITE_NULL,
                                .se = sqlite3_column_double(st, 4), .alpha0 = sqlite3_column_double(st, 5),
                                .width = sqlite3_column_double(st, 6), .mode = column_text(st, 7)};
  }
  em_sql_done(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static void free_latest(latest_t *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(v[i].run), free(v[i].mode);
  free(v);
}

enum { FAM_E, FAM_SE, FAM_ALPHA0, FAM_WIDTH };

static void run_family(FILE *f, const latest_t *v, size_t n, int which, const char *name, const char *help)
{
  family(f, name, "gauge", help);
  for (size_t i = 0; i < n; i++) {
    bool has = which == FAM_E ? v[i].has_e : which == FAM_SE ? v[i].has_se : true;
    double x = which == FAM_E ? v[i].e : which == FAM_SE ? v[i].se : which == FAM_ALPHA0 ? v[i].alpha0 : v[i].width;
    if (!has || !v[i].run || !v[i].mode)
      continue;
    fprintf(f, "%s{run=\"", name);
    label(f, v[i].run);
    fputs("\",mode=\"", f);
    label(f, v[i].mode);
    fputs("\"} ", f);
    number(f, x);
    fputc('\n', f);
  }
}

static void last_steps(FILE *f, const latest_t *v, size_t n)
{
  family(f, "emerge_last_step", "gauge", "Training step of the run's latest result (runs whose checkpoints name "
                                         "no step have none).");
  for (size_t i = 0; i < n; i++) {
    if (!v[i].named || !v[i].run)
      continue;
    fputs("emerge_last_step{run=\"", f);
    label(f, v[i].run);
    fprintf(f, "\"} %lld\n", (long long)v[i].step);
  }
}

/* Two-label counts of a GROUP BY: run and state, or run and rule. */
static int counts(FILE *f, em_db_t *db, const char *sql, const char *name, const char *key)
{
  sqlite3_stmt *st = em_sql_prepare(db, sql, NULL);
  int rc = st ? SQLITE_ROW : SQLITE_ERROR;
  while (st && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    fprintf(f, "%s{run=\"", name);
    label(f, (const char *)sqlite3_column_text(st, 0));
    fprintf(f, "\",%s=\"", key);
    label(f, (const char *)sqlite3_column_text(st, 1));
    fprintf(f, "\"} %lld\n", (long long)sqlite3_column_int64(st, 2));
  }
  em_sql_done(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int per_run(FILE *f, em_db_t *db)
{
  latest_t *v = NULL;
  size_t n = 0;
  int rc = load_latest(db, &v, &n);
  if (rc == 0) {
    run_family(f, v, n, FAM_E, "emerge_emergence", "Degree of emergence E of the run's latest result against its "
                                                 "baseline (docs/METHOD.md); compare only within one mode.");
    run_family(f, v, n, FAM_SE, "emerge_emergence_se", "Standard error of emerge_emergence (0 in full mode).");
    run_family(f, v, n, FAM_ALPHA0, "emerge_alpha0", "alpha0 (peak of the spectrum f(alpha)) of the latest result.");
    run_family(f, v, n, FAM_WIDTH, "emerge_width", "Width of the spectrum f(alpha) of the latest result.");
    last_steps(f, v, n);
  }
  free_latest(v, n);
  family(f, "emerge_checkpoints", "gauge", "Checkpoints of the run by state (queued, done, failed, vanished, "
                                           "nonfinite, unsupported).");
  if (rc == 0)
    rc = counts(f, db, "SELECT r.name, c.state, COUNT(*) FROM checkpoints c JOIN runs r ON r.id = c.run_id "
                       "GROUP BY r.id, c.state ORDER BY r.name, c.state", "emerge_checkpoints", "state");
  family(f, "emerge_alerts_total", "counter", "Alerts the run's early-stop rules raised, by rule.");
  if (rc == 0)
    rc = counts(f, db, "SELECT r.name, a.rule, COUNT(*) FROM alerts a JOIN runs r ON r.id = a.run_id "
                       "GROUP BY r.id, a.rule ORDER BY r.name, a.rule", "emerge_alerts_total", "rule");
  return rc;
}

/* ---------------------------------------------------------------- daemon wide */

static void durations(FILE *f, const em_durations_t *d)
{
  const char *name = "emerge_analysis_duration_seconds";
  family(f, name, "histogram", "Wall time of the analyses that finished with a result since the daemon started.");
  for (int i = 0; i < EM_DURATION_BUCKETS; i++) {
    fprintf(f, "%s_bucket{le=\"", name);
    number(f, em_duration_bounds[i]);
    fprintf(f, "\"} %llu\n", (unsigned long long)d->le[i]);
  }
  fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum ", name, (unsigned long long)d->count, name);
  number(f, d->sum);
  fprintf(f, "\n%s_count %llu\n", name, (unsigned long long)d->count);
}

static void daemon_wide(FILE *f, const em_status_t *st, const em_durations_t *d)
{
  family(f, "emerge_build_info", "gauge", "The emerged build: always 1, its version as a label.");
  fprintf(f, "emerge_build_info{version=\"%s\",schema=\"%d\"} 1\n", EM_VERSION, EM_SCHEMA_VERSION);
  gauge(f, "emerge_queue_depth", "Checkpoints waiting for analysis (queued, or in their quiet period).",
        (double)st->queue);
  gauge(f, "emerge_analyses_running", "Analyses in progress.", (double)st->running);
  gauge(f, "emerge_workers", "Analysis worker threads.", (double)st->workers);
  gauge(f, "emerge_last_seq", "The daemon-wide seq of the last committed result, alert or checkpoint event.",
        (double)st->last_seq);
  gauge(f, "emerge_uptime_seconds", "Seconds since the daemon started.", st->uptime);
  durations(f, d);
}

char *em_metrics_text(em_db_t *db, const em_status_t *st, const em_durations_t *d, char *err, size_t errlen)
{
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  daemon_wide(f, st, d);
  int rc = per_run(f, db);
  bool ok = fclose(f) == 0 && rc == 0;
  if (!ok) {
    snprintf(err, errlen, "database %s: %s", db->path, sqlite3_errmsg(db->h));
    free(text);
    return NULL;
  }
  return text;
}
