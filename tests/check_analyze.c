/* SPDX-License-Identifier: MIT */
/* em_analyze on real files: an MLP checkpoint written here, and each way it must fail
 * with a named error instead of a number. (Transformer families and the comparison with
 * the authors' pipeline are in tests/py.) */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers/st_build.h"
#include "suites.h"
#include "emerge.h"

static char *dir;
static char path[700];

/* layers.0 [128, 64], layers.1 [128, 128], layers.2 [64, 128], weights in +-0.05. */
static float w0[128 * 64], w1[128 * 128], w2[64 * 128];

static void fill(float *w, size_t n, unsigned *x)
{
  for (size_t i = 0; i < n; i++) {
    *x = *x * 1103515245u + 12345u;
    w[i] = ((float)(*x >> 8) / (float)(1u << 24) - 0.5f) * 0.1f;
  }
}

/* three weight matrices the mlp plan chains, and a bias it never reads */
static void write_mlp(const char *dtype0, const float bias[4])
{
  st_tensor_t t[] = {
    {"layers.0.weight", dtype0, 2, {128, 64}, w0, sizeof(w0)},
    {"layers.0.bias", "F32", 1, {4}, bias, 4 * sizeof(float)},
    {"layers.1.weight", "F32", 2, {128, 128}, w1, sizeof(w1)},
    {"layers.2.weight", "F32", 2, {64, 128}, w2, sizeof(w2)},
  };
  size_t len;
  uint8_t *buf = st_build(t, 4, &len);
  ck_assert_int_eq(st_write(path, buf, len), 0);
  free(buf);
}

static void setup(void)
{
  dir = st_tmpdir();
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  unsigned x = 7;
  fill(w0, 128 * 64, &x);
  fill(w1, 128 * 128, &x);
  fill(w2, 64 * 128, &x);
  write_mlp("F32", w0);
}

static void teardown(void) { st_rmtmp(dir); }

START_TEST(test_analyze_mlp)
{
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  em_result_t r, again;
  em_err_t err = {0};
  ck_assert_msg(st_analyze(path, &p, &r, &err) == 0, "%s", err.msg);
  ck_assert_int_eq(r.arch, EM_ARCH_MLP);
  ck_assert_uint_eq(r.nsamples, 10);
  ck_assert_uint_eq(r.nq, 61);
  ck_assert_uint_eq(r.nodes, 10 * 3 * 32); /* 32 sources in each of 3 layers, all kept */
  ck_assert(r.alpha0 > 0 && r.width > 0);
  ck_assert_int_eq(st_analyze(dir, &p, &again, &err), 0); /* the directory finds model.safetensors */
  ck_assert_double_eq(r.alpha0, again.alpha0);          /* deterministic */
  for (size_t i = 0; i < r.nq; i++)
    ck_assert_double_eq(r.tau[i], again.tau[i]);
  em_result_free(&again);
  p.mode = EM_MODE_FULL;
  ck_assert_int_eq(st_analyze(path, &p, &again, &err), 0);
  ck_assert_uint_eq(again.nsamples, 1);
  ck_assert_uint_eq(again.nodes, 64 + 128 + 128); /* every source neuron */
  ck_assert_double_ne(again.alpha0, r.alpha0);
  ck_assert(again.alpha0_se == 0 && again.width_se == 0); /* one network: nothing sampled */
  em_result_free(&again);
  double ss = 0; /* the standard error of the mean alpha0, the textbook way */
  for (size_t k = 0; k < r.nsamples; k++)
    ss += (r.samples[k].alpha0 - r.alpha0) * (r.samples[k].alpha0 - r.alpha0);
  ck_assert_double_eq_tol(r.alpha0_se, sqrt(ss / 9) / sqrt(10), 1e-15);
  ck_assert(r.width_se > 0);
  em_result_free(&r);
}
END_TEST

/* E of the means, straight from the definition (an independent route to the jackknife). */
static double e_of(const em_sample_t *s, const em_sample_t *b, size_t n, size_t skip)
{
  double a = 0, w = 0, ba = 0, bw = 0, m = 0;
  for (size_t i = 0; i < n; i++)
    if (i != skip)
      a += s[i].alpha0, w += s[i].width, ba += b[i].alpha0, bw += b[i].width, m++;
  return (w / m) / (bw / m) * log((ba / m) / (a / m));
}

START_TEST(test_emergence_se_is_the_paired_jackknife)
{
  em_sample_t s[5], b[5];
  const double a0[] = {0.61, 0.58, 0.66, 0.60, 0.55}, wd[] = {1.10, 1.25, 0.98, 1.05, 1.31};
  for (uint32_t i = 0; i < 5; i++) {
    b[i] = (em_sample_t){.seed = 7 + i, .alpha0 = a0[i], .width = wd[i]};
    s[i] = (em_sample_t){.seed = 7 + i, .alpha0 = a0[i] * (0.9 + 0.01 * i), .width = wd[i] * (1.2 - 0.02 * i)};
  }
  /* pseudovalues n*E - (n-1)*E_-i; their standard error of the mean */
  double all = e_of(s, b, 5, SIZE_MAX), pv[5], mean = 0, ss = 0, se;
  for (size_t i = 0; i < 5; i++)
    mean += (pv[i] = 5 * all - 4 * e_of(s, b, 5, i)) / 5;
  for (size_t i = 0; i < 5; i++)
    ss += (pv[i] - mean) * (pv[i] - mean);
  em_err_t err = {0};
  ck_assert_int_eq(em_emergence_se(s, 5, b, 5, &se, &err), 0);
  ck_assert_double_eq_tol(se, sqrt(ss / 4 / 5), 1e-12);
  ck_assert(se > 0.001);
  ck_assert_int_eq(em_emergence_se(b, 5, b, 5, &se, &err), 0); /* the baseline against itself */
  ck_assert_double_eq(se, 0);
  ck_assert_int_eq(em_emergence_se(s, 1, b, 1, &se, &err), 0); /* full mode */
  ck_assert_double_eq(se, 0);
  s[2].seed = 99; /* not the same neurons: no pairing */
  ck_assert_int_eq(em_emergence_se(s, 5, b, 5, &se, &err), EM_EDEGENERATE);
  ck_assert_ptr_nonnull(strstr(err.msg, "not paired"));
  ck_assert_int_eq(em_emergence_se(s, 5, b, 4, &se, &err), EM_EDEGENERATE);
}
END_TEST

START_TEST(test_analyze_nonfinite_named)
{
  w1[5 * 128 + 7] = NAN;
  write_mlp("F32", w0);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  p.mode = EM_MODE_FULL; /* reads every weight */
  em_result_t r;
  em_err_t err = {0};
  ck_assert_int_eq(st_analyze(path, &p, &r, &err), EM_ENONFINITE);
  ck_assert_msg(strstr(err.msg, "'layers.1.weight'") && strstr(err.msg, "[5, 7]"), "%s", err.msg);
}
END_TEST

START_TEST(test_analyze_unsupported_dtype)
{
  write_mlp("I32", w0); /* same bytes, integer dtype */
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  em_result_t r;
  em_err_t err = {0};
  ck_assert_int_eq(st_analyze(path, &p, &r, &err), EM_EUNSUPPORTED);
  ck_assert_msg(strstr(err.msg, "dtype I32"), "%s", err.msg);
}
END_TEST

START_TEST(test_analyze_truncated_after_open)
{
  em_ckpt_t *ck = NULL;
  em_err_t err = {0};
  ck_assert_int_eq(em_ckpt_open(path, &ck, &err), 0);
  ck_assert_int_eq(truncate(path, 4096), 0);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  em_result_t r;
  ck_assert_int_eq(em_analyze(ck, &p, &r, &err), -ESTALE);
  ck_assert_ptr_nonnull(strstr(err.msg, "shrank"));
  em_ckpt_destroy(&ck);
}
END_TEST

START_TEST(test_analyze_cancelled)
{
  em_ckpt_t *ck = NULL;
  em_err_t err = {0};
  ck_assert_int_eq(em_ckpt_open(path, &ck, &err), 0);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  em_result_t r;
  _Atomic int cancel = 0;
  ck_assert_int_eq(em_analyze_cancellable(ck, &p, &cancel, &r, &err), 0); /* not raised: a normal result */
  em_result_free(&r);
  cancel = 1;
  ck_assert_int_eq(em_analyze_cancellable(ck, &p, &cancel, &r, &err), EM_ECANCELED);
  ck_assert_ptr_nonnull(strstr(err.msg, "cancelled"));
  em_ckpt_destroy(&ck);
}
END_TEST

START_TEST(test_analyze_no_node_kept)
{
  for (size_t i = 0; i < 128 * 64; i++)
    w0[i] = 2.0f; /* d = 0.5: never kept */
  for (size_t i = 0; i < 128 * 128; i++)
    w1[i] = 1e-4f; /* d = 10000: beyond the threshold */
  for (size_t i = 0; i < 64 * 128; i++)
    w2[i] = 0.0f;
  write_mlp("F32", w0);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  em_result_t r;
  em_err_t err = {0};
  ck_assert_int_eq(st_analyze(path, &p, &r, &err), EM_EDEGENERATE);
  ck_assert_msg(strstr(err.msg, "seed 0") && strstr(err.msg, "--mode full"), "%s", err.msg);
}
END_TEST

START_TEST(test_analyze_unmappable_and_torch)
{
  float v[4] = {1, 2, 3, 4};
  st_tensor_t t = {"norm.weight", "F32", 1, {4}, v, sizeof(v)};
  size_t len;
  uint8_t *buf = st_build(&t, 1, &len);
  ck_assert_int_eq(st_write(path, buf, len), 0);
  free(buf);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  em_result_t r;
  em_err_t err = {0};
  ck_assert_int_eq(st_analyze(path, &p, &r, &err), -EINVAL);
  ck_assert_msg(strstr(err.msg, "cannot map") && strstr(err.msg, "'norm.weight'"), "%s", err.msg);
  p.arch = EM_ARCH_LLAMA;
  ck_assert_int_eq(st_analyze(path, &p, &r, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "q_proj"));

  unlink(path);
  char torch[800];
  snprintf(torch, sizeof(torch), "%s/pytorch_model.bin", dir);
  ck_assert_int_eq(st_write(torch, (const uint8_t *)"PK", 2), 0);
  em_ckpt_t *ck = NULL; /* a torch file cut to two bytes: read, and refused as not yet an archive */
  ck_assert_int_eq(em_ckpt_open(dir, &ck, &err), -EINVAL);
  ck_assert_msg(strstr(err.msg, "pytorch_model.bin: not a torch checkpoint"), "%s", err.msg);
  ck_assert_int_eq(em_ckpt_open(torch, &ck, &err), -EINVAL);
  unlink(torch);
  ck_assert_int_eq(em_ckpt_open(dir, &ck, &err), -ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, "no weight file (.safetensors, .bin"));
}
END_TEST

/* Every float dtype's NaN/Inf found by exponent bits and named with its element; integer
 * tensors whose bits look like a NaN are left alone; a NaN the analysis never reads
 * (a bias) is found all the same. */
START_TEST(test_check_finite_every_dtype)
{
  static const struct {
    const char *dtype;
    uint8_t bytes[8];
    size_t n, es, bad;   /* elements, element size, index of the bad one (9: none) */
  } cases[] = {
    {"F16", {0x00, 0x3c, 0x00, 0x7c}, 2, 2, 1},           /* 1.0, +Inf */
    {"BF16", {0xc0, 0x7f, 0x80, 0x3f}, 2, 2, 0},          /* NaN, 1.0 */
    {"F8_E4M3", {0x38, 0x7e, 0xff}, 3, 1, 2},             /* 1.0, 448 (finite), NaN */
    {"F8_E5M2", {0x3c, 0xfc}, 2, 1, 1},                   /* 1.0, -Inf */
    {"F32", {0, 0, 0x80, 0x3f, 0, 0, 0xc0, 0xff}, 2, 4, 1}, /* 1.0, -NaN */
    {"I32", {0xff, 0xff, 0xff, 0x7f}, 1, 4, 9},           /* an integer, never "NaN" */
  };
  for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
    size_t n = cases[c].n;
    st_tensor_t t = {"t", cases[c].dtype, 1, {n}, cases[c].bytes, n * cases[c].es};
    size_t len;
    uint8_t *buf = st_build(&t, 1, &len);
    ck_assert_int_eq(st_write(path, buf, len), 0);
    free(buf);
    em_ckpt_t *ck = NULL;
    em_err_t err = {0};
    ck_assert_int_eq(em_ckpt_open(path, &ck, &err), 0);
    int rc = em_ckpt_check_finite(ck, NULL, &err);
    em_ckpt_destroy(&ck);
    if (cases[c].bad == 9) {
      ck_assert_msg(rc == 0, "%s: %s", cases[c].dtype, err.msg);
      continue;
    }
    char want[64];
    snprintf(want, sizeof(want), "'t' holds NaN or Inf at element %zu", cases[c].bad);
    ck_assert_msg(rc == EM_ENONFINITE && strstr(err.msg, want), "%s: %d %s", cases[c].dtype, rc, err.msg);
  }
  /* the analysis never reads a bias; the finite check does */
  const float bias[4] = {0.1f, 0.2f, NAN, 0.3f};
  write_mlp("F32", bias);
  em_params_t p;
  em_params_default(&p);
  p.mode = EM_MODE_SAMPLED; /* the authors' method; auto is tested on its own */
  p.mode = EM_MODE_FULL;
  em_result_t r;
  em_err_t err = {0};
  ck_assert_int_eq(st_analyze(path, &p, &r, &err), 0);
  em_result_free(&r);
  em_ckpt_t *ck = NULL;
  ck_assert_int_eq(em_ckpt_open(path, &ck, &err), 0);
  ck_assert_int_eq(em_ckpt_check_finite(ck, NULL, &err), EM_ENONFINITE);
  ck_assert_msg(strstr(err.msg, "'layers.0.bias'") && strstr(err.msg, "element 2"), "%s", err.msg);
  _Atomic int cancel = 1;
  ck_assert_int_eq(em_ckpt_check_finite(ck, &cancel, &err), EM_ECANCELED);
  em_ckpt_destroy(&ck);
}
END_TEST

Suite *analyze_suite(void)
{
  Suite *s = suite_create("analyze");
  TCase *tc = tcase_create("core");
  tcase_add_checked_fixture(tc, setup, teardown);
  tcase_add_test(tc, test_analyze_mlp);
  tcase_add_test(tc, test_analyze_nonfinite_named);
  tcase_add_test(tc, test_analyze_unsupported_dtype);
  tcase_add_test(tc, test_analyze_truncated_after_open);
  tcase_add_test(tc, test_analyze_no_node_kept);
  tcase_add_test(tc, test_analyze_cancelled);
  tcase_add_test(tc, test_analyze_unmappable_and_torch);
  tcase_add_test(tc, test_check_finite_every_dtype);
  tcase_add_test(tc, test_emergence_se_is_the_paired_jackknife);
  suite_add_tcase(s, tc);
  return s;
}
