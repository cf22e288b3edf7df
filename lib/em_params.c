/* SPDX-License-Identifier: MIT */
/* Analysis parameters: defaults, checks, and setting one by name from text (flags and
 * config keys share these names: samples, neurons, seed, threshold, q_min, q_max,
 * q_step, alpha0, mode, full (= mode full), arch, threads). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"
#include "em_spectrum.h"
#include "emerge.h"

#define MAX_SAMPLES 1000
#define MAX_NEURONS 65536
#define MAX_THRESHOLD 10000
#define MAX_THREADS 64

void em_params_default(em_params_t *p)
{
  *p = (em_params_t){.samples = 10, .neurons = 32, .seed = 0, .threshold = 150, .q_min = -3, .q_max = 3,
                     .q_step = 0.1, .alpha0 = EM_ALPHA0_CENTRAL, .mode = EM_MODE_AUTO, .arch = EM_ARCH_AUTO, .threads = 1};
}

int em_params_check(const em_params_t *p, em_err_t *err)
{
  if (p->samples < 1 || p->samples > MAX_SAMPLES)
    return em_err_set(err, -EINVAL, "samples must be 1..%d, not %d", MAX_SAMPLES, p->samples);
  if (p->neurons < 1 || p->neurons > MAX_NEURONS)
    return em_err_set(err, -EINVAL, "neurons must be 1..%d, not %d", MAX_NEURONS, p->neurons);
  if ((uint64_t)p->seed + (uint64_t)p->samples - 1 > UINT32_MAX)
    return em_err_set(err, -EINVAL, "seed + samples - 1 must fit numpy's 32-bit seeds");
  if (p->threshold < 2 || p->threshold > MAX_THRESHOLD)
    return em_err_set(err, -EINVAL, "threshold must be 2..%d, not %d", MAX_THRESHOLD, p->threshold);
  if (p->threads < 0 || p->threads > MAX_THREADS) /* 0, as in a zeroed struct: one */
    return em_err_set(err, -EINVAL, "threads must be 1..%d, not %d", MAX_THREADS, p->threads);
  if (p->alpha0 != EM_ALPHA0_CENTRAL && p->alpha0 != EM_ALPHA0_REFERENCE)
    return em_err_set(err, -EINVAL, "alpha0 must be central or reference");
  if (p->mode < EM_MODE_AUTO || p->mode > EM_MODE_FULL)
    return em_err_set(err, -EINVAL, "unknown mode");
  if (p->arch < EM_ARCH_AUTO || p->arch > EM_ARCH_CNN)
    return em_err_set(err, -EINVAL, "unknown arch");
  double *q = NULL;
  size_t nq = 0;
  int rc = em_qgrid(p, &q, &nq, err);
  if (!rc && p->alpha0 == EM_ALPHA0_CENTRAL) {
    bool has_zero = false;
    for (size_t i = 1; i + 1 < nq; i++)
      has_zero |= q[i] == 0.0;
    if (!has_zero)
      rc = em_err_set(err, -EINVAL, "alpha0=central needs q = 0 strictly inside the q grid");
  }
  free(q);
  return rc;
}

static int parse_long(const char *key, const char *v, long lo, long hi, long *out, em_err_t *err)
{
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi)
    return em_err_set(err, -EINVAL, "%s: '%s' is not an integer in %ld..%ld", key, v ? v : "", lo, hi);
  *out = x;
  return 0;
}

static int parse_double(const char *key, const char *v, double *out, em_err_t *err)
{
  char *end;
  double x = v ? strtod(v, &end) : 0;
  if (!v || !*v || *end || !isfinite(x))
    return em_err_set(err, -EINVAL, "%s: '%s' is not a number", key, v ? v : "");
  *out = x;
  return 0;
}

int em_params_set(em_params_t *p, const char *key, const char *value, em_err_t *err)
{
  long n = 0;
  int rc = 0;
  if (strcmp(key, "samples") == 0) {
    if (!(rc = parse_long(key, value, 1, MAX_SAMPLES, &n, err)))
      p->samples = (int)n;
  } else if (strcmp(key, "neurons") == 0) {
    if (!(rc = parse_long(key, value, 1, MAX_NEURONS, &n, err)))
      p->neurons = (int)n;
  } else if (strcmp(key, "seed") == 0) {
    if (!(rc = parse_long(key, value, 0, (long)UINT32_MAX, &n, err)))
      p->seed = (uint32_t)n;
  } else if (strcmp(key, "threshold") == 0) {
    if (!(rc = parse_long(key, value, 2, MAX_THRESHOLD, &n, err)))
      p->threshold = (int)n;
  } else if (strcmp(key, "threads") == 0) {
    if (!(rc = parse_long(key, value, 1, MAX_THREADS, &n, err)))
      p->threads = (int)n;
  } else if (strcmp(key, "q_min") == 0) {
    rc = parse_double(key, value, &p->q_min, err);
  } else if (strcmp(key, "q_max") == 0) {
    rc = parse_double(key, value, &p->q_max, err);
  } else if (strcmp(key, "q_step") == 0) {
    rc = parse_double(key, value, &p->q_step, err);
  } else if (strcmp(key, "alpha0") == 0) {
    if (value && strcmp(value, "central") == 0)
      p->alpha0 = EM_ALPHA0_CENTRAL;
    else if (value && strcmp(value, "reference") == 0)
      p->alpha0 = EM_ALPHA0_REFERENCE;
    else
      rc = em_err_set(err, -EINVAL, "alpha0: '%s' is not central or reference", value ? value : "");
  } else if (strcmp(key, "mode") == 0) {
    if (!value || em_mode_parse(value, &p->mode) != 0)
      rc = em_err_set(err, -EINVAL, "mode: '%s' is not sampled, full or auto", value ? value : "");
  } else if (strcmp(key, "full") == 0) { /* the older spelling of mode full */
    if (!value || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
      p->mode = EM_MODE_FULL;
    else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
      p->mode = EM_MODE_SAMPLED;
    else
      rc = em_err_set(err, -EINVAL, "full: '%s' is not true or false", value);
  } else if (strcmp(key, "arch") == 0) {
    if (!value || em_arch_parse(value, &p->arch) != 0)
      rc = em_err_set(err, -EINVAL, "arch: '%s' is not one of auto, gpt-neox, llama, gpt2, bert, torch-transformer, cnn, mlp",
                      value ? value : "");
  } else {
    rc = em_err_set(err, -ENOENT, "unknown analysis parameter '%s'", key);
  }
  return rc;
}

static const char *const mode_names[] = {[EM_MODE_AUTO] = "auto", [EM_MODE_SAMPLED] = "sampled",
                                         [EM_MODE_FULL] = "full"};

int em_mode_parse(const char *name, em_mode_t *out)
{
  for (int m = EM_MODE_AUTO; m <= EM_MODE_FULL; m++)
    if (name && strcmp(name, mode_names[m]) == 0) {
      *out = (em_mode_t)m;
      return 0;
    }
  return -1;
}

const char *em_mode_name(em_mode_t mode)
{
  return mode >= EM_MODE_AUTO && mode <= EM_MODE_FULL ? mode_names[mode] : "?";
}
