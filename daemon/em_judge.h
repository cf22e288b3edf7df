/* SPDX-License-Identifier: MIT */
/* Which rule firings are new. Judging is a replay of the run's history (results may
 * arrive out of step order and a lower step re-baselines E, so the whole current history
 * is judged, exactly as `emergectl backtest` does); what was recorded before is not
 * recorded again: a threshold or check_finite condition once per run and rule
 * definition, a plateau again only when it follows a best value newer than the rule's
 * last plateau alert, so a backfilled checkpoint cannot repeat a plateau already
 * reported. Pure: no SQL, no I/O; the store reads `recorded` and writes the rows. */
#ifndef EM_JUDGE_H
#define EM_JUDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_rules.h"

/* What a rule already recorded for a run (since its since_seq). */
typedef struct em_recorded {
  bool fired[EM_COND_FINITE + 1];  /* a row of that condition exists */
  bool has_plateau;
  int64_t plateau_step;            /* the largest step of its plateau rows */
} em_recorded_t;

typedef struct em_verdict {
  size_t rule;                     /* index into the rules */
  em_firing_t firing;
} em_verdict_t;

/* Replays every rule over pts (step order) and returns the firings not yet recorded,
 * updating rec[rule] as it accepts them. *out is the caller's (free); -1 on OOM. */
int em_judge(const em_rules_t *rules, const em_point_t *pts, size_t n, em_recorded_t *rec, em_verdict_t **out,
             size_t *nout);

#endif
