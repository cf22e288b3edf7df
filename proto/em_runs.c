/* SPDX-License-Identifier: MIT */
#include "em_runs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_wire.h"

static int decode_run(const cJSON *r, em_run_info_t *e)
{
  const cJSON *states = cJSON_GetObjectItemCaseSensitive(r, "states");
  *e = (em_run_info_t){.run = em_json_str(r, "run"), .dir = em_json_str(r, "dir"),
                       .last_emergence = em_json_num(r, "last_emergence")};
  if (!e->run || !em_json_int(r, "checkpoints", &e->checkpoints))
    return -1;
  if (!em_json_int(states, "done", &e->done))
    e->done = 0; /* a run with no result yet has no "done" count */
  e->has_last_step = em_json_int(r, "last_step", &e->last_step);
  return 0;
}

int em_runs_decode(const cJSON *reply, em_run_info_t **out, size_t *n, char *err, size_t errlen)
{
  *out = NULL;
  *n = 0;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(reply, "runs");
  if (!cJSON_IsArray(a)) {
    snprintf(err, errlen, "reply: \"runs\" missing or not an array");
    return -1;
  }
  size_t len = (size_t)cJSON_GetArraySize(a);
  if (len && !(*out = calloc(len, sizeof(**out)))) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  const cJSON *r;
  cJSON_ArrayForEach(r, a)
  {
    if (decode_run(r, &(*out)[*n]) != 0) {
      snprintf(err, errlen, "run %zu: \"run\" or \"checkpoints\" missing or malformed", *n);
      free(*out);
      *out = NULL;
      *n = 0;
      return -1;
    }
    (*n)++;
  }
  return 0;
}

const em_run_info_t *em_runs_find(const em_run_info_t *v, size_t n, const char *run)
{
  for (size_t i = 0; run && i < n; i++)
    if (strcmp(v[i].run, run) == 0)
      return &v[i];
  return NULL;
}
