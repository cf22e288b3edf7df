/* SPDX-License-Identifier: MIT */
/* The store thread.
 *
 * DESIGN. The loop thread queues operations; the store thread runs them in order, each
 * in one BEGIN IMMEDIATE transaction, then moves them to a done list and wakes the loop
 * (uv_async_send coalesces, so the callback drains the whole list). A transaction that
 * fails for a passing reason (SQLITE_BUSY, SQLITE_FULL, I/O) is rolled back, logged and
 * retried with backoff: nothing is lost and the daemon stays up. Exactly once: a result
 * row is keyed by (checkpoint, version) and inserted only if absent, in the same
 * transaction that assigns its seq and marks the checkpoint done. */
#include "em_store.h"

#include <cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "em_judge.h"
#include "em_log.h"
#include "em_sql.h"

struct em_store {
  sqlite3 *db;
  uv_thread_t thread;
  em_fifo_t fifo;               /* operations in, finished operations out */
  uv_sem_t ready;
  int start_rc;
  char *path;
  char *start_err;
  em_rules_t rules;             /* the early-stop rules judged after each result */
};

static const char *const schema_v1 =
  "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value);"
  "CREATE TABLE IF NOT EXISTS runs(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, dir TEXT NOT NULL,"
  "  next_arrival INTEGER NOT NULL DEFAULT 0);"
  "CREATE TABLE IF NOT EXISTS checkpoints(id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),"
  "  path TEXT NOT NULL, step INTEGER NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, error TEXT,"
  "  updated REAL NOT NULL, UNIQUE(run_id, path));"
  "CREATE TABLE IF NOT EXISTS results(id INTEGER PRIMARY KEY, checkpoint_id INTEGER NOT NULL"
  "  REFERENCES checkpoints(id), version TEXT NOT NULL, seq INTEGER UNIQUE NOT NULL, alpha0 REAL NOT NULL,"
  "  width REAL NOT NULL, emergence REAL, json TEXT NOT NULL, ts REAL NOT NULL, UNIQUE(checkpoint_id, version));"
  "CREATE TABLE IF NOT EXISTS alerts(id INTEGER PRIMARY KEY, seq INTEGER UNIQUE NOT NULL, run_id INTEGER NOT NULL,"
  "  rule TEXT NOT NULL, step INTEGER, json TEXT NOT NULL, ts REAL NOT NULL);"
  "CREATE INDEX IF NOT EXISTS results_seq ON results(seq);"
  "INSERT OR IGNORE INTO meta(key, value) VALUES('last_seq', 0);";

/* v2: early-stop rules. An alert knows its condition and whether its deliveries (stop
 * file, exec) finished; a rule remembers from which seq it judges. */
static const char *const schema_v2 =
  "ALTER TABLE alerts ADD COLUMN condition TEXT;"
  "ALTER TABLE alerts ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;"
  "UPDATE alerts SET delivered = 1;" /* rows from before deliveries existed are not redone */
  "CREATE INDEX IF NOT EXISTS alerts_rule ON alerts(run_id, rule, condition);"
  "CREATE TABLE IF NOT EXISTS rules(name TEXT PRIMARY KEY, spec TEXT NOT NULL, since_seq INTEGER NOT NULL,"
  "  keep INTEGER NOT NULL DEFAULT 1);";

/* ---------------------------------------------------------------- operations */

static int64_t run_id(sqlite3 *db, const char *name, const char *dir, int *rc)
{
  *rc = em_sql_run(em_sql_prepare(db, "INSERT OR IGNORE INTO runs(name, dir) VALUES(?, ?)", "tt", name, dir));
  if (*rc != SQLITE_DONE)
    return -1;
  *rc = SQLITE_OK;
  return em_sql_int(em_sql_prepare(db, "SELECT id FROM runs WHERE name = ?", "t", name), -1, rc);
}

static int op_seen(sqlite3 *db, em_store_op_t *op)
{
  int rc = SQLITE_OK;
  int64_t rid = run_id(db, op->run, op->run_dir, &rc);
  EM_SQL_CHECK(rc);
  int64_t id = em_sql_int(em_sql_prepare(db, "SELECT id FROM checkpoints WHERE run_id = ? AND path = ?", "it", rid,
                                 op->path), -1, &rc);
  EM_SQL_CHECK(rc);
  if (id < 0) {
    int64_t step = op->step;
    if (!op->has_step) { /* a number assigned once, in arrival order, and stored */
      step = em_sql_int(em_sql_prepare(db, "SELECT next_arrival FROM runs WHERE id = ?", "i", rid), 0, &rc);
      EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE runs SET next_arrival = next_arrival + 1 WHERE id = ?", "i", rid)));
    }
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "INSERT INTO checkpoints(run_id, path, step, version, state, updated) "
                               "VALUES(?, ?, ?, ?, 'queued', ?)", "ititd", rid, op->path, step, op->version,
                           em_sql_now())));
    id = (int64_t)sqlite3_last_insert_rowid(db);
  } else {
    if (op->has_step)
      EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET step = ? WHERE id = ?", "ii", op->step, id)));
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET version = ?, state = 'queued', error = NULL, updated = ? "
                               "WHERE id = ? AND version != ?", "tdit", op->version, em_sql_now(), id, op->version)));
  }
  op->ckpt_id = id;
  op->step_out = em_sql_int(em_sql_prepare(db, "SELECT step FROM checkpoints WHERE id = ?", "i", id), 0, &rc);
  op->has_result = em_sql_int(em_sql_prepare(db, "SELECT COUNT(*) FROM results WHERE checkpoint_id = ? AND version = ?",
                                     "it", id, op->version), 0, &rc) > 0;
  if (op->has_result)
    EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET state = 'done', error = NULL WHERE id = ?", "i", id)));
  return rc;
}

static int op_state(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op)
{
  EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET state = ?, error = ?, updated = ? "
                                             "WHERE id = ? AND version = ?", "ttdit", op->state, op->error,
                                         em_sql_now(), op->ckpt_id, op->version)));
  if (strcmp(op->state, "nonfinite") != 0 || sqlite3_changes(db) == 0)
    return SQLITE_OK;
  int rc = SQLITE_OK;
  int64_t rid = em_sql_int(em_sql_prepare(db, "SELECT run_id FROM checkpoints WHERE id = ?", "i", op->ckpt_id), -1, &rc);
  int64_t step = em_sql_int(em_sql_prepare(db, "SELECT step FROM checkpoints WHERE id = ?", "i", op->ckpt_id), 0, &rc);
  EM_SQL_CHECK(rc);
  return em_judge_nonfinite(db, rules, op, rid, step);
}

int em_store_op_add_pub(em_store_op_t *op, const char *kind, const char *run, char *payload)
{
  em_pub_t *p = realloc(op->pubs, (op->npub + 1) * sizeof(*p));
  if (!p) {
    free(payload);
    return SQLITE_NOMEM;
  }
  op->pubs = p;
  size_t n = strlen(kind) + strlen(run) + 3;
  p[op->npub].topic = malloc(n);
  if (!p[op->npub].topic) {
    free(payload);
    return SQLITE_NOMEM;
  }
  snprintf(p[op->npub].topic, n, "%s/%s/", kind, run);
  p[op->npub++].payload = payload;
  return SQLITE_OK;
}

/* Sets emergence, baseline_step, seq, kind, ts in a result object; returns the new text. */
static char *finish_payload(const char *json, bool has_e, double e, int64_t base_step, int64_t seq, double ts)
{
  cJSON *o = cJSON_Parse(json);
  if (!o)
    return NULL;
  cJSON_ReplaceItemInObjectCaseSensitive(o, "emergence", has_e ? cJSON_CreateNumber(e) : cJSON_CreateNull());
  cJSON_ReplaceItemInObjectCaseSensitive(o, "baseline_step", has_e ? cJSON_CreateNumber((double)base_step)
                                                                   : cJSON_CreateNull());
  cJSON_DeleteItemFromObjectCaseSensitive(o, "seq");
  cJSON_DeleteItemFromObjectCaseSensitive(o, "kind");
  cJSON_DeleteItemFromObjectCaseSensitive(o, "ts");
  cJSON_AddNumberToObject(o, "seq", (double)seq);
  cJSON_AddStringToObject(o, "kind", "result");
  cJSON_AddNumberToObject(o, "ts", ts);
  char *out = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return out;
}

int64_t em_store_next_seq(sqlite3 *db, int *rc)
{
  int64_t seq = em_sql_int(em_sql_prepare(db, "SELECT value FROM meta WHERE key = 'last_seq'", NULL), 0, rc) + 1;
  if (*rc == SQLITE_OK &&
      em_sql_run(em_sql_prepare(db, "UPDATE meta SET value = ? WHERE key = 'last_seq'", "i", seq)) != SQLITE_DONE)
    *rc = SQLITE_ERROR;
  return seq;
}

/* E of every other current result of the run, against a new baseline: new seq each. */
static int rebaseline(sqlite3 *db, em_store_op_t *op, int64_t rid, int64_t self, double a0, double w, int64_t bstep)
{
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT r.id, r.alpha0, r.width, r.json FROM results r JOIN checkpoints c "
                                 "ON c.id = r.checkpoint_id AND c.version = r.version WHERE c.run_id = ? "
                                 "AND c.id != ? ORDER BY c.step", "ii", rid, self);
  if (!st)
    return SQLITE_ERROR;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    int64_t id = sqlite3_column_int64(st, 0);
    double e = (sqlite3_column_double(st, 2) / w) * log(a0 / sqlite3_column_double(st, 1));
    int64_t seq = em_store_next_seq(db, &rc);
    double ts = em_sql_now();
    char *payload = finish_payload((const char *)sqlite3_column_text(st, 3), true, e, bstep, seq, ts);
    if (!payload)
      rc = SQLITE_NOMEM;
    else if (em_sql_run(em_sql_prepare(db, "UPDATE results SET seq = ?, emergence = ?, json = ?, ts = ? WHERE id = ?",
                              "idtdi", seq, e, payload, ts, id)) != SQLITE_DONE)
      rc = SQLITE_ERROR;
    if (payload && rc == SQLITE_OK)
      rc = em_store_op_add_pub(op, "result", op->run, strdup(payload));
    free(payload);
  }
  sqlite3_finalize(st);
  return rc;
}

static int op_result(sqlite3 *db, const em_rules_t *rules, em_store_op_t *op)
{
  int rc = SQLITE_OK;
  int64_t exists = em_sql_int(em_sql_prepare(db, "SELECT COUNT(*) FROM results WHERE checkpoint_id = ? AND version = ?",
                                     "it", op->ckpt_id, op->version), 0, &rc);
  int64_t current = em_sql_int(em_sql_prepare(db, "SELECT COUNT(*) FROM checkpoints WHERE id = ? AND version = ?", "it",
                                      op->ckpt_id, op->version), 0, &rc);
  EM_SQL_CHECK(rc);
  if (exists || !current) /* exactly once; a stale version is not recorded */
    return SQLITE_OK;
  int64_t rid = em_sql_int(em_sql_prepare(db, "SELECT run_id FROM checkpoints WHERE id = ?", "i", op->ckpt_id), -1, &rc);
  int64_t step = em_sql_int(em_sql_prepare(db, "SELECT step FROM checkpoints WHERE id = ?", "i", op->ckpt_id), 0, &rc);
  /* The run's baseline: its lowest-step current result. */
  sqlite3_stmt *b = em_sql_prepare(db, "SELECT c.step, r.alpha0, r.width FROM results r JOIN checkpoints c "
                                "ON c.id = r.checkpoint_id AND c.version = r.version WHERE c.run_id = ? "
                                "ORDER BY c.step, c.id LIMIT 1", "i", rid);
  bool has_base = b && sqlite3_step(b) == SQLITE_ROW;
  int64_t bstep = has_base ? sqlite3_column_int64(b, 0) : 0;
  double ba0 = has_base ? sqlite3_column_double(b, 1) : 0, bw = has_base ? sqlite3_column_double(b, 2) : 0;
  sqlite3_finalize(b);
  bool new_base = !has_base || step < bstep;
  double e = 0;
  if (new_base) {
    bstep = step;
    ba0 = op->alpha0;
    bw = op->width;
  } else {
    e = (op->width / bw) * log(ba0 / op->alpha0);
  }
  int64_t seq = em_store_next_seq(db, &rc);
  EM_SQL_CHECK(rc);
  double ts = em_sql_now();
  char *payload = finish_payload(op->json, isfinite(e), e, bstep, seq, ts);
  if (!payload)
    return SQLITE_NOMEM;
  rc = em_sql_run(em_sql_prepare(db, "INSERT INTO results(checkpoint_id, version, seq, alpha0, width, emergence, json, ts) "
                            "VALUES(?, ?, ?, ?, ?, ?, ?, ?)", "itiddd" "td", op->ckpt_id, op->version, seq,
                        op->alpha0, op->width, e, payload, ts));
  if (rc == SQLITE_DONE)
    rc = em_sql_run(em_sql_prepare(db, "UPDATE checkpoints SET state = 'done', error = NULL, updated = ? WHERE id = ?", "di",
                          ts, op->ckpt_id));
  if (rc != SQLITE_DONE) {
    free(payload);
    return rc;
  }
  rc = em_store_op_add_pub(op, "result", op->run, payload);
  if (rc == SQLITE_OK && new_base && has_base)
    rc = rebaseline(db, op, rid, op->ckpt_id, ba0, bw, bstep);
  if (rc == SQLITE_OK)
    rc = em_judge_results(db, rules, op, rid);
  return rc;
}

static int op_meta(sqlite3 *db, em_store_op_t *op)
{
  char pid[24];
  snprintf(pid, sizeof(pid), "%ld", (long)uv_os_getpid());
  const char *sql = "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
  EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, sql, "tt", "pub", op->pub_endpoint)));
  EM_SQL_CHECK(em_sql_run(em_sql_prepare(db, sql, "tt", "api", op->api_endpoint)));
  return em_sql_run(em_sql_prepare(db, sql, "tt", "pid", pid));
}

static int op_undelivered(sqlite3 *db, em_store_op_t *op)
{
  sqlite3_stmt *st = em_sql_prepare(db, "SELECT r.name, a.json FROM alerts a JOIN runs r ON r.id = a.run_id "
                                        "WHERE a.delivered = 0 ORDER BY a.seq", NULL);
  if (!st)
    return SQLITE_ERROR;
  int rc = SQLITE_OK;
  while (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    char *payload = strdup((const char *)sqlite3_column_text(st, 1));
    rc = payload ? em_store_op_add_pub(op, "alert", (const char *)sqlite3_column_text(st, 0), payload) : SQLITE_NOMEM;
  }
  sqlite3_finalize(st);
  return rc;
}

static int run_op(em_store_t *s, em_store_op_t *op)
{
  sqlite3 *db = s->db;
  switch (op->type) {
  case EM_OP_SEEN: return op_seen(db, op);
  case EM_OP_RESULT: return op_result(db, &s->rules, op);
  case EM_OP_STATE: return op_state(db, &s->rules, op);
  case EM_OP_META: return op_meta(db, op);
  case EM_OP_RULES: return em_judge_set_rules(db, &op->rules);
  case EM_OP_DELIVERED: return em_sql_run(em_sql_prepare(db, "UPDATE alerts SET delivered = 1 WHERE seq = ?", "i",
                                                         op->seq));
  case EM_OP_UNDELIVERED: return op_undelivered(db, op);
  }
  return SQLITE_MISUSE;
}

static void clear_outputs(em_store_op_t *op)
{
  for (size_t i = 0; i < op->npub; i++) {
    free(op->pubs[i].topic);
    free(op->pubs[i].payload);
  }
  free(op->pubs);
  op->pubs = NULL;
  op->npub = 0;
}

/* One transaction, retried with backoff while the failure is a passing one. */
static void execute(em_store_t *s, em_store_op_t *op)
{
  unsigned delay_ms = 50;
  for (;;) {
    int rc = em_sql_exec(s->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK) {
      rc = run_op(s, op);
      if (rc == SQLITE_OK || rc == SQLITE_DONE)
        rc = em_sql_exec(s->db, "COMMIT");
    }
    if (rc == SQLITE_OK) {
      int q = SQLITE_OK;
      op->last_seq = em_sql_int(em_sql_prepare(s->db, "SELECT value FROM meta WHERE key = 'last_seq'", NULL), 0, &q);
      op->rc = 0;
      return;
    }
    em_sql_exec(s->db, "ROLLBACK");
    clear_outputs(op);
    bool passing = rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_FULL || (rc & 0xff) == SQLITE_IOERR;
    uv_mutex_lock(&s->fifo.lock);
    bool stopping = s->fifo.stopping;
    uv_mutex_unlock(&s->fifo.lock);
    if (!passing || stopping) {
      EM_ERR("store: %s: %s (%s)", s->path, sqlite3_errstr(rc), sqlite3_errmsg(s->db));
      op->rc = -EIO;
      return;
    }
    EM_WARN("store: %s: %s; retrying in %u ms", s->path, sqlite3_errstr(rc), delay_ms);
    uv_sleep(delay_ms);
    delay_ms = delay_ms < 5000 ? delay_ms * 2 : 5000;
  }
}

/* ---------------------------------------------------------------- thread */

static int open_db(em_store_t *s)
{
  int rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_busy_timeout(s->db, 5000);
  if (rc == SQLITE_OK)
    rc = em_sql_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  int version = 0;
  if (rc == SQLITE_OK) {
    version = (int)em_sql_int(em_sql_prepare(s->db, "PRAGMA user_version", NULL), 0, &rc);
    if (version > EM_SCHEMA_VERSION) {
      s->start_err = strdup("database schema is newer than this emerged");
      return SQLITE_ERROR;
    }
  }
  const char *const migrations[] = {NULL, schema_v1, schema_v2}; /* keyed on schema_version */
  for (int v = version + 1; rc == SQLITE_OK && v <= EM_SCHEMA_VERSION; v++) {
    char bump[160];
    snprintf(bump, sizeof(bump), "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', %d);"
             "PRAGMA user_version=%d; COMMIT", v, v);
    rc = em_sql_exec(s->db, "BEGIN IMMEDIATE");
    if (rc == SQLITE_OK)
      rc = em_sql_exec(s->db, migrations[v]);
    if (rc == SQLITE_OK)
      rc = em_sql_exec(s->db, bump);
    if (rc != SQLITE_OK)
      em_sql_exec(s->db, "ROLLBACK");
  }
  if (rc != SQLITE_OK && !s->start_err)
    s->start_err = strdup(s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
  return rc;
}

static void thread_main(void *arg)
{
  em_store_t *s = arg;
  pthread_setname_np(pthread_self(), "em-store");
  s->start_rc = open_db(s) == SQLITE_OK ? 0 : -EIO;
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
    snprintf(err, errlen, "database %s: %s", path, s->start_err ? s->start_err : "cannot open");
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
  free(s->start_err);
  free(s->path);
  em_rules_free(&s->rules);
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
  if (s->db)
    sqlite3_close(s->db);
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
  free(op->json);
  free(op->pub_endpoint);
  free(op->api_endpoint);
  em_rules_free(&op->rules);
  free(op);
}
