/* SPDX-License-Identifier: MIT */
/* trainer_state.json (Hugging Face TrainerState): global_step and the numeric fields of
 * the log_history entries of one step, to show next to the spectrum. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"
#include "em_jsonfile.h"
#include "emerge.h"

/* Metrics kept per step, and the longest name kept: a log_history entry holds a dozen;
 * more is a file made to cost the daemon time (each name is looked up among the kept). */
#define MAX_METRICS 256
#define MAX_METRIC_NAME 256

static int put_metric(em_trainer_t *t, const char *name, double value)
{
  if (strlen(name) > MAX_METRIC_NAME)
    return 0;
  for (size_t i = 0; i < t->nmetrics; i++) {
    if (strcmp(t->metrics[i].name, name) == 0) {
      t->metrics[i].value = value;
      return 0;
    }
  }
  if (t->nmetrics == MAX_METRICS)
    return 0;
  em_metric_t *m = realloc(t->metrics, (t->nmetrics + 1) * sizeof(*m));
  if (!m)
    return -ENOMEM;
  t->metrics = m;
  if (!(m[t->nmetrics].name = strdup(name)))
    return -ENOMEM;
  m[t->nmetrics++].value = value;
  return 0;
}

static int collect(em_trainer_t *t, const cJSON *history, int64_t step)
{
  const cJSON *e;
  cJSON_ArrayForEach(e, history)
  {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "step");
    if (!cJSON_IsNumber(s) || s->valuedouble != (double)step)
      continue;
    for (const cJSON *f = e->child; f; f = f->next) {
      if (cJSON_IsNumber(f) && isfinite(f->valuedouble) && strcmp(f->string, "step") != 0 &&
          put_metric(t, f->string, f->valuedouble) != 0)
        return -ENOMEM;
    }
  }
  return 0;
}

/* Fills out from a parsed trainer_state.json; path names it in messages. */
static int trainer_from_json(const cJSON *root, const char *path, int64_t step, em_trainer_t *out, em_err_t *err)
{
  out->found = true;
  if (!cJSON_IsObject(root))
    return em_err_set(err, -EINVAL, "%s: not a JSON object", path);
  const cJSON *gs = cJSON_GetObjectItemCaseSensitive(root, "global_step");
  if (cJSON_IsNumber(gs) && gs->valuedouble >= 0 && gs->valuedouble < 9e15 &&
      gs->valuedouble == floor(gs->valuedouble)) {
    out->has_global_step = true;
    out->global_step = (int64_t)gs->valuedouble;
  }
  const cJSON *history = cJSON_GetObjectItemCaseSensitive(root, "log_history");
  if (step >= 0 && cJSON_IsArray(history) && collect(out, history, step) != 0)
    return em_err_set(err, -ENOMEM, "out of memory");
  return 0;
}

int em_trainer_parse(const char *text, size_t len, int64_t step, em_trainer_t *out, em_err_t *err)
{
  memset(out, 0, sizeof(*out));
  cJSON *root = cJSON_ParseWithLength(text, len);
  int rc = root ? trainer_from_json(root, "trainer_state.json", step, out, err)
                : em_err_set(err, -EINVAL, "trainer_state.json: not valid JSON");
  cJSON_Delete(root);
  if (rc)
    em_trainer_free(out);
  return rc;
}

int em_trainer_read(const char *dir, int64_t step, em_trainer_t *out, em_err_t *err)
{
  memset(out, 0, sizeof(*out));
  char path[4096];
  snprintf(path, sizeof(path), "%s/trainer_state.json", dir);
  cJSON *root = NULL;
  int rc = em_jsonfile_read(path, &root, err);
  if (rc == -ENOENT || rc == -ENOTDIR) /* no trainer_state.json: a loose weight file has none */
    return 0;
  if (rc)
    return rc;
  rc = trainer_from_json(root, path, step, out, err);
  cJSON_Delete(root);
  if (rc)
    em_trainer_free(out);
  return rc;
}

void em_trainer_free(em_trainer_t *t)
{
  for (size_t i = 0; i < t->nmetrics; i++)
    free(t->metrics[i].name);
  free(t->metrics);
  memset(t, 0, sizeof(*t));
}
