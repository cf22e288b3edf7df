/* SPDX-License-Identifier: MIT */
/* A run's history as typed entries, whichever side it comes from: the store fills it
 * from SQL, a client decodes it from a history reply. Rules are judged on the points
 * built from it by em_history_points, the one function both the daemon's judge and
 * `emergectl backtest` use, so the two cannot disagree. Also the checkpoint object of
 * history replies (a checkpoint without a result: queued, failed, ...). */
#ifndef EM_HISTORY_H
#define EM_HISTORY_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_rules.h"
#include "em_wire.h"

typedef struct em_hist_entry {
  int64_t step;             /* its place: the training step, or (by_arrival) the arrival number */
  bool by_arrival;
  em_state_t state;         /* EM_STATE_DONE: a result */
  int64_t seq;              /* the result's seq; 0 without a result */
  double emergence, alpha0, width; /* NaN when unknown */
  double emergence_se, alpha0_se, width_se; /* NaN when unknown */
  char *path;               /* may be NULL when the caller did not ask for it */
  char *error;              /* the checkpoint's error, NULL when none */
} em_hist_entry_t;

typedef struct em_history {
  size_t n, cap;
  em_hist_entry_t *v;
} em_history_t;

/* Appends a copy of e (its strings are copied). -1 on OOM. */
int em_history_add(em_history_t *h, const em_hist_entry_t *e);
void em_history_free(em_history_t *h);
/* Decodes a history reply ({"results":[...],"checkpoints":[...]}); -1 with err. */
int em_history_decode(const cJSON *reply, em_history_t *out, char *err, size_t errlen);

/* The replay points of a history in step order (stable): every result, and every
 * checkpoint recorded nonfinite (seq INT64_MAX: judged whatever a rule's since_seq).
 * The points borrow h's strings. Caller frees; NULL on OOM (or when h is empty, with
 * *n = 0). */
em_point_t *em_history_points(const em_history_t *h, size_t *n);

/* A checkpoint without a result, as history replies list it. */
/* Decodes one such object; e borrows its strings. -1 without an integer step (or
 * arrival) and a state. */
int em_checkpoint_from_json(const cJSON *c, em_hist_entry_t *e);
cJSON *em_checkpoint_to_json(int64_t step, bool by_arrival, const char *path, em_state_t state, const char *error);

/* A checkpoint event (PROTOCOL.md: topic checkpoint/<run>/): the checkpoint object of a
 * checkpoint that failed, vanished, was non-finite or unsupported, with its seq (in
 * e->seq), kind "checkpoint", run and ts. */
cJSON *em_checkpoint_event_to_json(const char *run, const em_hist_entry_t *e, double ts);
/* Decodes one; e and *run borrow its strings. -1 without an integer seq, a run, a place
 * and a state. */
int em_checkpoint_event_decode(const cJSON *o, const char **run, em_hist_entry_t *e);

#endif
