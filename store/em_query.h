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
/* The current results of run rid in step order as history entries (no paths): what the
 * rules judge after a new result. An SQLite code. */
int em_query_judged(em_db_t *db, int64_t rid, em_history_t *out);

#endif
