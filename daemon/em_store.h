/* SPDX-License-Identifier: MIT */
/* The store thread: owns the only SQLite write connection (store/em_db: WAL,
 * synchronous=NORMAL, busy_timeout) and runs operations in FIFO order, each in one
 * BEGIN IMMEDIATE transaction. A result, its seq and its checkpoint's state commit
 * together; what to publish and which alerts to deliver come back to the loop thread
 * only after that commit. */
#ifndef EM_STORE_H
#define EM_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "em_alert.h"
#include "em_fifo.h"
#include "em_rules.h"
#include "em_wire.h"
#include "emerge.h"

typedef enum em_store_op_type {
  EM_OP_SEEN,      /* a complete checkpoint version: record it queued unless it has a result */
  EM_OP_RESULT,    /* an analysis result: row, seq, E against the run's baseline, state done */
  EM_OP_STATE,     /* failed / vanished / nonfinite / unsupported, with the error */
  EM_OP_META,      /* the daemon's endpoints and pid, so clients can find it */
  EM_OP_RULES,     /* the early-stop rules to judge with from now on */
  EM_OP_DELIVERED, /* an alert's deliveries (stop file, exec) are done */
  EM_OP_UNDELIVERED, /* alerts whose deliveries a crash interrupted: to deliver again */
  EM_OP_MANUAL     /* a stop asked by hand (emergectl stop): an alert of rule "manual" for run */
} em_store_op_type_t;

typedef struct em_pub {
  int64_t seq;
  char *topic;
  char *payload;
  bool has_point;              /* a result: its values, typed (for the TensorBoard writer) */
  em_point_t point;            /* place, E, alpha0, width and their SEs (NaN when unknown) */
} em_pub_t;

typedef struct em_store_op em_store_op_t;
typedef void (*em_store_done_fn)(em_store_op_t *op);

struct em_store_op {
  em_fifo_item_t link;         /* first: the store's queue */
  em_store_op_type_t type;
  /* inputs */
  char *run, *run_dir, *path;  /* the checkpoint (run name, its directory, its path) */
  bool has_step;               /* step from the name or trainer_state.json */
  int64_t step;
  char version[17];
  int64_t ckpt_id;
  em_state_t state;            /* EM_OP_STATE */
  char *error;                 /* EM_OP_STATE; EM_OP_MANUAL: the reason */
  em_result_t result;          /* EM_OP_RESULT (the store takes it) */
  em_trainer_t trainer;        /* EM_OP_RESULT: the trainer's metrics at that step */
  char *pub_endpoint, *api_endpoint; /* EM_OP_META */
  em_rules_t rules;            /* EM_OP_RULES (the store takes them) */
  int64_t seq;                 /* EM_OP_DELIVERED */
  /* outputs */
  int rc;                      /* 0 or a negative code; the store logged the reason */
  int64_t step_out;            /* the step stored (an arrival number when none was given) */
  bool has_result;             /* EM_OP_SEEN: this version already has a result */
  bool unknown_run;            /* EM_OP_MANUAL: no run of that name */
  size_t npub;
  em_pub_t *pubs;              /* messages to publish, in seq order: results, alerts, checkpoint events */
  size_t nalerts;
  em_alert_t *alerts;          /* committed alerts to deliver, in seq order */
  int64_t last_seq;
  /* plumbing */
  em_store_done_fn done;       /* called on the loop thread */
  void *ctx;
  void *reply_to;              /* EM_OP_MANUAL: the API request waiting for it */
};

typedef struct em_store em_store_t;

/* Opens or creates the database (migrating it), starts the store thread and returns once
 * it is ready. -errno / -EIO with err set. Loop thread. */
int em_store_start(em_store_t **out, const char *path, uv_loop_t *loop, char *err, size_t errlen);
/* Runs the operations already queued, stops the thread, closes its handle. Loop thread. */
void em_store_stop(em_store_t **self_p);
/* Queues op (ownership passes to the store until op->done runs). Loop thread. */
void em_store_submit(em_store_t *st, em_store_op_t *op);

em_store_op_t *em_store_op_new(em_store_op_type_t type);
void em_store_op_free(em_store_op_t *op);

#endif
