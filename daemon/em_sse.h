/* SPDX-License-Identifier: MIT */
/* GET /api/v1/events: Server-Sent Events of every committed result, alert and checkpoint
 * event (proto/PROTOCOL.md "HTTP"). The SSE id is the seq. A stream starts after the seq
 * it is given (Last-Event-ID, or ?since=N) and catches up from the database, then follows
 * a ring of recent events that the loop thread fills after each commit: no gap, no
 * duplicate. A stream that falls behind the ring goes back to the database; one that
 * waits is suspended (no busy polling), so 200 idle streams cost nothing but memory,
 * which is bounded: one ring for all, and at most one batch of text per stream. */
#ifndef EM_SSE_H
#define EM_SSE_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "em_db.h"

#define EM_SSE_MAX_STREAMS 256   /* beyond: 503 */
#define EM_SSE_KEEPALIVE_MS 15000 /* a comment line when nothing was sent for this long */

typedef struct em_sse em_sse_t;

/* db: the HTTP thread's read-only connection (streams read it on that thread only).
 * NULL on OOM. */
em_sse_t *em_sse_new(em_db_t *db);
/* An event committed with seq; topic kind/run/, payload its JSON. Any thread (the loop). */
void em_sse_publish(em_sse_t *h, int64_t seq, const char *topic, const char *payload);
/* Wakes every waiting stream so it can send a keepalive or notice its client left. */
void em_sse_tick(em_sse_t *h);
/* A response streaming events after seq `after` (or from now when has_after is false) of
 * run `run` and the runs below it (every run when NULL); NULL when there are too many
 * streams. HTTP thread. */
struct MHD_Response *em_sse_open(em_sse_t *h, struct MHD_Connection *conn, bool has_after, int64_t after,
                                 const char *run);
/* Ends every stream; returns once they are all gone (or after a second). */
void em_sse_close_all(em_sse_t *h);
/* Frees the hub after the HTTP daemon stopped. */
void em_sse_free(em_sse_t *h);
/* Streams open now. */
int em_sse_count(em_sse_t *h);

#endif
