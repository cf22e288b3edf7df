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
#include "em_network.h"
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
  em_plan_t plan = {0};
  if (alloc_result(out, out->nq, ns) != 0)
    rc = em_err_set(err, -ENOMEM, "out of memory");
  else
    rc = em_network_measure(ck, p, cancel, &plan, out, err);
  out->arch = plan.arch;
  if (!rc)
    rc = em_coverage_fill(ck, &plan, out, err);
  em_plan_free(&plan);
  if (!rc)
    rc = summarize(out, err);
  if (rc) {
    em_result_free(out);
    return rc;
  }
  out->elapsed_ms = now_ms() - t0;
  return 0;
}
