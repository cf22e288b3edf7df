/* SPDX-License-Identifier: MIT */
/* The cnn mapping (docs/ARCHITECTURES.md "Convolutions"): channels are neurons and the
 * edge between two channels is the l2 norm of the kernel between them. Checked against
 * an mlp whose matrices hold those norms, computed here the textbook way: the two must
 * give the same spectrum, sample for sample. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers/st_build.h"
#include "suites.h"
#include "emerge.h"

/* conv1 [16, 3, 3, 3] -> conv2 [32, 16, 3, 3] -> flatten 32 x 4 x 4 -> fc1 [64, 512] -> fc2 [12, 64] */
enum { C0 = 3, C1 = 16, C2 = 32, K = 9, HW = 16, F1 = 64, F2 = 12 };
static float conv1[C1 * C0 * K], conv2[C2 * C1 * K], fc1[F1 * C2 * HW], fc2[F2 * F1];
static double n1[C1 * C0], n2[C2 * C1], n3[F1 * C2], n4[F2 * F1];
static char *dir;
static char cnn_path[700], mlp_path[700];

static void fill(float *w, size_t n, unsigned *x)
{
  for (size_t i = 0; i < n; i++) {
    *x = *x * 1103515245u + 12345u;
    w[i] = ((float)(*x >> 8) / (float)(1u << 24) - 0.5f) * 0.1f;
  }
}

/* norms[o * in + i] = sqrt(sum over the taps of w[o][i][t]^2) */
static void norms(const float *w, size_t out, size_t in, size_t taps, double *n)
{
  for (size_t o = 0; o < out; o++)
    for (size_t i = 0; i < in; i++) {
      double ss = 0;
      for (size_t t = 0; t < taps; t++)
        ss += (double)w[(o * in + i) * taps + t] * w[(o * in + i) * taps + t];
      n[o * in + i] = sqrt(ss);
    }
}

static void write_file(const char *path, const st_tensor_t *t, size_t n)
{
  size_t len;
  uint8_t *buf = st_build(t, n, &len);
  ck_assert_int_eq(st_write(path, buf, len), 0);
  free(buf);
}

/* Names as nn.Sequential-free modules have them; a classifier named before the
 * features in name order still follows them (kernels come first). */
static void write_cnn(const char *fc1_name, uint64_t fc1_in)
{
  float bias[C1] = {0};
  st_tensor_t t[] = {
    {"classifier.0.weight", "F32", 2, {F1, fc1_in}, fc1, F1 * fc1_in * sizeof(float)},
    {"classifier.2.weight", "F32", 2, {F2, F1}, fc2, sizeof(fc2)},
    {"features.0.weight", "F32", 4, {C1, C0, 3, 3}, conv1, sizeof(conv1)},
    {"features.0.bias", "F32", 1, {C1}, bias, sizeof(bias)},
    {"features.3.weight", "F32", 4, {C2, C1, 3, 3}, conv2, sizeof(conv2)},
  };
  t[0].name = fc1_name;
  write_file(cnn_path, t, 5);
}

static void setup(void)
{
  dir = st_tmpdir();
  snprintf(cnn_path, sizeof(cnn_path), "%s/cnn.safetensors", dir);
  snprintf(mlp_path, sizeof(mlp_path), "%s/mlp.safetensors", dir);
  unsigned x = 11;
  fill(conv1, sizeof(conv1) / sizeof(float), &x);
  fill(conv2, sizeof(conv2) / sizeof(float), &x);
  fill(fc1, sizeof(fc1) / sizeof(float), &x);
  fill(fc2, sizeof(fc2) / sizeof(float), &x);
  norms(conv1, C1, C0, K, n1);
  norms(conv2, C2, C1, K, n2);
  norms(fc1, F1, C2, HW, n3);
  norms(fc2, F2, F1, 1, n4);
  write_cnn("classifier.0.weight", C2 * HW);
  st_tensor_t m[] = {
    {"layers.0.weight", "F64", 2, {C1, C0}, n1, sizeof(n1)},
    {"layers.1.weight", "F64", 2, {C2, C1}, n2, sizeof(n2)},
    {"layers.2.weight", "F64", 2, {F1, C2}, n3, sizeof(n3)},
    {"layers.3.weight", "F64", 2, {F2, F1}, n4, sizeof(n4)},
  };
  write_file(mlp_path, m, 4);
}

static void teardown(void) { st_rmtmp(dir); }

static void assert_same_spectrum(const em_result_t *a, const em_result_t *b)
{
  ck_assert_uint_eq(a->nsamples, b->nsamples);
  ck_assert_uint_eq(a->nodes, b->nodes);
  for (size_t k = 0; k < a->nsamples; k++)
    for (size_t i = 0; i < a->nq; i++)
      ck_assert_double_eq_tol(a->samples[k].tau[i], b->samples[k].tau[i], 1e-12);
  ck_assert_double_eq_tol(a->alpha0, b->alpha0, 1e-12);
  ck_assert_double_eq_tol(a->width, b->width, 1e-12);
}

START_TEST(test_cnn_is_the_mlp_of_kernel_norms)
{
  em_params_t p;
  em_params_default(&p);
  p.neurons = 12; /* sampled: fewer than every layer's width, so the draw matters */
  for (int mode = 0; mode < 2; mode++) {
    p.mode = mode ? EM_MODE_FULL : EM_MODE_SAMPLED;
    em_result_t cnn, mlp;
    em_err_t err = {0};
    ck_assert_msg(st_analyze(cnn_path, &p, &cnn, &err) == 0, "%s", err.msg);
    ck_assert_msg(st_analyze(mlp_path, &p, &mlp, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(cnn.arch, EM_ARCH_CNN);
    ck_assert_int_eq(mlp.arch, EM_ARCH_MLP);
    assert_same_spectrum(&cnn, &mlp);
    if (mode) /* every channel is a node (fc2's +-0.05 weights leave some fc1 neurons under 11 edges) */
      ck_assert_uint_ge(cnn.nodes, C0 + C1 + C2);
    ck_assert_double_eq(cnn.coverage, 1); /* the kernels count, and are read */
    ck_assert_uint_eq(cnn.ntensors, 4);
    bool kernel_listed = false;
    for (size_t i = 0; i < cnn.ntensors; i++)
      kernel_listed |= strcmp(cnn.tensors[i], "features.3.weight") == 0;
    ck_assert(kernel_listed);
    em_result_free(&cnn);
    em_result_free(&mlp);
  }
}
END_TEST

START_TEST(test_cnn_errors_are_named)
{
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_FULL;
  em_result_t r;
  em_err_t err = {0};
  /* 500 inputs are no whole number of positions per channel of conv2's 32 (asked for
   * cnn: under auto the linear layers alone would be analysed, as below) */
  write_cnn("classifier.0.weight", 500);
  p.arch = EM_ARCH_CNN;
  ck_assert_int_ne(st_analyze(cnn_path, &p, &r, &err), 0);
  ck_assert_msg(strstr(err.msg, "cnn chain breaks") && strstr(err.msg, "'classifier.0.weight' takes 500") &&
                  strstr(err.msg, "'features.3.weight' gives 32"), "%s", err.msg);
  /* a NaN tap: the element is named in the kernel's own flat row */
  p.arch = EM_ARCH_AUTO;
  conv2[(5 * C1 + 2) * K + 4] = NAN;
  write_cnn("classifier.0.weight", C2 * HW);
  ck_assert_int_eq(st_analyze(cnn_path, &p, &r, &err), EM_ENONFINITE);
  ck_assert_msg(strstr(err.msg, "'features.3.weight' holds NaN or Inf at [5, 22]"), "%s", err.msg);
  /* --arch mlp on a cnn reads only the matrices and says why the kernels were left */
  conv2[(5 * C1 + 2) * K + 4] = 0.01f;
  write_cnn("classifier.0.weight", C2 * HW);
  p.arch = EM_ARCH_MLP;
  ck_assert_msg(st_analyze(cnn_path, &p, &r, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(r.arch, EM_ARCH_MLP);
  ck_assert_uint_eq(r.nskipped, 2);
  ck_assert_msg(strstr(r.skipped[0].why, "only the cnn mapping reads"), "%s", r.skipped[0].why);
  em_result_free(&r);
  /* a branch that does not chain: auto falls back to the linear layers, and says so */
  write_cnn("classifier.0.weight", 500);
  p.arch = EM_ARCH_AUTO;
  st_tensor_t m[] = {{"layers.0.weight", "F64", 2, {C1, C0}, n1, sizeof(n1)},
                     {"layers.1.weight", "F64", 2, {C2, C1}, n2, sizeof(n2)},
                     {"down.weight", "F32", 4, {C2, C0, 1, 1}, conv1, C2 * C0 * sizeof(float)}};
  write_file(cnn_path, m, 3);
  ck_assert_msg(st_analyze(cnn_path, &p, &r, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(r.arch, EM_ARCH_MLP);
  ck_assert(r.nskipped == 1 && r.coverage < 1);
  em_result_free(&r);
}
END_TEST

/* Finite taps whose norm overflows a double: an edge of distance ~0, not kept, never an
 * index out of the histogram (ASan watches). */
START_TEST(test_cnn_huge_kernel_norm_is_no_edge)
{
  static double huge[C1 * C0 * K];
  for (size_t i = 0; i < sizeof(huge) / sizeof(*huge); i++)
    huge[i] = 1.3e308;
  st_tensor_t t[] = {{"conv.weight", "F64", 4, {C1, C0, 3, 3}, huge, sizeof(huge)},
                     {"conv2.weight", "F32", 4, {C2, C1, 3, 3}, conv2, sizeof(conv2)}};
  write_file(cnn_path, t, 2);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_FULL;
  em_result_t r;
  em_err_t err = {0};
  int rc = st_analyze(cnn_path, &p, &r, &err);
  ck_assert_msg(rc == 0, "%s", err.msg); /* conv2's channels are the nodes */
  ck_assert_uint_eq(r.nodes, C1);
  em_result_free(&r);
}
END_TEST

Suite *cnn_suite(void)
{
  Suite *s = suite_create("cnn");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_cnn_is_the_mlp_of_kernel_norms);
  tcase_add_test(tc, test_cnn_errors_are_named);
  tcase_add_test(tc, test_cnn_huge_kernel_norm_is_no_edge);
  suite_add_tcase(s, tc);
  return s;
}
