/* SPDX-License-Identifier: MIT */
/* MT19937 exactly as numpy's legacy RandomState uses it, so that sample k of a checkpoint
 * picks the same neurons as the authors' np.random.seed(k); np.random.choice(...). */
#include "em_mt.h"

#include <string.h>

void em_mt_seed(em_mt_t *m, uint32_t seed)
{
  m->mt[0] = seed;
  for (int i = 1; i < 624; i++)
    m->mt[i] = 1812433253u * (m->mt[i - 1] ^ (m->mt[i - 1] >> 30)) + (uint32_t)i;
  m->pos = 624;
}

/* The next state word from words i, i + 1 and the one 397 ahead (mod 624). The matrix
 * term is a mask, not a table lookup, so the loops below vectorise. */
static inline uint32_t twist(uint32_t a, uint32_t b, uint32_t far)
{
  uint32_t y = (a & 0x80000000u) | (b & 0x7fffffffu);
  return far ^ (y >> 1) ^ (-(y & 1u) & 0x9908b0dfu);
}

/* Each new word reads only words not yet rewritten (i + 1, and i + 397 while i < 227) or
 * rewritten at least 227 places before: the loops have no dependence a vector breaks. */
__attribute__((optimize("tree-vectorize"))) static void regenerate(em_mt_t *m)
{
  int i;
  for (i = 0; i < 624 - 397; i++)
    m->mt[i] = twist(m->mt[i], m->mt[i + 1], m->mt[i + 397]);
  for (; i < 623; i++)
    m->mt[i] = twist(m->mt[i], m->mt[i + 1], m->mt[i + 397 - 624]);
  m->mt[623] = twist(m->mt[623], m->mt[0], m->mt[396]);
  for (i = 0; i < 624; i++) {
    uint32_t y = m->mt[i];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    m->out[i] = y ^ (y >> 18);
  }
  m->pos = 0;
}

static inline uint32_t next(em_mt_t *m)
{
  if (m->pos >= 624)
    regenerate(m);
  return m->out[m->pos++];
}

uint32_t em_mt_next(em_mt_t *m) { return next(m); }

static inline uint32_t interval(em_mt_t *m, uint32_t max)
{
  if (max == 0)
    return 0;
  uint32_t mask = UINT32_MAX >> __builtin_clz(max); /* the smallest 2^b - 1 >= max */
  uint32_t v;
  while ((v = next(m) & mask) > max)
    ;
  return v;
}

uint32_t em_mt_interval(em_mt_t *m, uint32_t max) { return interval(m, max); }

void em_mt_choice(em_mt_t *m, uint32_t n, uint32_t k, uint32_t *out, uint32_t *scratch)
{
  for (uint32_t i = 0; i < n; i++)
    scratch[i] = i;
  /* Fisher-Yates with interval(i) unrolled into one word per turn, without a branch on
   * the word: a rejected one swaps element i with itself and i stays. The rejection
   * branch mispredicted on about a quarter of the words, most of this function's time. */
  uint32_t i = n ? n - 1 : 0;
  while (i >= 1) {
    if (m->pos >= 624)
      regenerate(m);
    uint32_t v = m->out[m->pos++] & (UINT32_MAX >> __builtin_clz(i));
    uint32_t kept = v <= i;
    uint32_t j = kept ? v : i;
    uint32_t t = scratch[i];
    scratch[i] = scratch[j];
    scratch[j] = t;
    i -= kept;
  }
  memcpy(out, scratch, (size_t)k * sizeof(*out));
}
