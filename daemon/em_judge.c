/* SPDX-License-Identifier: MIT */
/* Alert rows from rule replays.
 *
 * DESIGN. Judging is a replay, not incremental state: results may arrive out of step
 * order (start-up goes newest first) and a lower step later re-baselines E, so each
 * judgement replays the run's current history, exactly as `emergectl backtest` does.
 * What was already recorded is not recorded again: a threshold or check_finite firing
 * once per run (per rule definition), a plateau again only when it follows a best value
 * newer than the rule's last plateau alert, so a later backfilled checkpoint cannot
 * repeat a plateau already reported. */
#include "em_judge.h"

#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "em_log.h"
#include "em_sql.h"

typedef struct judge {
  sqlite3 *db;
  em_store_op_t *op;
  int64_t rid;
  const em_point_t *pts;
  int rc;
} judge_t;

static bool already_recorded(judge_t *j, const em_rule_t *r, const em_firing_t *f)
{
  const char *cond = em_condition_name(f->cond);
  if (f->cond != EM_COND_PLATEAU)
    return em_sql_int(em_sql_prepare(j->db, "SELECT COUNT(*) FROM alerts WHERE run_id = ? AND rule = ? "
                                            "AND condition = ? AND seq > ?", "itti", j->rid, r->name, cond,
                                     r->since_seq), 0, &j->rc) > 0;
  int64_t last = em_sql_int(em_sql_prepare(j->db, "SELECT MAX(step) FROM alerts WHERE run_id = ? AND rule = ? "
                                                  "AND condition = ? AND seq > ?", "itti", j->rid, r->name, cond,
                                           r->since_seq), INT64_MIN, &j->rc);
  return last != INT64_MIN && f->best_step <= last;
}

static char *alert_json(const em_store_op_t *op, const em_rule_t *r, const em_firing_t *f, const em_point_t *p,
                        const char *path, int64_t seq, double ts)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "seq", (double)seq);
  cJSON_AddStringToObject(o, "kind", "alert");
  cJSON_AddStringToObject(o, "run", op->run);
  cJSON_AddStringToObject(o, "rule", r->name);
  cJSON_AddStringToObject(o, "condition", em_condition_name(f->cond));
  if (f->cond == EM_COND_FINITE)
    cJSON_AddNullToObject(o, "monitor");
  else
    cJSON_AddStringToObject(o, "monitor", em_monitor_name(r->monitor));
  if (isfinite(f->value))
    cJSON_AddNumberToObject(o, "value", f->value);
  else
    cJSON_AddNullToObject(o, "value");
  cJSON_AddNumberToObject(o, "step", (double)p->step);
  cJSON_AddStringToObject(o, "path", path ? path : "");
  cJSON_AddStringToObject(o, "run_dir", op->run_dir ? op->run_dir : "");
  cJSON_AddStringToObject(o, "reason", f->reason);
  cJSON_AddNumberToObject(o, "ts", ts);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return text;
}

static void on_fire(void *ctx, const em_rule_t *r, const em_firing_t *f)
{
  judge_t *j = ctx;
  if (j->rc != SQLITE_OK || already_recorded(j, r, f) || j->rc != SQLITE_OK)
    return;
  const em_point_t *p = &j->pts[f->at];
  char *path = NULL; /* a result's path is read only when it fires, not for every point */
  if (!p->path) {
    sqlite3_stmt *st = em_sql_prepare(j->db, "SELECT c.path FROM results r JOIN checkpoints c "
                                             "ON c.id = r.checkpoint_id WHERE r.seq = ?", "i", p->seq);
    if (st && sqlite3_step(st) == SQLITE_ROW)
      path = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
  }
  int64_t seq = em_store_next_seq(j->db, &j->rc);
  double ts = em_sql_now();
  char *payload = j->rc == SQLITE_OK ? alert_json(j->op, r, f, p, p->path ? p->path : path, seq, ts) : NULL;
  free(path);
  if (!payload) {
    j->rc = j->rc == SQLITE_OK ? SQLITE_NOMEM : j->rc;
    return;
  }
  int rc = em_sql_run(em_sql_prepare(j->db, "INSERT INTO alerts(seq, run_id, rule, condition, step, json, ts, "
                                            "delivered) VALUES(?, ?, ?, ?, ?, ?, ?, 0)", "iitti" "td", seq, j->rid,
                                     r->name, em_condition_name(f->cond), p->step, payload, ts));
  if (rc != SQLITE_DONE) {
    free(payload);
    j->rc = rc;
    return;
  }
  j->rc = em_store_op_add_pub(j->op, "alert", j->op->run, payload);
}

static int judge_points(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op, int64_t rid, const em_point_t *pts,
                        size_t n)
{
  judge_t j = {.db = db, .op = op, .rid = rid, .pts = pts, .rc = SQLITE_OK};
  for (size_t i = 0; i < rules->n && j.rc == SQLITE_OK; i++)
    em_rule_replay(&rules->v[i], pts, n, on_fire, &j);
  return j.rc;
}

int em_judge_results(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op, int64_t rid)
{
  if (!rules->n)
    return SQLITE_OK;
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT c.step, r.seq, r.emergence, r.alpha0, r.width FROM results r "
                                        "JOIN checkpoints c ON c.id = r.checkpoint_id AND c.version = r.version "
                                        "WHERE c.run_id = ? ORDER BY c.step, c.id", "i", rid);
  if (!st)
    return SQLITE_ERROR;
  size_t n = 0, cap = 0;
  em_point_t *pts = NULL;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    if (n == cap) {
      em_point_t *grown = realloc(pts, (cap = cap ? 2 * cap : 64) * sizeof(*pts));
      if (!grown) {
        rc = SQLITE_NOMEM;
        break;
      }
      pts = grown;
    }
    em_point_t *p = &pts[n];
    *p = (em_point_t){.step = sqlite3_column_int64(st, 0), .seq = sqlite3_column_int64(st, 1)};
    for (int k = 0; k < 3; k++)
      p->value[k] = sqlite3_column_type(st, 2 + k) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2 + k);
    n++;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_OK)
    rc = judge_points(db, rules, op, rid, pts, n);
  free(pts);
  return rc;
}

int em_judge_nonfinite(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op, int64_t rid, int64_t step)
{
  /* judged now, while the rule is active: past the since filter of every rule */
  em_point_t p = {.step = step, .seq = INT64_MAX, .nonfinite = true, .path = op->path, .error = op->error};
  return rules->n ? judge_points(db, rules, op, rid, &p, 1) : SQLITE_OK;
}

int em_judge_set_rules(sqlite3 *db, em_rules_t *rules)
{
  int rc = SQLITE_OK;
  int64_t last = em_sql_int(em_sql_prepare(db, "SELECT value FROM meta WHERE key = 'last_seq'", NULL), 0, &rc);
  EM_SQL_CHECK(em_sql_exec(db, "UPDATE rules SET keep = 0"));
  for (size_t i = 0; i < rules->n && rc == SQLITE_OK; i++) {
    em_rule_t *r = &rules->v[i];
    char *spec = em_rule_spec(r);
    if (!spec)
      return SQLITE_NOMEM;
    int64_t since = em_sql_int(em_sql_prepare(db, "SELECT since_seq FROM rules WHERE name = ? AND spec = ?", "tt",
                                              r->name, spec), -1, &rc);
    if (since < 0) {
      since = last;
      EM_INFO("alerts: rule '%s' judges results after seq %lld", r->name, (long long)since);
    }
    r->since_seq = since;
    if (rc == SQLITE_OK &&
        em_sql_run(em_sql_prepare(db, "INSERT OR REPLACE INTO rules(name, spec, since_seq, keep) VALUES(?, ?, ?, 1)",
                                  "tti", r->name, spec, since)) != SQLITE_DONE)
      rc = SQLITE_ERROR;
    free(spec);
  }
  EM_SQL_CHECK(rc);
  return em_sql_exec(db, "DELETE FROM rules WHERE keep = 0");
}
