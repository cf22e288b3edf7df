/* SPDX-License-Identifier: MIT */
/* Worker threads for analysis jobs: jobs go in by pointer, finished jobs come back on
 * the loop thread through one uv_async whose callback drains the whole done list.
 * Workers run at niceness +10 with idle I/O priority so the training job never waits. */
#ifndef EM_WORKQ_H
#define EM_WORKQ_H

#include <uv.h>

#include "em_job.h"

typedef struct em_workq em_workq_t;
typedef void (*em_workq_done_fn)(void *ctx, em_job_t *job);

/* Starts n threads; returns once all are running. Loop thread. */
int em_workq_start(em_workq_t **out, uv_loop_t *loop, int n, em_workq_done_fn done, void *ctx);
/* Hands job to a worker (ownership passes until done). Loop thread. */
void em_workq_push(em_workq_t *q, em_job_t *job);
/* Jobs queued or running. */
size_t em_workq_busy(const em_workq_t *q);
/* Stops the workers: running analyses are cancelled and dropped, queued ones too (they
 * stay queued in the database and are redone on restart). Loop thread. */
void em_workq_stop(em_workq_t **self_p);

#endif
