/* SPDX-License-Identifier: MIT */
/* Analysis parameters by name: what flags and config keys go through. */
#include <string.h>

#include "emerge.h"
#include "suites.h"

static const struct {
  const char *key, *value;
  int rc;
  const char *msg;
} rows[] = {
  {"samples", "5", 0, NULL},
  {"samples", "0", -EINVAL, "samples: '0' is not an integer in 1..1000"},
  {"samples", "12abc", -EINVAL, "'12abc'"},
  {"samples", "", -EINVAL, "''"},
  {"neurons", "99999999999999999999", -EINVAL, "neurons"},
  {"seed", "4294967295", 0, NULL},
  {"seed", "-1", -EINVAL, "seed"},
  {"threshold", "1", -EINVAL, "threshold"},
  {"q_min", "-2.5", 0, NULL},
  {"q_min", "nan", -EINVAL, "not a number"},
  {"alpha0", "reference", 0, NULL},
  {"alpha0", "mean", -EINVAL, "central or reference"},
  {"full", NULL, 0, NULL},
  {"full", "maybe", -EINVAL, "true or false"},
  {"arch", "llama", 0, NULL},
  {"arch", "resnet", -EINVAL, "auto, gpt-neox"},
  {"bogus", "1", -ENOENT, "unknown analysis parameter 'bogus'"},
};

START_TEST(test_params_set)
{
  em_params_t p;
  em_params_default(&p);
  em_err_t err = {0};
  int rc = em_params_set(&p, rows[_i].key, rows[_i].value, &err);
  ck_assert_msg(rc == rows[_i].rc, "%s=%s: rc %d", rows[_i].key, rows[_i].value, rc);
  if (rows[_i].msg)
    ck_assert_msg(strstr(err.msg, rows[_i].msg), "'%s' lacks '%s'", err.msg, rows[_i].msg);
}
END_TEST

START_TEST(test_params_check)
{
  em_params_t p;
  em_params_default(&p);
  em_err_t err;
  ck_assert_int_eq(em_params_check(&p, &err), 0);
  p.seed = UINT32_MAX; /* seed + 9 overflows numpy's 32-bit seed */
  ck_assert_int_eq(em_params_check(&p, &err), -EINVAL);
  em_params_default(&p);
  p.q_min = 0.5; /* central alpha0 needs q = 0 inside the grid */
  ck_assert_int_eq(em_params_check(&p, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "central"));
  p.alpha0 = EM_ALPHA0_REFERENCE;
  ck_assert_int_eq(em_params_check(&p, &err), 0);
}
END_TEST

Suite *params_suite(void)
{
  Suite *s = suite_create("params");
  TCase *tc = tcase_create("core");
  tcase_add_loop_test(tc, test_params_set, 0, sizeof(rows) / sizeof(*rows));
  tcase_add_test(tc, test_params_check);
  suite_add_tcase(s, tc);
  return s;
}
