/* SPDX-License-Identifier: MIT */
#include "em_judge.h"

#include <stdlib.h>

typedef struct judge {
  size_t rule;
  const em_point_t *pts;
  em_recorded_t *rec;
  em_verdict_t *v;
  size_t n, cap;
  bool oom;
} judge_t;

static bool is_new(judge_t *j, const em_firing_t *f)
{
  em_recorded_t *r = &j->rec[j->rule];
  if (f->cond != EM_COND_PLATEAU)
    return !r->fired[f->cond];
  return !r->has_plateau || f->best_step > r->plateau_step;
}

static void remember(judge_t *j, const em_firing_t *f)
{
  em_recorded_t *r = &j->rec[j->rule];
  r->fired[f->cond] = true;
  if (f->cond == EM_COND_PLATEAU) {
    int64_t step = j->pts[f->at].step;
    r->plateau_step = r->has_plateau && r->plateau_step > step ? r->plateau_step : step;
    r->has_plateau = true;
  }
}

static void on_fire(void *ctx, const em_rule_t *rule, const em_firing_t *f)
{
  (void)rule;
  judge_t *j = ctx;
  if (j->oom || !is_new(j, f))
    return;
  if (j->n == j->cap) {
    size_t cap = j->cap ? 2 * j->cap : 4;
    em_verdict_t *grown = realloc(j->v, cap * sizeof(*grown));
    if (!grown) {
      j->oom = true;
      return;
    }
    j->v = grown;
    j->cap = cap;
  }
  j->v[j->n++] = (em_verdict_t){j->rule, *f};
  remember(j, f);
}

int em_judge(const em_rules_t *rules, const em_point_t *pts, size_t n, em_recorded_t *rec, em_verdict_t **out,
             size_t *nout)
{
  judge_t j = {.pts = pts, .rec = rec};
  for (j.rule = 0; j.rule < rules->n && !j.oom; j.rule++)
    em_rule_replay(&rules->v[j.rule], pts, n, on_fire, &j);
  if (j.oom) {
    free(j.v);
    return -1;
  }
  *out = j.v;
  *nout = j.n;
  return 0;
}
