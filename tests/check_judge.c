/* SPDX-License-Identifier: MIT */
/* The live judge against the full replay (daemon/em_judge.h). Random runs arrive as the
 * daemon sees them (in step order, newest first at start-up, shuffled, late, below the
 * baseline with E re-measured) and each arrival is judged twice: by a replay of the whole
 * history, and as the store does it, from the state kept after the previous arrival
 * (persisted as text and read back, as across a restart) when the new point is the
 * run's last and the state ends at the one before it, else by a replay. Both must give
 * the same firings and the same state, for plateau (min_delta, min_delta_se, smoothing,
 * mode min), thresholds, onset and check_finite rules; and the kept state must really be
 * used, or the comparison would prove nothing. A state that does not read (corrupt,
 * truncated, another version) is refused, never trusted. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_judge.h"
#include "suites.h"

#define MAX_POINTS 40

static const char *const rule_specs[] = {
  "{\"name\":\"p\",\"monitor\":\"emergence\",\"min_delta\":0.01,\"patience\":3}",
  "{\"name\":\"pse\",\"monitor\":\"emergence\",\"min_delta_se\":2,\"patience\":2}",
  "{\"name\":\"ps\",\"monitor\":\"emergence\",\"min_delta\":0.002,\"smoothing\":0.6,\"patience\":2}",
  "{\"name\":\"pmin\",\"monitor\":\"alpha0\",\"min_delta\":0.001,\"min_delta_se\":0.5,\"patience\":1}",
  "{\"name\":\"t\",\"monitor\":\"emergence\",\"stopping_threshold\":0.25,\"divergence_threshold\":-0.2}",
  "{\"name\":\"ts\",\"monitor\":\"emergence\",\"stopping_threshold\":0.2,\"smoothing\":0.5}",
  "{\"name\":\"tw\",\"monitor\":\"width\",\"stopping_threshold\":1.2,\"patience\":2}",
  "{\"name\":\"o\",\"monitor\":\"emergence\",\"onset\":true}",
  "{\"name\":\"os\",\"monitor\":\"emergence\",\"onset\":true,\"min_rise\":0.02,\"patience\":1,\"smoothing\":0.3}",
  "{\"name\":\"omin\",\"monitor\":\"alpha0\",\"onset\":true,\"min_rise_se\":1,\"stop\":true}",
  "{\"name\":\"f\",\"check_finite\":true}",
  "{\"name\":\"fe\",\"check_finite\":true,\"monitor\":\"emergence\",\"divergence_threshold\":-0.1}",
};
#define NRULES (sizeof(rule_specs) / sizeof(*rule_specs))

static em_rules_t all_rules(void)
{
  em_rules_t rules;
  char err[256] = "", list[4096] = "[";
  for (size_t i = 0; i < NRULES; i++)
    snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? "," : "", rule_specs[i]);
  strcat(list, "]");
  cJSON *j = cJSON_Parse(list);
  ck_assert_msg(em_rules_parse(j, &rules, err, sizeof(err)) == 0, "%s", err);
  cJSON_Delete(j);
  return rules;
}

static uint64_t rng_state;
static uint64_t rnd(void) /* xorshift64*: the same runs on every machine */
{
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}
static double uniform(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* A run as the store holds it: its points in step order, the seqs it hands out. */
typedef struct run {
  em_point_t pts[MAX_POINTS];
  size_t n;
  int64_t next_seq;
  double e, drift;          /* the random walk of E, and its trend */
} run_t;

static run_t new_run(void) { return (run_t){.drift = (uniform() - 0.5) * 0.04}; }

/* A new checkpoint of step `step`: values on a random walk, sometimes unknown, sometimes
 * without SE, now and then non-finite. */
static em_point_t new_point(run_t *run, int64_t step)
{
  run->e += run->drift + (uniform() - 0.5) * 0.06;
  double se = uniform() < 0.15 ? NAN : uniform() * 0.02;
  em_point_t p = {.step = step, .seq = ++run->next_seq, .by_arrival = step % 7 == 3, .path = "c",
                  .value = {uniform() < 0.05 ? NAN : run->e, 0.5 - run->e / 3, 1 + run->e},
                  .se = {se, se / 2, isnan(se) ? NAN : se * 3}, .nonfinite = uniform() < 0.04,
                  .error = "w holds NaN"};
  return p;
}

/* Inserts p at its place (after points of the same step, as ORDER BY step, id puts a
 * new checkpoint); a new lowest step re-baselines: every other E is measured again and
 * gets a new seq, in step order, as em_store's rebaseline does. Returns p's index. */
static size_t arrive(run_t *run, em_point_t p)
{
  size_t at = run->n;
  while (at > 0 && run->pts[at - 1].step > p.step)
    at--;
  memmove(&run->pts[at + 1], &run->pts[at], (run->n - at) * sizeof(*run->pts));
  run->pts[at] = p;
  run->n++;
  if (at == 0 && run->n > 1) {
    double shift = (uniform() - 0.5) * 0.1;
    for (size_t i = 1; i < run->n; i++) {
      run->pts[i].value[0] += shift;
      run->pts[i].seq = ++run->next_seq;
    }
  }
  return at;
}

/* The arrival order of steps 0, 100, ...: in order, newest first after the baseline (a
 * start-up), shuffled, in order with late ones, in order with the baseline last; steps
 * repeated, in order or shuffled. */
static void arrival_order(int64_t *steps, size_t n, int pattern)
{
  for (size_t i = 0; i < n; i++)
    steps[i] = (int64_t)i * 100;
  if (pattern == 1)
    for (size_t i = 1; i < n; i++)
      steps[i] = (int64_t)(n - i) * 100;
  for (size_t i = n - 1; pattern == 2 && i > 0; i--) {
    size_t k = (size_t)(rnd() % (i + 1));
    int64_t t = steps[i];
    steps[i] = steps[k];
    steps[k] = t;
  }
  for (size_t i = 1; pattern == 3 && i + 1 < n; i++)
    if (rnd() % 5 == 0) {
      int64_t t = steps[i];
      steps[i] = steps[i + 1];
      steps[i + 1] = t;
    }
  if (pattern == 4) {
    memmove(steps, steps + 1, (n - 1) * sizeof(*steps));
    steps[n - 1] = 0;
  }
  for (size_t i = 0; pattern >= 5 && i < n; i++) /* repeated steps: ties keep arrival order */
    steps[i] = (int64_t)(i / 2) * 100;
  for (size_t i = n - 1; pattern == 6 && i > 1; i--) { /* ... shuffled after the baseline */
    size_t k = 1 + (size_t)(rnd() % i);
    int64_t t = steps[i];
    steps[i] = steps[k];
    steps[k] = t;
  }
}

static bool same_double(double a, double b) { return memcmp(&a, &b, sizeof(a)) == 0 || (isnan(a) && isnan(b)); }

static void assert_same_verdicts(const em_verdicts_t *a, const em_verdicts_t *b, const char *where)
{
  ck_assert_msg(a->n == b->n, "%s: %zu firings replayed, %zu live", where, a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    const em_verdict_t *x = &a->v[i], *y = &b->v[i];
    ck_assert_msg(x->rule == y->rule && x->firing.cond == y->firing.cond && x->firing.at == y->firing.at &&
                  x->point->step == y->point->step && x->point->seq == y->point->seq, "%s: firing %zu differs",
                  where, i);
    ck_assert_msg(same_double(x->firing.value, y->firing.value) && same_double(x->firing.best, y->firing.best) &&
                  x->firing.best_step == y->firing.best_step && x->firing.best_by_arrival == y->firing.best_by_arrival,
                  "%s: firing %zu: values differ", where, i);
    ck_assert_msg(strcmp(x->firing.reason, y->firing.reason) == 0, "%s: '%s' != '%s'", where, x->firing.reason,
                  y->firing.reason);
  }
}

/* What the store keeps for one (run, rule): its state as text, and the alerts' record. */
typedef struct kept {
  char *text;
  em_recorded_t rec;
} kept_t;

typedef struct tally {
  size_t arrivals, resumed, from_memory, read;
} tally_t;

/* The points the store keeps in memory (daemon/em_store.c keep_new_point): the new one,
 * at index `at`, put among them when they are the run's history before it, else they
 * are dropped. */
static void keep_new_point(em_run_points_t *kept, const run_t *run, size_t at)
{
  int64_t before = at + 1 == run->n ? (at ? run->pts[at - 1].seq : 0) : run->pts[run->n - 1].seq;
  if (!em_run_points_current(kept, 1, before) || em_run_points_insert(kept, &run->pts[at]) != 0)
    em_run_points_drop(kept);
}

/* The points a replay judges (history_points): the kept ones, else the run's, read. */
static const em_run_points_t *replayed(em_run_points_t *kept, const run_t *run, tally_t *t)
{
  if (kept->rid == 1) {
    t->from_memory++;
    return kept;
  }
  t->read++;
  ck_assert_ptr_nonnull(kept->v = malloc(run->n * sizeof(*kept->v)));
  memcpy(kept->v, run->pts, run->n * sizeof(*kept->v));
  kept->n = kept->cap = run->n;
  kept->rid = 1;
  return kept;
}

/* The store's decision (judge_rule): resume from the kept state when p, at index `at`, is
 * the run's last and the state ends at the point before it; else replay. */
static void judge_live(const em_rules_t *rules, size_t i, const run_t *run, size_t at, kept_t *k,
                       em_run_points_t *kept, em_verdicts_t *out, tally_t *t)
{
  em_judge_state_t st;
  bool resume = at == run->n - 1 && at > 0 && em_judge_state_parse(k->text, &st) == 0 &&
                em_judge_follows(&rules->v[i], &st, run->pts[at - 1].seq);
  const em_run_points_t *pts = resume ? NULL : replayed(kept, run, t);
  int rc = resume ? em_judge_next(rules, i, &run->pts[at], &k->rec, &st, out)
                  : em_judge_replay(rules, i, pts->v, pts->n, &k->rec, &st, out);
  ck_assert_int_eq(rc, 0);
  free(k->text);
  ck_assert_ptr_nonnull(k->text = em_judge_state_print(&st));
  t->resumed += resume;
}

/* Now and then the kept text is damaged (a corrupt row): it must be refused, and the
 * judgement stay the replay's. */
static void damage(kept_t *k)
{
  size_t len = strlen(k->text);
  k->text[rnd() % len] = rnd() % 4 ? (char)('0' + rnd() % 10) : 0; /* a digit changed, or cut short */
}

/* One random run under every rule: both paths, arrival by arrival. */
static void one_run(const em_rules_t *rules, int pattern, size_t n, int64_t since, bool corrupt, tally_t *t)
{
  run_t run = new_run();
  int64_t steps[MAX_POINTS];
  kept_t live[NRULES] = {0};
  em_recorded_t full_rec[NRULES] = {0};
  em_run_points_t kept = {0};
  arrival_order(steps, n, pattern);
  for (size_t a = 0; a < n; a++) {
    size_t at = arrive(&run, new_point(&run, steps[a]));
    em_verdicts_t full = {0}, got = {0};
    keep_new_point(&kept, &run, at);
    for (size_t i = 0; i < rules->n; i++) {
      em_judge_state_t st;
      ck_assert_int_eq(em_judge_replay(rules, i, run.pts, run.n, &full_rec[i], &st, &full), 0);
      if (corrupt && live[i].text && rnd() % 4 == 0)
        damage(&live[i]);
      judge_live(rules, i, &run, at, &live[i], &kept, &got, t);
      t->arrivals++;
      char *want = em_judge_state_print(&st), where[160];
      snprintf(where, sizeof(where), "pattern %d since %lld arrival %zu rule %s", pattern, (long long)since, a,
               rules->v[i].name);
      ck_assert_msg(strcmp(want, live[i].text) == 0, "%s: state\n%s\n!= live\n%s", where, want, live[i].text);
      ck_assert_msg(memcmp(&full_rec[i], &live[i].rec, sizeof(full_rec[i])) == 0, "%s: records differ", where);
      free(want);
    }
    assert_same_verdicts(&full, &got, "an arrival");
    em_verdicts_free(&full);
    em_verdicts_free(&got);
  }
  for (size_t i = 0; i < rules->n; i++)
    free(live[i].text);
  em_run_points_drop(&kept);
}

static em_rules_t rules_since(int64_t since)
{
  em_rules_t rules = all_rules();
  for (size_t i = 0; i < rules.n; i++)
    rules.v[i].since_seq = since; /* a rule added later judges later results only */
  return rules;
}

/* Random runs under every rule, their arrival patterns taking turns; every since_every-th
 * run's rules were added late (since_seq > 0; 0: never). */
static tally_t many_runs(uint64_t seed, int trials, const int *patterns, int npatterns, int since_every, bool corrupt)
{
  rng_state = seed;
  tally_t t = {0};
  for (int trial = 0; trial < trials; trial++) {
    int64_t since = since_every && trial % since_every == 0 ? (int64_t)(rnd() % 10) : 0;
    em_rules_t rules = rules_since(since);
    one_run(&rules, patterns[trial % npatterns], 2 + (size_t)(rnd() % (MAX_POINTS - 2)), since, corrupt, &t);
    em_rules_free(&rules);
  }
  return t;
}

START_TEST(test_in_order_results_are_judged_from_the_kept_state_as_the_replay_judges_them)
{
  const int in_order[] = {0, 0, 0, 0, 0, 5}; /* 5: with ties */
  tally_t t = many_runs(0x9e3779b97f4a7c15ull, 120, in_order, 6, 3, false);
  /* every arrival but each run's first resumed: the live path was taken */
  ck_assert_msg(t.resumed * 10 > t.arrivals * 9, "resumed %zu of %zu", t.resumed, t.arrivals);
}
END_TEST

START_TEST(test_out_of_order_arrivals_replay_and_the_state_is_rebuilt)
{
  const int late[] = {1, 2, 3, 4, 6}; /* newest first, shuffled, late ones, the baseline last, ties */
  tally_t t = many_runs(0x2545f4914f6cdd1dull, 200, late, 5, 4, false);
  ck_assert(t.resumed > 0 && t.resumed < t.arrivals); /* both paths, mixed */
  /* and most replays judge the points kept in memory, not read again */
  ck_assert_msg(t.from_memory > 4 * t.read, "%zu replays from memory, %zu read", t.from_memory, t.read);
}
END_TEST

START_TEST(test_a_damaged_state_is_refused_and_the_replay_judges)
{
  const int some[] = {0, 3};
  tally_t t = many_runs(0xdeadbeefcafef00dull, 60, some, 2, 0, true);
  ck_assert(t.resumed > 0);
}
END_TEST

/* Which firings a history gives, and the counts of each condition: the random runs above
 * must exercise every condition, or they would compare nothing for it. */
START_TEST(test_the_random_runs_fire_every_condition)
{
  rng_state = 0x9e3779b97f4a7c15ull;
  em_rules_t rules = rules_since(0);
  size_t by_cond[EM_COND_MANUAL] = {0};
  for (int trial = 0; trial < 100; trial++) {
    run_t run = new_run();
    for (size_t a = 0; a < MAX_POINTS; a++)
      arrive(&run, new_point(&run, (int64_t)a * 100));
    em_recorded_t rec[NRULES] = {0};
    em_verdict_t *v;
    size_t nv;
    ck_assert_int_eq(em_judge(&rules, run.pts, run.n, rec, &v, &nv), 0);
    for (size_t i = 0; i < nv; i++)
      by_cond[v[i].firing.cond]++;
    free(v);
  }
  for (int c = EM_COND_PLATEAU; c < EM_COND_MANUAL; c++)
    ck_assert_msg(by_cond[c] > 10, "%s fired %zu times", em_condition_name((em_condition_t)c), by_cond[c]);
  em_rules_free(&rules);
}
END_TEST

START_TEST(test_state_text_reads_back_to_the_bit_and_refuses_what_it_cannot_carry)
{
  em_judge_state_t st = {.since_seq = 12, .count = 3, .last_seq = 99}, back;
  em_rule_state_init(&st.rule);
  st.rule.num = 0.1 + 0.2;   /* 0.30000000000000004: %.15g would lose it */
  st.rule.den = 5e-324;      /* the smallest denormal */
  st.rule.var = -0.0;
  st.rule.best = 1.0 / 3.0;
  st.rule.best_step = -(1LL << 53);
  st.rule.extreme = -1e300;
  st.rule.wait = 7;
  char *text = em_judge_state_print(&st);
  ck_assert_int_eq(em_judge_state_parse(text, &back), 0);
  ck_assert(memcmp(&st.rule.num, &back.rule.num, sizeof(double)) == 0);
  ck_assert(memcmp(&st.rule.den, &back.rule.den, sizeof(double)) == 0);
  ck_assert(memcmp(&st.rule.var, &back.rule.var, sizeof(double)) == 0); /* -0 stays -0 */
  ck_assert(back.rule.best == st.rule.best && back.rule.best_step == st.rule.best_step && back.rule.wait == 7);
  char *again = em_judge_state_print(&back);
  ck_assert_str_eq(text, again);
  free(again);
  free(text);
  const em_judge_state_t bad[] = {
    {.count = 1, .rule = {.num = INFINITY}}, {.count = 1, .rule = {.best = NAN}},
    {.count = 1, .rule = {.extreme_step = (1LL << 53) + 1}}, {.count = 1, .last_seq = INT64_MAX},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
    text = em_judge_state_print(&bad[i]);
    ck_assert_msg(em_judge_state_parse(text, &back) == -1, "accepted %s", text);
    free(text);
  }
}
END_TEST

START_TEST(test_damaged_state_texts_never_crash_and_are_refused)
{
  em_judge_state_t st = {.since_seq = 3, .count = 10, .last_seq = 40}, back;
  em_rule_state_init(&st.rule);
  st.rule.based = st.rule.have_best = true;
  st.rule.best = 0.0421;
  st.rule.wait = 2;
  char *text = em_judge_state_print(&st);
  size_t len = strlen(text), refused = 0;
  for (size_t cut = 0; cut < len; cut++) { /* every truncation */
    char *t = strndup(text, cut);
    refused += em_judge_state_parse(t, &back) != 0;
    free(t);
  }
  ck_assert_uint_eq(refused, len);
  const char *wrong[] = {NULL, "", "null", "[]", "{}", "{\"version\":2}",
                         "{\"version\":1,\"since_seq\":3,\"count\":-1,\"last_seq\":40,\"rule\":{}}",
                         "{\"version\":1,\"since_seq\":3.5,\"count\":1,\"last_seq\":40,\"rule\":{}}"};
  for (size_t i = 0; i < sizeof(wrong) / sizeof(*wrong); i++)
    ck_assert_int_eq(em_judge_state_parse(wrong[i], &back), -1);
  rng_state = 42;
  for (int i = 0; i < 5000; i++) { /* bytes changed: refused, unless the state they say is the same */
    char *t = strdup(text);
    for (int k = 0; k < 1 + i % 3; k++)
      t[rnd() % len] = i % 2 ? (char)('0' + rnd() % 10) : (char)(rnd() % 255 + 1);
    if (em_judge_state_parse(t, &back) == 0) {
      char *p = em_judge_state_print(&back);
      ck_assert_msg(strcmp(p, text) == 0, "accepted %s as %s", t, p);
      free(p);
    }
    free(t);
  }
  char *swapped = strdup(text); /* a field of the wrong type */
  char *at = strstr(swapped, "\"wait\":2");
  ck_assert_ptr_nonnull(at);
  memcpy(at, "\"wait\":t", 8);
  ck_assert_int_eq(em_judge_state_parse(swapped, &back), -1);
  free(swapped);
  free(text);
}
END_TEST

START_TEST(test_a_state_of_another_definition_or_history_is_not_resumed)
{
  em_rules_t rules = rules_since(5);
  em_judge_state_t st = {.since_seq = 5, .count = 4, .last_seq = 20};
  em_rule_state_init(&st.rule);
  ck_assert(em_judge_follows(&rules.v[0], &st, 20));
  ck_assert(!em_judge_follows(&rules.v[0], &st, 19));       /* it ends at another result */
  rules.v[0].since_seq = 6;                                 /* the rule was redefined */
  ck_assert(!em_judge_follows(&rules.v[0], &st, 20));
  rules.v[0].since_seq = 5;
  st.count = 0;                                             /* it has judged nothing */
  ck_assert(!em_judge_follows(&rules.v[0], &st, 20));
  em_rules_free(&rules);
}
END_TEST

Suite *judge_suite(void)
{
  Suite *s = suite_create("judge");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_test(tc, test_in_order_results_are_judged_from_the_kept_state_as_the_replay_judges_them);
  tcase_add_test(tc, test_out_of_order_arrivals_replay_and_the_state_is_rebuilt);
  tcase_add_test(tc, test_a_damaged_state_is_refused_and_the_replay_judges);
  tcase_add_test(tc, test_the_random_runs_fire_every_condition);
  tcase_add_test(tc, test_state_text_reads_back_to_the_bit_and_refuses_what_it_cannot_carry);
  tcase_add_test(tc, test_damaged_state_texts_never_crash_and_are_refused);
  tcase_add_test(tc, test_a_state_of_another_definition_or_history_is_not_resumed);
  suite_add_tcase(s, tc);
  return s;
}
