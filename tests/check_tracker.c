/* SPDX-License-Identifier: MIT */
/* The tracker's state machine (daemon/em_tracker.h): transitions, O(1) counts, quiet
 * periods, and the order work is picked in. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_tracker.h"
#include "suites.h"

static em_fingerprint_t fp(uint64_t version, uint64_t quiet, int nweights)
{
  return (em_fingerprint_t){.version = version, .quiet = quiet, .nweights = nweights};
}

static void check_counts(const em_tracker_t *t)
{
  size_t sum = 0;
  for (int st = 0; st < EM_T_NSTATES; st++)
    sum += em_tracker_count(t, (em_tstate_t)st);
  ck_assert_uint_eq(sum, em_tracker_size(t));
}

START_TEST(test_track_names_run_and_step)
{
  em_tracker_t *t = em_tracker_new("/w/root");
  em_tracked_t *a = em_tracker_track(t, "/w/root/sweep/lr1/checkpoint-300", true, 0);
  em_tracked_t *b = em_tracker_track(t, "/w/root/model.safetensors", false, 0);
  ck_assert_str_eq(a->run, "sweep/lr1");
  ck_assert(a->has_step && a->step == 300 && a->st == EM_T_PENDING);
  ck_assert_str_eq(b->run, "root"); /* directly in the root: the root's own name */
  ck_assert(!b->has_step);
  ck_assert_ptr_eq(em_tracker_track(t, a->path, true, 5), a); /* tracked once */
  ck_assert_ptr_eq(em_tracker_find(t, "/w/root/model.safetensors"), b);
  ck_assert_uint_eq(em_tracker_count(t, EM_T_PENDING), 2);
  em_tracker_drop(t, b);
  ck_assert_ptr_null(em_tracker_find(t, "/w/root/model.safetensors"));
  check_counts(t);
  em_tracker_free(&t);
  ck_assert_ptr_null(t);
}
END_TEST

START_TEST(test_quiet_period_then_complete)
{
  em_tracker_t *t = em_tracker_new("/r");
  em_tracked_t *e = em_tracker_track(t, "/r/checkpoint-1", true, 1000);
  em_fingerprint_t f1 = fp(7, 70, 1);
  ck_assert(em_tracker_observe(t, e, &f1, false, 1000));
  ck_assert_uint_eq(em_tracker_next_due(t, 1000, 2000), 3000);
  ck_assert(!em_tracker_due(e, 2999, 2000));
  ck_assert(em_tracker_due(e, 3000, 2000));
  em_fingerprint_t f2 = fp(8, 80, 1); /* still being written */
  ck_assert_int_eq(em_tracker_quiet_check(t, e, &f2, 3000), EM_QUIET_WAIT);
  ck_assert_uint_eq(em_tracker_next_due(t, 3000, 2000), 5000); /* its quiet period restarts */
  ck_assert_int_eq(em_tracker_quiet_check(t, e, &f2, 5000), EM_QUIET_COMPLETE);
  em_fingerprint_t empty = fp(0, 90, 0); /* no weight file yet: never complete */
  em_tracked_t *d = em_tracker_track(t, "/r/checkpoint-2", true, 0);
  em_tracker_observe(t, d, &empty, false, 0);
  ck_assert_int_eq(em_tracker_quiet_check(t, d, &empty, 9000), EM_QUIET_WAIT);
  em_tracker_free(&t);
}
END_TEST

START_TEST(test_renamed_is_due_at_once_and_checking_waits)
{
  em_tracker_t *t = em_tracker_new("/r");
  em_tracked_t *e = em_tracker_track(t, "/r/checkpoint-1", true, 100);
  em_fingerprint_t f = fp(1, 1, 1);
  em_tracker_observe(t, e, &f, true, 100);
  ck_assert(em_tracker_due(e, 100, 2000));
  ck_assert_uint_eq(em_tracker_next_due(t, 100, 2000), 100);
  em_tracker_set_checking(t, e, true); /* the walker looks at it: not due twice */
  ck_assert(!em_tracker_due(e, 100, 2000));
  ck_assert_uint_eq(em_tracker_next_due(t, 100, 2000), UINT64_MAX);
  em_tracker_free(&t);
}
END_TEST

START_TEST(test_new_version_requeues_and_running_goes_dirty)
{
  em_tracker_t *t = em_tracker_new("/r");
  em_tracked_t *e = em_tracker_track(t, "/r/checkpoint-1", true, 0);
  em_fingerprint_t v1 = fp(1, 10, 1), v2 = fp(2, 20, 1);
  em_tracker_observe(t, e, &v1, false, 0);
  e->version = v1.version;
  em_tracker_set_state(t, e, EM_T_SEEN);
  em_tracker_set_state(t, e, EM_T_DONE);
  ck_assert(!em_tracker_observe(t, e, &v1, false, 10)); /* the same version again: nothing */
  ck_assert_int_eq(e->st, EM_T_DONE);
  ck_assert(em_tracker_observe(t, e, &v2, false, 20)); /* rewritten: a new version */
  ck_assert_int_eq(e->st, EM_T_PENDING);
  em_tracker_set_state(t, e, EM_T_RUNNING);
  ck_assert(!em_tracker_observe(t, e, &v1, false, 30));
  ck_assert(e->dirty && e->st == EM_T_RUNNING); /* its result will be dropped */
  em_tracker_set_state(t, e, EM_T_SEEN);
  em_fingerprint_t v3 = fp(3, 30, 1);
  em_tracker_observe(t, e, &v3, false, 40);
  ck_assert_int_eq(e->st, EM_T_SEEN); /* the store's answer decides */
  check_counts(t);
  ck_assert_uint_eq(em_tracker_count(t, EM_T_SEEN), 1);
  em_tracker_free(&t);
}
END_TEST

static em_tracked_t *queued(em_tracker_t *t, const char *path, int64_t step)
{
  em_tracked_t *e = em_tracker_track(t, path, true, 0);
  e->step = step;
  em_tracker_set_state(t, e, EM_T_QUEUED);
  return e;
}

START_TEST(test_pick_baseline_first_then_newest)
{
  em_tracker_t *t = em_tracker_new("/r");
  ck_assert_ptr_null(em_tracker_pick(t));
  em_tracked_t *a100 = queued(t, "/r/a/checkpoint-100", 100);
  em_tracked_t *a0 = queued(t, "/r/a/checkpoint-0", 0);
  em_tracked_t *a900 = queued(t, "/r/a/checkpoint-900", 900);
  em_tracked_t *b50 = queued(t, "/r/b/checkpoint-50", 50);
  em_tracked_t *first = em_tracker_pick(t);
  ck_assert(first == a0 || first == b50); /* baselines first */
  em_tracker_set_state(t, a0, EM_T_RUNNING);
  em_tracker_set_state(t, b50, EM_T_DONE);
  ck_assert_ptr_eq(em_tracker_pick(t), a900); /* then the newest */
  em_tracker_set_state(t, a900, EM_T_DONE);
  em_tracker_set_state(t, a100, EM_T_DONE);
  em_tracked_t *done_low = em_tracker_track(t, "/r/c/checkpoint-1", true, 0);
  done_low->step = 1;
  em_tracker_set_state(t, done_low, EM_T_DONE);
  em_tracked_t *c5 = queued(t, "/r/c/checkpoint-5", 5);
  ck_assert_ptr_eq(em_tracker_pick(t), c5); /* run c's baseline is analysed: c5 is not one */
  check_counts(t);
  em_tracker_free(&t);
}
END_TEST

static void drop_queued(void *ctx, em_tracked_t *e)
{
  if (e->st == EM_T_QUEUED)
    em_tracker_drop(ctx, e);
}

START_TEST(test_foreach_may_drop_and_counts_stay_exact)
{
  em_tracker_t *t = em_tracker_new("/r");
  char path[64];
  for (int i = 0; i < 5000; i++) {
    snprintf(path, sizeof(path), "/r/run%d/checkpoint-%d", i % 7, i);
    em_tracked_t *e = em_tracker_track(t, path, true, 0);
    em_tracker_set_state(t, e, i % 3 == 0 ? EM_T_QUEUED : EM_T_DONE);
  }
  ck_assert_uint_eq(em_tracker_count(t, EM_T_QUEUED), 1667);
  em_tracker_foreach(t, drop_queued, t);
  ck_assert_uint_eq(em_tracker_count(t, EM_T_QUEUED), 0);
  ck_assert_uint_eq(em_tracker_size(t), 3333);
  check_counts(t);
  em_tracker_free(&t);
}
END_TEST

/* The schedule as the first tracker computed it, by scanning every entry: the reference
 * the heaps must agree with. Returns the step the pick must have (-1: none) and whether
 * it is a baseline. */
typedef struct ref_ctx {
  int64_t min[8];
  bool has_min[8];
  int64_t best;
  bool best_base;
  bool base_run[8];     /* runs whose baseline waits: the pick must be one of theirs */
  uint64_t due;
} ref_ctx_t;

static int run_index(const em_tracked_t *e) { return e->run[3] - '0'; }

static void ref_mins(void *ctx, em_tracked_t *e)
{
  ref_ctx_t *r = ctx;
  int i = run_index(e);
  if (e->st >= EM_T_QUEUED && e->st <= EM_T_DONE && (!r->has_min[i] || e->step < r->min[i])) {
    r->min[i] = e->step;
    r->has_min[i] = true;
  }
}

static void ref_pick(void *ctx, em_tracked_t *e)
{
  ref_ctx_t *r = ctx;
  if (e->st == EM_T_PENDING && !e->checking && e->fp.nweights > 0) {
    uint64_t due = e->renamed ? 0 : e->t_changed + 1000;
    r->due = due < r->due ? due : r->due;
  }
  if (e->st != EM_T_QUEUED)
    return;
  bool base = r->min[run_index(e)] == e->step;
  r->base_run[run_index(e)] |= base;
  if (r->best < 0 || (base && !r->best_base) || (base == r->best_base && e->step > r->best)) {
    r->best = e->step;
    r->best_base = base;
  }
}

START_TEST(test_schedule_agrees_with_a_full_scan)
{
  em_tracker_t *t = em_tracker_new("/r");
  em_tracked_t *live[400] = {0};
  unsigned seed = 12345;
  char path[64];
  for (uint64_t now = 1; now < 20000; now++) {
    seed = seed * 1103515245u + 12345u;
    unsigned k = (seed >> 8) % 400, op = (seed >> 20) % 8;
    em_tracked_t *e = live[k];
    if (!e) {
      snprintf(path, sizeof(path), "/r/run%u/checkpoint-%u", k % 5, k);
      e = live[k] = em_tracker_track(t, path, true, now);
      e->step = (int64_t)((k * 7919) % 1000);
    } else if (op == 0) {
      em_tracker_drop(t, e);
      live[k] = NULL;
      continue;
    } else if (op <= 4) {
      static const em_tstate_t next[] = {EM_T_QUEUED, EM_T_RUNNING, EM_T_DONE, EM_T_FINAL};
      em_tracker_set_state(t, e, next[op - 1]);
    } else if (op == 5) {
      em_fingerprint_t f = fp(now, now, (int)(now % 3));
      em_tracker_observe(t, e, &f, now % 5 == 0, now);
    } else if (op == 6) {
      em_tracker_set_checking(t, e, !e->checking);
    } else {
      em_tracker_touch(t, e, now);
    }
    ref_ctx_t r = {.best = -1, .due = UINT64_MAX};
    em_tracker_foreach(t, ref_mins, &r);
    em_tracker_foreach(t, ref_pick, &r);
    em_tracked_t *got = em_tracker_pick(t); /* runs take turns among baselines, so which one is not fixed */
    if (r.best_base)
      ck_assert(got && got->step == r.min[run_index(got)] && r.base_run[run_index(got)]);
    else
      ck_assert_int_eq(got ? got->step : -1, r.best);
    uint64_t due = em_tracker_next_due(t, 0, 1000);
    ck_assert_uint_eq(due, r.due);
  }
  check_counts(t);
  em_tracker_free(&t);
}
END_TEST

START_TEST(test_runs_take_turns_at_their_baselines)
{
  em_tracker_t *t = em_tracker_new("/r");
  char path[64];
  for (int i = 0; i < 100; i++) { /* a run of checkpoints that all fail */
    snprintf(path, sizeof(path), "/r/flood/model-step%d.safetensors", i);
    queued(t, path, i);
  }
  em_tracked_t *other = queued(t, "/r/other/checkpoint-0", 0);
  int picks = 0;
  for (em_tracked_t *e; (e = em_tracker_pick(t)) != other; picks++)
    em_tracker_set_state(t, e, EM_T_FINAL);
  ck_assert_int_le(picks, 1);
  em_tracker_free(&t);
}
END_TEST

START_TEST(test_an_unchanged_rescan_does_not_restart_the_quiet_period)
{
  em_tracker_t *t = em_tracker_new("/r");
  em_tracked_t *e = em_tracker_track(t, "/r/checkpoint-1", true, 0);
  em_fingerprint_t f = fp(1, 1, 1);
  em_tracker_observe(t, e, &f, false, 0);
  for (uint64_t now = 500; now < 2000; now += 500) /* rescans every 0.5 s, quiet 2 s */
    em_tracker_observe(t, e, &f, false, now);
  ck_assert_uint_eq(em_tracker_next_due(t, 2000, 2000), 2000);
  ck_assert_ptr_eq(em_tracker_next_ready(t, 2000, 2000), e);
  ck_assert(e->checking);
  ck_assert_ptr_null(em_tracker_next_ready(t, 2000, 2000));
  em_tracker_free(&t);
}
END_TEST

Suite *tracker_suite(void)
{
  Suite *s = suite_create("tracker");
  TCase *c = tcase_create("core");
  tcase_set_timeout(c, 60); /* the full-scan cross-check takes ~5 s under ThreadSanitizer */
  tcase_add_test(c, test_track_names_run_and_step);
  tcase_add_test(c, test_quiet_period_then_complete);
  tcase_add_test(c, test_renamed_is_due_at_once_and_checking_waits);
  tcase_add_test(c, test_new_version_requeues_and_running_goes_dirty);
  tcase_add_test(c, test_pick_baseline_first_then_newest);
  tcase_add_test(c, test_foreach_may_drop_and_counts_stay_exact);
  tcase_add_test(c, test_schedule_agrees_with_a_full_scan);
  tcase_add_test(c, test_an_unchanged_rescan_does_not_restart_the_quiet_period);
  tcase_add_test(c, test_runs_take_turns_at_their_baselines);
  suite_add_tcase(s, c);
  return s;
}
