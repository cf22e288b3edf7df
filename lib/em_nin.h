/* SPDX-License-Identifier: MIT */
/* The sampled neuron interaction network of one map: reads exactly the weights between
 * its sampled source and target neurons, bins each distance 1/|w|, and folds every
 * source node's histogram into the partition-function accumulator. */
#ifndef EM_NIN_H
#define EM_NIN_H

#include "em_arch.h"
#include "em_spectrum.h"

typedef struct em_nin em_nin_t;

/* A reader for distances up to threshold. Caller owns it; NULL when out of memory. */
em_nin_t *em_nin_new(int threshold);
void em_nin_destroy(em_nin_t **self_p);

/* Reads stop with EM_ECANCELED once *cancel is non-zero (NULL: never). */
void em_nin_set_cancel(em_nin_t *nin, const _Atomic int *cancel);

/* Adds map m with sources src[0..nsrc) (columns) and targets tgt[0..ntgt) (logical rows)
 * to acc. EM_ENONFINITE names the tensor and element of a NaN/Inf; EM_ECHANGED when a
 * file shrank while being read. */
int em_nin_add_map(em_nin_t *nin, const em_map_t *m, const uint32_t *src, uint32_t nsrc, const uint32_t *tgt,
                   uint32_t ntgt, em_acc_t *acc, em_err_t *err);

#endif
