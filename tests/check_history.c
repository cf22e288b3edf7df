/* SPDX-License-Identifier: MIT */
/* Replay points from a run's history (proto/em_history.h): the one function the live
 * judge and `emergectl backtest` both build their points with, and the decoder of the
 * history reply backtest reads. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "em_history.h"
#include "em_judge.h"
#include "suites.h"

static void add(em_history_t *h, int64_t step, em_state_t st, int64_t seq, double e, const char *path)
{
  em_hist_entry_t x = {.step = step, .state = st, .seq = seq, .emergence = e, .alpha0 = 1 - e, .width = 1 + e,
                       .path = (char *)path, .error = st == EM_STATE_NONFINITE ? "w holds NaN" : NULL};
  ck_assert_int_eq(em_history_add(h, &x), 0);
}

START_TEST(test_points_results_and_nonfinite_in_step_order)
{
  em_history_t h = {0};
  add(&h, 0, EM_STATE_DONE, 1, 0, "c0");
  add(&h, 200, EM_STATE_DONE, 3, 0.2, "c200");
  add(&h, 300, EM_STATE_FAILED, 0, NAN, "c300");   /* failed, queued, ...: not judged */
  add(&h, 100, EM_STATE_NONFINITE, 0, NAN, "c100");
  add(&h, 200, EM_STATE_NONFINITE, 0, NAN, "c200b"); /* same step: after the result, as listed */
  add(&h, 400, EM_STATE_QUEUED, 0, NAN, "c400");
  size_t n;
  em_point_t *p = em_history_points(&h, &n);
  ck_assert_uint_eq(n, 4);
  ck_assert(p[0].step == 0 && p[1].step == 100 && p[2].step == 200 && p[3].step == 200);
  ck_assert(p[1].nonfinite && p[1].seq == INT64_MAX && strcmp(p[1].error, "w holds NaN") == 0);
  ck_assert(!p[2].nonfinite && p[2].seq == 3 && p[2].value[0] == 0.2 && p[2].value[1] == 0.8);
  ck_assert_str_eq(p[3].path, "c200b");
  ck_assert(isnan(p[3].value[0]));
  free(p);
  em_history_free(&h);
  p = em_history_points(&h, &n); /* empty */
  ck_assert(p && n == 0);
  free(p);
}
END_TEST

static const char reply[] =
  "{\"ok\":true,\"run\":\"r\",\"results\":["
  "{\"step\":0,\"seq\":1,\"path\":\"c0\",\"emergence\":0,\"alpha0\":1,\"width\":1},"
  "{\"step\":100,\"seq\":2,\"path\":\"c100\",\"emergence\":0.1,\"alpha0\":0.9,\"width\":1.1},"
  "{\"step\":200,\"seq\":5,\"path\":\"c200\",\"emergence\":null,\"alpha0\":0.9,\"width\":1.1},"
  "{\"step\":300,\"seq\":4,\"path\":\"c300\",\"emergence\":0.1,\"alpha0\":0.9,\"width\":1.1},"
  "{\"step\":400,\"seq\":6,\"path\":\"c400\",\"emergence\":0.1,\"alpha0\":0.9,\"width\":1.1}],"
  "\"checkpoints\":[{\"step\":150,\"path\":\"c150\",\"state\":\"nonfinite\",\"error\":\"NaN\"},"
  "{\"step\":500,\"path\":\"c500\",\"state\":\"failed\",\"error\":\"bad\"}]}";

START_TEST(test_decoded_reply_gives_the_points_the_store_would)
{
  cJSON *o = cJSON_Parse(reply);
  em_history_t decoded, typed = {0};
  char err[200];
  ck_assert_int_eq(em_history_decode(o, &decoded, err, sizeof(err)), 0);
  cJSON_Delete(o);
  add(&typed, 0, EM_STATE_DONE, 1, 0, "c0"); /* what the store's query returns for the same rows */
  add(&typed, 100, EM_STATE_DONE, 2, 0.1, "c100");
  add(&typed, 150, EM_STATE_NONFINITE, 0, NAN, "c150");
  add(&typed, 200, EM_STATE_DONE, 5, NAN, "c200");
  add(&typed, 300, EM_STATE_DONE, 4, 0.1, "c300");
  add(&typed, 400, EM_STATE_DONE, 6, 0.1, "c400");
  size_t n1, n2;
  em_point_t *a = em_history_points(&decoded, &n1), *b = em_history_points(&typed, &n2);
  ck_assert_uint_eq(n1, 6);
  ck_assert_uint_eq(n1, n2);
  for (size_t i = 0; i < n1; i++) {
    ck_assert(a[i].step == b[i].step && a[i].seq == b[i].seq && a[i].nonfinite == b[i].nonfinite);
    ck_assert(a[i].value[0] == b[i].value[0] || (isnan(a[i].value[0]) && isnan(b[i].value[0])));
  }
  /* and a plateau rule judged on either fires at the same point */
  em_rule_t r = {.name = "p", .monitor = EM_MON_EMERGENCE, .mode_max = true, .patience = 2, .plateau = true};
  em_rules_t rules = {1, &r};
  em_recorded_t ra = {0}, rb = {0};
  em_verdict_t *va, *vb;
  size_t na, nb;
  ck_assert_int_eq(em_judge(&rules, a, n1, &ra, &va, &na), 0);
  ck_assert_int_eq(em_judge(&rules, b, n2, &rb, &vb, &nb), 0);
  ck_assert(na == 1 && nb == 1 && va[0].firing.at == vb[0].firing.at && a[va[0].firing.at].step == 400);
  free(va);
  free(vb);
  free(a);
  free(b);
  em_history_free(&decoded);
  em_history_free(&typed);
}
END_TEST

START_TEST(test_judge_records_each_firing_once)
{
  em_point_t p[6];
  double v[] = {0, 0.2, 0.2, 0.2, 0.5, 0.5};
  for (int i = 0; i < 6; i++)
    p[i] = (em_point_t){.step = i * 100, .seq = i + 1, .value = {v[i], 1, 1}};
  em_rule_t r = {.name = "p", .monitor = EM_MON_EMERGENCE, .mode_max = true, .patience = 2, .plateau = true};
  em_rules_t rules = {1, &r};
  em_recorded_t rec = {0};
  em_verdict_t *out;
  size_t n;
  ck_assert_int_eq(em_judge(&rules, p, 4, &rec, &out, &n), 0);
  ck_assert(n == 1 && out[0].firing.at == 3 && rec.has_plateau && rec.plateau_step == 300);
  free(out);
  ck_assert_int_eq(em_judge(&rules, p, 4, &rec, &out, &n), 0); /* the same history again: nothing new */
  ck_assert_uint_eq(n, 0);
  free(out);
  ck_assert_int_eq(em_judge(&rules, p, 6, &rec, &out, &n), 0); /* .5 improves; patience not spent */
  ck_assert_uint_eq(n, 0);
  free(out);
  em_rule_t t = {.name = "t", .monitor = EM_MON_EMERGENCE, .mode_max = true, .has_stopping = true, .stopping = 0.5};
  em_rules_t two = {1, &t};
  em_recorded_t trec = {.fired[EM_COND_STOPPING] = true}; /* recorded before a restart */
  ck_assert_int_eq(em_judge(&two, p, 6, &trec, &out, &n), 0);
  ck_assert_uint_eq(n, 0);
  free(out);
}
END_TEST

/* Step-less checkpoints (PROTOCOL.md "Steps"): "step": null with "arrival" orders the
 * run, the points know it, and a rule's reason names the place as an arrival. */
START_TEST(test_arrival_places_decode_and_are_named_in_reasons)
{
  cJSON *o = cJSON_Parse("{\"results\":[{\"step\":null,\"arrival\":0,\"seq\":1,\"emergence\":0},"
                         "{\"step\":null,\"arrival\":1,\"seq\":2,\"emergence\":0.2},"
                         "{\"step\":null,\"arrival\":3,\"seq\":4,\"emergence\":0.2}],"
                         "\"checkpoints\":[{\"step\":null,\"arrival\":2,\"path\":\"c\",\"state\":\"nonfinite\"}]}");
  em_history_t h;
  char err[200];
  ck_assert_msg(em_history_decode(o, &h, err, sizeof(err)) == 0, "%s", err);
  size_t n;
  em_point_t *p = em_history_points(&h, &n);
  ck_assert_uint_eq(n, 4);
  for (size_t i = 0; i < n; i++)
    ck_assert(p[i].by_arrival && p[i].step == (int64_t)i);
  ck_assert(p[2].nonfinite);
  em_rule_t r = {.name = "p", .monitor = EM_MON_EMERGENCE, .mode_max = true, .patience = 1, .plateau = true};
  em_rules_t rules = {1, &r};
  em_recorded_t rec = {0};
  em_verdict_t *out;
  size_t nv;
  ck_assert_int_eq(em_judge(&rules, p, n, &rec, &out, &nv), 0);
  ck_assert_uint_eq(nv, 1);
  ck_assert_msg(strstr(out[0].firing.reason, "(best 0.2000 at checkpoint #1 (arrival order))"), "%s",
                out[0].firing.reason);
  ck_assert(out[0].firing.best_by_arrival && out[0].firing.best_step == 1);
  free(out);
  free(p);
  em_history_free(&h);
  cJSON_Delete(o);
  cJSON *c = em_checkpoint_to_json(7, true, "x", EM_STATE_FAILED, NULL);
  em_hist_entry_t e;
  ck_assert(cJSON_IsNull(cJSON_GetObjectItem(c, "step")) && em_checkpoint_from_json(c, &e) == 0);
  ck_assert(e.by_arrival && e.step == 7);
  cJSON_Delete(c);
}
END_TEST

START_TEST(test_malformed_reply_is_refused)
{
  const char *bad[] = {"{\"results\":[{\"seq\":1}]}", "{\"results\":[{\"step\":1.5,\"seq\":1}]}",
                       "{\"checkpoints\":[{\"step\":1,\"state\":\"sleeping\"}]}",
                       "{\"results\":[{\"step\":1.5,\"arrival\":1,\"seq\":1}]}", /* arrival only beside a null step */
                       "{\"results\":[{\"step\":null,\"arrival\":-1,\"seq\":1}]}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    cJSON *o = cJSON_Parse(bad[i]);
    em_history_t h;
    char err[200] = "";
    ck_assert_int_eq(em_history_decode(o, &h, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "history:"), "%s", err);
    cJSON_Delete(o);
  }
}
END_TEST

Suite *history_suite(void)
{
  Suite *s = suite_create("history");
  TCase *c = tcase_create("core");
  tcase_add_test(c, test_points_results_and_nonfinite_in_step_order);
  tcase_add_test(c, test_decoded_reply_gives_the_points_the_store_would);
  tcase_add_test(c, test_judge_records_each_firing_once);
  tcase_add_test(c, test_malformed_reply_is_refused);
  tcase_add_test(c, test_arrival_places_decode_and_are_named_in_reasons);
  suite_add_tcase(s, c);
  return s;
}
