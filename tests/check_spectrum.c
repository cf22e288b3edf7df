/* SPDX-License-Identifier: MIT */
/* The test vectors of the authors' pipeline (docs/METHOD.md "Test vectors") (the authors' numpy/scipy code) to 1e-9,
 * and the degenerate cases that must be errors rather than NaN. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "em_spectrum.h"
#include "suites.h"

#define TOL 1e-9

/* Feeds the spec's generator: 24 nodes of 40 distances. */
static void feed_vector(em_acc_t *acc, unsigned long long seed)
{
  unsigned long long x = seed;
  for (int i = 0; i < 24; i++) {
    uint32_t h[151] = {0}, cnt = 0;
    for (int k = 0; k < 40; k++) {
      x = (1103515245ULL * x + 12345ULL) % 2147483648ULL;
      double u = ((double)x + 0.5) / 2147483648.0;
      int b = em_bin_of(((u - 0.5) * 0.04) * (1 + i % 3), 150);
      if (b > 0) {
        h[b]++;
        cnt++;
      }
    }
    ck_assert_int_eq(em_acc_add(acc, h, cnt), 0);
  }
}

static const struct vec {
  unsigned long long seed;
  double tau_m3, tau_m1, tau_m01, tau_01, tau_1, tau_3;
  double alpha_first, alpha_last, width, a29, central, f0, f59;
} vectors[] = {
  {1, -6.1732255040, -1.7622351865, -0.1439761429, 0.1362532436, 1.0870421638, 2.4746783401,
   2.2662621911, 0.6144969433, 1.6517652478, 1.4397614287, 1.4011469324, -0.6255610694, -0.6311875103},
  {2, -6.4181001461, -1.8363076192, -0.1488900643, 0.1403847407, 1.0982241741, 2.4483078597,
   2.3460797743, 0.5925978617, 1.7534819125, 1.4889006433, 1.4463740252, -0.6201391767, -0.6705142745},
};

/* The spec prints 10 decimals, so agreement is to 5e-11 plus rounding. */
#define ck_near(a, b) ck_assert_double_eq_tol((a), (b), TOL)

static void spectrum_of(unsigned long long seed, em_alpha0_rule_t rule, double *tau, double *alpha, double *f,
                        double *a0, double *w)
{
  em_params_t p;
  em_params_default(&p);
  double *q;
  size_t nq;
  ck_assert_int_eq(em_qgrid(&p, &q, &nq, NULL), 0);
  ck_assert_uint_eq(nq, 61);
  em_acc_t *acc = em_acc_new(150, q, nq);
  feed_vector(acc, seed);
  ck_assert_uint_eq(em_acc_nodes(acc), 24);
  em_err_t err;
  ck_assert_int_eq(em_acc_tau(acc, tau, &err), 0);
  ck_assert_int_eq(em_spectrum(q, tau, nq, rule, alpha, f, a0, w, &err), 0);
  em_acc_destroy(&acc);
  ck_assert_ptr_null(acc);
  free(q);
}

START_TEST(test_spectrum_vectors)
{
  const struct vec *v = &vectors[_i];
  double tau[61], alpha[61], f[61], a0, w;
  spectrum_of(v->seed, EM_ALPHA0_REFERENCE, tau, alpha, f, &a0, &w);
  ck_near(tau[0], v->tau_m3);
  ck_near(tau[20], v->tau_m1);
  ck_near(tau[29], v->tau_m01);
  ck_assert_double_le(fabs(tau[30]), 1e-15);
  ck_near(tau[31], v->tau_01);
  ck_near(tau[40], v->tau_1);
  ck_near(tau[60], v->tau_3);
  ck_near(alpha[0], v->alpha_first);
  ck_near(alpha[59], v->alpha_last);
  ck_near(w, v->width);
  ck_near(a0, v->a29); /* reference rule: numpy took alpha29 on these inputs */
  ck_near(f[0], v->f0);
  ck_near(f[59], v->f59);
  spectrum_of(v->seed, EM_ALPHA0_CENTRAL, tau, alpha, f, &a0, &w);
  ck_near(a0, v->central);
}
END_TEST

START_TEST(test_spectrum_emergence_vector)
{
  double tau[61], alpha[61], f[61], a1, w1, a2, w2, e;
  spectrum_of(1, EM_ALPHA0_REFERENCE, tau, alpha, f, &a1, &w1);
  spectrum_of(2, EM_ALPHA0_REFERENCE, tau, alpha, f, &a2, &w2);
  ck_assert_int_eq(em_emergence(a2, w2, a1, w1, &e, NULL), 0);
  ck_near(e, -0.0356272802);
  spectrum_of(1, EM_ALPHA0_CENTRAL, tau, alpha, f, &a1, &w1);
  spectrum_of(2, EM_ALPHA0_CENTRAL, tau, alpha, f, &a2, &w2);
  ck_assert_int_eq(em_emergence(a2, w2, a1, w1, &e, NULL), 0);
  ck_near(e, -0.0337249433);
  ck_assert_int_eq(em_emergence(a1, w1, a1, w1, &e, NULL), 0);
  ck_assert_double_eq(e, 0.0); /* E of the baseline is exactly 0 */
}
END_TEST

/* One row per case em_bin_of must get right. */
static const struct {
  double w;
  int bin;
} bins[] = {
  {0.0, 0},          /* no edge */
  {1.0, 0},          /* d = 1 is not > 1 */
  {-0.9, 1},         /* d = 1.11 rounds to 1 */
  {1.0 / 150, 150},  /* d = 150 is kept (inclusive) */
  {1.0 / 150.5, 0},  /* beyond the threshold */
  {0.4, 2},          /* d = 2.5: rint ties to even */
  {1.0 / 3.5, 4},    /* d = 3.5 -> 4 (even) */
  {NAN, -1},
  {INFINITY, -1},
};

START_TEST(test_spectrum_bin_of)
{
  ck_assert_int_eq(em_bin_of(bins[_i].w, 150), bins[_i].bin);
}
END_TEST

START_TEST(test_spectrum_degenerate_is_error)
{
  double q[3] = {-0.1, 0, 0.1}, tau[3];
  em_acc_t *acc = em_acc_new(150, q, 3);
  em_err_t err;
  ck_assert_int_eq(em_acc_tau(acc, tau, &err), EM_EDEGENERATE); /* no node at all */
  ck_assert_ptr_nonnull(strstr(err.msg, "no node"));
  uint32_t h[151] = {0};
  h[7] = 10;
  em_acc_add(acc, h, 10); /* exactly 10 distances: not more than 10, ignored */
  ck_assert_uint_eq(em_acc_nodes(acc), 0);
  h[7] = 11;
  em_acc_add(acc, h, 11); /* kept, but one radius only */
  ck_assert_int_eq(em_acc_tau(acc, tau, &err), EM_EDEGENERATE);
  ck_assert_ptr_nonnull(strstr(err.msg, "one radius"));
  em_acc_destroy(&acc);

  double t2[3] = {0.2, 0, -0.2}, alpha[3], f[3], a0, w; /* alpha0 = -2 */
  ck_assert_int_eq(em_spectrum(q, t2, 3, EM_ALPHA0_CENTRAL, alpha, f, &a0, &w, &err), EM_EDEGENERATE);
  ck_assert_int_eq(em_emergence(1, 1, 0, 1, &a0, &err), EM_EDEGENERATE);
  ck_assert_int_eq(em_emergence(1, 1, 1, 0, &a0, &err), EM_EDEGENERATE);
}
END_TEST

START_TEST(test_spectrum_qgrid)
{
  em_params_t p;
  em_params_default(&p);
  double *q;
  size_t nq;
  ck_assert_int_eq(em_qgrid(&p, &q, &nq, NULL), 0);
  ck_assert_double_eq(q[0], -3.0);
  ck_assert_double_eq(q[1], -290 / 100.0); /* the reference's q/100, not -3 + 0.1 */
  ck_assert_double_eq(q[30], 0.0);
  free(q);
  p.q_step = 0.07; /* does not divide 6 */
  em_err_t err;
  ck_assert_int_eq(em_qgrid(&p, &q, &nq, &err), -EINVAL);
  p.q_step = 0.123;
  ck_assert_int_eq(em_qgrid(&p, &q, &nq, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "0.01"));
}
END_TEST

Suite *spectrum_suite(void)
{
  Suite *s = suite_create("spectrum");
  TCase *tc = tcase_create("vectors");
  tcase_add_loop_test(tc, test_spectrum_vectors, 0, 2);
  tcase_add_test(tc, test_spectrum_emergence_vector);
  suite_add_tcase(s, tc);
  tc = tcase_create("edges");
  tcase_add_loop_test(tc, test_spectrum_bin_of, 0, sizeof(bins) / sizeof(*bins));
  tcase_add_test(tc, test_spectrum_degenerate_is_error);
  tcase_add_test(tc, test_spectrum_qgrid);
  suite_add_tcase(s, tc);
  return s;
}
