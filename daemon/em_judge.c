/* SPDX-License-Identifier: MIT */
#include "em_judge.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_crc32c.h"

#define STATE_VERSION 1 /* of the persisted text: another one is replayed, never misread */

/* One rule's judging: its new firings go to out. pts[0] is point number first of the
 * run's points (a replay: 0; one more result: the count before it). */
typedef struct judge {
  size_t rule;
  const em_point_t *pts;
  size_t first;
  em_recorded_t *rec;
  em_verdicts_t *out;
  bool oom;
} judge_t;

/* v with room for one more of its n elements of `size` bytes (doubling, from `first`);
 * NULL on OOM, v untouched. */
static void *grow(void *v, size_t *cap, size_t n, size_t size, size_t first)
{
  if (n < *cap)
    return v;
  size_t more = *cap ? 2 * *cap : first;
  void *grown = realloc(v, more * size);
  if (grown)
    *cap = more;
  return grown;
}

void em_verdicts_free(em_verdicts_t *v)
{
  free(v->v);
  memset(v, 0, sizeof(*v));
}

static bool is_new(const em_recorded_t *r, const em_firing_t *f)
{
  if (f->cond != EM_COND_PLATEAU)
    return !r->fired[f->cond];
  return !r->has_plateau || f->best_step > r->plateau_step;
}

static void remember(em_recorded_t *r, const em_firing_t *f, const em_point_t *p)
{
  r->fired[f->cond] = true;
  if (f->cond == EM_COND_PLATEAU) {
    r->plateau_step = r->has_plateau && r->plateau_step > p->step ? r->plateau_step : p->step;
    r->has_plateau = true;
  }
}

static void on_fire(void *ctx, const em_rule_t *rule, const em_firing_t *f)
{
  (void)rule;
  judge_t *j = ctx;
  if (j->oom || !is_new(j->rec, f))
    return;
  em_verdicts_t *out = j->out;
  em_verdict_t *room = grow(out->v, &out->cap, out->n, sizeof(*out->v), 4);
  if (!room) {
    j->oom = true;
    return;
  }
  out->v = room;
  const em_point_t *p = &j->pts[f->at - j->first];
  out->v[out->n++] = (em_verdict_t){j->rule, *f, p};
  remember(j->rec, f, p);
}

bool em_judge_follows(const em_rule_t *r, const em_judge_state_t *st, int64_t prev_seq)
{
  return st->since_seq == r->since_seq && st->count > 0 && st->last_seq == prev_seq;
}

int em_judge_replay(const em_rules_t *rules, size_t rule, const em_point_t *pts, size_t n, em_recorded_t *rec,
                    em_judge_state_t *st, em_verdicts_t *out)
{
  const em_rule_t *r = &rules->v[rule];
  judge_t j = {.rule = rule, .pts = pts, .rec = rec, .out = out};
  *st = (em_judge_state_t){.since_seq = r->since_seq, .count = (int64_t)n, .last_seq = n ? pts[n - 1].seq : 0};
  em_rule_state_init(&st->rule);
  for (size_t i = 0; i < n; i++)
    em_rule_step(r, &st->rule, &pts[i], i, on_fire, &j);
  return j.oom ? -1 : 0;
}

int em_judge_next(const em_rules_t *rules, size_t rule, const em_point_t *p, em_recorded_t *rec,
                  em_judge_state_t *st, em_verdicts_t *out)
{
  judge_t j = {.rule = rule, .pts = p, .first = (size_t)st->count, .rec = rec, .out = out};
  em_rule_step(&rules->v[rule], &st->rule, p, (size_t)st->count, on_fire, &j);
  st->count++;
  st->last_seq = p->seq;
  return j.oom ? -1 : 0;
}

int em_judge(const em_rules_t *rules, const em_point_t *pts, size_t n, em_recorded_t *rec, em_verdict_t **out,
             size_t *nout)
{
  em_verdicts_t v = {0};
  em_judge_state_t scratch;
  for (size_t i = 0; i < rules->n; i++)
    if (em_judge_replay(rules, i, pts, n, &rec[i], &scratch, &v) != 0) {
      em_verdicts_free(&v);
      return -1;
    }
  *out = v.v;
  *nout = v.n;
  return 0;
}

/* ---------------------------------------------------------------- kept points */

bool em_run_points_current(const em_run_points_t *rp, int64_t rid, int64_t before)
{
  return rp->rid == rid && rp->n > 0 && rp->v[rp->n - 1].seq == before;
}

int em_run_points_insert(em_run_points_t *rp, const em_point_t *p)
{
  size_t lo = 0, hi = rp->n; /* the first point of a step >= p's */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (rp->v[mid].step < p->step)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < rp->n && rp->v[lo].step == p->step)
    return -1;
  em_point_t *room = grow(rp->v, &rp->cap, rp->n, sizeof(*rp->v), 64);
  if (!room)
    return -1;
  rp->v = room;
  memmove(&rp->v[lo + 1], &rp->v[lo], (rp->n - lo) * sizeof(*rp->v));
  rp->v[lo] = *p;
  rp->n++;
  return 0;
}

void em_run_points_drop(em_run_points_t *rp)
{
  free(rp->v);
  memset(rp, 0, sizeof(*rp));
}

/* ---------------------------------------------------------------- persisted */

#define EXACT_INT (INT64_C(1) << 53) /* integers JSON numbers keep exactly */

/* Every field but the checksum; NULL on OOM. */
static cJSON *state_body(const em_judge_state_t *st)
{
  cJSON *o = cJSON_CreateObject(), *rule = cJSON_CreateObject();
  if (!o || !rule) {
    cJSON_Delete(o);
    cJSON_Delete(rule);
    return NULL;
  }
  cJSON_AddNumberToObject(o, "version", STATE_VERSION);
  const int64_t ints[] = {st->since_seq, st->count, st->last_seq};
  const char *keys[] = {"since_seq", "count", "last_seq"};
  for (size_t i = 0; i < 3; i++) {
    char num[24];
    snprintf(num, sizeof(num), "%lld", (long long)ints[i]);
    cJSON_AddRawToObject(o, keys[i], ints[i] >= -EXACT_INT && ints[i] <= EXACT_INT ? num : "null");
  }
  em_rule_state_to_json(&st->rule, rule);
  cJSON_AddItemToObject(o, "rule", rule);
  return o;
}

/* The body's text, with room for the checksum; NULL on OOM. */
static char *body_text(const em_judge_state_t *st, size_t *len)
{
  cJSON *o = state_body(st);
  char *body = o ? cJSON_PrintBuffered(o, 1024, false) : NULL;
  cJSON_Delete(o);
  char *text = body ? realloc(body, (*len = strlen(body)) + 24) : NULL;
  if (!text)
    free(body);
  return text;
}

/* The text ends with the CRC-32C of the body before it: what a state reads back as must
 * print as it was written, so a damaged row that still parses (a digit changed) is
 * refused too, not trusted. */
char *em_judge_state_print(const em_judge_state_t *st)
{
  size_t len;
  char *text = body_text(st, &len);
  if (text) /* {...} -> {...,"crc":N} */
    snprintf(text + len - 1, 24, ",\"crc\":%u}", (unsigned)em_crc32c(text, len));
  return text;
}

static bool body_crc(const em_judge_state_t *st, uint32_t *crc)
{
  size_t len;
  char *text = body_text(st, &len);
  if (text)
    *crc = em_crc32c(text, len);
  free(text);
  return text != NULL;
}

static bool exact_int(const cJSON *o, const char *key, int64_t *out)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > (double)EXACT_INT)
    return false;
  *out = (int64_t)v->valuedouble;
  return true;
}

int em_judge_state_parse(const char *text, em_judge_state_t *st)
{
  memset(st, 0, sizeof(*st));
  cJSON *o = text ? cJSON_Parse(text) : NULL;
  int64_t version = 0, crc = -1;
  uint32_t want;
  bool ok = cJSON_IsObject(o) && exact_int(o, "version", &version) && version == STATE_VERSION &&
            exact_int(o, "since_seq", &st->since_seq) && exact_int(o, "count", &st->count) && st->count >= 0 &&
            exact_int(o, "last_seq", &st->last_seq) && exact_int(o, "crc", &crc) &&
            em_rule_state_from_json(cJSON_GetObjectItemCaseSensitive(o, "rule"), &st->rule) == 0 &&
            body_crc(st, &want) && crc == (int64_t)want;
  cJSON_Delete(o);
  return ok ? 0 : -1;
}
