/* SPDX-License-Identifier: MIT */
/* The result object (proto/PROTOCOL.md) as JSON: one encoder for `analyze --json`, the daemon's
 * PUB payloads, API replies and export. */
#ifndef EM_RESULT_JSON_H
#define EM_RESULT_JSON_H

#include <cJSON.h>

#include "emerge.h"

/* What a result object says beyond the spectrum: where the checkpoint sits and how it
 * compares to its run's baseline. */
typedef struct em_result_meta {
  const char *run;               /* run name */
  const char *path;              /* checkpoint path */
  bool has_step;
  int64_t step;
  bool by_arrival;               /* step is the daemon's arrival number: "step": null, "arrival": step */
  bool has_emergence;            /* false: "emergence": null (baseline not analysed) */
  double emergence;
  bool has_emergence_se;         /* false: "emergence_se": null (unknown) */
  double emergence_se;
  bool has_baseline_step;
  int64_t baseline_step;
  bool baseline_by_arrival;      /* "baseline_step": null, "baseline_arrival": baseline_step */
  const em_trainer_t *trainer;   /* NULL or no metrics: "trainer": null */
  bool from_daemon;              /* adds seq, kind "result", ts */
  int64_t seq;
  double ts;
} em_result_meta_t;

/* Caller owns the returned object (cJSON_Delete); NULL when out of memory. */
cJSON *em_result_to_json(const em_result_t *r, const em_result_meta_t *m);

/* A result object decoded from untrusted JSON, for the client's commands: strings and
 * trainer names borrow from the object it came from, which must outlive the view; the
 * arrays are the view's own. Numbers missing or null are NaN (has_step false). */
typedef struct em_result_view {
  const char *run, *path, *arch;
  bool has_step;                 /* a training step */
  int64_t step;
  bool has_arrival;              /* no step: the daemon's arrival number orders the run */
  int64_t arrival;
  int64_t seq;                   /* 0 when not from the daemon */
  double emergence, alpha0, width, nodes, elapsed_ms, ts;
  double emergence_se, alpha0_se, width_se; /* NaN when unknown */
  const char *mode;              /* "sampled" or "full" */
  double coverage;               /* NaN when the result predates it */
  size_t nskipped;               /* weight tensors not read */
  bool has_baseline_step;
  int64_t baseline_step;
  bool has_baseline_arrival;     /* the baseline has no step: its arrival */
  int64_t baseline_arrival;
  size_t nq;                     /* the moment orders and their mass exponents */
  double *q, *tau;
  size_t nspec;                  /* points of the spectrum */
  double *alpha, *f;
  size_t nsamples;               /* per sampled network: seed, alpha0, width, nodes (tau NULL) */
  em_sample_t *samples;
  size_t nmetrics;               /* the trainer's numeric metrics, in the object's order */
  em_metric_t *metrics;
} em_result_view_t;

/* -1 with err naming the bad key when o is no result object (run, alpha0, width and
 * q/tau and alpha/f arrays of matching lengths are required). */
int em_result_decode(const cJSON *o, em_result_view_t *out, char *err, size_t errlen);
void em_result_view_free(em_result_view_t *v);
/* Where the result sits in its run: its step, else its arrival number (*by_arrival);
 * false when it has neither. */
bool em_result_place(const em_result_view_t *v, int64_t *place, bool *by_arrival);
/* The metric's value, NaN when the result has none of that name. */
double em_result_metric(const em_result_view_t *v, const char *name);

/* Decodes every result of a reply's "results" array in order; -1 with err (naming the
 * index) at the first bad one. Caller frees with em_results_free. */
int em_results_decode(const cJSON *reply, em_result_view_t **out, size_t *n, char *err, size_t errlen);
void em_results_free(em_result_view_t *v, size_t n);

/* The analysis parameters as the "params" object. Caller owns it; NULL on OOM. */
cJSON *em_params_to_json(const em_params_t *p);

#endif
