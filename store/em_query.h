/* SPDX-License-Identifier: MIT */
/* The read side of the database contract: the API's replies (proto/PROTOCOL.md), from
 * any connection (the daemon's API thread, or emergectl --db with the daemon down), and
 * the typed history the rule judge replays. Stored result and alert rows are spliced
 * into replies as they are, never parsed and printed again. */
#ifndef EM_QUERY_H
#define EM_QUERY_H

#include "em_api.h"
#include "em_history.h"
#include "em_sql.h"
#include "em_status.h"

#define EM_SINCE_PAGE 500 /* messages per "since" reply; "more": true asks for the next page */

/* The reply to req as text (caller frees). status answers "status". */
char *em_query_reply(em_db_t *db, const em_api_request_t *req, const em_status_t *status);
/* The same, and what kind of failure an {"ok":false} reply is, for HTTP's status codes. */
typedef enum em_query_outcome { EM_QUERY_OK, EM_QUERY_UNKNOWN_RUN, EM_QUERY_DB_ERROR } em_query_outcome_t;
char *em_query_answer(em_db_t *db, const em_api_request_t *req, const em_status_t *status,
                      em_query_outcome_t *out);
/* One stored message of `since`: its seq, topic and payload text. 0 goes on, > 0 stops
 * (this row not taken), < 0 fails the query. */
typedef int (*em_query_message_fn)(void *ctx, int64_t seq, const char *topic, const char *json);
typedef struct em_since {
  int64_t after, upto;      /* after < seq <= upto; upto 0: no upper bound */
  const char *run;          /* this run and the runs below it; NULL: every run */
  int limit;
} em_since_t;
/* Every result, alert and checkpoint event q selects, oldest first: the number of rows
 * taken, or -1 on a database error or when fn failed. */
int em_query_since(em_db_t *db, const em_since_t *q, em_query_message_fn fn, void *ctx);
/* The last committed seq, or -1 on a database error. */
int64_t em_query_last_seq(em_db_t *db);
/* The current results of run rid in step order as history entries (no paths): what the
 * rules replay. An SQLite code. */
int em_query_judged(em_db_t *db, int64_t rid, em_history_t *out);
/* The same entries of its n newest results, newest first: whether a new result is the
 * run's last, and the one before it. */
int em_query_judged_tail(em_db_t *db, int64_t rid, int64_t n, em_history_t *out);
/* The same entry of checkpoint ckpt_id's current result (none when it has none). */
int em_query_judged_checkpoint(em_db_t *db, int64_t ckpt_id, em_history_t *out);

#endif
