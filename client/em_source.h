/* SPDX-License-Identifier: MIT */
/* Where emergectl's data comes from: the daemon's API (--api, the default) or the
 * database read directly (--db FILE or ROOT, read-only: works while the daemon is down
 * or busy). Both answer with the same JSON, since --db runs the daemon's own queries. */
#ifndef EM_SOURCE_H
#define EM_SOURCE_H

#include <cJSON.h>
#include <stdbool.h>

#include "em_api.h"

#define EM_DEFAULT_API "tcp://127.0.0.1:5564"
#define EM_DEFAULT_PUB "tcp://127.0.0.1:5563"

typedef struct em_source {
  const char *api;      /* endpoint (default EM_DEFAULT_API) */
  char *api_owned;      /* the daemon's endpoint read from the database */
  char *db;             /* database file, when --db */
  char *pub;            /* PUB endpoint of the daemon (from meta with --db, else default) */
  double timeout;       /* seconds (3) */
} em_source_t;

/* Resolves --db (a file, or a watch root holding .emerge/emerge.db); when the database
 * records a running daemon, api/pub are set to its endpoints and *live is true. */
int em_source_open_db(em_source_t *src, const char *db, bool *live, char *err, size_t errlen);
void em_source_close(em_source_t *src);

/* Sends req; *reply is the parsed reply object (caller deletes). Returns 0, 69 when the
 * daemon did not answer (err names the endpoint), 1 on other failures. */
int em_source_request(const em_source_t *src, bool use_db, const em_api_request_t *req, cJSON **reply, char *err,
                      size_t errlen);

#endif
