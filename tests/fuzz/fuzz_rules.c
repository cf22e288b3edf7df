/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the early-stop configuration: any bytes as a config document with
 * "alerts" and "on_alert". A rejected value must say why; an accepted rule must survive
 * its canonical spec unchanged and replay over a series with NaN and nonfinite points.
 * "state" is read as a kept judging state (what the daemon persists per run and rule): one
 * that reads prints and reads back to the same fields. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "em_rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count(void *ctx, const em_rule_t *r, const em_firing_t *f)
{
  (void)r;
  if (!f->reason[0])
    __builtin_trap();
  ++*(int *)ctx;
}

static void check_rule(const em_rule_t *r)
{
  char *spec = em_rule_spec(r), err[512] = "";
  cJSON *j = spec ? cJSON_Parse(spec) : NULL;
  em_rule_t again;
  if (!j || em_rule_parse(j, 0, &again, err, sizeof(err)) != 0)
    __builtin_trap();
  char *spec2 = em_rule_spec(&again);
  if (!spec2 || strcmp(spec, spec2) != 0)
    __builtin_trap();
  free(spec);
  free(spec2);
  cJSON_Delete(j);
  em_point_t pts[6];
  double e[6] = {0, 0.5, NAN, -1e300, 1e300, 0.25};
  for (int i = 0; i < 6; i++)
    pts[i] = (em_point_t){.step = i, .seq = i + 1, .value = {e[i], e[5 - i], e[i]}, .nonfinite = i == 2};
  int fired = 0;
  em_rule_replay(r, pts, 6, count, &fired);
  if (fired > 6 * 3)
    __builtin_trap();
}

static void check_state(const cJSON *o)
{
  em_rule_state_t st, again;
  if (em_rule_state_from_json(o, &st) != 0)
    return;
  cJSON *printed = cJSON_CreateObject();
  em_rule_state_to_json(&st, printed);
  char *text = cJSON_PrintUnformatted(printed);
  cJSON *back = text ? cJSON_Parse(text) : NULL;
  if (!back || em_rule_state_from_json(back, &again) != 0 || memcmp(&st.best, &again.best, sizeof(double)) != 0 ||
      memcmp(&st.num, &again.num, sizeof(double)) != 0 || st.wait != again.wait || st.best_step != again.best_step ||
      st.based != again.based)
    __builtin_trap();
  cJSON_Delete(back);
  free(text);
  cJSON_Delete(printed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  cJSON *root = cJSON_ParseWithLength((const char *)data, size);
  char err[512] = "";
  em_rules_t rules;
  if (em_rules_parse(cJSON_GetObjectItemCaseSensitive(root, "alerts"), &rules, err, sizeof(err)) == 0) {
    for (size_t i = 0; i < rules.n; i++)
      check_rule(&rules.v[i]);
    em_rules_t copy;
    if (em_rules_copy(&rules, &copy) != 0 || !em_rules_equal(&rules, &copy))
      __builtin_trap();
    em_rules_free(&copy);
    em_rules_free(&rules);
  } else if (!err[0] || rules.v) {
    __builtin_trap();
  }
  em_on_alert_t a, b;
  err[0] = 0;
  if (em_on_alert_parse(cJSON_GetObjectItemCaseSensitive(root, "on_alert"), &a, err, sizeof(err)) == 0) {
    if (em_on_alert_copy(&a, &b) != 0 || !em_on_alert_equal(&a, &b))
      __builtin_trap();
    em_on_alert_free(&b);
    em_on_alert_free(&a);
  } else if (!err[0] || a.exec) {
    __builtin_trap();
  }
  check_state(cJSON_GetObjectItemCaseSensitive(root, "state"));
  cJSON_Delete(root);
  return 0;
}
