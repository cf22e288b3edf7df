/* SPDX-License-Identifier: MIT */
/* Answers API requests from a read-only connection of the loop thread (WAL readers never
 * wait for the store thread's writer). */
#ifndef EM_QUERY_H
#define EM_QUERY_H

#include <cJSON.h>
#include <sqlite3.h>

#include "em_api.h"

#define EM_SINCE_PAGE 500 /* messages per "since" reply; "more": true asks for the next page */

/* Opens path read-only; NULL on failure (logged). */
sqlite3 *em_query_open(const char *path);
/* The reply to req as text (caller frees). status is the daemon's status object (used by
 * "status"; ownership stays with the caller). */
char *em_query_reply(sqlite3 *db, const em_api_request_t *req, const cJSON *status);

#endif
