/* SPDX-License-Identifier: MIT */
#include "em_alert.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_wire.h"

cJSON *em_alert_to_json(const em_alert_t *a)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  cJSON_AddNumberToObject(o, "seq", (double)a->seq);
  cJSON_AddStringToObject(o, "kind", "alert");
  cJSON_AddStringToObject(o, "run", a->run ? a->run : "");
  cJSON_AddStringToObject(o, "rule", a->rule ? a->rule : "");
  cJSON_AddStringToObject(o, "condition", a->has_cond ? em_condition_name(a->cond) : "");
  if (a->monitor == EM_MON_NONE)
    cJSON_AddNullToObject(o, "monitor");
  else
    cJSON_AddStringToObject(o, "monitor", em_monitor_name(a->monitor));
  em_json_add_opt(o, "value", isfinite(a->value), a->value);
  em_json_add_place(o, a->step, a->by_arrival);
  cJSON_AddStringToObject(o, "path", a->path ? a->path : "");
  cJSON_AddStringToObject(o, "run_dir", a->run_dir ? a->run_dir : "");
  cJSON_AddStringToObject(o, "reason", a->reason ? a->reason : "");
  cJSON_AddBoolToObject(o, "stop", a->stop);
  cJSON_AddNumberToObject(o, "ts", a->ts);
  if (!cJSON_GetObjectItemCaseSensitive(o, "ts")) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

char *em_alert_print(const em_alert_t *a)
{
  cJSON *o = em_alert_to_json(a);
  char *text = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return text;
}

static int dup_field(const cJSON *o, const char *key, bool required, char **out, char *err, size_t errlen)
{
  const char *v = em_json_str(o, key);
  if (!v && !required)
    v = "";
  if (!v) {
    snprintf(err, errlen, "alert: key '%s' must be a string", key);
    return -1;
  }
  if (!(*out = strdup(v))) {
    snprintf(err, errlen, "alert: out of memory");
    return -1;
  }
  return 0;
}

/* The keys that are not strings of the alert. */
static int decode_kinds(const cJSON *o, em_alert_t *a, char *err, size_t errlen)
{
  const cJSON *mon = cJSON_GetObjectItemCaseSensitive(o, "monitor"), *cond = cJSON_GetObjectItemCaseSensitive(o, "condition");
  a->has_cond = cond != NULL;
  if (cond && em_condition_parse(em_json_str(o, "condition"), &a->cond) != 0)
    return snprintf(err, errlen, "alert: key 'condition' is not a condition"), -1;
  a->monitor = EM_MON_NONE;
  if (mon && !cJSON_IsNull(mon) && (em_monitor_parse(em_json_str(o, "monitor"), &a->monitor) != 0 ||
                             a->monitor == EM_MON_NONE))
    return snprintf(err, errlen, "alert: key 'monitor' must be null or a monitored value"), -1;
  bool placed = cJSON_GetObjectItemCaseSensitive(o, "step") || cJSON_GetObjectItemCaseSensitive(o, "arrival");
  if (!em_json_int(o, "seq", &a->seq) || (placed && !em_json_place(o, &a->step, &a->by_arrival)))
    return snprintf(err, errlen, "alert: keys 'seq' and 'step' (or 'arrival') must be integers"), -1;
  a->value = em_json_num(o, "value");
  a->ts = em_json_num(o, "ts");
  const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
  if (stop && !cJSON_IsBool(stop))
    return snprintf(err, errlen, "alert: key 'stop' must be true or false"), -1;
  a->stop = !stop || cJSON_IsTrue(stop); /* alerts from before onsets all asked to stop */
  return 0;
}

int em_alert_from_json(const cJSON *o, em_alert_t *a, char *err, size_t errlen)
{
  memset(a, 0, sizeof(*a));
  if (!cJSON_IsObject(o)) {
    snprintf(err, errlen, "alert: not a JSON object");
    return -1;
  }
  int rc = decode_kinds(o, a, err, errlen);
  if (!rc)
    rc = dup_field(o, "run", true, &a->run, err, errlen);
  if (!rc)
    rc = dup_field(o, "rule", true, &a->rule, err, errlen);
  if (!rc)
    rc = dup_field(o, "path", false, &a->path, err, errlen);
  if (!rc)
    rc = dup_field(o, "run_dir", false, &a->run_dir, err, errlen);
  if (!rc)
    rc = dup_field(o, "reason", false, &a->reason, err, errlen);
  if (rc)
    em_alert_free(a);
  return rc;
}

static char *dup_or_null(const char *s, bool *ok)
{
  char *d = s ? strdup(s) : NULL;
  *ok &= !s || d;
  return d;
}

int em_alert_copy(const em_alert_t *from, em_alert_t *to)
{
  bool ok = true;
  *to = *from;
  to->run = dup_or_null(from->run, &ok);
  to->rule = dup_or_null(from->rule, &ok);
  to->path = dup_or_null(from->path, &ok);
  to->run_dir = dup_or_null(from->run_dir, &ok);
  to->reason = dup_or_null(from->reason, &ok);
  if (!ok)
    em_alert_free(to);
  return ok ? 0 : -1;
}

void em_alert_free(em_alert_t *a)
{
  free(a->run);
  free(a->rule);
  free(a->path);
  free(a->run_dir);
  free(a->reason);
  memset(a, 0, sizeof(*a));
}
