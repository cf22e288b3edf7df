/* SPDX-License-Identifier: MIT */
#include "em_query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_log.h"

sqlite3 *em_query_open(const char *path)
{
  sqlite3 *db = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
    EM_ERR("query: %s: %s", path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 2000);
  return db;
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    EM_ERR("query: %s", sqlite3_errmsg(db));
  return st;
}

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

static cJSON *stored(const unsigned char *text)
{
  cJSON *j = text ? cJSON_Parse((const char *)text) : NULL;
  return j ? j : cJSON_CreateNull();
}

static char *reply_runs(sqlite3 *db)
{
  sqlite3_stmt *st = prep(db, "SELECT r.name, r.dir, "
                              " (SELECT COUNT(*) FROM checkpoints c WHERE c.run_id = r.id), "
                              " (SELECT group_concat(state || ':' || n) FROM (SELECT state, COUNT(*) n "
                              "   FROM checkpoints c WHERE c.run_id = r.id GROUP BY state)), "
                              " (SELECT MAX(c.step) FROM results x JOIN checkpoints c ON c.id = x.checkpoint_id "
                              "   AND c.version = x.version WHERE c.run_id = r.id), "
                              " (SELECT x.emergence FROM results x JOIN checkpoints c ON c.id = x.checkpoint_id "
                              "   AND c.version = x.version WHERE c.run_id = r.id ORDER BY c.step DESC LIMIT 1) "
                              "FROM runs r ORDER BY r.name");
  if (!st)
    return em_api_error("database error");
  cJSON *o = ok_reply(), *runs = cJSON_AddArrayToObject(o, "runs");
  while (sqlite3_step(st) == SQLITE_ROW) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "run", (const char *)sqlite3_column_text(st, 0));
    cJSON_AddStringToObject(r, "dir", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddNumberToObject(r, "checkpoints", sqlite3_column_double(st, 2));
    cJSON *states = cJSON_AddObjectToObject(r, "states");
    const char *list = (const char *)sqlite3_column_text(st, 3);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", list ? list : "");
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
      char *colon = strrchr(tok, ':');
      if (colon) {
        *colon = 0;
        cJSON_AddNumberToObject(states, tok, atof(colon + 1));
      }
    }
    if (sqlite3_column_type(st, 4) == SQLITE_NULL)
      cJSON_AddNullToObject(r, "last_step");
    else
      cJSON_AddNumberToObject(r, "last_step", sqlite3_column_double(st, 4));
    if (sqlite3_column_type(st, 5) == SQLITE_NULL)
      cJSON_AddNullToObject(r, "last_emergence");
    else
      cJSON_AddNumberToObject(r, "last_emergence", sqlite3_column_double(st, 5));
    cJSON_AddItemToArray(runs, r);
  }
  sqlite3_finalize(st);
  return finish(o);
}

static char *unknown_run(const char *run)
{
  char msg[EM_API_MAX_RUN + 32];
  snprintf(msg, sizeof(msg), "unknown run '%s'", run);
  return em_api_error(msg);
}

static bool run_exists(sqlite3 *db, const char *run)
{
  sqlite3_stmt *st = prep(db, "SELECT 1 FROM runs WHERE name = ?");
  if (!st)
    return false;
  sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
  bool found = sqlite3_step(st) == SQLITE_ROW;
  sqlite3_finalize(st);
  return found;
}

static char *reply_history(sqlite3 *db, const char *run)
{
  sqlite3_stmt *st = prep(db, "SELECT c.step, c.path, c.state, c.error, x.json FROM checkpoints c "
                              "JOIN runs r ON r.id = c.run_id LEFT JOIN results x ON x.checkpoint_id = c.id "
                              "AND x.version = c.version WHERE r.name = ? ORDER BY c.step, c.id");
  if (!st)
    return em_api_error("database error");
  sqlite3_bind_text(st, 1, run, -1, SQLITE_TRANSIENT);
  cJSON *o = ok_reply();
  cJSON_AddStringToObject(o, "run", run);
  cJSON *results = cJSON_AddArrayToObject(o, "results"), *others = cJSON_AddArrayToObject(o, "checkpoints");
  int rows = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    rows++;
    if (sqlite3_column_type(st, 4) != SQLITE_NULL) {
      cJSON_AddItemToArray(results, stored(sqlite3_column_text(st, 4)));
      continue;
    }
    cJSON *c = cJSON_CreateObject(); /* queued, failed, vanished, nonfinite, unsupported */
    cJSON_AddNumberToObject(c, "step", sqlite3_column_double(st, 0));
    cJSON_AddStringToObject(c, "path", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddStringToObject(c, "state", (const char *)sqlite3_column_text(st, 2));
    if (sqlite3_column_type(st, 3) == SQLITE_NULL)
      cJSON_AddNullToObject(c, "error");
    else
      cJSON_AddStringToObject(c, "error", (const char *)sqlite3_column_text(st, 3));
    cJSON_AddItemToArray(others, c);
  }
  sqlite3_finalize(st);
  if (rows == 0) {
    cJSON_Delete(o);
    return unknown_run(run);
  }
  return finish(o);
}

static char *reply_since(sqlite3 *db, int64_t seq)
{
  sqlite3_stmt *st = prep(db, "SELECT seq, topic, json FROM ("
                              " SELECT x.seq, 'result/' || r.name || '/' AS topic, x.json FROM results x "
                              "  JOIN checkpoints c ON c.id = x.checkpoint_id JOIN runs r ON r.id = c.run_id "
                              "  WHERE x.seq > ?1 "
                              " UNION ALL SELECT a.seq, 'alert/' || r.name || '/', a.json FROM alerts a "
                              "  JOIN runs r ON r.id = a.run_id WHERE a.seq > ?1) ORDER BY seq LIMIT ?2");
  if (!st)
    return em_api_error("database error");
  sqlite3_bind_int64(st, 1, seq);
  sqlite3_bind_int(st, 2, EM_SINCE_PAGE + 1);
  cJSON *o = ok_reply(), *msgs = cJSON_AddArrayToObject(o, "messages");
  int n = 0;
  bool more = false;
  while (sqlite3_step(st) == SQLITE_ROW) {
    if (++n > EM_SINCE_PAGE) {
      more = true;
      break;
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "topic", (const char *)sqlite3_column_text(st, 1));
    cJSON_AddItemToObject(m, "payload", stored(sqlite3_column_text(st, 2)));
    cJSON_AddItemToArray(msgs, m);
  }
  sqlite3_finalize(st);
  cJSON_AddBoolToObject(o, "more", more);
  return finish(o);
}

static char *reply_alerts(sqlite3 *db, const em_api_request_t *req)
{
  sqlite3_stmt *st = prep(db, "SELECT a.json FROM alerts a JOIN runs r ON r.id = a.run_id "
                              "WHERE ?1 IS NULL OR r.name = ?1 ORDER BY a.seq");
  if (!st)
    return em_api_error("database error");
  if (req->has_run)
    sqlite3_bind_text(st, 1, req->run, -1, SQLITE_TRANSIENT);
  cJSON *o = ok_reply(), *alerts = cJSON_AddArrayToObject(o, "alerts");
  while (sqlite3_step(st) == SQLITE_ROW)
    cJSON_AddItemToArray(alerts, stored(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  if (req->has_run && cJSON_GetArraySize(alerts) == 0 && !run_exists(db, req->run)) {
    cJSON_Delete(o);
    return unknown_run(req->run);
  }
  return finish(o);
}

char *em_query_reply(sqlite3 *db, const em_api_request_t *req, const cJSON *status)
{
  switch (req->cmd) {
  case EM_API_STATUS: {
    cJSON *o = ok_reply();
    cJSON_AddItemToObject(o, "status", cJSON_Duplicate(status, 1));
    return finish(o);
  }
  case EM_API_RUNS: return reply_runs(db);
  case EM_API_HISTORY: return reply_history(db, req->run);
  case EM_API_SINCE: return reply_since(db, req->seq);
  case EM_API_ALERTS: return reply_alerts(db, req);
  }
  return em_api_error("unknown cmd");
}
