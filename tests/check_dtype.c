/* SPDX-License-Identifier: MIT */
/* Conversions of the small float formats, bit for bit. */
#include <math.h>

#include "em_dtype.h"
#include "suites.h"

static const struct {
  em_dtype_t dt;
  uint8_t b[2];
  double want; /* NAN: must be NaN */
} cases[] = {
  {EM_DT_F16, {0x00, 0x3c}, 1.0},
  {EM_DT_F16, {0x00, 0xc0}, -2.0},
  {EM_DT_F16, {0xff, 0x7b}, 65504.0},               /* largest half */
  {EM_DT_F16, {0x01, 0x00}, 5.9604644775390625e-08}, /* smallest subnormal 2^-24 */
  {EM_DT_F16, {0x00, 0x7c}, INFINITY},
  {EM_DT_F16, {0x00, 0x7e}, NAN},
  {EM_DT_BF16, {0x80, 0x3f}, 1.0},
  {EM_DT_BF16, {0x49, 0xc0}, -3.140625},
  {EM_DT_BF16, {0x80, 0x7f}, INFINITY},
  {EM_DT_F8_E4M3, {0x38}, 1.0},
  {EM_DT_F8_E4M3, {0x7e}, 448.0},                   /* largest e4m3fn */
  {EM_DT_F8_E4M3, {0x01}, 0.001953125},             /* 2^-9 */
  {EM_DT_F8_E4M3, {0xb8}, -1.0},
  {EM_DT_F8_E4M3, {0x7f}, NAN},
  {EM_DT_F8_E5M2, {0x3c}, 1.0},
  {EM_DT_F8_E5M2, {0x7c}, INFINITY},
  {EM_DT_F8_E5M2, {0x01}, 1.52587890625e-05},       /* 2^-16 */
};

START_TEST(test_dtype_convert)
{
  double got = em_dtype_to_double(cases[_i].dt, cases[_i].b);
  if (isnan(cases[_i].want))
    ck_assert(isnan(got));
  else
    ck_assert_double_eq(got, cases[_i].want);
}
END_TEST

START_TEST(test_dtype_wide)
{
  uint8_t f32[4] = {0x00, 0x00, 0x80, 0xbf}; /* -1.0f */
  ck_assert_double_eq(em_dtype_to_double(EM_DT_F32, f32), -1.0);
  uint8_t f64[8] = {0, 0, 0, 0, 0, 0, 0xf0, 0x3f}; /* 1.0 */
  ck_assert_double_eq(em_dtype_to_double(EM_DT_F64, f64), 1.0);
}
END_TEST

START_TEST(test_dtype_table)
{
  for (int i = 0; i < EM_DT_COUNT; i++) {
    em_dtype_t back;
    ck_assert_int_eq(em_dtype_parse(em_dtype_name((em_dtype_t)i), &back), 0);
    ck_assert_int_eq(back, i);
    ck_assert_uint_gt(em_dtype_bits((em_dtype_t)i), 0);
  }
  em_dtype_t dt;
  ck_assert_int_eq(em_dtype_parse("F128", &dt), -1);
  ck_assert(em_dtype_readable(EM_DT_BF16));
  ck_assert(!em_dtype_readable(EM_DT_I32));
  ck_assert(!em_dtype_readable(EM_DT_F8_E8M0));
}
END_TEST

Suite *dtype_suite(void)
{
  Suite *s = suite_create("dtype");
  TCase *tc = tcase_create("core");
  tcase_add_loop_test(tc, test_dtype_convert, 0, sizeof(cases) / sizeof(*cases));
  tcase_add_test(tc, test_dtype_wide);
  tcase_add_test(tc, test_dtype_table);
  suite_add_tcase(s, tc);
  return s;
}
