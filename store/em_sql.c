/* SPDX-License-Identifier: MIT */
#include "em_sql.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

double em_sql_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int em_sql_exec(em_db_t *db, const char *sql) { return sqlite3_exec(db->h, sql, NULL, NULL, NULL); }

/* The cached statement of sql, prepared on first use. */
static sqlite3_stmt *cached(em_db_t *db, const char *sql)
{
  for (size_t i = 0; i < db->ncached; i++)
    if (db->cached[i].sql == sql)
      return db->cached[i].st;
  if (db->ncached == db->capcached) {
    size_t cap = db->capcached ? 2 * db->capcached : 32;
    em_sql_cached_t *grown = realloc(db->cached, cap * sizeof(*grown));
    if (!grown)
      return NULL;
    db->cached = grown;
    db->capcached = cap;
  }
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
    sqlite3_finalize(st);
    return NULL;
  }
  db->cached[db->ncached++] = (em_sql_cached_t){sql, st};
  return st;
}

sqlite3_stmt *em_sql_prepare(em_db_t *db, const char *sql, const char *fmt, ...)
{
  sqlite3_stmt *st = cached(db, sql);
  if (!st)
    return NULL;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  va_list ap;
  va_start(ap, fmt);
  for (int i = 0; fmt && fmt[i]; i++) {
    if (fmt[i] == 'i')
      sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
    else if (fmt[i] == 'd')
      sqlite3_bind_double(st, i + 1, va_arg(ap, double));
    else
      sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
  }
  va_end(ap);
  return st;
}

int em_sql_run(sqlite3_stmt *st)
{
  if (!st)
    return SQLITE_ERROR;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    ;
  sqlite3_reset(st);
  return rc;
}

int64_t em_sql_int(sqlite3_stmt *st, int64_t def, int *rc)
{
  int64_t v = def;
  if (!st) {
    *rc = SQLITE_ERROR;
    return def;
  }
  int r = sqlite3_step(st);
  if (r == SQLITE_ROW)
    v = sqlite3_column_type(st, 0) == SQLITE_NULL ? def : sqlite3_column_int64(st, 0);
  else if (r != SQLITE_DONE)
    *rc = r;
  sqlite3_reset(st);
  return v;
}

void em_sql_done(sqlite3_stmt *st)
{
  if (st)
    sqlite3_reset(st);
}

void em_sql_forget(em_db_t *db)
{
  for (size_t i = 0; i < db->ncached; i++)
    sqlite3_finalize(db->cached[i].st);
  free(db->cached);
  db->cached = NULL;
  db->ncached = db->capcached = 0;
}

int em_sql_do(em_db_t *db, const char *sql)
{
  int rc = em_sql_run(em_sql_prepare(db, sql, NULL));
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}
