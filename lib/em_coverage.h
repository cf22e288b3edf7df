/* SPDX-License-Identifier: MIT */
/* What an analysis measured: the weight tensors its plan reads, the ones it leaves out and
 * the fraction of the checkpoint's weights that is (docs/FORMATS.md "Coverage"). */
#ifndef EM_COVERAGE_H
#define EM_COVERAGE_H

#include "em_arch.h"
#include "emerge.h"

/* Coverage below this is told in analyze, the log and the result's own number. */
#define EM_COVERAGE_LOW 0.5

/* Fills out's tensors, skipped and coverage from the plan over ck. -ENOMEM only. */
int em_coverage_fill(const em_ckpt_t *ck, const em_plan_t *plan, em_result_t *out, em_err_t *err);
void em_coverage_free(em_result_t *r);
/* When r's coverage is low, writes what it measured and what it left out into buf and
 * returns true ("E describes 12% of the weights: ..."). */
bool em_coverage_low(const em_result_t *r, char *buf, size_t len);

#endif
