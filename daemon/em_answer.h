/* SPDX-License-Identifier: MIT */
/* The API's answer thread: runs the queries of API requests (runs, history, since,
 * alerts) on a read-only connection of its own, so a long run's history never holds up
 * the loop thread, its timers, the watchdog or inotify. WAL readers never wait for the
 * store thread's writer. Requests are answered in the order they came. */
#ifndef EM_ANSWER_H
#define EM_ANSWER_H

#include <uv.h>

#include "em_api.h"

typedef struct em_answer em_answer_t;
/* A reply for token, on the loop thread; reply NULL when the request was dropped at stop.
 * The callee owns reply. */
typedef void (*em_answer_fn)(void *ctx, void *token, char *reply, size_t len);

int em_answer_start(em_answer_t **out, uv_loop_t *loop, const char *db_path, em_answer_fn done, void *ctx,
                    char *err, size_t errlen);
/* Queues a decoded request (not status: the loop answers that itself). Loop thread. */
void em_answer_push(em_answer_t *a, const em_api_request_t *req, void *token);
/* Answers already computed are handed on; the rest get done(token, NULL). Loop thread. */
void em_answer_stop(em_answer_t **self_p);

#endif
