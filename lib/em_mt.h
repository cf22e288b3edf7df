/* SPDX-License-Identifier: MIT */
/* numpy-compatible sampling: legacy RandomState (MT19937) seeded with np.random.seed(k),
 * and choice(n, k, replace=False), which equals permutation(n)[:k]. */
#ifndef EM_MT_H
#define EM_MT_H

#include <stdint.h>

typedef struct em_mt {
  uint32_t mt[624];
  uint32_t out[624]; /* mt tempered, all at once at each regeneration (it vectorises) */
  int pos;
} em_mt_t;

/* np.random.seed(seed): init_genrand. */
void em_mt_seed(em_mt_t *m, uint32_t seed);
uint32_t em_mt_next(em_mt_t *m);
/* Uniform integer in [0, max] by masked rejection, as numpy's random_interval. */
uint32_t em_mt_interval(em_mt_t *m, uint32_t max);
/* out[0..k) = permutation(n)[:k], with k <= n; scratch holds n values. */
void em_mt_choice(em_mt_t *m, uint32_t n, uint32_t k, uint32_t *out, uint32_t *scratch);

#endif
