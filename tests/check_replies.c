/* SPDX-License-Identifier: MIT */
/* The client's decoders of replies and payloads (proto/em_result_json.h, em_runs.h):
 * what the encoder writes decodes to the same values, and what is malformed is refused
 * with the key named, not read as zeros. */
#include <cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "em_result_json.h"
#include "em_runs.h"
#include "suites.h"

START_TEST(test_result_round_trip)
{
  double q[] = {-2, 0, 2}, tau[] = {-3.5, -1, 1.25}, alpha[] = {1.25, 1.125}, f[] = {1, 0.5};
  em_result_t r = {.arch = EM_ARCH_MLP, .nq = 3, .q = q, .tau = tau, .alpha = alpha, .f = f,
                   .alpha0 = 0.75, .width = 0.5, .nodes = 32, .elapsed_ms = 2.5};
  em_metric_t m[] = {{"eval_accuracy", 0.7}, {"loss", 0.25}};
  em_trainer_t t = {.nmetrics = 2, .metrics = m};
  em_result_meta_t meta = {.run = "r1", .path = "/d/r1/checkpoint-200", .has_step = true, .step = 200,
                           .has_emergence = true, .emergence = 0.0625, .has_baseline_step = true,
                           .trainer = &t, .from_daemon = true, .seq = 7, .ts = 1796000000.5};
  cJSON *o = em_result_to_json(&r, &meta);
  em_result_view_t v;
  char err[200];
  ck_assert_int_eq(em_result_decode(o, &v, err, sizeof(err)), 0);
  ck_assert_str_eq(v.run, "r1");
  ck_assert_str_eq(v.path, "/d/r1/checkpoint-200");
  ck_assert_str_eq(v.arch, "mlp");
  ck_assert(v.has_step && v.step == 200 && v.seq == 7 && v.has_baseline_step && v.baseline_step == 0);
  ck_assert(v.emergence == 0.0625 && v.alpha0 == 0.75 && v.width == 0.5 && v.nodes == 32 && v.ts == 1796000000.5);
  ck_assert_uint_eq(v.nq, 3);
  ck_assert_uint_eq(v.nspec, 2);
  ck_assert(v.tau[0] == -3.5 && v.q[2] == 2 && v.alpha[1] == 1.125 && v.f[1] == 0.5);
  ck_assert(em_result_metric(&v, "loss") == 0.25 && isnan(em_result_metric(&v, "nope")));
  em_result_view_free(&v);
  /* the baseline not analysed yet: E null, no step */
  meta.has_emergence = meta.has_step = false;
  meta.trainer = NULL;
  cJSON_Delete(o);
  o = em_result_to_json(&r, &meta);
  ck_assert_int_eq(em_result_decode(o, &v, err, sizeof(err)), 0);
  ck_assert(isnan(v.emergence) && !v.has_step && v.nmetrics == 0);
  em_result_view_free(&v);
  cJSON_Delete(o);
}
END_TEST

static void refused(const char *json, const char *key)
{
  cJSON *o = cJSON_Parse(json);
  em_result_view_t v;
  char err[200];
  ck_assert_msg(em_result_decode(o, &v, err, sizeof(err)) == -1, "accepted %s", json);
  ck_assert_msg(strstr(err, key), "'%s' does not name %s", err, key);
  ck_assert(!v.q && !v.tau && !v.alpha && !v.f && !v.metrics); /* nothing leaked */
  cJSON_Delete(o);
}

START_TEST(test_malformed_results_are_refused)
{
  refused("[1]", "run");
  refused("{\"run\":3,\"alpha0\":1,\"width\":1}", "run");
  refused("{\"run\":\"x\",\"width\":1}", "alpha0");
  refused("{\"run\":\"x\",\"alpha0\":1,\"width\":\"wide\"}", "width");
  refused("{\"run\":\"x\",\"alpha0\":1,\"width\":1,\"q\":[1,\"a\"],\"tau\":[1,2],\"alpha\":[],\"f\":[]}", "q");
  refused("{\"run\":\"x\",\"alpha0\":1,\"width\":1,\"q\":[1],\"tau\":[1,2],\"alpha\":[],\"f\":[]}", "tau");
  refused("{\"run\":\"x\",\"alpha0\":1,\"width\":1,\"q\":[],\"tau\":[],\"alpha\":[1],\"f\":[]}", "\"f\"");
  refused("{\"run\":\"x\",\"alpha0\":1,\"width\":1,\"q\":[],\"tau\":[],\"alpha\":[],\"f\":[],\"trainer\":[1]}",
          "trainer");
  cJSON *o = cJSON_Parse("{\"results\":[{\"run\":\"x\",\"alpha0\":1,\"width\":1,\"q\":[],\"tau\":[],\"alpha\":[],"
                         "\"f\":[]},{\"run\":\"y\"}]}");
  em_result_view_t *v;
  size_t n;
  char err[200];
  ck_assert_int_eq(em_results_decode(o, &v, &n, err, sizeof(err)), -1);
  ck_assert(strstr(err, "result 1") && !v && n == 0);
  cJSON_Delete(o);
}
END_TEST

START_TEST(test_runs_reply)
{
  cJSON *o = cJSON_Parse("{\"ok\":true,\"runs\":[{\"run\":\"a\",\"dir\":\"/d/a\",\"checkpoints\":4,"
                         "\"states\":{\"done\":3},\"last_step\":300,\"last_emergence\":0.02},"
                         "{\"run\":\"b\",\"checkpoints\":1,\"states\":{},\"last_step\":null,"
                         "\"last_emergence\":null}]}");
  em_run_info_t *v;
  size_t n;
  char err[200];
  ck_assert_int_eq(em_runs_decode(o, &v, &n, err, sizeof(err)), 0);
  ck_assert_uint_eq(n, 2);
  const em_run_info_t *a = em_runs_find(v, n, "a"), *b = em_runs_find(v, n, "b");
  ck_assert(a && strcmp(a->dir, "/d/a") == 0 && a->checkpoints == 4 && a->done == 3 && a->last_step == 300);
  ck_assert(b && !b->dir && b->done == 0 && !b->has_last_step && isnan(b->last_emergence));
  ck_assert(!em_runs_find(v, n, "c"));
  free(v);
  cJSON_Delete(o);
  o = cJSON_Parse("{\"runs\":[{\"run\":\"a\"}]}");
  ck_assert_int_eq(em_runs_decode(o, &v, &n, err, sizeof(err)), -1);
  ck_assert(strstr(err, "checkpoints"));
  cJSON_Delete(o);
}
END_TEST

Suite *replies_suite(void)
{
  Suite *s = suite_create("replies");
  TCase *tc = tcase_create("decode");
  tcase_add_test(tc, test_result_round_trip);
  tcase_add_test(tc, test_malformed_results_are_refused);
  tcase_add_test(tc, test_runs_reply);
  suite_add_tcase(s, tc);
  return s;
}
