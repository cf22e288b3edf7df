/* SPDX-License-Identifier: MIT */
#include "em_coverage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"

static bool in_plan(const em_plan_t *plan, const em_tensor_t *t)
{
  for (size_t m = 0; m < plan->nmaps; m++)
    for (int k = 0; k < plan->maps[m].nparts; k++)
      if (plan->maps[m].parts[k].t == t)
        return true;
  return false;
}

static const char *why_skipped(const em_tensor_t *t, em_arch_t arch)
{
  if (t->rank >= 3)
    return arch == EM_ARCH_CNN ? "a convolution kernel off the cnn chain (its channels do not follow the layer before)"
                               : "a convolution kernel, which only the cnn mapping reads";
  return arch == EM_ARCH_MLP ? "not on the mlp chain (its shape does not follow the layer before)"
                             : "not one of the mapping's per-block matrices";
}

int em_coverage_fill(const em_ckpt_t *ck, const em_plan_t *plan, em_result_t *out, em_err_t *err)
{
  out->tensors = calloc(ck->ntensors ? ck->ntensors : 1, sizeof(*out->tensors));
  out->skipped = calloc(ck->ntensors ? ck->ntensors : 1, sizeof(*out->skipped));
  if (!out->tensors || !out->skipped)
    return em_err_set(err, -ENOMEM, "out of memory");
  uint64_t used = 0, all = 0;
  for (size_t i = 0; i < ck->ntensors; i++) {
    const em_tensor_t *t = &ck->tensors[i];
    bool read = in_plan(plan, t);
    if (!read && !em_arch_is_weight(t))
      continue;
    char *name = strdup(t->name);
    if (!name)
      return em_err_set(err, -ENOMEM, "out of memory");
    if (read)
      out->tensors[out->ntensors++] = name;
    else
      out->skipped[out->nskipped++] = (em_skipped_t){name, why_skipped(t, plan->arch)};
    all += t->numel;
    used += read ? t->numel : 0;
  }
  out->coverage = all ? (double)used / (double)all : 1.0;
  return 0;
}

void em_coverage_free(em_result_t *r)
{
  for (size_t i = 0; i < r->ntensors; i++)
    free(r->tensors[i]);
  for (size_t i = 0; i < r->nskipped; i++)
    free(r->skipped[i].name);
  free(r->tensors);
  free(r->skipped);
}

bool em_coverage_low(const em_result_t *r, char *buf, size_t len)
{
  if (r->coverage >= EM_COVERAGE_LOW)
    return false;
  const em_skipped_t *first = r->nskipped ? &r->skipped[0] : NULL;
  snprintf(buf, len, "E describes only %.0f%% of the weights: the %s mapping read %zu weight tensor%s and left "
           "out %zu%s%s%s%s%s", 100.0 * r->coverage, em_arch_name(r->arch), r->ntensors, r->ntensors == 1 ? "" : "s",
           r->nskipped, first ? " (" : "", first ? first->name : "", first ? ": " : "", first ? first->why : "",
           first ? (r->nskipped > 1 ? ", ...)" : ")") : "");
  return true;
}
