/* SPDX-License-Identifier: MIT */
#include "em_history.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int em_history_add(em_history_t *h, const em_hist_entry_t *e)
{
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 64;
    em_hist_entry_t *grown = realloc(h->v, cap * sizeof(*grown));
    if (!grown)
      return -1;
    h->v = grown;
    h->cap = cap;
  }
  em_hist_entry_t *d = &h->v[h->n];
  *d = *e;
  d->path = e->path ? strdup(e->path) : NULL;
  d->error = e->error ? strdup(e->error) : NULL;
  if ((e->path && !d->path) || (e->error && !d->error)) {
    free(d->path);
    free(d->error);
    return -1;
  }
  h->n++;
  return 0;
}

void em_history_free(em_history_t *h)
{
  for (size_t i = 0; i < h->n; i++) {
    free(h->v[i].path);
    free(h->v[i].error);
  }
  free(h->v);
  memset(h, 0, sizeof(*h));
}

static int decode_result(const cJSON *r, em_hist_entry_t *e)
{
  *e = (em_hist_entry_t){.state = EM_STATE_DONE, .emergence = em_json_num(r, "emergence"),
                         .alpha0 = em_json_num(r, "alpha0"), .width = em_json_num(r, "width"),
                         .emergence_se = em_json_num(r, "emergence_se"), .alpha0_se = em_json_num(r, "alpha0_se"),
                         .width_se = em_json_num(r, "width_se"),
                         .path = (char *)em_json_str(r, "path")};
  return em_json_place(r, &e->step, &e->by_arrival) && em_json_int(r, "seq", &e->seq) ? 0 : -1;
}

int em_checkpoint_from_json(const cJSON *c, em_hist_entry_t *e)
{
  *e = (em_hist_entry_t){.emergence = NAN, .alpha0 = NAN, .width = NAN, .emergence_se = NAN, .alpha0_se = NAN,
                         .width_se = NAN, .path = (char *)em_json_str(c, "path"),
                         .error = (char *)em_json_str(c, "error")};
  return em_json_place(c, &e->step, &e->by_arrival) && em_state_parse(em_json_str(c, "state"), &e->state) == 0 ? 0
                                                                                                            : -1;
}

cJSON *em_checkpoint_event_to_json(const char *run, const em_hist_entry_t *e, double ts)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "seq", (double)e->seq);
  cJSON_AddStringToObject(o, "kind", "checkpoint");
  cJSON_AddStringToObject(o, "run", run);
  cJSON *c = em_checkpoint_to_json(e->step, e->by_arrival, e->path, e->state, e->error);
  cJSON *field;
  while (c && (field = c->child) != NULL) /* the checkpoint object's keys, moved over */
    cJSON_AddItemToObject(o, field->string, cJSON_DetachItemViaPointer(c, field));
  cJSON_Delete(c);
  cJSON_AddNumberToObject(o, "ts", ts);
  return o;
}

int em_checkpoint_event_decode(const cJSON *o, const char **run, em_hist_entry_t *e)
{
  *run = em_json_str(o, "run");
  int64_t seq;
  if (!*run || !em_json_int(o, "seq", &seq) || em_checkpoint_from_json(o, e) != 0)
    return -1;
  e->seq = seq;
  return 0;
}

int em_history_decode(const cJSON *reply, em_history_t *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  const cJSON *item;
  em_hist_entry_t e;
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(reply, "results"))
  {
    if (decode_result(item, &e) != 0 || em_history_add(out, &e) != 0) {
      snprintf(err, errlen, "history: a result without an integer step (or arrival) and seq");
      em_history_free(out);
      return -1;
    }
  }
  cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(reply, "checkpoints"))
  {
    if (em_checkpoint_from_json(item, &e) != 0 || em_history_add(out, &e) != 0) {
      snprintf(err, errlen, "history: a checkpoint without an integer step (or arrival) and a state");
      em_history_free(out);
      return -1;
    }
  }
  return 0;
}

static int cmp_point(const void *a, const void *b)
{
  const em_point_t *x = a, *y = b;
  if (x->step != y->step)
    return (x->step > y->step) - (x->step < y->step);
  return (x->order > y->order) - (x->order < y->order); /* stable: qsort is not */
}

em_point_t *em_history_points(const em_history_t *h, size_t *n)
{
  *n = 0;
  em_point_t *pts = calloc(h->n ? h->n : 1, sizeof(*pts));
  if (!pts)
    return NULL;
  for (size_t i = 0; i < h->n; i++) {
    const em_hist_entry_t *e = &h->v[i];
    if (e->state != EM_STATE_DONE && e->state != EM_STATE_NONFINITE)
      continue;
    em_point_t *p = &pts[(*n)++];
    *p = (em_point_t){.step = e->step, .by_arrival = e->by_arrival, .seq = e->seq, .path = e->path, .order = i,
                      .value = {e->emergence, e->alpha0, e->width},
                      .se = {e->emergence_se, e->alpha0_se, e->width_se}};
    if (e->state == EM_STATE_NONFINITE) {
      p->seq = INT64_MAX;
      p->nonfinite = true;
      p->error = e->error;
      p->value[0] = p->value[1] = p->value[2] = NAN;
      p->se[0] = p->se[1] = p->se[2] = NAN;
    }
  }
  qsort(pts, *n, sizeof(*pts), cmp_point);
  return pts;
}

cJSON *em_checkpoint_to_json(int64_t step, bool by_arrival, const char *path, em_state_t state, const char *error)
{
  cJSON *c = cJSON_CreateObject();
  if (!c)
    return NULL;
  em_json_add_place(c, step, by_arrival);
  cJSON_AddStringToObject(c, "path", path ? path : "");
  cJSON_AddStringToObject(c, "state", em_state_name(state));
  if (error)
    cJSON_AddStringToObject(c, "error", error);
  else
    cJSON_AddNullToObject(c, "error");
  return c;
}
