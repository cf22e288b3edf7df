/* SPDX-License-Identifier: MIT */
/* Early-stop rules: strict parsing and the replay that judges a run.
 *
 * Semantics are Lightning's EarlyStopping where it has them: the first value is always
 * an improvement; later, a value improves only when it beats the best by more than
 * min_delta; patience counts checks without improvement (here: analysed checkpoints);
 * thresholds are inclusive. Unlike a training callback the daemon keeps watching after
 * a firing, so a plateau fires once and re-arms when the run improves again, and a
 * threshold or check_finite condition fires once per run. */
#include "em_rules.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const monitors[] = {[EM_MON_NONE] = "none", [EM_MON_EMERGENCE] = "emergence",
                                       [EM_MON_ALPHA0] = "alpha0", [EM_MON_WIDTH] = "width"};
static const char *const conditions[] = {[EM_COND_PLATEAU] = "plateau", [EM_COND_STOPPING] = "stopping_threshold",
                                         [EM_COND_DIVERGENCE] = "divergence_threshold",
                                         [EM_COND_FINITE] = "check_finite", [EM_COND_ONSET] = "onset",
                                         [EM_COND_MANUAL] = "manual"};

const char *em_monitor_name(em_monitor_t m) { return monitors[m]; }
const char *em_condition_name(em_condition_t c) { return conditions[c]; }

static int find_name(const char *const *names, int n, const char *name)
{
  for (int i = 0; name && i < n; i++)
    if (strcmp(names[i], name) == 0)
      return i;
  return -1;
}

int em_monitor_parse(const char *name, em_monitor_t *out)
{
  int i = find_name(monitors, (int)(sizeof(monitors) / sizeof(*monitors)), name);
  if (i >= 0)
    *out = (em_monitor_t)i;
  return i >= 0 ? 0 : -1;
}

int em_condition_parse(const char *name, em_condition_t *out)
{
  int i = find_name(conditions, (int)(sizeof(conditions) / sizeof(*conditions)), name);
  if (i >= 0)
    *out = (em_condition_t)i;
  return i >= 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- parsing */

static int bad(char *err, size_t errlen, const char *who, const char *fmt, ...)
{
  size_t n = (size_t)snprintf(err, errlen, "%s: ", who);
  va_list ap;
  va_start(ap, fmt);
  if (n < errlen)
    vsnprintf(err + n, errlen - n, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static bool valid_name(const char *s)
{
  size_t n = strlen(s);
  if (n == 0 || n > EM_RULE_NAME_MAX)
    return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("_.-", *s)))
      return false;
  return true;
}

static bool finite_number(const cJSON *v) { return cJSON_IsNumber(v) && isfinite(v->valuedouble); }

/* One key of a rule; who names the rule. */
/* The keys that are a number >= 0, and those that are true or false. */
static const struct {
  const char *key;
  size_t off;
  const char *unit;
} nonneg_keys[] = {
    {"min_delta", offsetof(em_rule_t, min_delta), ""},
    {"min_delta_se", offsetof(em_rule_t, min_delta_se), " (standard errors)"},
    {"min_rise", offsetof(em_rule_t, min_rise), ""},
    {"min_rise_se", offsetof(em_rule_t, min_rise_se), " (standard errors)"},
};
static const struct {
  const char *key;
  size_t off;
} bool_keys[] = {
    {"onset", offsetof(em_rule_t, onset)},
    {"stop", offsetof(em_rule_t, stop)},
    {"check_finite", offsetof(em_rule_t, check_finite)},
};

/* A key of the tables above: 1 when k is none of them, else 0 or the error. */
static int simple_key(em_rule_t *r, const cJSON *v, const char *who, char *err, size_t errlen)
{
  const char *k = v->string;
  for (size_t i = 0; i < sizeof(nonneg_keys) / sizeof(*nonneg_keys); i++) {
    if (strcmp(k, nonneg_keys[i].key) != 0)
      continue;
    if (!finite_number(v) || v->valuedouble < 0)
      return bad(err, errlen, who, "key '%s': must be a number >= 0%s", k, nonneg_keys[i].unit);
    *(double *)((char *)r + nonneg_keys[i].off) = v->valuedouble;
    return 0;
  }
  for (size_t i = 0; i < sizeof(bool_keys) / sizeof(*bool_keys); i++) {
    if (strcmp(k, bool_keys[i].key) != 0)
      continue;
    if (!cJSON_IsBool(v))
      return bad(err, errlen, who, "key '%s': must be true or false", k);
    *(bool *)((char *)r + bool_keys[i].off) = cJSON_IsTrue(v);
    return 0;
  }
  return 1;
}

static int rule_key(em_rule_t *r, const cJSON *v, const char *who, bool *explicit_patience, char *err, size_t errlen)
{
  const char *k = v->string;
  if (strcmp(k, "name") == 0)
    return 0; /* read first, by the caller */
  int rc = simple_key(r, v, who, err, errlen);
  if (rc != 1)
    return rc;
  if (strcmp(k, "monitor") == 0) {
    for (int m = EM_MON_EMERGENCE; m <= EM_MON_WIDTH; m++)
      if (cJSON_IsString(v) && strcmp(v->valuestring, monitors[m]) == 0) {
        r->monitor = (em_monitor_t)m;
        return 0;
      }
    return bad(err, errlen, who, "key 'monitor': must be \"emergence\", \"alpha0\" or \"width\"");
  }
  if (strcmp(k, "mode") == 0) {
    if (!cJSON_IsString(v) || (strcmp(v->valuestring, "max") != 0 && strcmp(v->valuestring, "min") != 0))
      return bad(err, errlen, who, "key 'mode': must be \"max\" or \"min\"");
    return 0; /* applied once the monitor (and its default mode) is known */
  }
  if (strcmp(k, "smoothing") == 0) {
    if (!finite_number(v) || v->valuedouble < 0 || v->valuedouble >= 1)
      return bad(err, errlen, who, "key 'smoothing': must be a number in [0, 1)");
    r->smoothing = v->valuedouble;
    return 0;
  }
  if (strcmp(k, "patience") == 0) {
    if (!finite_number(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > 100000)
      return bad(err, errlen, who, "key 'patience': must be an integer in 1..100000 (checkpoints)");
    r->patience = (int)v->valuedouble;
    *explicit_patience = true;
    return 0;
  }
  if (strcmp(k, "stopping_threshold") == 0 || strcmp(k, "divergence_threshold") == 0) {
    if (!finite_number(v))
      return bad(err, errlen, who, "key '%s': must be a finite number", k);
    bool stopping = k[0] == 's';
    *(stopping ? &r->has_stopping : &r->has_divergence) = true;
    *(stopping ? &r->stopping : &r->divergence) = v->valuedouble;
    return 0;
  }
  return bad(err, errlen, who, "unknown key '%s'", k);
}

/* An onset only reports ("a capability may be forming"): it stops the job only when the
 * rule says so. Its defaults (docs/ALERTS.md): a rise beyond 2 SE for 2 checkpoints. */
static void onset_defaults(em_rule_t *r, const cJSON *obj, bool explicit_patience)
{
  if (!cJSON_GetObjectItemCaseSensitive(obj, "stop"))
    r->stop = !r->onset;
  if (!r->onset)
    return;
  if (!explicit_patience)
    r->patience = 2;
  if (!cJSON_GetObjectItemCaseSensitive(obj, "min_rise_se"))
    r->min_rise_se = 2;
}

int em_rule_parse(const cJSON *obj, size_t index, em_rule_t *r, char *err, size_t errlen)
{
  char who[EM_RULE_NAME_MAX + 40];
  snprintf(who, sizeof(who), "alerts[%zu]", index);
  memset(r, 0, sizeof(*r));
  r->patience = 3;
  if (!cJSON_IsObject(obj))
    return bad(err, errlen, who, "must be a JSON object");
  const cJSON *name = cJSON_GetObjectItemCaseSensitive(obj, "name");
  if (!name)
    return bad(err, errlen, who, "missing key 'name'");
  if (!cJSON_IsString(name) || !valid_name(name->valuestring))
    return bad(err, errlen, who, "key 'name': must be 1..%d of A-Z a-z 0-9 _ . -", EM_RULE_NAME_MAX);
  if (strcmp(name->valuestring, EM_RULE_MANUAL) == 0)
    return bad(err, errlen, who, "key 'name': '" EM_RULE_MANUAL "' is the name of stops asked by hand%s", "");
  snprintf(r->name, sizeof(r->name), "%s", name->valuestring);
  snprintf(who, sizeof(who), "alerts[%zu] '%s'", index, r->name);
  bool explicit_patience = false, has_mode = false, monitor_only = false;
  for (const cJSON *v = obj->child; v; v = v->next) {
    int rc = rule_key(r, v, who, &explicit_patience, err, errlen);
    if (rc)
      return rc;
    if (strcmp(v->string, "mode") == 0 || strncmp(v->string, "min_delta", 9) == 0 || strcmp(v->string, "smoothing") == 0 ||
        strcmp(v->string, "patience") == 0 || strstr(v->string, "_threshold"))
      monitor_only = true;
    has_mode |= strcmp(v->string, "mode") == 0;
  }
  if (r->monitor == EM_MON_NONE && monitor_only)
    return bad(err, errlen, who, "mode, min_delta, min_delta_se, smoothing, patience and thresholds need key 'monitor'");
  if (r->monitor == EM_MON_NONE && !r->check_finite)
    return bad(err, errlen, who, "nothing to judge: give key 'monitor' or \"check_finite\": true");
  if (r->onset && (r->has_stopping || r->has_divergence))
    return bad(err, errlen, who, "key 'onset': a rule judges an onset or thresholds, not both");
  if (!r->onset && (cJSON_GetObjectItemCaseSensitive(obj, "min_rise") ||
                    cJSON_GetObjectItemCaseSensitive(obj, "min_rise_se")))
    return bad(err, errlen, who, "keys 'min_rise' and 'min_rise_se' need \"onset\": true");
  if (r->onset && r->monitor == EM_MON_NONE)
    return bad(err, errlen, who, "key 'onset' needs key 'monitor'");
  onset_defaults(r, obj, explicit_patience);
  const cJSON *mode = cJSON_GetObjectItemCaseSensitive(obj, "mode");
  r->mode_max = has_mode ? strcmp(mode->valuestring, "max") == 0 : r->monitor != EM_MON_ALPHA0;
  if (r->has_stopping && r->has_divergence &&
      (r->mode_max ? r->divergence >= r->stopping : r->divergence <= r->stopping))
    return bad(err, errlen, who, "key 'divergence_threshold': must be %s stopping_threshold when mode is %s",
               r->mode_max ? "below" : "above", r->mode_max ? "max" : "min");
  r->plateau = !r->onset && r->monitor != EM_MON_NONE && (explicit_patience || (!r->has_stopping && !r->has_divergence));
  return 0;
}

int em_rules_parse(const cJSON *list, em_rules_t *out, char *err, size_t errlen)
{
  memset(out, 0, sizeof(*out));
  if (!cJSON_IsArray(list))
    return bad(err, errlen, "alerts", "must be a list of rules");
  size_t n = (size_t)cJSON_GetArraySize(list);
  if (n > 256)
    return bad(err, errlen, "alerts", "at most 256 rules");
  out->v = calloc(n ? n : 1, sizeof(*out->v));
  if (!out->v)
    return bad(err, errlen, "alerts", "out of memory");
  const cJSON *item;
  cJSON_ArrayForEach(item, list)
  {
    int rc = em_rule_parse(item, out->n, &out->v[out->n], err, errlen);
    for (size_t j = 0; !rc && j < out->n; j++)
      if (strcmp(out->v[j].name, out->v[out->n].name) == 0)
        rc = bad(err, errlen, "alerts", "rule name '%s' is used twice", out->v[j].name);
    if (rc) {
      em_rules_free(out);
      return rc;
    }
    out->n++;
  }
  return 0;
}

void em_rules_free(em_rules_t *rules)
{
  free(rules->v);
  memset(rules, 0, sizeof(*rules));
}

int em_rules_copy(const em_rules_t *from, em_rules_t *to)
{
  to->n = 0;
  to->v = calloc(from->n ? from->n : 1, sizeof(*to->v));
  if (!to->v)
    return -ENOMEM;
  if (from->n) /* an empty list has no array to copy from */
    memcpy(to->v, from->v, from->n * sizeof(*to->v));
  to->n = from->n;
  return 0;
}

bool em_rules_check_finite(const em_rules_t *rules)
{
  for (size_t i = 0; i < rules->n; i++)
    if (rules->v[i].check_finite)
      return true;
  return false;
}

char *em_rule_spec(const em_rule_t *r)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", r->name);
  if (r->monitor != EM_MON_NONE) {
    cJSON_AddStringToObject(o, "monitor", monitors[r->monitor]);
    cJSON_AddStringToObject(o, "mode", r->mode_max ? "max" : "min");
    if (r->plateau) {
      cJSON_AddNumberToObject(o, "min_delta", r->min_delta);
      if (r->min_delta_se > 0) /* only when set: specs of older rules stay as they were */
        cJSON_AddNumberToObject(o, "min_delta_se", r->min_delta_se);
      cJSON_AddNumberToObject(o, "patience", r->patience);
    }
    if (r->smoothing > 0)
      cJSON_AddNumberToObject(o, "smoothing", r->smoothing);
    if (r->onset) {
      cJSON_AddTrueToObject(o, "onset");
      cJSON_AddNumberToObject(o, "min_rise", r->min_rise);
      cJSON_AddNumberToObject(o, "min_rise_se", r->min_rise_se);
      cJSON_AddNumberToObject(o, "patience", r->patience);
    }
    if (r->has_stopping)
      cJSON_AddNumberToObject(o, "stopping_threshold", r->stopping);
    if (r->has_divergence)
      cJSON_AddNumberToObject(o, "divergence_threshold", r->divergence);
  }
  cJSON_AddBoolToObject(o, "check_finite", r->check_finite);
  if (r->stop != !r->onset) /* only when not the default: specs of older rules stay as they were */
    cJSON_AddBoolToObject(o, "stop", r->stop);
  char *text = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return text;
}

bool em_rules_equal(const em_rules_t *a, const em_rules_t *b)
{
  if (a->n != b->n)
    return false;
  bool same = true;
  for (size_t i = 0; i < a->n && same; i++) {
    char *x = em_rule_spec(&a->v[i]), *y = em_rule_spec(&b->v[i]);
    same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
  }
  return same;
}

/* ---------------------------------------------------------------- on_alert */

void em_on_alert_default(em_on_alert_t *a)
{
  memset(a, 0, sizeof(*a));
  a->stop_file = true;
  a->exec_timeout = 30;
}

void em_on_alert_free(em_on_alert_t *a)
{
  for (char **p = a->exec; p && *p; p++)
    free(*p);
  free(a->exec);
  em_on_alert_default(a);
}

static int set_exec(em_on_alert_t *a, const cJSON *v, char *err, size_t errlen)
{
  int n = cJSON_GetArraySize(v);
  if (!cJSON_IsArray(v) || n < 1 || n > 64)
    return bad(err, errlen, "on_alert", "key 'exec': must be a list of 1..64 strings (argv, no shell)");
  a->exec = calloc((size_t)n + 1, sizeof(char *));
  if (!a->exec)
    return bad(err, errlen, "on_alert", "out of memory");
  int i = 0;
  const cJSON *s;
  cJSON_ArrayForEach(s, v)
  {
    if (!cJSON_IsString(s) || (i == 0 && !s->valuestring[0]))
      return bad(err, errlen, "on_alert", "key 'exec': element %d must be a%s string", i, i ? "" : " non-empty");
    if (!(a->exec[i++] = strdup(s->valuestring)))
      return bad(err, errlen, "on_alert", "out of memory");
  }
  return 0;
}

int em_on_alert_parse(const cJSON *obj, em_on_alert_t *a, char *err, size_t errlen)
{
  em_on_alert_default(a);
  if (!cJSON_IsObject(obj))
    return bad(err, errlen, "on_alert", "must be a JSON object");
  int rc = 0;
  for (const cJSON *v = obj->child; v && !rc; v = v->next) {
    if (strcmp(v->string, "stop_file") == 0) {
      if (!cJSON_IsBool(v))
        rc = bad(err, errlen, "on_alert", "key 'stop_file': must be true or false");
      a->stop_file = cJSON_IsTrue(v);
    } else if (strcmp(v->string, "exec") == 0) {
      if (a->exec)
        rc = bad(err, errlen, "on_alert", "key 'exec' given twice");
      else
        rc = set_exec(a, v, err, errlen);
    } else if (strcmp(v->string, "exec_timeout") == 0) {
      if (!finite_number(v) || v->valuedouble <= 0 || v->valuedouble > 86400)
        rc = bad(err, errlen, "on_alert", "key 'exec_timeout': must be seconds in (0, 86400]");
      else
        a->exec_timeout = v->valuedouble;
    } else {
      rc = bad(err, errlen, "on_alert", "unknown key '%s'", v->string);
    }
  }
  if (rc)
    em_on_alert_free(a);
  return rc;
}

int em_on_alert_copy(const em_on_alert_t *from, em_on_alert_t *to)
{
  *to = *from;
  to->exec = NULL;
  if (!from->exec)
    return 0;
  size_t n = 0;
  while (from->exec[n])
    n++;
  if (!(to->exec = calloc(n + 1, sizeof(char *))))
    return -ENOMEM;
  for (size_t i = 0; i < n; i++)
    if (!(to->exec[i] = strdup(from->exec[i]))) {
      em_on_alert_free(to);
      return -ENOMEM;
    }
  return 0;
}

bool em_on_alert_equal(const em_on_alert_t *a, const em_on_alert_t *b)
{
  if (a->stop_file != b->stop_file || a->exec_timeout != b->exec_timeout || !a->exec != !b->exec)
    return false;
  size_t i = 0;
  for (; a->exec && a->exec[i] && b->exec[i]; i++)
    if (strcmp(a->exec[i], b->exec[i]) != 0)
      return false;
  return !a->exec || (!a->exec[i] && !b->exec[i]);
}

/* ---------------------------------------------------------------- judging */

static void fire_at(em_condition_t cond, size_t at, double value, em_firing_t *f)
{
  memset(f, 0, sizeof(*f));
  f->cond = cond;
  f->at = at;
  f->value = value;
}

void em_place_text(char *buf, size_t len, int64_t place, bool by_arrival)
{
  snprintf(buf, len, by_arrival ? "checkpoint #%lld (arrival order)" : "step %lld", (long long)place);
}

void em_rule_state_init(em_rule_state_t *st)
{
  memset(st, 0, sizeof(*st));
  st->armed = st->se_known = true;
}

/* The value judged: TensorBoard's debiased EMA of the values so far (S = 0: the value
 * itself), and its standard error when every SE so far is known (independent errors). */
static void smooth(const em_rule_t *r, em_rule_state_t *j, double v, double se, double *out, double *out_se)
{
  double s = r->smoothing;
  j->se_known &= !isnan(se);
  j->num = s * j->num + (1 - s) * v;
  j->den = s * j->den + (1 - s);
  j->var = s * s * j->var + (1 - s) * (1 - s) * (isnan(se) ? 0 : se * se);
  *out = j->num / j->den;
  *out_se = j->se_known ? sqrt(j->var) / j->den : NAN;
}

static void judge_thresholds(const em_rule_t *r, em_rule_state_t *j, size_t i, double v, em_fire_fn fire, void *ctx)
{
  const char *what = monitors[r->monitor];
  em_firing_t f;
  if (r->has_stopping && !j->stopped && (r->mode_max ? v >= r->stopping : v <= r->stopping)) {
    j->stopped = true;
    fire_at(EM_COND_STOPPING, i, v, &f);
    snprintf(f.reason, sizeof(f.reason), "%s %.4f reached stopping_threshold %g", what, v, r->stopping);
    fire(ctx, r, &f);
  }
  if (r->has_divergence && !j->diverged && (r->mode_max ? v <= r->divergence : v >= r->divergence)) {
    j->diverged = true;
    fire_at(EM_COND_DIVERGENCE, i, v, &f);
    snprintf(f.reason, sizeof(f.reason), "%s %.4f reached divergence_threshold %g", what, v, r->divergence);
    fire(ctx, r, &f);
  }
}

/* An improvement beats the best by more than min_delta and, with min_delta_se, by more
 * than K standard errors of the value (an unknown SE leaves min_delta alone). */
static void judge_plateau(const em_rule_t *r, em_rule_state_t *j, size_t i, const em_point_t *p, double v, double se,
                          em_fire_fn fire, void *ctx)
{
  double need = r->min_delta;
  if (r->min_delta_se > 0 && !isnan(se))
    need = fmax(need, r->min_delta_se * se);
  if (!j->have_best || (r->mode_max ? v - j->best > need : j->best - v > need)) {
    j->have_best = j->armed = true;
    j->best = v;
    j->best_step = p->step;
    j->best_by_arrival = p->by_arrival;
    j->wait = 0;
  } else if (++j->wait >= r->patience && j->armed) {
    em_firing_t f;
    char at[64];
    j->armed = false;
    fire_at(EM_COND_PLATEAU, i, v, &f);
    f.best = j->best;
    f.best_step = j->best_step;
    f.best_by_arrival = j->best_by_arrival;
    em_place_text(at, sizeof(at), j->best_step, j->best_by_arrival);
    snprintf(f.reason, sizeof(f.reason), "%s%s has not improved by more than %g for %d checkpoint%s (best %.4f "
             "at %s)", r->smoothing > 0 ? "smoothed " : "", monitors[r->monitor], need, j->wait,
             j->wait == 1 ? "" : "s", j->best, at);
    fire(ctx, r, &f);
  }
}

/* Onset: after its running minimum (for mode max; maximum for mode min) the value has
 * risen beyond max(min_rise, min_rise_se * SE) for patience checkpoints in a row. Once. */
static void judge_onset(const em_rule_t *r, em_rule_state_t *j, size_t i, const em_point_t *p, double v, double se,
                        em_fire_fn fire, void *ctx)
{
  double sign = r->mode_max ? 1 : -1, need = r->min_rise;
  if (!isnan(se))
    need = fmax(need, r->min_rise_se * se);
  if (!j->have_extreme || sign * (v - j->extreme) < 0) {
    j->have_extreme = true;
    j->extreme = v;
    j->extreme_step = p->step;
    j->extreme_by_arrival = p->by_arrival;
    j->above = 0;
    return;
  }
  j->above = sign * (v - j->extreme) > need ? j->above + 1 : 0;
  if (j->above < r->patience || j->onset_fired)
    return;
  em_firing_t f;
  char at[64];
  j->onset_fired = true;
  fire_at(EM_COND_ONSET, i, v, &f);
  f.best = j->extreme;
  f.best_step = j->extreme_step;
  f.best_by_arrival = j->extreme_by_arrival;
  em_place_text(at, sizeof(at), j->extreme_step, j->extreme_by_arrival);
  snprintf(f.reason, sizeof(f.reason), "%s%s %.4f has %s beyond %g of its %s %.4f (%s) for %d checkpoint%s: "
           "the structure has turned, a capability may be forming", r->smoothing > 0 ? "smoothed " : "",
           monitors[r->monitor], v, r->mode_max ? "risen" : "fallen", need, r->mode_max ? "minimum" : "maximum",
           j->extreme, at, j->above, j->above == 1 ? "" : "s");
  fire(ctx, r, &f);
}

static void judge_nonfinite(const em_rule_t *r, em_rule_state_t *j, size_t i, const em_point_t *p, em_fire_fn fire,
                            void *ctx)
{
  if (!r->check_finite || j->nonfinite)
    return;
  em_firing_t f;
  j->nonfinite = true;
  fire_at(EM_COND_FINITE, i, NAN, &f);
  if (p->error)
    snprintf(f.reason, sizeof(f.reason), "non-finite weights: %s", p->error);
  else
    snprintf(f.reason, sizeof(f.reason), "non-finite weights in %s", p->path ? p->path : "a checkpoint");
  fire(ctx, r, &f);
}

double em_rule_step(const em_rule_t *r, em_rule_state_t *st, const em_point_t *p, size_t at, em_fire_fn fire,
                    void *ctx)
{
  bool is_base = !p->nonfinite && !st->based; /* the first analysed point, whatever its seq */
  st->based |= is_base;
  if (p->seq <= r->since_seq)
    return NAN;
  if (p->nonfinite) {
    judge_nonfinite(r, st, at, p, fire, ctx);
    return NAN;
  }
  double v = r->monitor == EM_MON_NONE ? NAN : p->value[r->monitor - 1];
  if (isnan(v) || is_base) /* the baseline is the reference (its E is 0 by definition): never a best */
    return NAN;
  double se = p->se[r->monitor - 1];
  smooth(r, st, v, se, &v, &se);
  judge_thresholds(r, st, at, v, fire, ctx);
  if (r->plateau)
    judge_plateau(r, st, at, p, v, se, fire, ctx);
  if (r->onset)
    judge_onset(r, st, at, p, v, se, fire, ctx);
  return v;
}

void em_rule_replay(const em_rule_t *r, const em_point_t *pts, size_t n, em_fire_fn fire, void *ctx)
{
  em_rule_state_t st;
  em_rule_state_init(&st);
  for (size_t i = 0; i < n; i++)
    em_rule_step(r, &st, &pts[i], i, fire, ctx);
}

static void fire_nothing(void *ctx, const em_rule_t *r, const em_firing_t *f)
{
  (void)ctx, (void)r, (void)f;
}

void em_rule_judged_values(const em_rule_t *r, const em_point_t *pts, size_t n, double *out)
{
  em_rule_state_t st;
  em_rule_state_init(&st);
  for (size_t i = 0; i < n; i++)
    out[i] = em_rule_step(r, &st, &pts[i], i, fire_nothing, NULL);
}

/* ---------------------------------------------------------------- the state as JSON */

/* Every field of em_rule_state_t, by kind. A step is an integer JSON keeps exactly
 * (|n| <= 2^53); a count, one in 0..INT_MAX. */
typedef enum field_kind { F_BOOL, F_DOUBLE, F_STEP, F_COUNT } field_kind_t;
static const struct {
  const char *key;
  size_t off;
  field_kind_t kind;
} state_fields[] = {
#define F(name, kind) {#name, offsetof(em_rule_state_t, name), kind}
    F(based, F_BOOL),        F(stopped, F_BOOL),        F(diverged, F_BOOL),     F(nonfinite, F_BOOL),
    F(have_best, F_BOOL),    F(armed, F_BOOL),          F(best, F_DOUBLE),       F(best_step, F_STEP),
    F(best_by_arrival, F_BOOL), F(wait, F_COUNT),       F(se_known, F_BOOL),     F(num, F_DOUBLE),
    F(den, F_DOUBLE),        F(var, F_DOUBLE),          F(have_extreme, F_BOOL), F(onset_fired, F_BOOL),
    F(extreme, F_DOUBLE),    F(extreme_step, F_STEP),   F(extreme_by_arrival, F_BOOL), F(above, F_COUNT),
#undef F
};
#define EXACT_INT 9007199254740992.0 /* 2^53 */

static bool exact_step(int64_t v) { return v >= -(INT64_C(1) << 53) && v <= INT64_C(1) << 53; }

/* A double in 17 significant digits, which strtod reads back to the same bits (cJSON's printing
 * may round the last digit); "null" when not finite, which em_rule_state_from_json refuses. */
static void add_exact(cJSON *o, const char *key, double v)
{
  char text[40];
  snprintf(text, sizeof(text), "%.17g", v);
  cJSON_AddRawToObject(o, key, isfinite(v) ? text : "null");
}

void em_rule_state_to_json(const em_rule_state_t *st, cJSON *o)
{
  for (size_t i = 0; i < sizeof(state_fields) / sizeof(*state_fields); i++) {
    const char *field = (const char *)st + state_fields[i].off;
    const char *key = state_fields[i].key;
    if (state_fields[i].kind == F_BOOL)
      cJSON_AddBoolToObject(o, key, *(const bool *)field);
    else if (state_fields[i].kind == F_DOUBLE)
      add_exact(o, key, *(const double *)field);
    else if (state_fields[i].kind == F_COUNT)
      add_exact(o, key, *(const int *)field);
    else /* a step JSON cannot carry exactly is written as null: refused when read */
      add_exact(o, key, exact_step(*(const int64_t *)field) ? (double)*(const int64_t *)field : NAN);
  }
}

static bool read_field(const cJSON *v, field_kind_t kind, char *field)
{
  if (kind == F_BOOL) {
    *(bool *)field = cJSON_IsTrue(v);
    return cJSON_IsBool(v);
  }
  if (!finite_number(v))
    return false;
  double d = v->valuedouble;
  if (kind == F_DOUBLE)
    *(double *)field = d;
  else if (kind == F_STEP && d == floor(d) && fabs(d) <= EXACT_INT)
    *(int64_t *)field = (int64_t)d;
  else if (kind == F_COUNT && d == floor(d) && d >= 0 && d <= 2147483647.0)
    *(int *)field = (int)d;
  else
    return false;
  return true;
}

int em_rule_state_from_json(const cJSON *o, em_rule_state_t *st)
{
  em_rule_state_init(st);
  for (size_t i = 0; i < sizeof(state_fields) / sizeof(*state_fields); i++)
    if (!read_field(cJSON_GetObjectItemCaseSensitive(o, state_fields[i].key), state_fields[i].kind,
                    (char *)st + state_fields[i].off))
      return -1;
  return 0;
}
