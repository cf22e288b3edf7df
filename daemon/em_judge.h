/* SPDX-License-Identifier: MIT */
/* Which rule firings are new, judged from a kept state or by a replay. Results may arrive
 * out of step order (start-up works newest first) and a lower step re-baselines E, so
 * the judgement of a run is defined as a replay of its whole current history in step
 * order, exactly as `emergectl backtest` does. A result that comes after every other
 * result of its run changes nothing before it, so the replay over the history with it is
 * the replay without it plus one step: the store keeps each (run, rule)'s state after
 * the run's last judged result (em_judge_state_t, persisted) and judges such a result
 * from it (em_judge_next) in time independent of the history's length; any other result
 * is judged by a full replay (em_judge_replay), which rebuilds the state. Both give the
 * same firings and the same state (tests/check_judge.c).
 *
 * What was recorded before is not recorded again: a threshold or check_finite condition
 * once per run and rule definition, a plateau again only when it follows a best value
 * newer than the rule's last plateau alert, so a backfilled checkpoint cannot repeat a
 * plateau already reported. Pure: no SQL, no I/O; the store reads `recorded` and the
 * states and writes the rows. */
#ifndef EM_JUDGE_H
#define EM_JUDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_rules.h"

/* What a rule already recorded for a run (since its since_seq). */
typedef struct em_recorded {
  bool fired[EM_COND_MANUAL];      /* a row of that condition exists (every condition but manual) */
  bool has_plateau;
  int64_t plateau_step;            /* the largest step of its plateau rows */
} em_recorded_t;

typedef struct em_verdict {
  size_t rule;                     /* index into the rules */
  em_firing_t firing;              /* firing.at: the point's index in the run's points */
  const em_point_t *point;         /* the point it fired on (the caller's) */
} em_verdict_t;

/* New firings, in the order they were judged. */
typedef struct em_verdicts {
  size_t n, cap;
  em_verdict_t *v;
} em_verdicts_t;

void em_verdicts_free(em_verdicts_t *v);

/* A rule's state over a run's results: the replay's state after `count` results in step
 * order, the last of them `last_seq`, built under the rule's definition of `since_seq`. */
typedef struct em_judge_state {
  int64_t since_seq;
  int64_t count;
  int64_t last_seq;
  em_rule_state_t rule;
} em_judge_state_t;

/* Whether st can judge the result that now follows the one of seq prev_seq (the run's
 * result before it in step order): st was built under r's definition and ends there. */
bool em_judge_follows(const em_rule_t *r, const em_judge_state_t *st, int64_t prev_seq);
/* Rule `rule` over the run's whole history pts (step order); *st becomes the state after
 * it. New firings are appended to out and recorded in *rec. -1 on OOM. */
int em_judge_replay(const em_rules_t *rules, size_t rule, const em_point_t *pts, size_t n, em_recorded_t *rec,
                    em_judge_state_t *st, em_verdicts_t *out);
/* Rule `rule` on p, the result after those st has judged (em_judge_follows); the same
 * firings and state as em_judge_replay over the history with p. -1 on OOM. */
int em_judge_next(const em_rules_t *rules, size_t rule, const em_point_t *p, em_recorded_t *rec,
                  em_judge_state_t *st, em_verdicts_t *out);
/* Every rule replayed over pts, from scratch (states not kept): the firings not yet
 * recorded, updating rec[rule]. *out is the caller's (free); -1 on OOM. */
int em_judge(const em_rules_t *rules, const em_point_t *pts, size_t n, em_recorded_t *rec, em_verdict_t **out,
             size_t *nout);

/* A run's judged points in step order, kept between its judgements so that a result out
 * of step order (start-up works newest first) is replayed in memory, not read again. */
typedef struct em_run_points {
  int64_t rid;                     /* the run; 0: none kept */
  size_t n, cap;
  em_point_t *v;
} em_run_points_t;

/* Whether the points are run rid's history before its new result: they end at its newest
 * other result, of seq `before` (every path that changes a history otherwise drops them;
 * a new baseline gives every result a new seq). */
bool em_run_points_current(const em_run_points_t *rp, int64_t rid, int64_t before);
/* Puts p at its place by step; -1 (nothing changed) when a point of its step is there
 * already (their order is the database's) or on OOM. */
int em_run_points_insert(em_run_points_t *rp, const em_point_t *p);
/* Forgets the points (rid 0). */
void em_run_points_drop(em_run_points_t *rp);

/* The state as the store keeps it (a JSON object; caller frees), and back: -1 when the
 * text is not such a state (corrupt, truncated, another version), and the caller
 * replays instead. */
char *em_judge_state_print(const em_judge_state_t *st);
int em_judge_state_parse(const char *text, em_judge_state_t *st);

#endif
