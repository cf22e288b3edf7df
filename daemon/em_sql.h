/* SPDX-License-Identifier: MIT */
/* Small SQLite helpers for the store thread's modules (em_store, em_judge). */
#ifndef EM_SQL_H
#define EM_SQL_H

#include <sqlite3.h>
#include <stdint.h>

/* Runs sql (several statements allowed); the SQLite code. */
int em_sql_exec(sqlite3 *db, const char *sql);
/* Prepares sql and binds "?" from a format of i (int64), d (double), t (text, NULL ok);
 * NULL when it does not prepare. */
sqlite3_stmt *em_sql_prepare(sqlite3 *db, const char *sql, const char *fmt, ...);
/* Steps a statement to completion and finalizes it; SQLITE_DONE is success. */
int em_sql_run(sqlite3_stmt *st);
/* The first column of the first row as int64, or def; sets *rc on an error. Finalizes. */
int64_t em_sql_int(sqlite3_stmt *st, int64_t def, int *rc);
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
