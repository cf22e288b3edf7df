/* SPDX-License-Identifier: MIT */
/* DESIGN. Every thread is a lane: its own reader (em_nin), accumulator and index
 * buffers; the power tables are built once, by the run's accumulator, and shared.
 * - Sampled mode: a task is one sampled network, written to its own sample: the
 *   samples do not depend on which lane measured them.
 * - Full mode: a task is one map, folded into an accumulator of its own; accumulators
 *   are merged into the run's in map order, whichever finishes first (one that cannot
 *   be merged yet is parked, and its lane takes a fresh one). The sum is then the same
 *   sequence of additions for every thread count, so the result is bit-identical. A
 *   lane starts a map at most AHEAD maps per lane past the first unmerged one, so at
 *   most that many accumulators are ever parked, whatever the number of maps. */
#include "em_network.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"
#include "em_mt.h"
#include "em_nin.h"
#include "em_pool.h"
#include "em_spectrum.h"

#define AHEAD 2 /* maps a lane may start per lane beyond the first not yet merged */

typedef struct lane {
  em_nin_t *nin;
  em_acc_t *acc;        /* reads the run's power tables; NULL when its last one is parked */
  uint32_t **idx;       /* per group: its drawn neuron indices */
  uint32_t *scratch;    /* permutation buffer: widest group */
  uint32_t *tgt;        /* expanded targets of one map */
  double *alpha, *f;    /* spectrum scratch */
  em_err_t err;         /* the error of the task it failed */
  size_t failed;        /* that task */
  bool drawn;           /* full mode: idx holds every neuron */
} lane_t;

typedef struct run {
  const em_params_t *p;
  em_plan_t *plan;
  em_result_t *out;
  em_acc_t *acc;        /* owns the power tables; full mode: the sum of every map */
  lane_t *lanes;
  unsigned nlanes;
  pthread_mutex_t lock; /* full mode: parked, merged, spare, stop */
  pthread_cond_t turn;  /* a merge happened, or the run stops */
  bool stop;            /* a map failed: lanes waiting for their turn give up */
  em_acc_t **parked;    /* per map: its folded accumulator, until its turn to merge */
  size_t merged;
  em_acc_t **spare;     /* merged accumulators, emptied, for the next map */
  size_t nspare;
} run_t;

static int lane_init(run_t *r, lane_t *l, uint32_t widest, uint32_t most_tgt, const _Atomic int *cancel)
{
  const em_plan_t *plan = r->plan;
  l->idx = calloc(plan->ngroups, sizeof(*l->idx));
  for (size_t g = 0; l->idx && g < plan->ngroups; g++) {
    if (!(l->idx[g] = malloc(plan->groups[g].count * sizeof(**l->idx))))
      return -ENOMEM;
  }
  l->scratch = malloc(widest * sizeof(*l->scratch));
  l->tgt = malloc(most_tgt * sizeof(*l->tgt));
  l->alpha = malloc(r->out->nq * sizeof(*l->alpha));
  l->f = malloc(r->out->nq * sizeof(*l->f));
  l->acc = em_acc_new_shared(r->acc);
  l->nin = em_nin_new(r->p->threshold);
  if (!l->idx || !l->scratch || !l->tgt || !l->alpha || !l->f || !l->acc || !l->nin)
    return -ENOMEM;
  em_nin_set_cancel(l->nin, cancel);
  return 0;
}

static void lane_free(const em_plan_t *plan, lane_t *l)
{
  for (size_t g = 0; l->idx && g < plan->ngroups; g++)
    free(l->idx[g]);
  free(l->idx);
  free(l->scratch);
  free(l->tgt);
  free(l->alpha);
  free(l->f);
  em_acc_destroy(&l->acc);
  em_nin_destroy(&l->nin);
}

/* The widest group and the most targets of one map: the lanes' buffer sizes. */
static void buffer_sizes(const em_plan_t *plan, uint32_t *widest, uint32_t *most_tgt)
{
  *widest = *most_tgt = 1;
  for (size_t g = 0; g < plan->ngroups; g++)
    *widest = plan->groups[g].width > *widest ? plan->groups[g].width : *widest;
  for (size_t m = 0; m < plan->nmaps; m++) {
    uint32_t n = 0;
    for (int t = 0; t < plan->maps[m].ntgt; t++)
      n += plan->groups[plan->maps[m].tgt[t].group].count;
    *most_tgt = n > *most_tgt ? n : *most_tgt;
  }
}

static int run_init(run_t *r, const _Atomic int *cancel, em_err_t *err)
{
  uint32_t widest, most_tgt;
  buffer_sizes(r->plan, &widest, &most_tgt);
  pthread_mutex_init(&r->lock, NULL);
  pthread_cond_init(&r->turn, NULL);
  size_t ntasks = r->p->mode == EM_MODE_FULL ? r->plan->nmaps : r->out->nsamples;
  r->nlanes = r->p->threads < 1 ? 1 : (unsigned)r->p->threads;
  r->nlanes = ntasks && ntasks < r->nlanes ? (unsigned)ntasks : r->nlanes;
  r->acc = em_acc_new(r->p->threshold, r->out->q, r->out->nq);
  r->lanes = calloc(r->nlanes, sizeof(*r->lanes));
  r->parked = calloc(r->plan->nmaps ? r->plan->nmaps : 1, sizeof(*r->parked));
  r->spare = calloc(r->plan->nmaps ? r->plan->nmaps : 1, sizeof(*r->spare));
  if (!r->acc || !r->lanes || !r->parked || !r->spare || em_acc_reserve(r->acc, most_tgt + 1) != 0)
    return em_err_set(err, -ENOMEM, "out of memory");
  for (unsigned i = 0; i < r->nlanes; i++) {
    if (lane_init(r, &r->lanes[i], widest, most_tgt, cancel) != 0)
      return em_err_set(err, -ENOMEM, "out of memory");
  }
  return 0;
}

static void run_free(run_t *r)
{
  for (unsigned i = 0; r->lanes && i < r->nlanes; i++)
    lane_free(r->plan, &r->lanes[i]);
  for (size_t m = 0; r->parked && m < r->plan->nmaps; m++)
    em_acc_destroy(&r->parked[m]);
  while (r->nspare)
    em_acc_destroy(&r->spare[--r->nspare]);
  free(r->spare);
  pthread_mutex_destroy(&r->lock);
  pthread_cond_destroy(&r->turn);
  free(r->lanes);
  free(r->parked);
  em_acc_destroy(&r->acc);
}

/* Draws every group's neurons for numpy seed `seed`, in plan order; full mode takes all. */
static void draw_groups(const run_t *r, lane_t *l, uint32_t seed)
{
  em_mt_t mt;
  em_mt_seed(&mt, seed);
  for (size_t g = 0; g < r->plan->ngroups; g++) {
    const em_group_t *gr = &r->plan->groups[g];
    if (r->p->mode == EM_MODE_FULL) {
      for (uint32_t i = 0; i < gr->count; i++)
        l->idx[g][i] = i;
    } else {
      em_mt_choice(&mt, gr->width, gr->count, l->idx[g], l->scratch);
    }
  }
}

/* Adds map i, with the lane's drawn neurons, to the lane's accumulator. */
static int add_map(const run_t *r, lane_t *l, size_t i)
{
  const em_map_t *m = &r->plan->maps[i];
  uint32_t nt = 0;
  for (int t = 0; t < m->ntgt; t++) {
    const em_group_t *g = &r->plan->groups[m->tgt[t].group];
    for (uint32_t k = 0; k < g->count; k++)
      l->tgt[nt++] = l->idx[m->tgt[t].group][k] + m->tgt[t].offset;
  }
  return em_nin_add_map(l->nin, m, l->idx[m->src], r->plan->groups[m->src].count, l->tgt, nt, l->acc, &l->err);
}

static int degenerate_hint(em_err_t *err, const em_params_t *p, uint32_t seed)
{
  char head[96];
  if (p->mode == EM_MODE_FULL)
    snprintf(head, sizeof(head), "full network");
  else
    snprintf(head, sizeof(head), "sample with seed %u", seed);
  em_err_prefix(err, head);
  if (err->code == EM_EDEGENERATE && p->mode != EM_MODE_FULL) {
    size_t n = strlen(err->msg);
    snprintf(err->msg + n, sizeof(err->msg) - n, "; try --mode full or a larger --neurons");
  }
  return err->code;
}

/* tau and spectrum of a finished accumulator into sample s. */
static int finish_sample(const run_t *r, lane_t *l, em_acc_t *acc, em_sample_t *s)
{
  s->nodes = em_acc_nodes(acc);
  int rc = em_acc_tau(acc, s->tau, &l->err);
  if (!rc)
    rc = em_spectrum(r->out->q, s->tau, r->out->nq, r->p->alpha0, l->alpha, l->f, &s->alpha0, &s->width, &l->err);
  if (rc && rc != -ENOMEM)
    rc = degenerate_hint(&l->err, r->p, s->seed);
  return rc;
}

/* Sampled mode: task k is sampled network k. */
static int sample_task(void *ctx, unsigned worker, size_t k)
{
  run_t *r = ctx;
  lane_t *l = &r->lanes[worker];
  l->failed = k;
  em_sample_t *s = &r->out->samples[k];
  s->seed = r->p->seed + (uint32_t)k;
  draw_groups(r, l, s->seed);
  em_acc_reset(l->acc);
  for (size_t i = 0; i < r->plan->nmaps; i++) {
    int rc = add_map(r, l, i);
    if (rc)
      return rc;
  }
  return finish_sample(r, l, l->acc, s);
}

/* Full mode: merges every parked accumulator whose turn has come, in map order. */
static void merge_ready(run_t *r)
{
  for (; r->merged < r->plan->nmaps && r->parked[r->merged]; r->merged++) {
    em_acc_t *a = r->parked[r->merged];
    r->parked[r->merged] = NULL;
    em_acc_merge(r->acc, a);
    em_acc_reset(a);
    r->spare[r->nspare++] = a; /* at most one per map: spare has room */
  }
}

/* Full mode: waits until map i is at most AHEAD maps per lane past the first unmerged
 * one; false when the run stops (a map failed) instead. */
static bool wait_turn(run_t *r, size_t i)
{
  pthread_mutex_lock(&r->lock);
  while (!r->stop && i >= r->merged + (size_t)AHEAD * r->nlanes)
    pthread_cond_wait(&r->turn, &r->lock);
  bool go = !r->stop;
  pthread_mutex_unlock(&r->lock);
  return go;
}

/* Full mode: parks the lane's folded map i, merges what is ready, takes a spare. */
static void park(run_t *r, lane_t *l, size_t i)
{
  pthread_mutex_lock(&r->lock);
  r->parked[i] = l->acc;
  merge_ready(r);
  l->acc = r->nspare ? r->spare[--r->nspare] : NULL; /* else a new one at the next map */
  pthread_cond_broadcast(&r->turn);
  pthread_mutex_unlock(&r->lock);
}

static int stop_run(run_t *r, int rc)
{
  pthread_mutex_lock(&r->lock);
  r->stop = true;
  pthread_cond_broadcast(&r->turn);
  pthread_mutex_unlock(&r->lock);
  return rc;
}

/* Full mode: task i is map i. A lane that gives up waiting returns 0: the run's error
 * is the failed map's. */
static int map_task(void *ctx, unsigned worker, size_t i)
{
  run_t *r = ctx;
  lane_t *l = &r->lanes[worker];
  l->failed = i;
  if (!wait_turn(r, i))
    return 0;
  if (!l->drawn) {
    draw_groups(r, l, 0);
    l->drawn = true;
  }
  if (!l->acc && !(l->acc = em_acc_new_shared(r->acc)))
    return stop_run(r, em_err_set(&l->err, -ENOMEM, "out of memory"));
  em_acc_reset(l->acc);
  int rc = add_map(r, l, i);
  if (rc)
    return stop_run(r, rc);
  park(r, l, i);
  return 0;
}

int em_network_measure(em_ckpt_t *ck, const em_params_t *p, const _Atomic int *cancel, em_plan_t *plan,
                       em_result_t *out, em_err_t *err)
{
  int rc = em_plan_build(ck, p->arch, p->neurons, p->mode == EM_MODE_FULL, plan, err);
  if (rc)
    return rc;
  run_t r = {.p = p, .plan = plan, .out = out};
  rc = run_init(&r, cancel, err);
  size_t failed = 0;
  bool full = p->mode == EM_MODE_FULL;
  if (!rc)
    rc = em_pool_run(r.nlanes, full ? plan->nmaps : out->nsamples, full ? map_task : sample_task, &r, &failed);
  for (unsigned i = 0; rc && r.lanes && i < r.nlanes; i++) { /* the message of the task that failed */
    if (r.lanes[i].err.code && r.lanes[i].failed == failed)
      *err = r.lanes[i].err;
  }
  if (!rc && full) {
    out->samples[0].seed = 0;
    if ((rc = finish_sample(&r, &r.lanes[0], r.acc, &out->samples[0])) != 0)
      *err = r.lanes[0].err;
  }
  run_free(&r);
  return rc;
}
