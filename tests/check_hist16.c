/* SPDX-License-Identifier: MIT */
/* Full mode's 16-bit histogram kernels against em_bin_of, weight by weight. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "em_hist16.h"
#include "em_spectrum.h"
#include "suites.h"

#define COLS 83 /* not a multiple of 16 or of a tile: the vector kernel's tail goes the portable way */
#define ROWS 800

/* Counts the naive way: every weight through em_dtype_to_double and em_bin_of. */
static void naive(em_dtype_t dt, int thr, const uint16_t *w, size_t rows, uint32_t cols, uint32_t *want, size_t stride)
{
  for (size_t r = 0; r < rows; r++) {
    for (uint32_t k = 0; k < cols; k++) {
      uint8_t le[2] = {(uint8_t)w[r * cols + k], (uint8_t)(w[r * cols + k] >> 8)};
      int b = em_bin_of(em_dtype_to_double(dt, le), thr);
      if (b > 0)
        want[k * stride + (size_t)b]++;
    }
  }
}

/* The exact bins as the reader's table holds them: em_bin_of of every pattern, thr + 1
 * for NaN/Inf. The caller frees it. */
static int16_t *exact_table(em_dtype_t dt, int thr)
{
  int16_t *t = malloc(65536 * sizeof(*t));
  for (unsigned v = 0; v < 65536; v++) {
    uint8_t le[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    int b = em_bin_of(em_dtype_to_double(dt, le), thr);
    t[v] = (int16_t)(b < 0 ? thr + 1 : b);
  }
  return t;
}

/* Prepares h over its exact table. */
static void init(em_hist16_t *h, em_dtype_t dt, int thr)
{
  int16_t *bins = exact_table(dt, thr);
  ck_assert_int_eq(em_hist16_init(h, dt, thr, bins), 0);
  free(bins);
}

/* Weights around the kept range |w| in [1/thr, 1), both signs, every edge of a bin
 * near its neighbours: random patterns of magnitude near lo..lo+span, and some anywhere
 * (NaN/Inf excluded: the caller screens them). */
static void fill(const em_hist16_t *h, uint16_t *w, size_t n, unsigned seed)
{
  uint16_t inf = h->dt == EM_DT_F16 ? 0x7c00 : 0x7f80;
  srand(seed);
  for (size_t i = 0; i < n; i++) {
    unsigned m = rand() % 4 ? h->lo - 64 + (unsigned)rand() % (h->span + 128u) : (unsigned)rand() & 0x7fff;
    m = m >= inf ? m % inf : m;
    w[i] = (uint16_t)(m | (rand() % 2 ? 0x8000u : 0));
  }
}

static void check_kernel(em_dtype_t dt, int thr, bool portable)
{
  em_hist16_t h;
  init(&h, dt, thr);
  if (portable)
    em_hist16_portable(&h);
  size_t stride = (size_t)thr + 2;
  uint16_t *w = malloc(ROWS * COLS * sizeof(*w)), *got = calloc(COLS * stride, sizeof(*got));
  uint32_t *want = calloc(COLS * stride, sizeof(*want));
  fill(&h, w, ROWS * COLS, (unsigned)thr);
  naive(dt, thr, w, ROWS, COLS, want, stride);
  /* in two calls, the second over rows wider than the columns asked for (5 more) */
  em_hist16_add(&h, (const uint8_t *)w, COLS * 2, ROWS / 2, COLS, got, stride);
  uint16_t *wide = malloc(ROWS / 2 * (COLS + 5) * sizeof(*wide));
  for (size_t r = 0; r < ROWS / 2; r++) {
    memcpy(wide + r * (COLS + 5), w + (ROWS / 2 + r) * COLS, COLS * sizeof(*w));
    memset(wide + r * (COLS + 5) + COLS, 0x3c, 5 * sizeof(*w)); /* |w| ~ 1: would be counted if read */
  }
  em_hist16_add(&h, (const uint8_t *)wide, (COLS + 5) * 2, ROWS / 2, COLS, got, stride);
  free(wide);
  for (uint32_t k = 0; k < COLS; k++) {
    for (int b = 1; b <= thr; b++)
      ck_assert_msg(got[k * stride + (size_t)b] == want[k * stride + (size_t)b], "%s thr %d col %u bin %d: %u != %u",
                    dt == EM_DT_F16 ? "F16" : "BF16", thr, k, b, got[k * stride + (size_t)b], want[k * stride + (size_t)b]);
  }
  free(w);
  free(got);
  free(want);
  em_hist16_free(&h);
}

static const int thresholds[] = {2, 7, 150, 254};

START_TEST(test_hist16_matches_em_bin_of)
{
  for (int portable = 0; portable < 2; portable++) {
    check_kernel(EM_DT_F16, thresholds[_i], portable);
    check_kernel(EM_DT_BF16, thresholds[_i], portable);
  }
}
END_TEST

/* A NaN or Inf anywhere, in a vector column or in the tail, is reported. */
START_TEST(test_hist16_reports_nonfinite)
{
  static const uint16_t bad[][2] = {{0x7c00, 0x7e00}, {0xff80, 0x7fc1}}; /* F16 Inf/NaN, BF16 -Inf/NaN */
  for (int portable = 0; portable < 2; portable++) {
    for (int d = 0; d < 2; d++) {
      em_hist16_t h;
      init(&h, d ? EM_DT_BF16 : EM_DT_F16, 150);
      if (portable)
        em_hist16_portable(&h);
      uint16_t w[4 * COLS], hist[COLS * 152];
      fill(&h, w, 4 * COLS, 1);
      memset(hist, 0, sizeof(hist));
      ck_assert(!em_hist16_add(&h, (const uint8_t *)w, COLS * 2, 4, COLS, hist, 152));
      for (uint32_t col = 5; col < COLS; col += 77) { /* 5: a vector column; 82: the tail */
        for (int k = 0; k < 2; k++) {
          uint16_t keep = w[2 * COLS + col];
          w[2 * COLS + col] = bad[d][k];
          ck_assert_msg(em_hist16_add(&h, (const uint8_t *)w, COLS * 2, 4, COLS, hist, 152), "col %u", col);
          w[2 * COLS + col] = keep;
        }
      }
      em_hist16_free(&h);
    }
  }
}
END_TEST

START_TEST(test_hist16_refuses_what_it_cannot_count)
{
  em_hist16_t h;
  int16_t *bins = exact_table(EM_DT_F16, 255);
  ck_assert_int_eq(em_hist16_init(&h, EM_DT_F32, 150, bins), -EINVAL);
  ck_assert_int_eq(em_hist16_init(&h, EM_DT_F16, 255, bins), -EINVAL); /* bins must fit a byte */
  free(bins);
}
END_TEST

Suite *hist16_suite(void)
{
  Suite *s = suite_create("hist16");
  TCase *tc = tcase_create("kernels");
  tcase_add_loop_test(tc, test_hist16_matches_em_bin_of, 0, sizeof(thresholds) / sizeof(*thresholds));
  tcase_add_test(tc, test_hist16_reports_nonfinite);
  tcase_add_test(tc, test_hist16_refuses_what_it_cannot_count);
  suite_add_tcase(s, tc);
  return s;
}
