/* SPDX-License-Identifier: MIT */
/* The networks of one analysis: S sampled networks, or the full one, measured on
 * p->threads threads (docs/METHOD.md steps 2-8; docs/DESIGN.md "Threads"). */
#ifndef EM_NETWORK_H
#define EM_NETWORK_H

#include "em_arch.h"
#include "emerge.h"

/* Builds plan for ck and fills every sample of out (out->samples[k]: seed, tau, alpha0,
 * width, nodes; alloc'd by the caller for out->nq and out->nsamples) for the already
 * resolved mode of p. The samples are bit-identical for every thread count. *cancel
 * non-zero stops the work with EM_ECANCELED (NULL: never). Caller frees plan. */
int em_network_measure(em_ckpt_t *ck, const em_params_t *p, const _Atomic int *cancel, em_plan_t *plan,
                       em_result_t *out, em_err_t *err);

#endif
