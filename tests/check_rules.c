/* SPDX-License-Identifier: MIT */
/* Early-stop rules: the example parses with Keras/Lightning defaults, every bad
 * rule is named with its key, and the replay fires where Lightning's semantics say. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_rules.h"
#include "suites.h"

static int parse_text(const char *json, em_rules_t *out, char *err, size_t errlen)
{
  cJSON *j = cJSON_Parse(json);
  ck_assert_ptr_nonnull(j);
  int rc = em_rules_parse(j, out, err, errlen);
  cJSON_Delete(j);
  return rc;
}

START_TEST(test_rules_example_and_defaults)
{
  em_rules_t rs;
  char err[256] = "";
  ck_assert_int_eq(parse_text("[{\"name\": \"plateau\", \"monitor\": \"emergence\", \"mode\": \"max\", "
                              "\"min_delta\": 0.01, \"patience\": 3},"
                              "{\"name\": \"target\", \"monitor\": \"emergence\", \"stopping_threshold\": 0.5},"
                              "{\"name\": \"collapse\", \"monitor\": \"alpha0\", \"mode\": \"min\", "
                              "\"divergence_threshold\": 2.5},"
                              "{\"name\": \"finite\", \"check_finite\": true},"
                              "{\"name\": \"a0\", \"monitor\": \"alpha0\"}]", &rs, err, sizeof(err)), 0);
  ck_assert_uint_eq(rs.n, 5);
  ck_assert(rs.v[0].plateau && rs.v[0].mode_max && rs.v[0].patience == 3 && rs.v[0].min_delta == 0.01);
  ck_assert(!rs.v[1].plateau && rs.v[1].has_stopping && rs.v[1].stopping == 0.5 && rs.v[1].mode_max);
  ck_assert(!rs.v[2].plateau && rs.v[2].has_divergence && !rs.v[2].mode_max);
  ck_assert(rs.v[3].check_finite && rs.v[3].monitor == EM_MON_NONE && !rs.v[3].plateau);
  ck_assert(rs.v[4].plateau && !rs.v[4].mode_max && rs.v[4].patience == 3 && rs.v[4].min_delta == 0);
  ck_assert(em_rules_check_finite(&rs));
  char *spec = em_rule_spec(&rs.v[4]);
  ck_assert_str_eq(spec, "{\"name\":\"a0\",\"monitor\":\"alpha0\",\"mode\":\"min\",\"min_delta\":0,\"patience\":3,"
                         "\"check_finite\":false}");
  free(spec);
  em_rules_t copy;
  ck_assert_int_eq(em_rules_copy(&rs, &copy), 0);
  ck_assert(em_rules_equal(&rs, &copy));
  copy.v[0].min_delta = 0.02;
  ck_assert(!em_rules_equal(&rs, &copy));
  em_rules_free(&copy);
  em_rules_free(&rs);
  em_rules_t none = {0}; /* no rules configured: the daemon copies that too */
  ck_assert_int_eq(em_rules_copy(&none, &copy), 0);
  ck_assert(copy.n == 0 && em_rules_equal(&none, &copy));
  em_rules_free(&copy);
}
END_TEST

START_TEST(test_rules_bad_rules_are_named)
{
  static const struct {
    const char *json, *want;
  } cases[] = {
    {"{}", "alerts: must be a list"},
    {"[3]", "alerts[0]: must be a JSON object"},
    {"[{\"monitor\": \"emergence\"}]", "alerts[0]: missing key 'name'"},
    {"[{\"name\": \"a b\", \"monitor\": \"emergence\"}]", "alerts[0]: key 'name'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"patiense\": 3}]", "alerts[0] 'p': unknown key 'patiense'"},
    {"[{\"name\": \"p\", \"monitor\": \"loss\"}]", "'p': key 'monitor'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"mode\": \"auto\"}]", "'p': key 'mode'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"patience\": 0}]", "'p': key 'patience'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"patience\": 2.5}]", "'p': key 'patience'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"min_delta\": -0.1}]", "'p': key 'min_delta'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"stopping_threshold\": \"0.5\"}]",
     "'p': key 'stopping_threshold'"},
    {"[{\"name\": \"p\", \"check_finite\": 1}]", "'p': key 'check_finite'"},
    {"[{\"name\": \"p\", \"patience\": 4, \"check_finite\": true}]", "'p': mode, min_delta, min_delta_se"},
    {"[{\"name\": \"p\", \"smoothing\": 0.5, \"check_finite\": true}]", "need key 'monitor'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"min_delta_se\": -1}]", "'p': key 'min_delta_se'"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"smoothing\": 1}]", "'p': key 'smoothing': must be a number in [0, 1)"},
    {"[{\"name\": \"p\"}]", "'p': nothing to judge"},
    {"[{\"name\": \"o\", \"monitor\": \"emergence\", \"onset\": true, \"stopping_threshold\": 1}]",
     "'o': key 'onset': a rule judges an onset or thresholds, not both"},
    {"[{\"name\": \"o\", \"monitor\": \"emergence\", \"min_rise\": 0.1}]", "need \"onset\": true"},
    {"[{\"name\": \"o\", \"monitor\": \"emergence\", \"onset\": 1}]", "'o': key 'onset'"},
    {"[{\"name\": \"o\", \"monitor\": \"emergence\", \"stop\": \"yes\"}]", "'o': key 'stop'"},
    {"[{\"name\": \"p\", \"check_finite\": false}]", "'p': nothing to judge"},
    {"[{\"name\": \"p\", \"monitor\": \"emergence\", \"stopping_threshold\": 0.5, \"divergence_threshold\": 0.6}]",
     "'p': key 'divergence_threshold': must be below stopping_threshold when mode is max"},
    {"[{\"name\": \"p\", \"monitor\": \"alpha0\", \"stopping_threshold\": 2, \"divergence_threshold\": 1.5}]",
     "must be above stopping_threshold when mode is min"},
    {"[{\"name\": \"p\", \"monitor\": \"width\"}, {\"name\": \"p\", \"check_finite\": true}]",
     "rule name 'p' is used twice"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
    em_rules_t rs;
    char err[256] = "";
    ck_assert_int_eq(parse_text(cases[i].json, &rs, err, sizeof(err)), -22);
    ck_assert_msg(strstr(err, cases[i].want), "%s -> %s", cases[i].json, err);
    ck_assert_ptr_null(rs.v);
  }
}
END_TEST

START_TEST(test_on_alert_parse)
{
  static const struct {
    const char *json, *want;
  } bads[] = {
    {"[]", "on_alert: must be a JSON object"},
    {"{\"stop_files\": true}", "unknown key 'stop_files'"},
    {"{\"stop_file\": 1}", "key 'stop_file'"},
    {"{\"exec\": \"/bin/notify --x\"}", "key 'exec': must be a list"},
    {"{\"exec\": []}", "key 'exec': must be a list"},
    {"{\"exec\": [\"\"]}", "element 0 must be a non-empty string"},
    {"{\"exec\": [\"/bin/true\", 3]}", "element 1 must be a string"},
    {"{\"exec_timeout\": 0}", "key 'exec_timeout'"},
  };
  for (size_t i = 0; i < sizeof(bads) / sizeof(*bads); i++) {
    cJSON *j = cJSON_Parse(bads[i].json);
    em_on_alert_t a;
    char err[256] = "";
    ck_assert_int_eq(em_on_alert_parse(j, &a, err, sizeof(err)), -22);
    ck_assert_msg(strstr(err, bads[i].want), "%s -> %s", bads[i].json, err);
    ck_assert_ptr_null(a.exec);
    cJSON_Delete(j);
  }
  cJSON *j = cJSON_Parse("{\"stop_file\": false, \"exec\": [\"/bin/echo\", \"a b\", \"\"], \"exec_timeout\": 2.5}");
  em_on_alert_t a, b;
  char err[256];
  ck_assert_int_eq(em_on_alert_parse(j, &a, err, sizeof(err)), 0);
  ck_assert(!a.stop_file && a.exec_timeout == 2.5);
  ck_assert_str_eq(a.exec[1], "a b");
  ck_assert_str_eq(a.exec[2], "");
  ck_assert_ptr_null(a.exec[3]);
  ck_assert_int_eq(em_on_alert_copy(&a, &b), 0);
  ck_assert_str_eq(b.exec[0], "/bin/echo");
  em_on_alert_free(&a);
  em_on_alert_free(&b);
  cJSON_Delete(j);
}
END_TEST

/* Firings recorded by the replay: condition and point index. */
typedef struct fired {
  size_t n;
  em_condition_t cond[16];
  size_t at[16];
  char reason[16][256];
} fired_t;

static void record(void *ctx, const em_rule_t *r, const em_firing_t *f)
{
  (void)r;
  fired_t *x = ctx;
  ck_assert_uint_lt(x->n, 16);
  x->cond[x->n] = f->cond;
  snprintf(x->reason[x->n], sizeof(x->reason[0]), "%s", f->reason);
  x->at[x->n++] = f->at;
}

static em_rule_t rule_of(const char *json)
{
  cJSON *j = cJSON_Parse(json);
  em_rule_t r;
  char err[256] = "";
  ck_assert_msg(em_rule_parse(j, 0, &r, err, sizeof(err)) == 0, "%s", err);
  cJSON_Delete(j);
  return r;
}

static fired_t replay(const em_rule_t *r, const double *v, size_t n)
{
  em_point_t pts[32];
  for (size_t i = 0; i < n; i++)
    pts[i] = (em_point_t){.step = (int64_t)i * 100, .seq = (int64_t)i + 1, .value = {v[i], 3.0 - v[i], 1.0 + v[i]},
                          .nonfinite = isnan(v[i]) && i % 2, .error = "t holds NaN"};
  fired_t f = {0};
  em_rule_replay(r, pts, n, record, &f);
  return f;
}

START_TEST(test_replay_plateau_min_delta_and_rearm)
{
  em_rule_t r = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\", \"min_delta\": 0.01, \"patience\": 3}");
  /* .205 beats .2 by no more than min_delta: no improvement. Then .5 re-arms. */
  double v[] = {0, 0.1, 0.2, 0.2, 0.205, 0.2, 0.19, 0.5, 0.5, 0.5, 0.5, 0.4};
  fired_t f = replay(&r, v, 12);
  ck_assert_uint_eq(f.n, 2);
  ck_assert(f.cond[0] == EM_COND_PLATEAU && f.at[0] == 5 && f.at[1] == 10);
  ck_assert_msg(strstr(f.reason[0], "for 3 checkpoints (best 0.2000 at step 200)"), "%s", f.reason[0]);
  f = replay(&r, v, 5); /* patience not yet used up */
  ck_assert_uint_eq(f.n, 0);
  r.since_seq = 9; /* a rule added later judges only points with a larger seq */
  f = replay(&r, v, 12);
  ck_assert_uint_eq(f.n, 0); /* .5 (seq 10) is its first value; .5 .4 leave patience unspent */
  double w[] = {0, 0.1, 0.2, 0.2, 0.205, 0.2, 0.19, 0.5, 0.5, 0.5, 0.5, 0.4, 0.3};
  f = replay(&r, w, 13);
  ck_assert(f.n == 1 && f.at[0] == 12);
  em_rule_t a0 = rule_of("{\"name\": \"a\", \"monitor\": \"alpha0\", \"patience\": 2}"); /* min: falling improves */
  double x[] = {0, 0.1, 0.2, 0.2, 0.1};  /* alpha0 = 3 - v: 3, 2.9, 2.8, 2.8, 2.9 */
  f = replay(&a0, x, 5);
  ck_assert(f.n == 1 && f.at[0] == 4);
}
END_TEST

START_TEST(test_replay_thresholds_inclusive_once)
{
  em_rule_t r = rule_of("{\"name\": \"t\", \"monitor\": \"emergence\", \"stopping_threshold\": 0.5}");
  double v[] = {0, 0.3, 0.5, 0.6, 0.2, 0.7};
  fired_t f = replay(&r, v, 6);
  ck_assert(f.n == 1 && f.cond[0] == EM_COND_STOPPING && f.at[0] == 2); /* inclusive; once per run */
  ck_assert_msg(strstr(f.reason[0], "emergence 0.5000 reached stopping_threshold 0.5"), "%s", f.reason[0]);
  em_rule_t d = rule_of("{\"name\": \"c\", \"monitor\": \"alpha0\", \"divergence_threshold\": 2.8}");
  double a[] = {0, 0.1, 0.2, 0.3};   /* alpha0 3, 2.9, 2.8, 2.7: min mode diverges upward... */
  f = replay(&d, a, 4);
  ck_assert(f.n == 1 && f.cond[0] == EM_COND_DIVERGENCE && f.at[0] == 1); /* ...so 2.9 >= 2.8 at once: the */
  /* baseline's 3 is not judged */
  em_rule_t both = rule_of("{\"name\": \"b\", \"monitor\": \"width\", \"stopping_threshold\": 1.5, "
                           "\"divergence_threshold\": 0.9, \"patience\": 2}");
  double w[] = {0, 0.5, 0.2, 0.3, -0.1};  /* width 1, 1.5, 1.2, 1.3, 0.9 */
  f = replay(&both, w, 5);
  ck_assert_uint_eq(f.n, 3);
  ck_assert(f.cond[0] == EM_COND_STOPPING && f.at[0] == 1);
  ck_assert(f.cond[1] == EM_COND_PLATEAU && f.at[1] == 3);
  ck_assert(f.cond[2] == EM_COND_DIVERGENCE && f.at[2] == 4);
}
END_TEST

START_TEST(test_replay_baseline_is_never_a_best_value)
{
  /* A PyTorch MLP whose sampled E starts below its baseline's 0 (measured in issue 9):
   * with the baseline as best, nothing ever beats 0 and the plateau fired at index 2. */
  em_rule_t r = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\", \"patience\": 2}");
  double v[] = {0, -0.044, -0.054, -0.034, -0.034};
  fired_t f = replay(&r, v, 5);
  ck_assert_uint_eq(f.n, 0);
  double w[] = {0, -0.044, -0.054, -0.05}; /* now it has not beaten -0.044 for 2 checkpoints */
  f = replay(&r, w, 4);
  ck_assert(f.n == 1 && f.at[0] == 3);
  ck_assert_msg(strstr(f.reason[0], "(best -0.0440 at step 100)"), "%s", f.reason[0]);
  em_rule_t t = rule_of("{\"name\": \"t\", \"monitor\": \"emergence\", \"divergence_threshold\": 0}");
  f = replay(&t, v, 1); /* the baseline's E = 0 alone judges nothing */
  ck_assert_uint_eq(f.n, 0);
}
END_TEST

static fired_t replay_se(const em_rule_t *r, const double *v, const double *se, size_t n)
{
  em_point_t pts[32];
  for (size_t i = 0; i < n; i++)
    pts[i] = (em_point_t){.step = (int64_t)i * 100, .seq = (int64_t)i + 1, .value = {v[i], NAN, NAN},
                          .se = {se[i], NAN, NAN}};
  fired_t f = {0};
  em_rule_replay(r, pts, n, record, &f);
  return f;
}

START_TEST(test_replay_min_delta_se_ignores_changes_inside_the_noise)
{
  /* The demo's sampled E (issue 9): steps of ~0.001-0.008 against an SE of ~0.008. */
  double v[] = {0, 0.0063, 0.0058, 0.0199, 0.0132, 0.0140, 0.0136, 0.0218};
  double se[] = {0, 0.008, 0.008, 0.009, 0.008, 0.009, 0.008, 0.010};
  em_rule_t raw = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\", \"min_delta\": 0.005, \"patience\": 3}");
  fired_t f = replay_se(&raw, v, se, 8);
  ck_assert(f.n == 1 && f.at[0] == 6); /* min_delta alone: a plateau at 600, inside the noise */
  em_rule_t k = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\", \"min_delta_se\": 2, \"patience\": 3}");
  f = replay_se(&k, v, se, 8);
  ck_assert(f.n == 1 && f.at[0] == 4); /* nothing after 0.0063 beats it by 2 SE: a plateau at 400... */
  ck_assert_msg(strstr(f.reason[0], "by more than 0.016 for 3"), "%s", f.reason[0]);
  double rising[] = {0, 0.01, 0.03, 0.05, 0.07, 0.09}, small[] = {0, 0.002, 0.002, 0.002, 0.002, 0.002};
  f = replay_se(&k, rising, small, 6); /* ...but a rise well beyond its SE never plateaus */
  ck_assert_uint_eq(f.n, 0);
  double unknown[] = {0, NAN, NAN, NAN, NAN, NAN, NAN, NAN}; /* no SE (older rows): min_delta alone decides */
  f = replay_se(&k, v, unknown, 8);
  ck_assert(f.n == 1 && f.at[0] == 6);
}
END_TEST

START_TEST(test_replay_smoothing_is_tensorboards_ema)
{
  /* S = 0.6 over 1, 0, 1, 0 (after the baseline): debiased EMA 1, 0.375, 0.6327, 0.4122 */
  em_rule_t r = rule_of("{\"name\": \"t\", \"monitor\": \"emergence\", \"stopping_threshold\": 0.6, "
                        "\"smoothing\": 0.6}");
  double v[] = {0, 1, 0, 1, 0}, se[] = {0, 0, 0, 0, 0};
  fired_t f = replay_se(&r, v, se, 5);
  ck_assert(f.n == 1 && f.at[0] == 1); /* the first smoothed value is the first value */
  em_rule_t d = rule_of("{\"name\": \"d\", \"monitor\": \"emergence\", \"divergence_threshold\": 0.4, "
                        "\"smoothing\": 0.6}");
  f = replay_se(&d, v, se, 5); /* raw 0 at index 2 would diverge; smoothed 0.375 does too, 0.4122 not */
  ck_assert(f.n == 1 && f.at[0] == 2);
  ck_assert_msg(strstr(f.reason[0], "emergence 0.3750 reached"), "%s", f.reason[0]);
  em_rule_t p = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\", \"patience\": 2, \"smoothing\": 0.3}");
  double noisy[] = {0, 0.1, 0.05, 0.12, 0.07, 0.14, 0.09, 0.16}, z[8] = {0}; /* a rising trend under noise: */
  f = replay_se(&p, noisy, z, 8); /* EMA .1 .0615 .1036 .0799 .1221 .0996 .1419 */
  ck_assert_uint_eq(f.n, 0);
  double flat[] = {0, 0.1, 0.1, 0.1};
  p.min_delta = 1e-9; /* the EMA of equal values equals them up to rounding */
  f = replay_se(&p, flat, z, 4);
  ck_assert(f.n == 1 && f.at[0] == 3);
  ck_assert_msg(strstr(f.reason[0], "smoothed emergence has not improved"), "%s", f.reason[0]);
}
END_TEST

START_TEST(test_onset_fires_once_after_the_minimum_and_not_on_noise)
{
  em_rule_t r = rule_of("{\"name\": \"o\", \"monitor\": \"emergence\", \"onset\": true}");
  ck_assert(r.onset && !r.plateau && !r.stop && r.patience == 2 && r.min_rise_se == 2 && r.min_rise == 0);
  char *spec = em_rule_spec(&r);
  ck_assert_msg(strstr(spec, "\"onset\":true") && !strstr(spec, "\"stop\""), "%s", spec); /* stop: its default */
  free(spec);
  /* the copy task's E (issue 9): a minimum at step 300, then the turn */
  double v[] = {0, -0.05, -0.08, -0.103, -0.09, -0.06, -0.02, 0.05, 0.12};
  double se[] = {0, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001};
  fired_t f = replay_se(&r, v, se, 9);
  ck_assert(f.n == 1 && f.cond[0] == EM_COND_ONSET && f.at[0] == 5); /* two checkpoints above -0.103 + 0.002 */
  ck_assert_msg(strstr(f.reason[0], "risen beyond 0.002 of its minimum -0.1030 (step 300) for 2 checkpoints"), "%s",
                f.reason[0]);
  double control[] = {0, -0.05, -0.06, -0.055, -0.07, -0.065, -0.08, -0.075}; /* wiggles inside 2 SE */
  double wide[] = {0, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01};
  f = replay_se(&r, control, wide, 8);
  ck_assert_uint_eq(f.n, 0);
  em_rule_t stops = rule_of("{\"name\": \"o\", \"monitor\": \"emergence\", \"onset\": true, \"stop\": true, "
                            "\"min_rise\": 0.05, \"patience\": 1}");
  ck_assert(stops.stop && stops.patience == 1);
  f = replay_se(&stops, v, se, 9); /* 0.05 above -0.103: first at -0.02 (step 600) */
  ck_assert(f.n == 1 && f.at[0] == 6);
  em_rule_t plateau = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\"}");
  ck_assert(plateau.stop); /* the other conditions ask the job to stop, as before */
}
END_TEST

START_TEST(test_replay_check_finite_once)
{
  em_rule_t r = rule_of("{\"name\": \"f\", \"check_finite\": true}");
  double v[] = {0, NAN, 0.2, NAN, NAN};  /* odd indices with NaN are nonfinite checkpoints */
  fired_t f = replay(&r, v, 5);
  ck_assert(f.n == 1 && f.cond[0] == EM_COND_FINITE && f.at[0] == 1);
  ck_assert_str_eq(f.reason[0], "non-finite weights: t holds NaN");
  em_rule_t p = rule_of("{\"name\": \"p\", \"monitor\": \"emergence\", \"patience\": 1}");
  f = replay(&p, v, 5); /* nonfinite points and unknown values are not checks */
  ck_assert(f.n == 0);
}
END_TEST

Suite *rules_suite(void)
{
  Suite *s = suite_create("rules");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_rules_example_and_defaults);
  tcase_add_test(tc, test_rules_bad_rules_are_named);
  tcase_add_test(tc, test_on_alert_parse);
  tcase_add_test(tc, test_replay_plateau_min_delta_and_rearm);
  tcase_add_test(tc, test_replay_thresholds_inclusive_once);
  tcase_add_test(tc, test_replay_check_finite_once);
  tcase_add_test(tc, test_replay_baseline_is_never_a_best_value);
  tcase_add_test(tc, test_replay_min_delta_se_ignores_changes_inside_the_noise);
  tcase_add_test(tc, test_replay_smoothing_is_tensorboards_ema);
  tcase_add_test(tc, test_onset_fires_once_after_the_minimum_and_not_on_noise);
  suite_add_tcase(s, tc);
  return s;
}
