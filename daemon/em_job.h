/* SPDX-License-Identifier: MIT */
/* One analysis job: open the checkpoint (which validates it), analyse it, and check that
 * it did not change while being read. Runs on a worker thread; touches nothing else. */
#ifndef EM_JOB_H
#define EM_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "em_fifo.h"
#include "em_wire.h"
#include "emerge.h"

typedef enum em_job_outcome {
  EM_JOB_DONE,        /* result and trainer are set */
  EM_JOB_CHANGED,     /* the files changed during analysis (or it was cancelled): record nothing */
  EM_JOB_STATE        /* a final state for this version: state + error */
} em_job_outcome_t;

typedef struct em_job {
  em_fifo_item_t link;    /* first: the worker queue */
  /* inputs */
  int64_t ckpt_id;
  char *path, *run;
  bool is_dir;
  bool has_step;
  int64_t step;
  uint64_t version;       /* fingerprint the job was queued for */
  em_params_t params;
  const _Atomic int *cancel; /* raised when the daemon stops */
  bool check_finite;      /* scan every weight for NaN/Inf first (a check_finite rule) */
  /* outputs */
  em_job_outcome_t outcome;
  em_state_t state;       /* failed | vanished | nonfinite | unsupported */
  char *error;
  em_result_t result;     /* the spectrum; the store computes E and encodes it */
  em_trainer_t trainer;   /* the trainer's metrics at this step */
} em_job_t;

/* Caller owns the job (em_job_free); NULL on OOM. */
em_job_t *em_job_new(int64_t ckpt_id, const char *path, const char *run, bool is_dir, bool has_step, int64_t step,
                     uint64_t version, const em_params_t *params);
void em_job_free(em_job_t *job);
/* Runs the analysis; fills the outputs. Worker thread. */
void em_job_run(em_job_t *job);

#endif
