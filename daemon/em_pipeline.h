/* SPDX-License-Identifier: MIT */
/* The checkpoint pipeline of the loop thread: walker findings and inotify events into
 * the tracker, quiet periods, store operations, work for the workers, and what a commit
 * publishes and delivers. The server owns the services and hands them in. */
#ifndef EM_PIPELINE_H
#define EM_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "em_bus.h"
#include "em_config.h"
#include "em_deliver.h"
#include "em_http.h"
#include "em_journal.h"
#include "em_store.h"
#include "em_tracker.h"
#include "em_walker.h"
#include "em_workq.h"

typedef struct em_pipeline {
  em_config_t *cfg;
  uv_loop_t *loop;
  em_tracker_t *tracker;
  em_walker_t *walker;        /* the services, set by the server once started */
  em_store_t *store;
  em_workq_t *workq;
  em_bus_t *bus;
  em_deliver_t *deliver;
  em_http_t *http;            /* NULL with --http off */
  em_journal_t *journal;      /* results.jsonl and TensorBoard files */
  uv_timer_t quiet_timer;
  bool stopping;
  int64_t last_seq;           /* of the last committed operation */
} em_pipeline_t;

/* -1 on OOM. Loop thread, as is everything here. */
int em_pipeline_init(em_pipeline_t *p, uv_loop_t *loop, em_config_t *cfg, const char *root);
/* Stops scheduling; closes the quiet timer (closed runs when it is closed). */
void em_pipeline_stop(em_pipeline_t *p, uv_close_cb closed);
void em_pipeline_free(em_pipeline_t *p);

/* Callbacks for the walker, the workers and the deliverer (ctx: the pipeline). */
void em_pipeline_found(void *ctx, em_walk_t why, const em_found_t *f, size_t n);
void em_pipeline_event(void *ctx, const char *dir, const char *name, uint32_t mask);
void em_pipeline_job_done(void *ctx, em_job_t *job);
void em_pipeline_alert_delivered(void *ctx, int64_t seq);

/* Queues a store operation; done runs on the loop thread after it committed. */
void em_pipeline_submit(em_pipeline_t *p, em_store_op_t *op, em_store_done_fn done);
/* The usual done: publish and deliver what the operation committed, then free it. */
void em_pipeline_state_done(em_store_op_t *op);
/* The store judges with the configured rules from its next operation on. */
void em_pipeline_submit_rules(em_pipeline_t *p);
/* emergectl stop: an alert of rule "manual" for run, delivered as a rule's; the API request
 * reply_to is answered once it committed ({"ok":true,"alert":...} or an error). */
void em_pipeline_stop_run(em_pipeline_t *p, const char *run, const char *reason, void *reply_to);
/* Checkpoints waiting: queued or in their quiet period. */
size_t em_pipeline_queue_depth(const em_pipeline_t *p);

#endif
