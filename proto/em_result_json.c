/* SPDX-License-Identifier: MIT */
#include "em_result_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  cJSON_AddStringToObject(o, "mode", em_mode_name(p->mode));
  cJSON_AddBoolToObject(o, "full", p->mode == EM_MODE_FULL); /* the older key, kept for readers of it */
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

/* "tensors": the names read; "skipped": [{name, why}] of the weights not read. */
static void add_coverage(cJSON *o, const em_result_t *r)
{
  cJSON_AddNumberToObject(o, "coverage", r->coverage);
  cJSON *used = cJSON_AddArrayToObject(o, "tensors"), *left = cJSON_AddArrayToObject(o, "skipped");
  for (size_t i = 0; used && i < r->ntensors; i++)
    cJSON_AddItemToArray(used, cJSON_CreateString(r->tensors[i]));
  for (size_t i = 0; left && i < r->nskipped; i++) {
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "name", r->skipped[i].name);
    cJSON_AddStringToObject(s, "why", r->skipped[i].why);
    cJSON_AddItemToArray(left, s);
  }
}

cJSON *em_result_to_json(const em_result_t *r, const em_result_meta_t *m)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  cJSON_AddStringToObject(o, "run", m->run ? m->run : "");
  if (m->has_step)
    em_json_add_place(o, m->step, m->by_arrival);
  else
    cJSON_AddNullToObject(o, "step");
  cJSON_AddStringToObject(o, "path", m->path ? m->path : "");
  cJSON_AddStringToObject(o, "arch", em_arch_name(r->arch));
  cJSON_AddStringToObject(o, "mode", em_mode_name(r->params.mode));
  cJSON_AddNumberToObject(o, "alpha0", r->alpha0);
  cJSON_AddNumberToObject(o, "alpha0_se", r->alpha0_se);
  cJSON_AddNumberToObject(o, "width", r->width);
  cJSON_AddNumberToObject(o, "width_se", r->width_se);
  em_json_add_opt(o, "emergence", m->has_emergence, m->emergence);
  em_json_add_opt(o, "emergence_se", m->has_emergence && m->has_emergence_se, m->emergence_se);
  em_json_add_opt(o, "baseline_step", m->has_baseline_step && !m->baseline_by_arrival, (double)m->baseline_step);
  if (m->has_baseline_step && m->baseline_by_arrival)
    cJSON_AddNumberToObject(o, "baseline_arrival", (double)m->baseline_step);
  const char *base = m->path ? strrchr(m->path, '/') : NULL;
  int64_t epoch = 0;
  bool has_epoch = m->path && em_name_epoch(base ? base + 1 : m->path, &epoch);
  em_json_add_opt(o, "epoch", has_epoch, (double)epoch);
  cJSON_AddItemToObject(o, "q", number_array(r->q, r->nq));
  cJSON_AddItemToObject(o, "tau", number_array(r->tau, r->nq));
  cJSON_AddItemToObject(o, "alpha", number_array(r->alpha, r->nq - 1));
  cJSON_AddItemToObject(o, "f", number_array(r->f, r->nq - 1));
  cJSON_AddItemToObject(o, "samples", samples_json(r));
  cJSON_AddNumberToObject(o, "nodes", (double)r->nodes);
  add_coverage(o, r);
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

/* ---------------------------------------------------------------- decoding */

/* A numeric array of untrusted JSON into a new double array; -1 when it is not one. */
static int decode_numbers(const cJSON *a, double **out, size_t *n)
{
  *out = NULL;
  *n = 0;
  if (!cJSON_IsArray(a))
    return -1;
  size_t len = (size_t)cJSON_GetArraySize(a), i = 0;
  if (len == 0)
    return 0;
  if (!(*out = malloc(len * sizeof(**out))))
    return -1;
  const cJSON *v;
  cJSON_ArrayForEach(v, a)
  {
    if (!cJSON_IsNumber(v)) {
      free(*out);
      *out = NULL;
      return -1;
    }
    (*out)[i++] = v->valuedouble;
  }
  *n = len;
  return 0;
}

static int decode_trainer(const cJSON *t, em_result_view_t *v)
{
  if (!t || cJSON_IsNull(t))
    return 0;
  if (!cJSON_IsObject(t))
    return -1;
  size_t len = (size_t)cJSON_GetArraySize(t);
  if (len == 0)
    return 0;
  if (!(v->metrics = calloc(len, sizeof(*v->metrics))))
    return -1;
  const cJSON *m;
  cJSON_ArrayForEach(m, t)
    if (cJSON_IsNumber(m) && m->string)
      v->metrics[v->nmetrics++] = (em_metric_t){.name = m->string, .value = m->valuedouble};
  return 0;
}

/* "samples": [{seed, alpha0, width, nodes}...]; absent means none. */
static int decode_samples(const cJSON *a, em_result_view_t *v)
{
  if (!a)
    return 0;
  size_t len = (size_t)cJSON_GetArraySize(a);
  if (!cJSON_IsArray(a) || (len && !(v->samples = calloc(len, sizeof(*v->samples)))))
    return -1;
  const cJSON *o;
  cJSON_ArrayForEach(o, a)
  {
    int64_t seed, nodes;
    em_sample_t *s = &v->samples[v->nsamples++];
    s->alpha0 = em_json_num(o, "alpha0");
    s->width = em_json_num(o, "width");
    if (!em_json_int(o, "seed", &seed) || seed < 0 || seed > UINT32_MAX || !em_json_int(o, "nodes", &nodes) ||
        nodes < 0 || isnan(s->alpha0) || isnan(s->width))
      return -1;
    s->seed = (uint32_t)seed;
    s->nodes = (size_t)nodes;
  }
  return 0;
}

static int decode_fail(em_result_view_t *v, char *err, size_t errlen, const char *key)
{
  snprintf(err, errlen, "result object: \"%s\" missing or malformed", key);
  em_result_view_free(v);
  return -1;
}

int em_result_decode(const cJSON *o, em_result_view_t *v, char *err, size_t errlen)
{
  *v = (em_result_view_t){.run = em_json_str(o, "run"), .path = em_json_str(o, "path"),
                          .arch = em_json_str(o, "arch"), .emergence = em_json_num(o, "emergence"),
                          .alpha0 = em_json_num(o, "alpha0"), .width = em_json_num(o, "width"),
                          .nodes = em_json_num(o, "nodes"), .elapsed_ms = em_json_num(o, "elapsed_ms"),
                          .ts = em_json_num(o, "ts"), .emergence_se = em_json_num(o, "emergence_se"),
                          .alpha0_se = em_json_num(o, "alpha0_se"), .width_se = em_json_num(o, "width_se"),
                          .mode = em_json_str(o, "mode"), .coverage = em_json_num(o, "coverage")};
  const cJSON *skipped = cJSON_GetObjectItemCaseSensitive(o, "skipped");
  v->nskipped = cJSON_IsArray(skipped) ? (size_t)cJSON_GetArraySize(skipped) : 0;
  if (!cJSON_IsObject(o) || !v->run)
    return decode_fail(v, err, errlen, "run");
  if (isnan(v->alpha0) || isnan(v->width))
    return decode_fail(v, err, errlen, isnan(v->alpha0) ? "alpha0" : "width");
  v->has_step = em_json_int(o, "step", &v->step);
  v->has_arrival = !v->has_step && em_json_int(o, "arrival", &v->arrival);
  v->has_baseline_arrival = em_json_int(o, "baseline_arrival", &v->baseline_arrival);
  if (!em_json_int(o, "seq", &v->seq))
    v->seq = 0;
  v->has_baseline_step = em_json_int(o, "baseline_step", &v->baseline_step);
  size_t na, nf, nt;
  if (decode_numbers(cJSON_GetObjectItemCaseSensitive(o, "q"), &v->q, &v->nq) != 0)
    return decode_fail(v, err, errlen, "q");
  if (decode_numbers(cJSON_GetObjectItemCaseSensitive(o, "tau"), &v->tau, &nt) != 0 || nt != v->nq)
    return decode_fail(v, err, errlen, "tau");
  if (decode_numbers(cJSON_GetObjectItemCaseSensitive(o, "alpha"), &v->alpha, &na) != 0)
    return decode_fail(v, err, errlen, "alpha");
  if (decode_numbers(cJSON_GetObjectItemCaseSensitive(o, "f"), &v->f, &nf) != 0 || nf != na)
    return decode_fail(v, err, errlen, "f");
  v->nspec = na;
  if (decode_trainer(cJSON_GetObjectItemCaseSensitive(o, "trainer"), v) != 0)
    return decode_fail(v, err, errlen, "trainer");
  if (decode_samples(cJSON_GetObjectItemCaseSensitive(o, "samples"), v) != 0)
    return decode_fail(v, err, errlen, "samples");
  return 0;
}

void em_result_view_free(em_result_view_t *v)
{
  free(v->q);
  free(v->tau);
  free(v->alpha);
  free(v->f);
  free(v->metrics);
  free(v->samples);
  v->q = v->tau = v->alpha = v->f = NULL;
  v->metrics = NULL;
  v->samples = NULL;
  v->nq = v->nspec = v->nmetrics = v->nsamples = 0;
}

bool em_result_place(const em_result_view_t *v, int64_t *place, bool *by_arrival)
{
  *by_arrival = !v->has_step && v->has_arrival;
  *place = v->has_step ? v->step : v->arrival;
  return v->has_step || v->has_arrival;
}

double em_result_metric(const em_result_view_t *v, const char *name)
{
  for (size_t i = 0; name && i < v->nmetrics; i++)
    if (strcmp(v->metrics[i].name, name) == 0)
      return v->metrics[i].value;
  return NAN;
}

int em_results_decode(const cJSON *reply, em_result_view_t **out, size_t *n, char *err, size_t errlen)
{
  *out = NULL;
  *n = 0;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(reply, "results");
  if (!cJSON_IsArray(a)) {
    snprintf(err, errlen, "reply: \"results\" missing or not an array");
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
    char why[160];
    if (em_result_decode(r, &(*out)[*n], why, sizeof(why)) != 0) {
      snprintf(err, errlen, "result %zu: %s", *n, why);
      em_results_free(*out, *n);
      *out = NULL;
      *n = 0;
      return -1;
    }
    (*n)++;
  }
  return 0;
}

void em_results_free(em_result_view_t *v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    em_result_view_free(&v[i]);
  free(v);
}
