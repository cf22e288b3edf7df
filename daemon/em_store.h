/* SPDX-License-Identifier: MIT */
/* The store thread: owns the only SQLite write connection (WAL, synchronous=NORMAL,
 * busy_timeout, BEGIN IMMEDIATE) and runs operations in FIFO order. A result, its seq
 * and its checkpoint's state commit in one transaction; messages to publish come back to
 * the loop thread only after that commit. */
#ifndef EM_STORE_H
#define EM_STORE_H

#include <stdbool.h>
#include <stdint.h>
#include <sqlite3.h>
#include <uv.h>

#include "em_fifo.h"
#include "em_rules.h"

#define EM_SCHEMA_VERSION 2

typedef enum em_store_op_type {
  EM_OP_SEEN,      /* a complete checkpoint version: record it queued unless it has a result */
  EM_OP_RESULT,    /* an analysis result: row, seq, E against the run's baseline, state done */
  EM_OP_STATE,     /* failed / vanished / nonfinite / unsupported, with the error */
  EM_OP_META,      /* the daemon's endpoints and pid, so clients can find it */
  EM_OP_RULES,     /* the early-stop rules to judge with from now on */
  EM_OP_DELIVERED, /* an alert's deliveries (stop file, exec) are done */
  EM_OP_UNDELIVERED /* alerts whose deliveries a crash interrupted: as messages */
} em_store_op_type_t;

typedef struct em_pub {
  char *topic;
  char *payload;
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
  const char *state;           /* EM_OP_STATE */
  char *error;                 /* EM_OP_STATE */
  char *json;                  /* EM_OP_RESULT: the result object (emergence null) */
  double alpha0, width;        /* EM_OP_RESULT */
  char *pub_endpoint, *api_endpoint; /* EM_OP_META */
  em_rules_t rules;            /* EM_OP_RULES (the store takes them) */
  int64_t seq;                 /* EM_OP_DELIVERED */
  /* outputs */
  int rc;                      /* 0 or a negative code; the store logged the reason */
  int64_t ckpt_id;
  int64_t step_out;            /* the step stored (an arrival number when none was given) */
  bool has_result;             /* EM_OP_SEEN: this version already has a result */
  size_t npub;
  em_pub_t *pubs;              /* messages to publish, in seq order: results and alerts */
  int64_t last_seq;
  /* plumbing */
  em_store_done_fn done;       /* called on the loop thread */
  void *ctx;
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
/* Adds a message on topic "<kind>/<run>/" to op (takes payload). Store thread. */
int em_store_op_add_pub(em_store_op_t *op, const char *kind, const char *run, char *payload);
/* The next daemon-wide seq, inside the caller's transaction. Store thread. */
int64_t em_store_next_seq(sqlite3 *db, int *rc);
void em_store_op_free(em_store_op_t *op);

#endif
