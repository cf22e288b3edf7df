/* SPDX-License-Identifier: MIT */
/* One checkpoint's analysis: S sampled networks (or the full one), their spectra, and
 * the sample means the degree of emergence is computed from (docs/METHOD.md, steps 2 and 9-10). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "em_arch.h"
#include "em_coverage.h"
#include "em_err.h"
#include "em_mt.h"
#include "em_nin.h"
#include "em_spectrum.h"
#include "emerge.h"

int em_emergence(double alpha0, double width, double base_alpha0, double base_width, double *out, em_err_t *err)
{
  if (!(alpha0 > 0) || !(base_alpha0 > 0))
    return em_err_set(err, EM_EDEGENERATE, "emergence needs positive alpha0 (got %g, baseline %g)", alpha0,
                      base_alpha0);
  if (!(base_width > 0))
    return em_err_set(err, EM_EDEGENERATE, "emergence needs a positive baseline width (got %g)", base_width);
  *out = (width / base_width) * log(base_alpha0 / alpha0);
  return 0;
}

/* E of the pairs other than `skip` (SIZE_MAX: all of them), from their means. */
static int pairs_emergence(const em_sample_t *s, const em_sample_t *b, size_t n, size_t skip, double *out)
{
  double a0 = 0, w = 0, ba0 = 0, bw = 0;
  for (size_t i = 0; i < n; i++) {
    if (i == skip)
      continue;
    a0 += s[i].alpha0, w += s[i].width, ba0 += b[i].alpha0, bw += b[i].width;
  }
  return em_emergence(a0, w, ba0, bw, out, NULL); /* the common 1/(n-1) cancels in both ratios */
}

int em_emergence_se(const em_sample_t *s, size_t n, const em_sample_t *base, size_t nbase, double *out,
                    em_err_t *err)
{
  if (n == 1 && nbase == 1) { /* full mode: the one network is measured, not sampled */
    *out = 0;
    return 0;
  }
  if (n != nbase || n < 2)
    return em_err_set(err, EM_EDEGENERATE, "standard error needs the same number (>= 2) of samples as the "
                                           "baseline (have %zu and %zu)", n, nbase);
  for (size_t i = 0; i < n; i++)
    if (s[i].seed != base[i].seed)
      return em_err_set(err, EM_EDEGENERATE, "sample %zu has seed %u, the baseline's %u: not paired", i, s[i].seed,
                        base[i].seed);
  double *loo = malloc(n * sizeof(*loo)), mean = 0, ss = 0;
  if (!loo)
    return em_err_set(err, -ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    if (pairs_emergence(s, base, n, i, &loo[i]) != 0) {
      free(loo);
      return em_err_set(err, EM_EDEGENERATE, "E without sample %zu is undefined", i);
    }
    mean += loo[i] / (double)n;
  }
  for (size_t i = 0; i < n; i++)
    ss += (loo[i] - mean) * (loo[i] - mean);
  free(loo);
  *out = sqrt((double)(n - 1) / (double)n * ss);
  return 0;
}

void em_result_free(em_result_t *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->nsamples; i++)
    free(r->samples[i].tau);
  free(r->samples);
  free(r->q);
  free(r->tau);
  free(r->alpha);
  free(r->f);
  em_coverage_free(r);
  memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- one network */

typedef struct run {
  const em_params_t *p;
  const _Atomic int *cancel; /* NULL: never */
  em_plan_t plan;
  em_acc_t *acc;
  em_nin_t *nin;
  uint32_t **idx;       /* per group: its drawn neuron indices */
  uint32_t *scratch;    /* permutation buffer: widest group */
  uint32_t *tgt;        /* expanded targets of one map */
} run_t;

static int run_init(run_t *r, em_ckpt_t *ck, const em_params_t *p, const double *q, size_t nq, em_err_t *err)
{
  r->p = p;
  int rc = em_plan_build(ck, p->arch, p->neurons, p->mode == EM_MODE_FULL, &r->plan, err);
  if (rc)
    return rc;
  uint32_t widest = 1, most_tgt = 1;
  r->idx = calloc(r->plan.ngroups, sizeof(*r->idx));
  for (size_t g = 0; r->idx && g < r->plan.ngroups; g++) {
    widest = r->plan.groups[g].width > widest ? r->plan.groups[g].width : widest;
    if (!(r->idx[g] = malloc(r->plan.groups[g].count * sizeof(**r->idx))))
      return em_err_set(err, -ENOMEM, "out of memory");
  }
  for (size_t m = 0; m < r->plan.nmaps; m++) {
    uint32_t n = 0;
    for (int t = 0; t < r->plan.maps[m].ntgt; t++)
      n += r->plan.groups[r->plan.maps[m].tgt[t].group].count;
    most_tgt = n > most_tgt ? n : most_tgt;
  }
  r->scratch = malloc(widest * sizeof(*r->scratch));
  r->tgt = malloc(most_tgt * sizeof(*r->tgt));
  r->acc = em_acc_new(p->threshold, q, nq);
  r->nin = em_nin_new(p->threshold);
  if (!r->idx || !r->scratch || !r->tgt || !r->acc || !r->nin || em_acc_reserve(r->acc, most_tgt + 1) != 0)
    return em_err_set(err, -ENOMEM, "out of memory");
  return 0;
}

static void run_free(run_t *r)
{
  for (size_t g = 0; r->idx && g < r->plan.ngroups; g++)
    free(r->idx[g]);
  free(r->idx);
  free(r->scratch);
  free(r->tgt);
  em_acc_destroy(&r->acc);
  em_nin_destroy(&r->nin);
  em_plan_free(&r->plan);
}

/* Draws every group's neurons for numpy seed `seed`, in plan order; full mode takes all. */
static void draw_groups(run_t *r, uint32_t seed)
{
  em_mt_t mt;
  em_mt_seed(&mt, seed);
  for (size_t g = 0; g < r->plan.ngroups; g++) {
    const em_group_t *gr = &r->plan.groups[g];
    if (r->p->mode == EM_MODE_FULL) {
      for (uint32_t i = 0; i < gr->count; i++)
        r->idx[g][i] = i;
    } else {
      em_mt_choice(&mt, gr->width, gr->count, r->idx[g], r->scratch);
    }
  }
}

/* tau of the network drawn with `seed`; *nodes = nodes kept. */
static int run_network(run_t *r, uint32_t seed, double *tau, size_t *nodes, em_err_t *err)
{
  draw_groups(r, seed);
  em_acc_reset(r->acc);
  for (size_t i = 0; i < r->plan.nmaps; i++) {
    const em_map_t *m = &r->plan.maps[i];
    uint32_t nt = 0;
    for (int t = 0; t < m->ntgt; t++) {
      const em_group_t *g = &r->plan.groups[m->tgt[t].group];
      for (uint32_t k = 0; k < g->count; k++)
        r->tgt[nt++] = r->idx[m->tgt[t].group][k] + m->tgt[t].offset;
    }
    int rc = em_nin_add_map(r->nin, m, r->idx[m->src], r->plan.groups[m->src].count, r->tgt, nt, r->acc, err);
    if (rc)
      return rc;
  }
  *nodes = em_acc_nodes(r->acc);
  return em_acc_tau(r->acc, tau, err);
}

/* ---------------------------------------------------------------- the result */

static int alloc_result(em_result_t *out, size_t nq, size_t ns)
{
  out->tau = calloc(nq, sizeof(double));
  out->alpha = calloc(nq, sizeof(double));
  out->f = calloc(nq, sizeof(double));
  out->samples = calloc(ns, sizeof(*out->samples));
  if (!out->tau || !out->alpha || !out->f || !out->samples)
    return -ENOMEM;
  for (size_t i = 0; i < ns; i++) {
    if (!(out->samples[i].tau = calloc(nq, sizeof(double))))
      return -ENOMEM;
    out->nsamples++;
  }
  return 0;
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

/* Sample means; the mean spectrum is computed from the mean tau. */
static int summarize(em_result_t *out, em_err_t *err)
{
  size_t nq = out->nq, ns = out->nsamples;
  for (size_t k = 0; k < ns; k++) {
    out->alpha0 += out->samples[k].alpha0 / (double)ns;
    out->width += out->samples[k].width / (double)ns;
    out->nodes += out->samples[k].nodes;
    for (size_t i = 0; i < nq; i++)
      out->tau[i] += out->samples[k].tau[i] / (double)ns;
  }
  for (size_t k = 0; ns > 1 && k < ns; k++) { /* SE of a mean: sd / sqrt(n), the jackknife's value too */
    double da = out->samples[k].alpha0 - out->alpha0, dw = out->samples[k].width - out->width;
    out->alpha0_se += da * da / (double)(ns - 1) / (double)ns;
    out->width_se += dw * dw / (double)(ns - 1) / (double)ns;
  }
  out->alpha0_se = sqrt(out->alpha0_se);
  out->width_se = sqrt(out->width_se);
  double a0, w;
  int rc = em_spectrum(out->q, out->tau, nq, out->params.alpha0, out->alpha, out->f, &a0, &w, err);
  if (rc == 0 && !(out->alpha0 > 0))
    rc = em_err_set(err, EM_EDEGENERATE, "mean alpha0 = %g is not positive", out->alpha0);
  return rc;
}

static double now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int em_mode_resolve(em_ckpt_t *ck, const em_params_t *p, em_mode_t *out, uint64_t *weights, em_err_t *err)
{
  em_plan_t plan;
  int rc = em_plan_build(ck, p->arch, p->neurons, true, &plan, err);
  if (rc)
    return rc;
  uint64_t n = 0;
  for (size_t i = 0; i < plan.nmaps; i++)
    n += (uint64_t)plan.maps[i].in_dim * plan.maps[i].out_dim * plan.maps[i].taps; /* weights read, not edges */
  em_plan_free(&plan);
  *weights = n;
  *out = p->mode != EM_MODE_AUTO ? p->mode : n <= EM_AUTO_FULL_WEIGHTS ? EM_MODE_FULL : EM_MODE_SAMPLED;
  return 0;
}

int em_analyze(em_ckpt_t *ck, const em_params_t *p, em_result_t *out, em_err_t *err)
{
  return em_analyze_cancellable(ck, p, NULL, out, err);
}

int em_analyze_cancellable(em_ckpt_t *ck, const em_params_t *p, const _Atomic int *cancel, em_result_t *out,
                           em_err_t *err)
{
  em_err_t local;
  if (!err)
    err = &local;
  memset(out, 0, sizeof(*out));
  double t0 = now_ms();
  int rc = em_params_check(p, err);
  if (rc)
    return rc;
  em_params_t resolved = *p; /* auto becomes what it chose for this checkpoint */
  uint64_t weights;
  if (p->mode == EM_MODE_AUTO && (rc = em_mode_resolve(ck, p, &resolved.mode, &weights, err)) != 0)
    return rc;
  p = &resolved;
  out->params = *p;
  if ((rc = em_qgrid(p, &out->q, &out->nq, err)) != 0)
    return rc;
  size_t ns = p->mode == EM_MODE_FULL ? 1 : (size_t)p->samples;
  run_t r = {0};
  if (alloc_result(out, out->nq, ns) != 0)
    rc = em_err_set(err, -ENOMEM, "out of memory");
  else
    rc = run_init(&r, ck, p, out->q, out->nq, err);
  r.cancel = cancel;
  if (!rc)
    em_nin_set_cancel(r.nin, cancel);
  if (!rc)
    rc = em_coverage_fill(ck, &r.plan, out, err);
  out->arch = r.plan.arch;
  for (size_t k = 0; k < ns && !rc; k++) {
    em_sample_t *s = &out->samples[k];
    s->seed = p->mode == EM_MODE_FULL ? 0 : p->seed + (uint32_t)k;
    rc = run_network(&r, s->seed, s->tau, &s->nodes, err);
    if (!rc)
      rc = em_spectrum(out->q, s->tau, out->nq, p->alpha0, out->alpha, out->f, &s->alpha0, &s->width, err);
    if (rc && rc != -ENOMEM && rc != EM_ENONFINITE && rc != -ESTALE && rc != EM_EUNSUPPORTED && rc != EM_ECANCELED)
      rc = degenerate_hint(err, p, s->seed);
  }
  run_free(&r);
  if (!rc)
    rc = summarize(out, err);
  if (rc) {
    em_result_free(out);
    return rc;
  }
  out->elapsed_ms = now_ms() - t0;
  return 0;
}
