/* SPDX-License-Identifier: MIT */
/* The sampler must draw exactly numpy's neurons: values below come from numpy 1.24,
 * np.random.seed(s); np.random.choice(n, k, replace=False). */
#include <stdlib.h>

#include "em_mt.h"
#include "suites.h"

START_TEST(test_mt_reference_stream)
{
  em_mt_t m;
  em_mt_seed(&m, 5489); /* the canonical MT19937 check: first output 3499211612 */
  ck_assert_uint_eq(em_mt_next(&m), 3499211612u);
  for (int i = 1; i < 9999; i++)
    em_mt_next(&m);
  ck_assert_uint_eq(em_mt_next(&m), 4123659995u); /* 10000th output */
}
END_TEST

static const struct {
  uint32_t seed, n, k;
  uint32_t first[6];
} choices[] = {
  {0, 512, 32, {283, 100, 37, 46, 374, 90}},        /* numpy 1.24: np.random.seed(0); choice(512, 32, replace=False) */
  {7, 8192, 64, {3566, 899, 2406, 5447, 6215, 6351}}, /* a 4h-wide MLP layer */
  {9, 10, 10, {8, 4, 7, 2, 1, 9}},                  /* k == n: the whole layer */
  {123456789, 1000, 5, {947, 863, 731, 526, 692}},
};

START_TEST(test_mt_choice_matches_numpy)
{
  uint32_t n = choices[_i].n, k = choices[_i].k;
  uint32_t *out = malloc(k * sizeof(*out)), *scratch = malloc(n * sizeof(*scratch));
  em_mt_t m;
  em_mt_seed(&m, choices[_i].seed);
  em_mt_choice(&m, n, k, out, scratch);
  for (uint32_t i = 0; i < 6 && i < k; i++)
    ck_assert_uint_eq(out[i], choices[_i].first[i]);
  free(out);
  free(scratch);
}
END_TEST

START_TEST(test_mt_interval_bounds)
{
  em_mt_t m;
  em_mt_seed(&m, 1);
  ck_assert_uint_eq(em_mt_interval(&m, 0), 0);
  for (int i = 0; i < 1000; i++)
    ck_assert_uint_le(em_mt_interval(&m, 5), 5);
}
END_TEST

Suite *mt_suite(void)
{
  Suite *s = suite_create("mt");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_mt_reference_stream);
  tcase_add_loop_test(tc, test_mt_choice_matches_numpy, 0, sizeof(choices) / sizeof(*choices));
  tcase_add_test(tc, test_mt_interval_bounds);
  suite_add_tcase(s, tc);
  return s;
}
