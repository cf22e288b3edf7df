/* SPDX-License-Identifier: MIT */
#include "em_sql.h"

#include <stdarg.h>
#include <time.h>

#include "em_log.h"

double em_sql_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int em_sql_exec(sqlite3 *db, const char *sql)
{
  char *msg = NULL;
  int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
  if (rc != SQLITE_OK)
    EM_DEBUG("store: %s: %s", sql, msg ? msg : sqlite3_errstr(rc));
  sqlite3_free(msg);
  return rc;
}

/* Prepares sql and binds "?" from a format of i (int64), d (double), t (text, NULL ok). */
sqlite3_stmt *em_sql_prepare(sqlite3 *db, const char *sql, const char *fmt, ...)
{
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
    return NULL;
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

/* Runs a statement to completion; returns the SQLite code (SQLITE_DONE is success). */
int em_sql_run(sqlite3_stmt *st)
{
  if (!st)
    return SQLITE_ERROR;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    ;
  sqlite3_finalize(st);
  return rc;
}

/* The first column of the first row as int64, or def. */
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
  sqlite3_finalize(st);
  return v;
}
