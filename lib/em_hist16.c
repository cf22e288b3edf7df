/* SPDX-License-Identifier: MIT */
/* Per-column distance histograms of 16-bit weights (full mode's hot loop).
 *
 * DESIGN. Columns are binned in tiles of TILE, all rows of a chunk at a time, so the
 * tile's counters (TILE x (thr + 2) x 16 bits, ~19 KiB at the default threshold) stay
 * in L1 while the rows stream past.
 * - Portable kernel: only |w| in [1/thr, 1) is ever kept, a range of a few thousand
 *   16-bit patterns, so the table covers that range (7.5 KiB for F16, 1 KiB for BF16,
 *   next to the counters in L1) and one clamp sends everything else to the scratch bin.
 * - AVX-512 kernel (x86-64 CPUs that have it): 16 weights at a time are widened to
 *   float, d = 1/|w| (correctly rounded division), kept when 1 < d <= thr, and the
 *   kept ones' counter addresses are compressed together, so only kept weights cost a
 *   counter update: on real weights roughly half are not kept. Float division and
 *   rounding can bin a value differently from em_bin_of's double arithmetic near a
 *   bin's edge, so the kernel is run over all 65,536 patterns when it is prepared and
 *   used only when it bins every one of them exactly as the table does. */
#include "em_hist16.h"

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TILE 64 /* columns binned together */
#ifndef ROWS_AHEAD
#define ROWS_AHEAD 32
#endif /* rows binned before their counters are updated: the updates then read
                        offsets long stored, never waiting on a just-written vector */

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX512_KERNEL 1
#include <immintrin.h>
#endif

/* The exact bin of 16-bit pattern v from the caller's table: 1..thr, or 0 when not kept
 * (the table's thr + 1, NaN/Inf, included). */
static int exact_bin(const int16_t *bins, unsigned v, int thr)
{
  return bins[v] > thr ? 0 : bins[v];
}

/* ---------------------------------------------------------------- portable */

static void add_portable(const em_hist16_t *h, const uint8_t *data, size_t row_bytes, size_t nrows, uint32_t k0,
                         uint32_t ncols, uint16_t *hist, size_t stride)
{
  const uint8_t *restrict tab = h->tab;
  const uint32_t lo = h->lo, span = h->span;
  for (; k0 < ncols; k0 += TILE) {
    uint32_t k1 = ncols - k0 < TILE ? ncols : k0 + TILE;
    for (size_t r = 0; r < nrows; r++) {
      const uint8_t *restrict row = data + r * row_bytes;
      uint16_t *restrict hk = hist + (size_t)k0 * stride;
      for (uint32_t k = k0; k < k1; k++, hk += stride) {
        uint16_t bits;
        memcpy(&bits, row + 2 * (size_t)k, 2);
        uint32_t i = (uint32_t)(le16toh(bits) & 0x7fff) - lo; /* wraps below lo: clamped too */
        hk[tab[i < span ? i : span]]++;
      }
    }
  }
}

/* ---------------------------------------------------------------- AVX-512 */

#ifdef HAVE_AVX512_KERNEL
#define AVX512 __attribute__((target("avx512f")))

/* Bins of 16 weights, and which are kept (1 < 1/|w| <= thr; NaN never); *bad gets
 * the NaN/Inf among them. */
AVX512 static inline __m512i bins16(__m256i raw, int bf16, __m512 thr, __mmask16 *keep, __mmask16 *bad)
{
  __m512 x = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16)) : _mm512_cvtph_ps(raw);
  __m512 one = _mm512_set1_ps(1.0f), ax = _mm512_abs_ps(x);
  *bad |= _mm512_cmp_ps_mask(ax, _mm512_set1_ps(__builtin_inff()), _CMP_NLT_UQ);
  __m512 d = _mm512_div_ps(one, ax);
  *keep = _mm512_cmp_ps_mask(d, one, _CMP_GT_OQ) & _mm512_cmp_ps_mask(d, thr, _CMP_LE_OQ);
  return _mm512_cvt_roundps_epi32(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* Counter offsets of the kept weights among TILE columns of one row, appended at out;
 * returns how many. */
AVX512 static inline uint32_t kept_offsets(const uint8_t *row, uint32_t vecs, int bf16, __m512 thr,
                                           const __m512i *colv, uint32_t *out, __mmask16 *bad)
{
  uint32_t n = 0;
  for (uint32_t v = 0; v < vecs; v++) {
    __mmask16 keep;
    __m512i b = bins16(_mm256_loadu_si256((const __m256i *)(row + 32 * (size_t)v)), bf16, thr, &keep, bad);
    __m512i idx = _mm512_maskz_compress_epi32(keep, _mm512_add_epi32(b, colv[v]));
    _mm512_storeu_si512(out + n, idx);
    n += (uint32_t)__builtin_popcount(keep);
  }
  return n;
}

/* Columns 0..ncols rounded down to 16 go through the vector path; returns that count,
 * and in *nonfinite whether one of them held NaN/Inf. */
AVX512 static uint32_t add_avx512(const em_hist16_t *h, const uint8_t *data, size_t row_bytes, size_t nrows,
                                  uint32_t ncols, uint16_t *hist, size_t stride, bool *nonfinite)
{
  __mmask16 bad = 0;
  uint32_t done = ncols & ~15u, offs[ROWS_AHEAD * TILE + 16];
  int bf16 = h->dt == EM_DT_BF16;
  __m512 thr = _mm512_set1_ps((float)h->thr);
  __m512i colv[TILE / 16];
  for (uint32_t v = 0; v < TILE / 16; v++)
    colv[v] = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32((int)(16 * v)),
                                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)),
                                 _mm512_set1_epi32((int)stride));
  for (uint32_t k0 = 0; k0 < done; k0 += TILE) {
    uint32_t vecs = (done - k0 < TILE ? done - k0 : TILE) / 16;
    uint16_t *restrict hk = hist + (size_t)k0 * stride;
    for (size_t r0 = 0; r0 < nrows; r0 += ROWS_AHEAD) {
      uint32_t n = 0;
      for (size_t r = r0; r < nrows && r < r0 + ROWS_AHEAD; r++)
        n += kept_offsets(data + r * row_bytes + 2 * (size_t)k0, vecs, bf16, thr, colv, offs + n, &bad);
#pragma GCC unroll 8
      for (uint32_t i = 0; i < n; i++)
        hk[offs[i]]++;
    }
  }
  *nonfinite = bad != 0;
  return done;
}

/* Whether the vector binning agrees with the exact bin on every 16-bit pattern. */
AVX512 static int avx512_exact(const em_hist16_t *h, const int16_t *bins)
{
  __m512 thr = _mm512_set1_ps((float)h->thr);
  for (unsigned v0 = 0; v0 < 65536; v0 += 16) {
    uint16_t raw[16];
    int32_t got[16];
    for (unsigned i = 0; i < 16; i++)
      raw[i] = htole16((uint16_t)(v0 + i));
    __mmask16 keep, bad = 0;
    _mm512_storeu_si512(got, bins16(_mm256_loadu_si256((const __m256i *)raw), h->dt == EM_DT_BF16, thr, &keep, &bad));
    for (unsigned i = 0; i < 16; i++) {
      if (((keep >> i) & 1 ? got[i] : 0) != exact_bin(bins, v0 + i, h->thr))
        return 0;
    }
  }
  return 1;
}

static int vector_usable(const em_hist16_t *h, const int16_t *bins)
{
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && avx512_exact(h, bins);
}
#else
static int vector_usable(const em_hist16_t *h, const int16_t *bins)
{
  (void)h, (void)bins;
  return 0;
}
#endif

/* ---------------------------------------------------------------- interface */

int em_hist16_init(em_hist16_t *h, em_dtype_t dt, int thr, const int16_t *bins)
{
  memset(h, 0, sizeof(*h));
  if ((dt != EM_DT_F16 && dt != EM_DT_BF16) || thr < 1 || thr > 254)
    return -EINVAL;
  h->dt = dt;
  h->thr = thr;
  unsigned lo = 0x8000, hi = 0;
  for (unsigned m = 0; m < 0x8000; m++) {
    if (exact_bin(bins, m, thr)) {
      lo = m < lo ? m : lo;
      hi = m;
    }
  }
  if (lo > hi) /* no value is ever kept (cannot happen for thr >= 2) */
    lo = hi = 0;
  h->lo = (uint16_t)lo;
  h->span = (uint16_t)(hi - lo + 1);
  if (!(h->tab = malloc((size_t)h->span + 1)))
    return -ENOMEM;
  for (unsigned i = 0; i < h->span; i++) /* kept values form one range: |w| in [1/thr, 1) */
    h->tab[i] = (uint8_t)exact_bin(bins, lo + i, thr);
  h->tab[h->span] = 0;
  h->vector = vector_usable(h, bins);
  return 0;
}

void em_hist16_free(em_hist16_t *h)
{
  free(h->tab);
  h->tab = NULL;
}

int em_hist16_portable(em_hist16_t *h)
{
  int was = h->vector;
  h->vector = 0;
  return was;
}

bool em_hist16_add(const em_hist16_t *h, const uint8_t *data, size_t row_bytes, size_t nrows, uint32_t ncols,
                   uint16_t *hist, size_t stride)
{
  uint32_t k0 = 0;
  bool bad = false;
#ifdef HAVE_AVX512_KERNEL
  if (h->vector)
    k0 = add_avx512(h, data, row_bytes, nrows, ncols, hist, stride, &bad);
#endif
  if (k0 == ncols)
    return bad;
  add_portable(h, data, row_bytes, nrows, k0, ncols, hist, stride);
  for (size_t r = 0; r < nrows && !bad; r++) /* the portable kernel sends NaN/Inf to the scratch bin */
    bad = em_dtype_any_nonfinite(h->dt, data + r * row_bytes + 2 * (size_t)k0, ncols - k0);
  return bad;
}
