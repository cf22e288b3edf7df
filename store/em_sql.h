/* SPDX-License-Identifier: MIT */
/* One SQLite connection and the statements prepared on it. A statement is prepared the
 * first time its SQL text is used and kept for the connection's life (keyed by the
 * address of the SQL literal, so callers pass string literals); em_sql_run, em_sql_int
 * and em_sql_done reset it for the next use. Nothing here logs: errors are codes, and
 * sqlite3_errmsg(db->h) says why. */
#ifndef EM_SQL_H
#define EM_SQL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef struct em_sql_cached {
  const char *sql;
  sqlite3_stmt *st;
} em_sql_cached_t;

typedef struct em_db {
  sqlite3 *h;
  char *path;
  size_t ncached, capcached;
  em_sql_cached_t *cached;
} em_db_t;

/* Runs sql (several statements allowed), prepared anew each time; the SQLite code. */
int em_sql_exec(em_db_t *db, const char *sql);
/* Runs one statement without parameters (a string literal: BEGIN, COMMIT, ...) from the
 * connection's cache: SQLITE_OK or the code. */
int em_sql_do(em_db_t *db, const char *sql);
/* The statement for sql (prepared once), reset and bound from a format of i (int64),
 * d (double), t (text, NULL ok); NULL when it does not prepare. */
sqlite3_stmt *em_sql_prepare(em_db_t *db, const char *sql, const char *fmt, ...);
/* Steps a statement to completion and resets it; SQLITE_DONE is success. */
int em_sql_run(sqlite3_stmt *st);
/* The first column of the first row as int64, or def; sets *rc on an error. Resets. */
int64_t em_sql_int(sqlite3_stmt *st, int64_t def, int *rc);
/* Done with a statement stepped by hand: resets it for its next use. */
void em_sql_done(sqlite3_stmt *st);
/* Finalizes every cached statement (before the connection closes). */
void em_sql_forget(em_db_t *db);
/* Wall-clock seconds, as stored in ts columns. */
double em_sql_now(void);

/* Returns from the calling function with the code unless it is SQLITE_OK or SQLITE_DONE. */
#define EM_SQL_CHECK(x)                                                                            \
  do {                                                                                             \
    int c_ = (x);                                                                                  \
    if (c_ != SQLITE_DONE && c_ != SQLITE_OK)                                                      \
      return c_;                                                                                   \
  } while (0)

#endif
