/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the decoders a client runs on a daemon's replies and PUB
 * payloads (proto/): any bytes as JSON, given to the result, runs, history, checkpoint,
 * alert and status decoders. Whatever decodes is read in full (every array to the
 * length the decoder promised, every borrowed string), so ASan sees any lie. */
#include <cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "em_alert.h"
#include "em_history.h"
#include "em_result_json.h"
#include "em_runs.h"
#include "em_status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void results(const cJSON *j)
{
  em_result_view_t *v;
  size_t n;
  char err[256];
  if (em_results_decode(j, &v, &n, err, sizeof(err)) != 0)
    return;
  for (size_t i = 0; i < n; i++) {
    volatile double sink = 0;
    for (size_t k = 0; k < v[i].nspec; k++)
      sink += v[i].alpha[k] + v[i].f[k];
    for (size_t k = 0; k < v[i].nq; k++)
      sink += v[i].q[k] + v[i].tau[k];
    for (size_t k = 0; k < v[i].nmetrics; k++)
      sink += v[i].metrics[k].value + (double)strlen(v[i].metrics[k].name);
    (void)em_result_metric(&v[i], "loss");
  }
  em_results_free(v, n);
}

static void others(const cJSON *j)
{
  char err[256];
  em_run_info_t *runs;
  size_t n;
  if (em_runs_decode(j, &runs, &n, err, sizeof(err)) == 0) {
    (void)em_runs_find(runs, n, "run");
    free(runs);
  }
  em_history_t h;
  if (em_history_decode(j, &h, err, sizeof(err)) == 0) {
    free(em_history_points(&h, &n));
    em_history_free(&h);
  }
  em_hist_entry_t c;
  (void)em_checkpoint_from_json(j, &c);
  const char *run;
  if (em_checkpoint_event_decode(j, &run, &c) == 0) {
    volatile size_t sink = strlen(run) + (c.path ? strlen(c.path) : 0) + (c.error ? strlen(c.error) : 0);
    (void)sink;
  }
  em_alert_t a;
  if (em_alert_from_json(j, &a, err, sizeof(err)) == 0) {
    free(em_alert_print(&a));
    em_alert_free(&a);
  }
  em_status_t st;
  if (em_status_from_json(j, &st) == 0)
    cJSON_Delete(em_status_to_json(&st));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  cJSON *j = cJSON_ParseWithLength((const char *)data, size);
  if (!j)
    return 0;
  results(j);
  others(j);
  /* Each element too: alert, result and checkpoint objects arrive one at a time. */
  const cJSON *item;
  cJSON_ArrayForEach(item, j)
    others(item);
  cJSON_Delete(j);
  return 0;
}
