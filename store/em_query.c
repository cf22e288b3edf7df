/* SPDX-License-Identifier: MIT */
#include "em_query.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cJSON *ok_reply(void)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddTrueToObject(o, "ok");
  return o;
}

static char *finish(cJSON *o)
{
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s ? s : em_api_error("out of memory");
}

static char *db_error(em_db_t *db, em_query_outcome_t *out)
{
  *out = EM_QUERY_DB_ERROR;
  char msg[300];
  snprintf(msg, sizeof(msg), "database error: %s", sqlite3_errmsg(db->h));
  return em_api_error(msg);
}

/* A stored JSON column, spliced as it is. */
static cJSON *stored(sqlite3_stmt *st, int col)
{
  const char *text = (const char *)sqlite3_column_text(st, col);
  return text ? cJSON_CreateRaw(text) : cJSON_CreateNull();
}

static void add_column_number(cJSON *o, const char *key, sqlite3_stmt *st, int col)
{
  em_json_add_opt(o, key, sqlite3_column_type(st, col) != SQLITE_NULL, sqlite3_column_double(st, col));
}

static const char sql_runs[] =
  "SELECT r.name, r.dir, (SELECT COUNT(*) FROM checkpoints c WHERE c.run_id = r.id), "
  " (SELECT json_group_object(state, n) FROM (SELECT state, COUNT(*) n FROM checkpoints c "
  "   WHERE c.run_id = r.id GROUP BY state)), "
  " (SELECT MAX(c.step) FROM results x JOIN checkpoints c ON c.id = x.checkpoint_id "
  "   AND c.version = x.version WHERE c.run_id = r.id AND c.named), "
  " (SELECT x.emergence FROM results x JOIN checkpoints c ON c.id = x.checkpoint_id "
  "   AND c.version = x.version WHERE c.run_id = r.id ORDER BY c.step DESC LIMIT 1) "
  "FROM runs r ORDER BY r.name";

static char *reply_runs(em_db_t *db, em_query_outcome_t *out)
{
  sqlite3_stmt *st = em_sql_prepare(db, sql_runs, NULL);
  if (!st)
    return db_error(db, out);
  cJSON *o = ok_reply(), *runs = cJSON_AddArrayToObject(o, "runs");
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "run", (const char *)sqlite3_column_text(st, 0));
    cJSON_AddStringToObject(r, "dir", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddNumberToObject(r, "checkpoints", sqlite3_column_double(st, 2));
    cJSON_AddItemToObject(r, "states", stored(st, 3));
    add_column_number(r, "last_step", st, 4);
    add_column_number(r, "last_emergence", st, 5);
    cJSON_AddItemToArray(runs, r);
  }
  em_sql_done(st);
  return finish(o);
}

static char *unknown_run(const char *run, em_query_outcome_t *out)
{
  *out = EM_QUERY_UNKNOWN_RUN;
  char msg[EM_API_MAX_RUN + 32];
  snprintf(msg, sizeof(msg), "unknown run '%s'", run);
  return em_api_error(msg);
}

static bool run_exists(em_db_t *db, const char *run)
{
  int rc = SQLITE_OK;
  return em_sql_int(em_sql_prepare(db, "SELECT 1 FROM runs WHERE name = ?", "t", run), 0, &rc) == 1;
}

static const char sql_history[] =
  "SELECT c.step, c.path, c.state, c.error, x.json, c.named FROM checkpoints c "
  "JOIN runs r ON r.id = c.run_id LEFT JOIN results x ON x.checkpoint_id = c.id "
  "AND x.version = c.version WHERE r.name = ? ORDER BY c.step, c.id";

/* A reply built as text: a run's stored results (17 KB each, with their samples) are
 * copied in once, as they are, rather than into a cJSON tree and again when it prints. */
typedef struct text {
  char *s;
  size_t n, cap;
  bool oom;
} text_t;

static void put(text_t *t, const char *s, size_t n)
{
  if (t->oom || t->n + n + 1 <= t->cap) {
    if (!t->oom)
      memcpy(t->s + t->n, s, n), t->n += n, t->s[t->n] = 0;
    return;
  }
  size_t cap = t->cap ? t->cap : 4096;
  while (cap < t->n + n + 1)
    cap *= 2;
  char *grown = realloc(t->s, cap);
  if (!grown) {
    t->oom = true;
    return;
  }
  t->s = grown;
  t->cap = cap;
  put(t, s, n);
}

static void put_str(text_t *t, const char *s) { put(t, s, strlen(s)); }

/* o printed, and deleted. */
static void put_json(text_t *t, cJSON *o)
{
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  t->oom |= !text;
  if (text)
    put_str(t, text);
  free(text);
  cJSON_Delete(o);
}

static char *reply_history(em_db_t *db, const char *run, em_query_outcome_t *out)
{
  sqlite3_stmt *st = em_sql_prepare(db, sql_history, "t", run);
  if (!st)
    return db_error(db, out);
  text_t t = {0};
  put_str(&t, "{\"ok\":true,\"run\":");
  put_json(&t, cJSON_CreateString(run));
  put_str(&t, ",\"results\":[");
  cJSON *others = cJSON_CreateArray();
  int rows = 0, results = 0, rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    rows++;
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
      put(&t, ",", results++ > 0);
      put(&t, (const char *)sqlite3_column_text(st, 4), (size_t)sqlite3_column_bytes(st, 4));
      continue;
    }
    em_state_t state = EM_STATE_FAILED; /* queued, failed, vanished, nonfinite, unsupported */
    em_state_parse((const char *)sqlite3_column_text(st, 2), &state);
    cJSON_AddItemToArray(others, em_checkpoint_to_json(sqlite3_column_int64(st, 0), sqlite3_column_int(st, 5) == 0,
                                                       (const char *)sqlite3_column_text(st, 1), state,
                                                       (const char *)sqlite3_column_text(st, 3)));
  }
  em_sql_done(st);
  put_str(&t, "],\"checkpoints\":");
  put_json(&t, others);
  put_str(&t, "}");
  if (rc != SQLITE_DONE || rows == 0 || t.oom) {
    free(t.s);
    return rc != SQLITE_DONE ? db_error(db, out) : rows ? em_api_error("out of memory") : unknown_run(run, out);
  }
  return t.s;
}

/* ?1 < seq <= ?2, of run ?3 and the runs below it (every run when NULL), at most ?4. */
#define RUN_MATCHES "(?3 IS NULL OR r.name = ?3 OR substr(r.name, 1, length(?3) + 1) = ?3 || '/')"
static const char sql_since[] =
  "SELECT seq, topic, json FROM ("
  " SELECT x.seq, 'result/' || r.name || '/' AS topic, x.json FROM results x "
  "  JOIN checkpoints c ON c.id = x.checkpoint_id JOIN runs r ON r.id = c.run_id "
  "  WHERE x.seq > ?1 AND x.seq <= ?2 AND " RUN_MATCHES
  " UNION ALL SELECT a.seq, 'alert/' || r.name || '/', a.json FROM alerts a "
  "  JOIN runs r ON r.id = a.run_id WHERE a.seq > ?1 AND a.seq <= ?2 AND " RUN_MATCHES
  " UNION ALL SELECT c.seq, 'checkpoint/' || r.name || '/', c.event FROM checkpoints c "
  "  JOIN runs r ON r.id = c.run_id WHERE c.seq > ?1 AND c.seq <= ?2 AND c.event IS NOT NULL AND " RUN_MATCHES
  ") ORDER BY seq LIMIT ?4";

int em_query_since(em_db_t *db, const em_since_t *q, em_query_message_fn fn, void *ctx)
{
  sqlite3_stmt *st = em_sql_prepare(db, sql_since, "iiti", q->after, q->upto > 0 ? q->upto : INT64_MAX, q->run,
                                    (int64_t)q->limit);
  if (!st)
    return -1;
  int rc, n = 0, stop = 0;
  while (stop == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    stop = fn(ctx, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
              (const char *)sqlite3_column_text(st, 2));
    n += stop == 0;
  }
  em_sql_done(st);
  return stop < 0 || (stop == 0 && rc != SQLITE_DONE) ? -1 : n;
}

int64_t em_query_last_seq(em_db_t *db)
{
  int rc = SQLITE_OK;
  int64_t seq = em_sql_int(em_sql_prepare(db, "SELECT value FROM meta WHERE key = 'last_seq'", NULL), 0, &rc);
  return rc == SQLITE_OK ? seq : -1;
}

typedef struct since_page {
  cJSON *msgs;
  int n;
  bool more;
} since_page_t;

static int add_message(void *ctx, int64_t seq, const char *topic, const char *json)
{
  (void)seq;
  since_page_t *p = ctx;
  if (++p->n > EM_SINCE_PAGE) {
    p->more = true;
    return 1;
  }
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "topic", topic);
  cJSON_AddItemToObject(m, "payload", json ? cJSON_CreateRaw(json) : cJSON_CreateNull());
  cJSON_AddItemToArray(p->msgs, m);
  return 0;
}

static char *reply_since(em_db_t *db, int64_t seq, em_query_outcome_t *out)
{
  cJSON *o = ok_reply();
  since_page_t page = {.msgs = cJSON_AddArrayToObject(o, "messages")};
  em_since_t q = {.after = seq, .limit = EM_SINCE_PAGE + 1};
  if (em_query_since(db, &q, add_message, &page) < 0) {
    cJSON_Delete(o);
    return db_error(db, out);
  }
  cJSON_AddBoolToObject(o, "more", page.more);
  return finish(o);
}

static const char sql_alerts[] =
  "SELECT a.json FROM alerts a JOIN runs r ON r.id = a.run_id WHERE ?1 IS NULL OR r.name = ?1 ORDER BY a.seq";

static char *reply_alerts(em_db_t *db, const em_api_request_t *req, em_query_outcome_t *out)
{
  sqlite3_stmt *st = em_sql_prepare(db, sql_alerts, "t", req->has_run ? req->run : NULL);
  if (!st)
    return db_error(db, out);
  cJSON *o = ok_reply(), *alerts = cJSON_AddArrayToObject(o, "alerts");
  while (sqlite3_step(st) == SQLITE_ROW)
    cJSON_AddItemToArray(alerts, stored(st, 0));
  em_sql_done(st);
  if (req->has_run && cJSON_GetArraySize(alerts) == 0 && !run_exists(db, req->run)) {
    cJSON_Delete(o);
    return unknown_run(req->run, out);
  }
  return finish(o);
}

static char *reply_status(const em_status_t *status)
{
  cJSON *o = ok_reply();
  cJSON_AddItemToObject(o, "status", em_status_to_json(status));
  return finish(o);
}

char *em_query_answer(em_db_t *db, const em_api_request_t *req, const em_status_t *status,
                      em_query_outcome_t *out)
{
  *out = EM_QUERY_OK;
  switch (req->cmd) {
  case EM_API_STATUS: return reply_status(status);
  case EM_API_RUNS: return reply_runs(db, out);
  case EM_API_HISTORY: return reply_history(db, req->run, out);
  case EM_API_SINCE: return reply_since(db, req->seq, out);
  case EM_API_ALERTS: return reply_alerts(db, req, out);
  case EM_API_STOP: break; /* a write: the daemon's store thread answers it, never a reader */
  }
  return em_api_error("unknown cmd");
}

char *em_query_reply(em_db_t *db, const em_api_request_t *req, const em_status_t *status)
{
  em_query_outcome_t ignored;
  return em_query_answer(db, req, status, &ignored);
}

/* The values the rules judge, all in results_judged (never the row, whose json would be
 * walked: without statistics the planner prefers the unique index on the same columns,
 * hence INDEXED BY), a run's in step order through checkpoints_step. The same columns for
 * a whole history, its newest results and one result, read by one function, so a result
 * judged on its own and in a replay is the same point. */
#define JUDGED_COLUMNS                                                                                       \
  "SELECT c.step, r.seq, r.emergence, r.alpha0, r.width, r.emergence_se, r.alpha0_se, r.width_se, c.named "   \
  "FROM checkpoints c "
#define JUDGED_JOIN "JOIN results r INDEXED BY results_judged ON r.checkpoint_id = c.id AND r.version = c.version "
#define JUDGED_RUN JUDGED_COLUMNS JUDGED_JOIN "WHERE c.run_id = ? "
static const char sql_judged[] = JUDGED_RUN "ORDER BY c.step, c.id";
static const char sql_judged_tail[] = JUDGED_RUN "ORDER BY c.step DESC, c.id DESC LIMIT ?";
static const char sql_judged_one[] = JUDGED_COLUMNS JUDGED_JOIN "WHERE c.id = ?";

static double column_or_nan(sqlite3_stmt *st, int col)
{
  return sqlite3_column_type(st, col) == SQLITE_NULL ? NAN : sqlite3_column_double(st, col);
}

/* The judged rows of st, in the order it gives them. */
static int judged_rows(sqlite3_stmt *st, em_history_t *out)
{
  memset(out, 0, sizeof(*out));
  if (!st)
    return SQLITE_ERROR;
  int rc = SQLITE_OK, step = SQLITE_DONE;
  while (rc == SQLITE_OK && (step = sqlite3_step(st)) == SQLITE_ROW) {
    em_hist_entry_t e = {.step = sqlite3_column_int64(st, 0), .by_arrival = sqlite3_column_int(st, 8) == 0,
                         .state = EM_STATE_DONE,
                         .seq = sqlite3_column_int64(st, 1), .emergence = column_or_nan(st, 2),
                         .alpha0 = column_or_nan(st, 3), .width = column_or_nan(st, 4),
                         .emergence_se = column_or_nan(st, 5), .alpha0_se = column_or_nan(st, 6),
                         .width_se = column_or_nan(st, 7)};
    if (em_history_add(out, &e) != 0)
      rc = SQLITE_NOMEM;
  }
  if (rc == SQLITE_OK && step != SQLITE_DONE)
    rc = step;
  em_sql_done(st);
  return rc;
}

int em_query_judged(em_db_t *db, int64_t rid, em_history_t *out)
{
  return judged_rows(em_sql_prepare(db, sql_judged, "i", rid), out);
}

int em_query_judged_tail(em_db_t *db, int64_t rid, int64_t n, em_history_t *out)
{
  return judged_rows(em_sql_prepare(db, sql_judged_tail, "ii", rid, n), out);
}

int em_query_judged_checkpoint(em_db_t *db, int64_t ckpt_id, em_history_t *out)
{
  return judged_rows(em_sql_prepare(db, sql_judged_one, "i", ckpt_id), out);
}
