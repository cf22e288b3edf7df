/* SPDX-License-Identifier: MIT */
/* The store thread.
 *
 * DESIGN. The loop thread queues operations; the store thread runs them in order, each
 * in one BEGIN IMMEDIATE transaction, then moves them to a done list and wakes the loop
 * (uv_async_send coalesces, so the callback drains the whole list). A transaction that
 * fails for a passing reason (SQLITE_BUSY, SQLITE_FULL, I/O) is rolled back, logged and
 * retried with backoff: nothing is lost and the daemon stays up. Exactly once: a result
 * row is keyed by (checkpoint, version) and inserted only if absent, in the same
 * transaction that assigns its seq and marks the checkpoint done. A result is encoded
 * once, with its E; a new baseline rewrites the stored rows with json_set. */
#include "em_store.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_db.h"
#include "em_judge.h"
#include "em_log.h"
#include "em_query.h"
#include "em_result_json.h"

struct em_store {
  em_db_t *db;
  uv_thread_t thread;
  em_fifo_t fifo;               /* operations in, finished operations out */
  uv_sem_t ready;
  int start_rc;
  char *path;
  char start_err[512];
  em_rules_t rules;             /* the early-stop rules judged after each result */
  em_run_points_t kept;         /* the judged points of the run judged last (judge_results) */
};

/* Points kept beyond a judgement at most: 100,000 are 10 MiB. */
#define KEPT_MAX 100000

/* ---------------------------------------------------------------- outputs */

static int add_pub(em_store_op_t *op, int64_t seq, const char *kind, const char *run, char *payload,
                   const em_point_t *point)
{
  em_pub_t *p = realloc(op->pubs, (op->npub + 1) * sizeof(*p));
  if (!p) {
    free(payload);
    return SQLITE_NOMEM;
  }
  op->pubs = p;
  char topic[4200];
  if (!em_topic(topic, sizeof(topic), kind, run) || !(p[op->npub].topic = strdup(topic))) {
    free(payload);
    return SQLITE_NOMEM;
  }
  p[op->npub].seq = seq;
  p[op->npub].has_point = point != NULL;
  p[op->npub].point = point ? *point : (em_point_t){0};
  p[op->npub++].payload = payload;
  return SQLITE_OK;
}

/* Takes a. */
static int add_alert(em_store_op_t *op, em_alert_t *a)
{
  em_alert_t *grown = realloc(op->alerts, (op->nalerts + 1) * sizeof(*grown));
  if (!grown) {
    em_alert_free(a);
    return SQLITE_NOMEM;
  }
  op->alerts = grown;
  op->alerts[op->nalerts++] = *a;
  memset(a, 0, sizeof(*a));
  return SQLITE_OK;
}

static void clear_outputs(em_store_op_t *op)
{
  for (size_t i = 0; i < op->npub; i++) {
    free(op->pubs[i].topic);
    free(op->pubs[i].payload);
  }
  free(op->pubs);
  for (size_t i = 0; i < op->nalerts; i++)
    em_alert_free(&op->alerts[i]);
  free(op->alerts);
  op->pubs = NULL;
  op->alerts = NULL;
  op->npub = op->nalerts = 0;
}

/* The next daemon-wide seq, inside the caller's transaction. */
static int64_t next_seq(em_db_t *db, int *rc)
{
  int64_t seq = em_sql_int(em_sql_prepare(db, "SELECT value FROM meta WHERE key = 'last_seq'", NULL), 0, rc) + 1;
  if (*rc == SQLITE_OK &&
      em_sql_run(em_sql_prepare(db, "UPDATE meta SET value = ? WHERE key = 'last_seq'", "i", seq)) != SQLITE_DONE)
    *rc = SQLITE_ERROR;
  return seq;
}

/* Inserts alert a (its seq taken) of run rid and hands it to op for publishing and
 * delivery; takes a. */
static int insert_alert(em_db_t *db, em_store_op_t *op, int64_t rid, em_alert_t *a)
{
  char *payload = a->run && a->rule && a->path && a->run_dir && a->reason ? em_alert_print(a) : NULL;
  if (!payload) {
    em_alert_free(a);
    return SQLITE_NOMEM;
  }
  int rc = em_sql_run(em_sql_prepare(db, "INSERT INTO alerts(seq, run_id, rule, condition, step, json, ts, delivered) "
                                         "VALUES(?, ?, ?, ?, ?, ?, ?, 0)", "iitti" "td", a->seq, rid, a->rule,
                                     em_condition_name(a->cond), a->step, payload, a->ts));
  if (rc != SQLITE_DONE) {
    free(payload);
    em_alert_free(a);
    return rc;
  }
  rc = add_pub(op, a->seq, "alert", op->run, payload, NULL);
  return rc == SQLITE_OK ? add_alert(op, a) : (em_alert_free(a), rc);
}

/* ---------------------------------------------------------------- judging */

/* What rule r recorded for run rid: for each condition a rule fires, whether it has a row
 * (of r's definition: seq > since_seq) and the latest step of one, each an index seek
 * (alerts_recorded) however many alerts the run has had. */
static int load_recorded(em_db_t *db, int64_t rid, const em_rule_t *r, em_recorded_t *rec)
{
  memset(rec, 0, sizeof(*rec));
  for (int c = EM_COND_PLATEAU; c < EM_COND_MANUAL; c++) {
    sqlite3_stmt *st = em_sql_prepare(db, "SELECT step FROM alerts WHERE run_id = ? AND "
                                          "rule = ? AND condition = ? AND seq > ? ORDER BY step DESC LIMIT 1", "itti",
                                      rid, r->name, em_condition_name((em_condition_t)c), r->since_seq);
    int step = st ? sqlite3_step(st) : SQLITE_ERROR;
    if (step == SQLITE_ROW) {
      rec->fired[c] = true;
      if (c == EM_COND_PLATEAU && sqlite3_column_type(st, 0) != SQLITE_NULL) { /* NULLs sort last */
        rec->has_plateau = true;
        rec->plateau_step = sqlite3_column_int64(st, 0);
      }
    }
    em_sql_done(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
      return step;
  }
  return SQLITE_OK;
}

/* A fired point's path: given (non-finite) or its result's, read only when it fires. */
static char *point_path(em_db_t *db, const em_point_t *p)
{
  if (p->path)
    return strdup(p->path);
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT c.path FROM results r JOIN checkpoints c ON c.id = r.checkpoint_id "
                                        "WHERE r.seq = ?", "i", p->seq);
  char *path = st && sqlite3_step(st) == SQLITE_ROW ? strdup((const char *)sqlite3_column_text(st, 0)) : NULL;
  em_sql_done(st);
  return path ? path : strdup("");
}

static int record_alert(em_store_t *s, em_store_op_t *op, int64_t rid, const em_rule_t *r, const em_firing_t *f,
                        const em_point_t *p)
{
  int rc = SQLITE_OK;
  em_alert_t a = {.seq = next_seq(s->db, &rc), .cond = f->cond, .has_cond = true, .step = p->step,
                  .by_arrival = p->by_arrival, .ts = em_sql_now(),
                  .monitor = f->cond == EM_COND_FINITE ? EM_MON_NONE : r->monitor, .value = f->value,
                  .run = strdup(op->run), .rule = strdup(r->name), .path = point_path(s->db, p),
                  .run_dir = strdup(op->run_dir ? op->run_dir : ""), .reason = strdup(f->reason), .stop = r->stop};
  if (rc != SQLITE_OK) {
    em_alert_free(&a);
    return rc;
  }
  return insert_alert(s->db, op, rid, &a);
}

static int record_verdicts(em_store_t *s, em_store_op_t *op, int64_t rid, const em_verdict_t *v, size_t n)
{
  int rc = SQLITE_OK;
  for (size_t i = 0; i < n && rc == SQLITE_OK; i++)
    rc = record_alert(s, op, rid, &s->rules.v[v[i].rule], &v[i].firing, v[i].point);
  return rc;
}

/* Every rule replayed over the points of run rid (a non-finite checkpoint's one point);
 * new firings become alert rows. */
static int judge_points(em_store_t *s, em_store_op_t *op, int64_t rid, const em_point_t *pts, size_t n)
{
  const em_rules_t *rules = &s->rules;
  if (!rules->n)
    return SQLITE_OK;
  em_recorded_t *rec = calloc(rules->n, sizeof(*rec));
  em_verdict_t *v = NULL;
  size_t nv = 0;
  int rc = rec ? SQLITE_OK : SQLITE_NOMEM;
  for (size_t i = 0; i < rules->n && rc == SQLITE_OK; i++)
    rc = load_recorded(s->db, rid, &rules->v[i], &rec[i]);
  if (rc == SQLITE_OK && em_judge(rules, pts, n, rec, &v, &nv) != 0)
    rc = SQLITE_NOMEM;
  if (rc == SQLITE_OK)
    rc = record_verdicts(s, op, rid, v, nv);
  free(v);
  free(rec);
  return rc;
}

/* The rule's kept state for run rid: false when there is none, or when it does not read
 * (a corrupt row is replayed over, and rewritten, never trusted). */
static bool load_state(em_store_t *s, const em_store_op_t *op, int64_t rid, const em_rule_t *r, em_judge_state_t *st,
                       int *rc)
{
  sqlite3_stmt *q = em_sql_prepare(s->db, "SELECT state FROM rule_state WHERE run_id = ? AND rule = ?", "it", rid,
                                   r->name);
  int step = q ? sqlite3_step(q) : SQLITE_ERROR;
  bool found = step == SQLITE_ROW, ok = found && em_judge_state_parse((const char *)sqlite3_column_text(q, 0), st) == 0;
  if (found && !ok)
    EM_WARN("alerts: run %s rule %s: its kept state does not read; judging by replaying the run's history", op->run,
            r->name);
  em_sql_done(q);
  if (step != SQLITE_ROW && step != SQLITE_DONE)
    *rc = step;
  return ok;
}

static int save_state(em_db_t *db, int64_t rid, const em_rule_t *r, const em_judge_state_t *st)
{
  char *text = em_judge_state_print(st);
  if (!text)
    return SQLITE_NOMEM;
  int rc = em_sql_run(em_sql_prepare(db, "INSERT OR REPLACE INTO rule_state(run_id, rule, state) VALUES(?, ?, ?)",
                                     "itt", rid, r->name, text));
  free(text);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* What judging a new result of a run reads: its two newest results (is the new one the
 * last, and which came before it); the whole history only when a rule must replay it. */
typedef struct judged {
  em_history_t tail;
  em_point_t *last;         /* the new result as a point, when it is the run's last */
  int64_t before;           /* the seq of the run's newest result before it; 0: none */
  size_t resumed;           /* rules that judged it from their kept state */
} judged_t;

/* The new result among the points kept of its run, when they are its run's history
 * before it (they end at its newest result then): judging it out of step order then
 * replays them in memory. Anything else drops them: another run's, or a history that
 * changed otherwise (a new baseline gives every result a new seq). */
static int keep_new_point(em_store_t *s, const em_store_op_t *op, int64_t rid, const judged_t *j)
{
  em_run_points_t *k = &s->kept;
  if (!em_run_points_current(k, rid, j->before)) {
    em_run_points_drop(k);
    return SQLITE_OK;
  }
  em_history_t one = {0};
  int rc = j->last ? SQLITE_OK : em_query_judged_checkpoint(s->db, op->ckpt_id, &one);
  size_t n = 0;
  em_point_t *p = j->last ? j->last : rc == SQLITE_OK && one.n == 1 ? em_history_points(&one, &n) : NULL;
  if (!p || em_run_points_insert(k, p) != 0) /* a point of the same step: the database orders them */
    em_run_points_drop(k);
  if (p != j->last)
    free(p);
  em_history_free(&one);
  return rc;
}

/* The run's points with the new result, in s->kept: kept, or read. */
static int history_points(em_store_t *s, int64_t rid)
{
  if (s->kept.rid == rid)
    return SQLITE_OK;
  em_history_t h;
  size_t n = 0;
  int rc = em_query_judged(s->db, rid, &h);
  em_point_t *pts = rc == SQLITE_OK ? em_history_points(&h, &n) : NULL; /* they borrow no strings: no paths */
  em_history_free(&h);
  if (rc == SQLITE_OK && !pts)
    return SQLITE_NOMEM;
  if (rc == SQLITE_OK)
    s->kept = (em_run_points_t){.rid = rid, .n = n, .cap = n, .v = pts};
  return rc;
}

/* Rule i on the new result: from its kept state when the result is the run's last and the
 * state ends at the one before it, else by a replay of the history; the state is kept. */
static int judge_rule(em_store_t *s, em_store_op_t *op, int64_t rid, size_t i, judged_t *j, em_verdicts_t *v)
{
  const em_rule_t *r = &s->rules.v[i];
  em_recorded_t rec;
  em_judge_state_t st;
  int rc = load_recorded(s->db, rid, r, &rec);
  bool resume = rc == SQLITE_OK && j->last && load_state(s, op, rid, r, &st, &rc) &&
                em_judge_follows(r, &st, j->before);
  if (rc != SQLITE_OK)
    return rc;
  if (resume) {
    j->resumed++;
    rc = em_judge_next(&s->rules, i, j->last, &rec, &st, v) == 0 ? SQLITE_OK : SQLITE_NOMEM;
  } else if ((rc = history_points(s, rid)) == SQLITE_OK) {
    EM_DEBUG("alerts: run %s rule %s: replaying %zu results", op->run, r->name, s->kept.n);
    rc = em_judge_replay(&s->rules, i, s->kept.v, s->kept.n, &rec, &st, v) == 0 ? SQLITE_OK : SQLITE_NOMEM;
  }
  return rc == SQLITE_OK ? save_state(s->db, rid, r, &st) : rc;
}

/* Every rule on the result of seq `seq` just stored in run rid; new firings become alert
 * rows. In step order it is judged from each rule's kept state, in time independent of
 * the history's length; out of order (or re-baselined) by a replay (em_judge.h), of the
 * points kept in memory when they are the run's. */
static int judge_results(em_store_t *s, em_store_op_t *op, int64_t rid, int64_t seq)
{
  if (!s->rules.n) { /* the history changes unjudged: what is kept of it is not it */
    em_run_points_drop(&s->kept);
    return SQLITE_OK;
  }
  uint64_t t0 = uv_hrtime();
  judged_t j = {0};
  em_verdicts_t v = {0};
  int rc = em_query_judged_tail(s->db, rid, 2, &j.tail);
  bool is_last = rc == SQLITE_OK && j.tail.n > 0 && j.tail.v[0].seq == seq;
  if (rc == SQLITE_OK && j.tail.n > (size_t)is_last)
    j.before = j.tail.v[is_last].seq;
  if (is_last && j.tail.n == 2) {
    em_history_t newest = {.n = 1, .cap = 1, .v = j.tail.v}; /* borrowed: its one point, built as any */
    size_t one;
    if (!(j.last = em_history_points(&newest, &one)))
      rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK)
    rc = keep_new_point(s, op, rid, &j);
  for (size_t i = 0; i < s->rules.n && rc == SQLITE_OK; i++)
    rc = judge_rule(s, op, rid, i, &j, &v);
  if (rc == SQLITE_OK)
    rc = record_verdicts(s, op, rid, v.v, v.n);
  EM_DEBUG("alerts: run %s result %lld: %zu rule%s judged in %.3f ms, %zu from their kept state", op->run,
           (long long)seq, s->rules.n, s->rules.n == 1 ? "" : "s", (double)(uv_hrtime() - t0) / 1e6, j.resumed);
  em_verdicts_free(&v);
  free(j.last);
  em_history_free(&j.tail);
  if (s->kept.n > KEPT_MAX)
    em_run_points_drop(&s->kept);
  return rc;
}

/* ---------------------------------------------------------------- operations */

static int64_t run_id(em_db_t *db, const char *name, const char *dir, int *rc)
{
  *rc = em_sql_run(em_sql_prepare(db, "INSERT OR IGNORE INTO runs(name, dir) VALUES(?, ?)", "tt", name, dir));
  if (*rc != SQLITE_DONE)
    return -1;
  *rc = SQLITE_OK;
  return em_sql_int(em_sql_prepare(db, "SELECT id FROM runs WHERE name = ?", "t", name), -1, rc);
}

/* A checkpoint seen for the first time gets its step, or an arrival number (named 0:
 * published as "step": null, "arrival": n; the column orders the run either way). */
static int64_t insert_checkpoint(em_db_t *db, em_store_op_t *op, int64_t rid, int *rc)
{
  int64_t step = op->step;
  if (!op->has_step) { /* a number assigned once, in arrival order, and stored */
    step = em_sql_int(em_sql_prepare(db, "SELECT next_arrival FROM runs WHERE id = ?", "i", rid), 0, rc);
    if (em_sql_run(em_sql_prepare(db, "UPDATE runs SET next_arrival = next_arrival + 1 WHERE id = ?", "i", rid)) !=
        SQLITE_DONE)
      *rc = SQLITE_ERROR;
  }
  if (*rc == SQLITE_OK &&
      em_sql_run(em_sql_prepare(db, "INSERT INTO checkpoints(run_id, path, step, named, version, state, updated) "
                                    "VALUES(?, ?, ?, ?, ?, 'queued', ?)", "itiitd", rid, op->path, step,
                                (int64_t)op->has_step, op->version, em_sql_now())) != SQLITE_DONE)
    *rc = SQLITE_ERROR;
  return (int64_t)sqlite3_last_insert_rowid(db->h);
}

/* A known checkpoint seen again: its step (now named) and version as found. One whose
 * step or version changes moves in or leaves its run's judged history, so the rules'
 * kept states of the run and the points kept in memory no longer describe it: they are
 * dropped, and the run's next result is judged by a replay read from the database. */
static int update_checkpoint(em_store_t *s, const em_store_op_t *op, int64_t rid, int64_t id)
{
  em_db_t *db = s->db;
  int changed = 0;
  if (op->has_step) {
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET step = ?1, named = 1 WHERE id = ?2 AND "
                                               "(step != ?1 OR named != 1)", "ii", op->step, id)));
    changed += sqlite3_changes(db->h);
  }
  EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET version = ?, state = 'queued', error = NULL, "
                                             "updated = ? WHERE id = ? AND version != ?", "tdit", op->version,
                                         em_sql_now(), id, op->version)));
  changed += sqlite3_changes(db->h);
  if (changed) {
    em_run_points_drop(&s->kept);
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "DELETE FROM rule_state WHERE run_id = ?", "i", rid)));
  }
  return SQLITE_OK;
}

static int op_seen(em_store_t *s, em_store_op_t *op)
{
  em_db_t *db = s->db;
  int rc = SQLITE_OK;
  int64_t rid = run_id(db, op->run, op->run_dir, &rc);
  EM_SQL_CHECK(rc);
  int64_t id = em_sql_int(em_sql_prepare(db, "SELECT id FROM checkpoints WHERE run_id = ? AND path = ?", "it", rid,
                                         op->path), -1, &rc);
  EM_SQL_CHECK(rc);
  if (id < 0) {
    id = insert_checkpoint(db, op, rid, &rc);
    EM_SQL_CHECK(rc);
  } else {
    EM_SQL_CHECK(update_checkpoint(s, op, rid, id));
  }
  op->ckpt_id = id;
  op->step_out = em_sql_int(em_sql_prepare(db, "SELECT step FROM checkpoints WHERE id = ?", "i", id), 0, &rc);
  op->has_result = em_sql_int(em_sql_prepare(db, "SELECT COUNT(*) FROM results WHERE checkpoint_id = ? AND "
                                                 "version = ?", "it", id, op->version), 0, &rc) > 0;
  if (op->has_result)
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET state = 'done', error = NULL WHERE id = ?",
                                           "i", id)));
  return rc;
}

/* Whether a name or trainer_state.json gave the checkpoint its step. */
static bool checkpoint_named(em_db_t *db, int64_t id, int *rc)
{
  return em_sql_int(em_sql_prepare(db, "SELECT named FROM checkpoints WHERE id = ?", "i", id), 1, rc) != 0;
}

/* The checkpoint's event (failed, vanished, nonfinite, unsupported): its own seq, stored
 * with the row so `since` replays it, and published on checkpoint/<run>/. */
static int record_event(em_db_t *db, em_store_op_t *op, int64_t step, bool by_arrival)
{
  int rc = SQLITE_OK;
  em_hist_entry_t e = {.step = step, .by_arrival = by_arrival, .state = op->state, .seq = next_seq(db, &rc),
                       .path = op->path, .error = op->error};
  EM_SQL_CHECK(rc);
  cJSON *o = em_checkpoint_event_to_json(op->run, &e, em_sql_now());
  char *payload = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!payload)
    return SQLITE_NOMEM;
  rc = em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET seq = ?, event = ? WHERE id = ?", "iti", e.seq, payload,
                                 op->ckpt_id));
  if (rc != SQLITE_OK && rc != SQLITE_DONE) {
    free(payload);
    return rc;
  }
  return add_pub(op, e.seq, "checkpoint", op->run, payload, NULL);
}

static int op_state(em_store_t *s, em_store_op_t *op)
{
  EM_SQL_CHECK(em_sql_run(em_sql_prepare(s->db, "UPDATE checkpoints SET state = ?, error = ?, updated = ? "
                                                "WHERE id = ? AND version = ?", "ttdit", em_state_name(op->state),
                                         op->error, em_sql_now(), op->ckpt_id, op->version)));
  if (sqlite3_changes(s->db->h) == 0 || op->state == EM_STATE_QUEUED || op->state == EM_STATE_DONE)
    return SQLITE_OK;
  int rc = SQLITE_OK;
  int64_t rid = em_sql_int(em_sql_prepare(s->db, "SELECT run_id FROM checkpoints WHERE id = ?", "i", op->ckpt_id), -1,
                           &rc);
  int64_t step = em_sql_int(em_sql_prepare(s->db, "SELECT step FROM checkpoints WHERE id = ?", "i", op->ckpt_id), 0,
                            &rc);
  bool by_arrival = !checkpoint_named(s->db, op->ckpt_id, &rc);
  EM_SQL_CHECK(rc);
  EM_SQL_CHECK(record_event(s->db, op, step, by_arrival));
  if (op->state != EM_STATE_NONFINITE)
    return SQLITE_OK;
  /* judged now, while the rule is active: a one-entry history past every since filter */
  em_history_t h = {0};
  em_hist_entry_t e = {.step = step, .by_arrival = by_arrival, .state = EM_STATE_NONFINITE, .path = op->path,
                       .error = op->error};
  size_t n = 0;
  em_point_t *pts = em_history_add(&h, &e) == 0 ? em_history_points(&h, &n) : NULL;
  rc = pts ? judge_points(s, op, rid, pts, n) : SQLITE_NOMEM;
  free(pts);
  em_history_free(&h);
  return rc;
}

/* The run's baseline: its lowest-step current result, with its per-sample values. */
typedef struct baseline {
  bool found;
  int64_t step;
  bool by_arrival;          /* step is its arrival number */
  double alpha0, width;
  size_t nsamples;
  const em_sample_t *samples;
  em_sample_t *owned;       /* samples when decoded from the database */
} baseline_t;

/* E and its standard error against a baseline (docs/METHOD.md "Uncertainty"). */
typedef struct measured {
  bool has_e, has_se;
  double e, se;
} measured_t;

static measured_t measure(double alpha0, double width, const em_sample_t *s, size_t n, const baseline_t *b)
{
  measured_t m = {0};
  m.has_e = em_emergence(alpha0, width, b->alpha0, b->width, &m.e, NULL) == 0;
  m.has_se = m.has_e && em_emergence_se(s, n, b->samples, b->nsamples, &m.se, NULL) == 0;
  return m;
}

/* A result's values as the journal's TensorBoard writer takes them. */
static em_point_t point_of(int64_t step, bool by_arrival, int64_t seq, const measured_t *m, double alpha0, double width)
{
  return (em_point_t){.step = step, .by_arrival = by_arrival, .seq = seq,
                      .value = {m->has_e ? m->e : NAN, alpha0, width}, .se = {m->has_se ? m->se : NAN, NAN, NAN}};
}

/* The per-sample values of a stored result object; NULL (*n 0) when it has none. */
static em_sample_t *stored_samples(const unsigned char *json, size_t *n)
{
  *n = 0;
  cJSON *o = json ? cJSON_Parse((const char *)json) : NULL;
  em_result_view_t v;
  char err[160];
  em_sample_t *samples = NULL;
  if (o && em_result_decode(o, &v, err, sizeof(err)) == 0) {
    samples = v.samples, *n = v.nsamples;
    v.samples = NULL, v.nsamples = 0;
    em_result_view_free(&v);
  }
  cJSON_Delete(o);
  return samples;
}

static baseline_t find_baseline(em_db_t *db, int64_t rid)
{
  baseline_t b = {0};
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT c.step, r.alpha0, r.width, r.json, c.named FROM results r JOIN "
                                        "checkpoints c ON c.id = r.checkpoint_id AND c.version = r.version WHERE "
                                        "c.run_id = ? ORDER BY c.step, c.id LIMIT 1", "i", rid);
  if (st && sqlite3_step(st) == SQLITE_ROW) {
    b = (baseline_t){.found = true, .step = sqlite3_column_int64(st, 0), .alpha0 = sqlite3_column_double(st, 1),
                     .width = sqlite3_column_double(st, 2), .by_arrival = sqlite3_column_int(st, 4) == 0};
    b.samples = b.owned = stored_samples(sqlite3_column_text(st, 3), &b.nsamples);
  }
  em_sql_done(st);
  return b;
}

/* Binds v at i, or NULL when has is false. */
static void bind_opt(sqlite3_stmt *st, int i, bool has, double v)
{
  if (st && has)
    sqlite3_bind_double(st, i, v);
  else if (st)
    sqlite3_bind_null(st, i);
}

/* One stored result's E against a new baseline, with a new seq; its payload is published. */
static int rebaseline_row(em_db_t *db, em_store_op_t *op, sqlite3_stmt *row, const baseline_t *b)
{
  size_t n;
  em_sample_t *samples = stored_samples(sqlite3_column_text(row, 3), &n);
  measured_t m = measure(sqlite3_column_double(row, 1), sqlite3_column_double(row, 2), samples, n, b);
  free(samples);
  int rc = SQLITE_OK;
  double ts = em_sql_now();
  int64_t seq = next_seq(db, &rc);
  sqlite3_stmt *up = rc != SQLITE_OK ? NULL : em_sql_prepare(db,
    "UPDATE results SET seq = ?1, emergence = ?2, emergence_se = ?6, ts = ?4, json = (SELECT CASE WHEN ?7 IS NULL "
    "THEN j ELSE json_set(j, '$.baseline_arrival', ?7) END FROM (SELECT json_set(json_remove(json, "
    "'$.baseline_arrival'), '$.emergence', ?2, '$.emergence_se', ?6, '$.baseline_step', ?3, '$.seq', ?1, "
    "'$.ts', ?4) AS j)) WHERE id = ?5 RETURNING json",
    "iiididi", seq, (int64_t)0, b->step, ts, sqlite3_column_int64(row, 0), 0.0, b->step);
  bind_opt(up, 2, m.has_e, m.e);
  bind_opt(up, 6, m.has_se, m.se);
  if (up && (!m.has_e || b->by_arrival))
    sqlite3_bind_null(up, 3);
  if (up && (!m.has_e || !b->by_arrival))
    sqlite3_bind_null(up, 7);
  char *payload = up && sqlite3_step(up) == SQLITE_ROW ? strdup((const char *)sqlite3_column_text(up, 0)) : NULL;
  em_sql_done(up);
  em_point_t pt = point_of(sqlite3_column_int64(row, 4), sqlite3_column_int(row, 5) == 0, seq, &m,
                           sqlite3_column_double(row, 1), sqlite3_column_double(row, 2));
  if (rc == SQLITE_OK)
    rc = payload ? add_pub(op, seq, "result", op->run, payload, &pt) : SQLITE_ERROR;
  else
    free(payload);
  return rc;
}

/* E of every other current result of the run against a new baseline: new seq each. */
static int rebaseline(em_db_t *db, em_store_op_t *op, int64_t rid, const baseline_t *b)
{
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT r.id, r.alpha0, r.width, r.json, c.step, c.named FROM results r "
                                        "JOIN checkpoints c "
                                        "ON c.id = r.checkpoint_id AND c.version = r.version WHERE c.run_id = ? "
                                        "AND c.id != ? ORDER BY c.step", "ii", rid, op->ckpt_id);
  if (!st)
    return SQLITE_ERROR;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    rc = rebaseline_row(db, op, st, b);
  em_sql_done(st);
  return rc;
}

static const char *mode_name(const em_result_t *r)
{
  return em_mode_name(r->params.mode);
}

/* The result object, encoded once, with its E and the daemon's fields. Caller frees. */
static char *encode_result(const em_store_op_t *op, const baseline_t *self, const baseline_t *b, bool is_base,
                           const measured_t *m, int64_t seq, double ts)
{
  const baseline_t *base = is_base ? self : b;
  em_result_meta_t meta = {.run = op->run, .path = op->path, .has_step = true, .step = self->step,
                           .by_arrival = self->by_arrival, .has_emergence = m->has_e, .emergence = m->e,
                           .has_emergence_se = m->has_se, .emergence_se = m->se, .has_baseline_step = m->has_e,
                           .baseline_step = base->step, .baseline_by_arrival = base->by_arrival,
                           .trainer = &op->trainer, .from_daemon = true, .seq = seq, .ts = ts};
  cJSON *o = em_result_to_json(&op->result, &meta);
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return text;
}

/* The result row, its seq in *seq_out. */
static int insert_result(em_store_t *s, em_store_op_t *op, const baseline_t *self, const baseline_t *b, bool is_base,
                         int64_t *seq_out)
{
  int rc = SQLITE_OK;
  int64_t seq = *seq_out = next_seq(s->db, &rc);
  EM_SQL_CHECK(rc);
  const em_result_t *r = &op->result;
  measured_t m = is_base ? (measured_t){true, true, 0, 0} : measure(r->alpha0, r->width, r->samples, r->nsamples, b);
  double ts = em_sql_now();
  char *payload = encode_result(op, self, b, is_base, &m, seq, ts);
  if (!payload)
    return SQLITE_NOMEM;
  sqlite3_stmt *st = em_sql_prepare(s->db, "INSERT INTO results(checkpoint_id, version, seq, alpha0, width, "
                                           "emergence, json, ts, emergence_se, mode, alpha0_se, width_se) "
                                           "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", "itiddd" "tddt" "dd",
                                    op->ckpt_id, op->version, seq, r->alpha0, r->width, 0.0, payload, ts, 0.0,
                                    mode_name(r), r->alpha0_se, r->width_se);
  bind_opt(st, 6, m.has_e, m.e);
  bind_opt(st, 9, m.has_se, m.se);
  rc = em_sql_run(st);
  if (rc == SQLITE_DONE)
    rc = em_sql_run(em_sql_prepare(s->db, "UPDATE checkpoints SET state = 'done', error = NULL, updated = ? "
                                          "WHERE id = ?", "di", ts, op->ckpt_id));
  if (rc != SQLITE_DONE) {
    free(payload);
    return rc;
  }
  em_point_t pt = point_of(self->step, self->by_arrival, seq, &m, r->alpha0, r->width);
  return add_pub(op, seq, "result", op->run, payload, &pt);
}

/* Every result of a run has one mode (E across modes is meaningless): a result in
 * another mode than the run's first is refused, the checkpoint recorded failed with
 * what to do. Returns SQLITE_OK with *refused set, or an error. */
static int refuse_other_mode(em_store_t *s, em_store_op_t *op, int64_t rid, bool *refused)
{
  int rc = SQLITE_OK;
  const char *mode = mode_name(&op->result);
  sqlite3_stmt *st = em_sql_prepare(s->db, "SELECT r.mode FROM results r JOIN checkpoints c ON c.id = r.checkpoint_id "
                                           "AND c.version = r.version WHERE c.run_id = ? AND r.mode IS NOT NULL "
                                           "ORDER BY c.step LIMIT 1", "i", rid);
  char *run_mode = st && sqlite3_step(st) == SQLITE_ROW ? strdup((const char *)sqlite3_column_text(st, 0)) : NULL;
  em_sql_done(st);
  *refused = run_mode && strcmp(run_mode, mode) != 0;
  if (*refused) {
    char error[600];
    snprintf(error, sizeof(error), "analysed in mode %s, but run %s was measured in mode %s (chosen at its "
             "baseline) and E across modes is meaningless: start a new run (a new directory) to use mode %s, or "
             "re-analyse this one offline with emergectl analyze --mode %s", mode, op->run, run_mode, mode, mode);
    EM_ERR("%s: %s", op->path, error);
    rc = em_sql_run(em_sql_prepare(s->db, "UPDATE checkpoints SET state = 'failed', error = ?, updated = ? "
                                          "WHERE id = ?", "tdi", error, em_sql_now(), op->ckpt_id));
    rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  free(run_mode);
  return rc;
}

static int op_result(em_store_t *s, em_store_op_t *op)
{
  em_db_t *db = s->db;
  int rc = SQLITE_OK;
  int64_t exists = em_sql_int(em_sql_prepare(db, "SELECT COUNT(*) FROM results WHERE checkpoint_id = ? AND "
                                                 "version = ?", "it", op->ckpt_id, op->version), 0, &rc);
  int64_t current = em_sql_int(em_sql_prepare(db, "SELECT COUNT(*) FROM checkpoints WHERE id = ? AND version = ?",
                                              "it", op->ckpt_id, op->version), 0, &rc);
  EM_SQL_CHECK(rc);
  if (exists || !current) /* exactly once; a stale version is not recorded */
    return SQLITE_OK;
  int64_t rid = em_sql_int(em_sql_prepare(db, "SELECT run_id FROM checkpoints WHERE id = ?", "i", op->ckpt_id), -1, &rc);
  int64_t step = em_sql_int(em_sql_prepare(db, "SELECT step FROM checkpoints WHERE id = ?", "i", op->ckpt_id), 0, &rc);
  bool by_arrival = !checkpoint_named(db, op->ckpt_id, &rc);
  EM_SQL_CHECK(rc);
  bool refused;
  EM_SQL_CHECK(refuse_other_mode(s, op, rid, &refused));
  if (refused)
    return SQLITE_OK;
  baseline_t b = find_baseline(db, rid);
  bool is_base = !b.found || step < b.step;
  baseline_t self = {.found = true, .step = step, .by_arrival = by_arrival, .alpha0 = op->result.alpha0,
                     .width = op->result.width, .nsamples = op->result.nsamples, .samples = op->result.samples};
  int64_t seq;
  rc = insert_result(s, op, &self, &b, is_base, &seq);
  if (rc == SQLITE_OK && is_base && b.found)
    rc = rebaseline(db, op, rid, &self);
  free(b.owned);
  EM_SQL_CHECK(rc);
  return judge_results(s, op, rid, seq);
}

static int op_meta(em_db_t *db, em_store_op_t *op)
{
  char pid[32];
  snprintf(pid, sizeof(pid), "%ld", (long)uv_os_getpid());
  const char *kv[][2] = {{"pub", op->pub_endpoint}, {"api", op->api_endpoint}, {"pid", pid}};
  for (size_t i = 0; i < 3; i++)
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", "tt", kv[i][0],
                                           kv[i][1])));
  return SQLITE_OK;
}

/* Records the rules and sets each one's since_seq: kept for a rule whose definition is
 * unchanged, the current last seq for a new or changed one (it judges only later
 * results). Rules no longer configured are forgotten. */
static int op_rules(em_db_t *db, em_rules_t *rules)
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
    if (since < 0) { /* new or changed: nothing kept under another definition is its state */
      since = last;
      EM_INFO("alerts: rule '%s' judges results after seq %lld", r->name, (long long)since);
      if (em_sql_run(em_sql_prepare(db, "DELETE FROM rule_state WHERE rule = ?", "t", r->name)) != SQLITE_DONE)
        rc = SQLITE_ERROR;
    }
    r->since_seq = since;
    if (rc == SQLITE_OK &&
        em_sql_run(em_sql_prepare(db, "INSERT OR REPLACE INTO rules(name, spec, since_seq, keep) VALUES(?, ?, ?, 1)",
                                  "tti", r->name, spec, since)) != SQLITE_DONE)
      rc = SQLITE_ERROR;
    free(spec);
  }
  EM_SQL_CHECK(rc);
  return em_sql_exec(db, "DELETE FROM rules WHERE keep = 0; "
                         "DELETE FROM rule_state WHERE rule NOT IN (SELECT name FROM rules)");
}

/* Alerts whose deliveries a crash interrupted, decoded from their rows, to deliver again. */
static int op_undelivered(em_db_t *db, em_store_op_t *op)
{
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT a.json FROM alerts a WHERE a.delivered = 0 ORDER BY a.seq", NULL);
  if (!st)
    return SQLITE_ERROR;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    const char *text = (const char *)sqlite3_column_text(st, 0);
    cJSON *o = cJSON_Parse(text);
    em_alert_t a;
    char err[200];
    if (em_alert_from_json(o, &a, err, sizeof(err)) == 0)
      rc = add_alert(op, &a);
    else
      EM_ERR("alert: malformed stored alert, not delivered: %s: %.200s", err, text ? text : "");
    cJSON_Delete(o);
  }
  em_sql_done(st);
  return rc;
}

/* A stop asked by hand: an alert of rule "manual" at the run's latest checkpoint, which
 * asks the job to stop (stop file, PUB, on_alert) as a rule's would. */
static int op_manual(em_db_t *db, em_store_op_t *op)
{
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT r.id, r.dir, c.step, c.path, c.named FROM runs r LEFT JOIN checkpoints c "
                                        "ON c.run_id = r.id WHERE r.name = ? ORDER BY c.step DESC, c.id DESC LIMIT 1",
                                    "t", op->run);
  if (!st)
    return SQLITE_ERROR;
  int rc = sqlite3_step(st);
  op->unknown_run = rc != SQLITE_ROW;
  if (rc != SQLITE_ROW) {
    em_sql_done(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
  }
  int64_t rid = sqlite3_column_int64(st, 0);
  const char *dir = (const char *)sqlite3_column_text(st, 1), *path = (const char *)sqlite3_column_text(st, 3);
  em_alert_t a = {.cond = EM_COND_MANUAL, .has_cond = true, .monitor = EM_MON_NONE, .value = NAN,
                  .step = sqlite3_column_int64(st, 2), .by_arrival = sqlite3_column_int(st, 4) == 0, .stop = true,
                  .ts = em_sql_now(), .run = strdup(op->run), .rule = strdup(EM_RULE_MANUAL),
                  .path = strdup(path ? path : ""), .run_dir = strdup(dir ? dir : ""),
                  .reason = strdup(op->error ? op->error : "stopped by hand")};
  em_sql_done(st);
  free(op->run_dir);
  op->run_dir = a.run_dir ? strdup(a.run_dir) : NULL; /* where the journal appends it */
  rc = SQLITE_OK;
  a.seq = next_seq(db, &rc);
  if (rc != SQLITE_OK) {
    em_alert_free(&a);
    return rc;
  }
  return insert_alert(db, op, rid, &a);
}

static int run_op(em_store_t *s, em_store_op_t *op)
{
  em_db_t *db = s->db;
  switch (op->type) {
  case EM_OP_SEEN: return op_seen(s, op);
  case EM_OP_RESULT: return op_result(s, op);
  case EM_OP_STATE: return op_state(s, op);
  case EM_OP_META: return op_meta(db, op);
  case EM_OP_RULES: return op_rules(db, &op->rules);
  case EM_OP_DELIVERED: return em_sql_run(em_sql_prepare(db, "UPDATE alerts SET delivered = 1 WHERE seq = ?", "i",
                                                         op->seq));
  case EM_OP_UNDELIVERED: return op_undelivered(db, op);
  case EM_OP_MANUAL: return op_manual(db, op);
  }
  return SQLITE_MISUSE;
}

static bool stopping(em_store_t *s)
{
  uv_mutex_lock(&s->fifo.lock);
  bool stop = s->fifo.stopping;
  uv_mutex_unlock(&s->fifo.lock);
  return stop;
}

/* One transaction, retried with backoff while the failure is a passing one. Its BEGIN,
 * COMMIT and ROLLBACK are prepared once, as every statement of the store is. */
static void execute(em_store_t *s, em_store_op_t *op)
{
  unsigned delay_ms = 50;
  for (;;) {
    int rc = em_sql_do(s->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) {
      rc = run_op(s, op);
      if (rc == SQLITE_OK || rc == SQLITE_DONE)
        rc = em_sql_do(s->db, "COMMIT");
    }
    if (rc == SQLITE_OK) {
      op->last_seq = em_query_last_seq(s->db); /* -1 if unreadable: publish_committed keeps its own */
      op->rc = 0;
      return;
    }
    em_sql_do(s->db, "ROLLBACK");
    em_run_points_drop(&s->kept); /* they may hold what was rolled back */
    clear_outputs(op);
    bool passing = rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR;
    if (!passing || stopping(s)) {
      EM_ERR("store: %s: %s (%s)", s->path, sqlite3_errstr(rc), sqlite3_errmsg(s->db->h));
      op->rc = -EIO;
      return;
    }
    EM_WARN("store: %s: %s; retrying in %u ms", s->path, sqlite3_errstr(rc), delay_ms);
    uv_sleep(delay_ms);
    delay_ms = delay_ms < 5000 ? delay_ms * 2 : 5000;
  }
}

/* ---------------------------------------------------------------- thread */

static void thread_main(void *arg)
{
  em_store_t *s = arg;
  pthread_setname_np(pthread_self(), "em-store");
  s->start_rc = em_db_open(s->path, true, &s->db, s->start_err, sizeof(s->start_err));
  uv_sem_post(&s->ready);
  if (s->start_rc)
    return;
  em_fifo_item_t *item;
  while ((item = em_fifo_pop(&s->fifo, /* finish_queue = */ true)) != NULL) {
    em_store_op_t *op = (em_store_op_t *)item;
    execute(s, op);
    if (op->type == EM_OP_RULES && op->rc == 0) { /* committed: judge with them from now on */
      em_rules_free(&s->rules);
      s->rules = op->rules;
      memset(&op->rules, 0, sizeof(op->rules));
    }
    em_fifo_finish(&s->fifo, item);
  }
}

static void op_finished(void *ctx, em_fifo_item_t *item)
{
  (void)ctx;
  em_store_op_t *op = (em_store_op_t *)item;
  if (op->done)
    op->done(op);
  else
    em_store_op_free(op);
}

int em_store_start(em_store_t **out, const char *path, uv_loop_t *loop, char *err, size_t errlen)
{
  em_store_t *s = calloc(1, sizeof(*s));
  if (!s || !(s->path = strdup(path))) {
    free(s);
    snprintf(err, errlen, "store: out of memory");
    return -ENOMEM;
  }
  em_fifo_init(&s->fifo, loop, op_finished, s);
  uv_sem_init(&s->ready, 0);
  uv_thread_create(&s->thread, thread_main, s);
  uv_sem_wait(&s->ready);
  if (s->start_rc) {
    snprintf(err, errlen, "%s", s->start_err);
    uv_thread_join(&s->thread);
    int rc = s->start_rc;
    em_store_stop(&s);
    return rc;
  }
  *out = s;
  return 0;
}

static void free_store(uv_handle_t *h)
{
  em_store_t *s = h->data;
  em_fifo_destroy(&s->fifo);
  uv_sem_destroy(&s->ready);
  free(s->path);
  em_rules_free(&s->rules);
  em_run_points_drop(&s->kept);
  free(s);
}

void em_store_stop(em_store_t **self_p)
{
  em_store_t *s = *self_p;
  if (!s)
    return;
  *self_p = NULL;
  if (!s->start_rc) {
    em_fifo_stop(&s->fifo);
    uv_thread_join(&s->thread);
    em_fifo_after_join(&s->fifo); /* ops finished before the stop still reach their owners */
  }
  em_db_close(&s->db);
  s->fifo.async.data = s;
  em_fifo_close(&s->fifo, free_store);
}

void em_store_submit(em_store_t *s, em_store_op_t *op) { em_fifo_push(&s->fifo, &op->link); }

em_store_op_t *em_store_op_new(em_store_op_type_t type)
{
  em_store_op_t *op = calloc(1, sizeof(*op));
  if (op)
    op->type = type;
  return op;
}

void em_store_op_free(em_store_op_t *op)
{
  if (!op)
    return;
  clear_outputs(op);
  free(op->run);
  free(op->run_dir);
  free(op->path);
  free(op->error);
  em_result_free(&op->result);
  em_trainer_free(&op->trainer);
  free(op->pub_endpoint);
  free(op->api_endpoint);
  em_rules_free(&op->rules);
  free(op);
}
