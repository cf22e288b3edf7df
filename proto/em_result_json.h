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
  bool has_emergence;            /* false: "emergence": null (baseline not analysed) */
  double emergence;
  bool has_baseline_step;
  int64_t baseline_step;
  const em_trainer_t *trainer;   /* NULL or no metrics: "trainer": null */
  bool from_daemon;              /* adds seq, kind "result", ts */
  int64_t seq;
  double ts;
} em_result_meta_t;

/* Caller owns the returned object (cJSON_Delete); NULL when out of memory. */
cJSON *em_result_to_json(const em_result_t *r, const em_result_meta_t *m);

/* The analysis parameters as the "params" object. Caller owns it; NULL on OOM. */
cJSON *em_params_to_json(const em_params_t *p);

#endif
