/* SPDX-License-Identifier: MIT */
/* The runs reply (proto/PROTOCOL.md, {"cmd":"runs"}) decoded for clients: one entry per
 * run the daemon or its database knows. */
#ifndef EM_RUNS_H
#define EM_RUNS_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct em_run_info {
  const char *run;          /* borrowed from the reply */
  const char *dir;          /* NULL when the reply has none */
  int64_t checkpoints, done;
  bool has_last_step;
  int64_t last_step;
  double last_emergence;    /* NaN when none */
} em_run_info_t;

/* -1 with err naming the bad entry when reply is no runs reply. Caller frees *out;
 * the entries borrow the reply's strings. */
int em_runs_decode(const cJSON *reply, em_run_info_t **out, size_t *n, char *err, size_t errlen);
/* The entry named run, or NULL. */
const em_run_info_t *em_runs_find(const em_run_info_t *v, size_t n, const char *run);

#endif
