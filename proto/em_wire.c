/* SPDX-License-Identifier: MIT */
#include "em_wire.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const states[EM_STATE_COUNT] = {"queued", "done", "failed", "vanished", "nonfinite",
                                                    "unsupported"};

const char *em_state_name(em_state_t s) { return s < EM_STATE_COUNT ? states[s] : "?"; }

int em_state_parse(const char *name, em_state_t *out)
{
  for (int i = 0; name && i < EM_STATE_COUNT; i++)
    if (strcmp(name, states[i]) == 0) {
      *out = (em_state_t)i;
      return 0;
    }
  return -1;
}

static bool fits(int n, size_t len) { return n >= 0 && (size_t)n < len; }

bool em_topic(char *buf, size_t len, const char *kind, const char *run)
{
  return fits(run ? snprintf(buf, len, "%s/%s/", kind, run) : snprintf(buf, len, "%s/", kind), len);
}

bool em_stop_dir(char *buf, size_t len, const char *run_dir)
{
  return fits(snprintf(buf, len, "%s/" EM_DOT_DIR, run_dir), len);
}

bool em_stop_path(char *buf, size_t len, const char *run_dir)
{
  return fits(snprintf(buf, len, "%s/" EM_DOT_DIR "/" EM_STOP_FILE, run_dir), len);
}

void em_json_add_opt(cJSON *o, const char *key, bool has, double v)
{
  if (has)
    cJSON_AddNumberToObject(o, key, v);
  else
    cJSON_AddNullToObject(o, key);
}

const char *em_json_str(const cJSON *o, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

double em_json_num(const cJSON *o, const char *key)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

bool em_json_int(const cJSON *o, const char *key, int64_t *out)
{
  double v = em_json_num(o, key);
  if (!(v >= -9007199254740992.0 && v <= 9007199254740992.0) || v != floor(v))
    return false;
  *out = (int64_t)v;
  return true;
}

void em_json_add_place(cJSON *o, int64_t place, bool by_arrival)
{
  em_json_add_opt(o, "step", !by_arrival, (double)place);
  if (by_arrival)
    cJSON_AddNumberToObject(o, "arrival", (double)place);
}

bool em_json_place(const cJSON *o, int64_t *place, bool *by_arrival)
{
  *by_arrival = false;
  if (em_json_int(o, "step", place))
    return true;
  const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
  if (step && !cJSON_IsNull(step)) /* a step that is not an integer is malformed, arrival or not */
    return false;
  *by_arrival = em_json_int(o, "arrival", place) && *place >= 0;
  return *by_arrival;
}
