/* SPDX-License-Identifier: MIT */
/* The hot loop of full mode: per-column distance histograms of whole rows of F16/BF16
 * weights, with 16-bit counters.
 *
 * A 16-bit weight's bin depends only on its bits, so every kernel here is checked
 * against the exact bin table (em_bin_of on every one of the 65,536 values, the table
 * the reader already builds) when it is prepared: a kernel that would bin any value differently is never used, and the
 * histograms are bit-identical whichever kernel runs. */
#ifndef EM_HIST16_H
#define EM_HIST16_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_dtype.h"

/* Largest number of rows one histogram may count before a 16-bit counter could wrap. */
#define EM_HIST16_MAX_ROWS 65535u

typedef struct em_hist16 {
  em_dtype_t dt;
  int thr;
  uint16_t lo;       /* smallest |w| bits with a kept bin */
  uint16_t span;     /* |w| bits lo..lo+span-1 may be kept; tab[span] is 0 */
  uint8_t *tab;      /* span + 1 bins, for the portable kernel */
  int vector;        /* 1: the AVX-512 kernel passed its check on this CPU */
} em_hist16_t;

/* Prepares the kernels of dt (F16 or BF16) for distances up to thr (<= 254). bins is
 * the exact bin of every 16-bit pattern, as em_nin's table holds it: em_bin_of of its
 * value, with thr + 1 for NaN/Inf. 0, or -EINVAL for another dtype or threshold, -ENOMEM. */
int em_hist16_init(em_hist16_t *h, em_dtype_t dt, int thr, const int16_t *bins);
void em_hist16_free(em_hist16_t *h);

/* Adds nrows rows of ncols little-endian weights (row r at data + r * row_bytes) to
 * hist: column k's bin b is hist[k * stride + b], b in 1..thr (bin 0 is scratch: what
 * it holds differs between kernels). Returns true when a weight was NaN or Inf (the
 * counts are then incomplete: an error for the caller to name). At most
 * EM_HIST16_MAX_ROWS rows may go into one histogram. */
bool em_hist16_add(const em_hist16_t *h, const uint8_t *data, size_t row_bytes, size_t nrows, uint32_t ncols,
                   uint16_t *hist, size_t stride);

/* Forces the portable kernel (tests compare the two); returns whether vector was on. */
int em_hist16_portable(em_hist16_t *h);

#endif
