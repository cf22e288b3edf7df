/* SPDX-License-Identifier: MIT */
#include "em_result_json.h"

#include "em_wire.h"

static cJSON *number_array(const double *v, size_t n)
{
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; a && i < n; i++) {
    if (!cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]))) {
      cJSON_Delete(a);
      return NULL;
    }
  }
  return a;
}

cJSON *em_params_to_json(const em_params_t *p)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  cJSON_AddNumberToObject(o, "samples", p->samples);
  cJSON_AddNumberToObject(o, "neurons", p->neurons);
  cJSON_AddNumberToObject(o, "seed", p->seed);
  cJSON_AddNumberToObject(o, "threshold", p->threshold);
  cJSON_AddNumberToObject(o, "q_min", p->q_min);
  cJSON_AddNumberToObject(o, "q_max", p->q_max);
  cJSON_AddNumberToObject(o, "q_step", p->q_step);
  cJSON_AddStringToObject(o, "alpha0", p->alpha0 == EM_ALPHA0_CENTRAL ? "central" : "reference");
  cJSON_AddBoolToObject(o, "full", p->full);
  cJSON_AddStringToObject(o, "arch", em_arch_name(p->arch));
  return o;
}

static cJSON *samples_json(const em_result_t *r)
{
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; a && i < r->nsamples; i++) {
    const em_sample_t *s = &r->samples[i];
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(a, o)) {
      cJSON_Delete(o);
      cJSON_Delete(a);
      return NULL;
    }
    cJSON_AddNumberToObject(o, "seed", s->seed);
    cJSON_AddNumberToObject(o, "alpha0", s->alpha0);
    cJSON_AddNumberToObject(o, "width", s->width);
    cJSON_AddNumberToObject(o, "nodes", (double)s->nodes);
    cJSON_AddItemToObject(o, "tau", number_array(s->tau, r->nq));
  }
  return a;
}

static cJSON *trainer_json(const em_trainer_t *t)
{
  if (!t || t->nmetrics == 0)
    return cJSON_CreateNull();
  cJSON *o = cJSON_CreateObject();
  for (size_t i = 0; o && i < t->nmetrics; i++)
    cJSON_AddNumberToObject(o, t->metrics[i].name, t->metrics[i].value);
  return o;
}

cJSON *em_result_to_json(const em_result_t *r, const em_result_meta_t *m)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  cJSON_AddStringToObject(o, "run", m->run ? m->run : "");
  em_json_add_opt(o, "step", m->has_step, (double)m->step);
  cJSON_AddStringToObject(o, "path", m->path ? m->path : "");
  cJSON_AddStringToObject(o, "arch", em_arch_name(r->arch));
  cJSON_AddNumberToObject(o, "alpha0", r->alpha0);
  cJSON_AddNumberToObject(o, "width", r->width);
  em_json_add_opt(o, "emergence", m->has_emergence, m->emergence);
  em_json_add_opt(o, "baseline_step", m->has_baseline_step, (double)m->baseline_step);
  cJSON_AddItemToObject(o, "q", number_array(r->q, r->nq));
  cJSON_AddItemToObject(o, "tau", number_array(r->tau, r->nq));
  cJSON_AddItemToObject(o, "alpha", number_array(r->alpha, r->nq - 1));
  cJSON_AddItemToObject(o, "f", number_array(r->f, r->nq - 1));
  cJSON_AddItemToObject(o, "samples", samples_json(r));
  cJSON_AddNumberToObject(o, "nodes", (double)r->nodes);
  cJSON_AddNumberToObject(o, "elapsed_ms", r->elapsed_ms);
  cJSON_AddItemToObject(o, "params", em_params_to_json(&r->params));
  cJSON_AddItemToObject(o, "trainer", trainer_json(m->trainer));
  if (m->from_daemon) {
    cJSON_AddNumberToObject(o, "seq", (double)m->seq);
    cJSON_AddStringToObject(o, "kind", "result");
    cJSON_AddNumberToObject(o, "ts", m->ts);
  }
  /* Any failed allocation above leaves a key out; check the last ones exist. */
  if (!cJSON_GetObjectItemCaseSensitive(o, "trainer") || !cJSON_GetObjectItemCaseSensitive(o, "params") ||
      !cJSON_GetObjectItemCaseSensitive(o, "samples") || !cJSON_GetObjectItemCaseSensitive(o, "f")) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}
