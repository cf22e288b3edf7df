/* SPDX-License-Identifier: MIT */
/* Early-stop rules, in the vocabulary of Keras and Lightning early stopping, and what a
 * firing rule does (`on_alert`). Parsing is strict: a bad rule is named with its key.
 * Judging walks a run's history in step order, one point at a time, with one step
 * function (em_rule_step) that `emergectl backtest` replays from the first point and the
 * daemon also runs from a state it kept after the run's last judged point, so the two
 * cannot disagree. */
#ifndef EM_RULES_H
#define EM_RULES_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EM_RULE_NAME_MAX 64

typedef enum em_monitor { EM_MON_NONE, EM_MON_EMERGENCE, EM_MON_ALPHA0, EM_MON_WIDTH } em_monitor_t;

typedef enum em_condition {
  EM_COND_PLATEAU,      /* no improvement larger than min_delta for patience checkpoints */
  EM_COND_STOPPING,     /* reached stopping_threshold (good enough) */
  EM_COND_DIVERGENCE,   /* reached divergence_threshold (worse than allowed) */
  EM_COND_FINITE,       /* a checkpoint holds NaN/Inf weights */
  EM_COND_ONSET,        /* the value turned: risen above its running extreme for patience checkpoints */
  EM_COND_MANUAL        /* a person asked (emergectl stop): rule EM_RULE_MANUAL, no rule of the config */
} em_condition_t;

#define EM_RULE_MANUAL "manual" /* the rule name of a stop asked by hand; no configured rule may take it */

typedef struct em_rule {
  char name[EM_RULE_NAME_MAX + 1];
  em_monitor_t monitor;     /* EM_MON_NONE: a check_finite-only rule */
  bool mode_max;            /* larger is better */
  double min_delta;         /* absolute; a change no larger than it is no improvement */
  double min_delta_se;      /* K: nor one no larger than K standard errors of the value (0: off) */
  double smoothing;         /* S in [0, 1): judge the EMA of the values (TensorBoard's; 0: raw) */
  int patience;             /* analysed checkpoints without improvement */
  bool plateau;             /* judged for a plateau: no threshold given, or patience given */
  bool has_stopping, has_divergence;
  double stopping, divergence;
  bool check_finite;
  bool onset;               /* judged for an onset instead of a plateau */
  double min_rise, min_rise_se; /* onset: a rise must exceed both (absolute; K standard errors) */
  bool stop;                /* a firing writes the stop file (default: true, false for onset) */
  int64_t since_seq;        /* judges results with a larger seq (set by the store) */
} em_rule_t;

typedef struct em_rules {
  size_t n;
  em_rule_t *v;
} em_rules_t;

typedef struct em_on_alert {
  bool stop_file;           /* write RUN/.emerge/STOP (default true) */
  char **exec;              /* argv, NULL-terminated; NULL: none */
  double exec_timeout;      /* seconds (default 30) */
} em_on_alert_t;

/* One rule from a JSON object; index names it in messages until its name is known.
 * -EINVAL with err naming the rule and the key. */
int em_rule_parse(const cJSON *obj, size_t index, em_rule_t *out, char *err, size_t errlen);
/* The `alerts` list: each rule valid, names unique. */
int em_rules_parse(const cJSON *list, em_rules_t *out, char *err, size_t errlen);
void em_rules_free(em_rules_t *rules);
int em_rules_copy(const em_rules_t *from, em_rules_t *to);
bool em_rules_equal(const em_rules_t *a, const em_rules_t *b);
/* Any rule with check_finite: workers then scan every weight. */
bool em_rules_check_finite(const em_rules_t *rules);
/* The rule as canonical JSON (every field, defaults filled in); caller frees. */
char *em_rule_spec(const em_rule_t *r);

int em_on_alert_parse(const cJSON *obj, em_on_alert_t *out, char *err, size_t errlen);
void em_on_alert_default(em_on_alert_t *a);
void em_on_alert_free(em_on_alert_t *a);
int em_on_alert_copy(const em_on_alert_t *from, em_on_alert_t *to);
bool em_on_alert_equal(const em_on_alert_t *a, const em_on_alert_t *b);

const char *em_monitor_name(em_monitor_t m);
const char *em_condition_name(em_condition_t c);
/* -1 when the name is unknown. */
int em_monitor_parse(const char *name, em_monitor_t *out);
int em_condition_parse(const char *name, em_condition_t *out);

/* One analysed (or non-finite) checkpoint of a run, in step order. */
typedef struct em_point {
  int64_t step, seq;        /* step: the checkpoint's place in its run (a step or, by_arrival, an arrival number) */
  bool by_arrival;
  double value[3];          /* emergence, alpha0, width; NaN when unknown */
  double se[3];             /* their standard errors; NaN when unknown */
  bool nonfinite;           /* recorded nonfinite: no values */
  const char *path;
  const char *error;        /* nonfinite: what the check found */
  size_t order;             /* position in the history it came from: ties keep it */
} em_point_t;

/* A point's place for people: "step 300", or "checkpoint #3 (arrival order)" when
 * nothing named its step. */
void em_place_text(char *buf, size_t len, int64_t place, bool by_arrival);

typedef struct em_firing {
  em_condition_t cond;
  size_t at;                /* index of the point it fired on */
  double value;             /* the monitored value there (NaN for check_finite) */
  int64_t best_step;        /* plateau: the step of the best value it has not beaten; onset: of the minimum */
  bool best_by_arrival;     /* best_step is an arrival number */
  double best;
  char reason[256];
} em_firing_t;

typedef void (*em_fire_fn)(void *ctx, const em_rule_t *r, const em_firing_t *f);

/* What judging carries from point to point: all that judging the next point needs. The
 * daemon keeps one per (run, rule), persisted, so a result after the run's last judged
 * one is judged without replaying the history (docs/DESIGN.md "Rules"). */
typedef struct em_rule_state {
  bool based;               /* the run's baseline (its first analysed point) has gone by */
  bool stopped, diverged, nonfinite; /* those conditions fired: once per run */
  bool have_best, armed;    /* plateau: a best value; a plateau may fire (re-armed by an improvement) */
  double best;
  int64_t best_step;
  bool best_by_arrival;
  int wait;                 /* plateau: checkpoints since the best */
  bool se_known;            /* every SE so far is known */
  double num, den, var;     /* the EMA of the values, its weight, and the EMA of their variance */
  bool have_extreme, onset_fired;
  double extreme;           /* onset: the running minimum (maximum for mode min) */
  int64_t extreme_step;
  bool extreme_by_arrival;
  int above;                /* onset: checkpoints in a row risen beyond it */
} em_rule_state_t;

/* The state before a run's first point. */
void em_rule_state_init(em_rule_state_t *st);
/* Judges p, the point after those st has seen (at: its index in the run's points, which
 * firings carry), calling fire for each firing; returns the value it judged (smoothed;
 * NaN where it judges none: the baseline, unknown values, nonfinite or skipped points).
 * Points with seq <= r->since_seq are skipped (but a skipped first point is the baseline).
 * Then: a threshold or check_finite condition at the first point that meets it, a plateau
 * each time patience runs out after an improvement, an onset once. */
double em_rule_step(const em_rule_t *r, em_rule_state_t *st, const em_point_t *p, size_t at, em_fire_fn fire,
                    void *ctx);
/* em_rule_step over pts (step order) from the initial state. */
void em_rule_replay(const em_rule_t *r, const em_point_t *pts, size_t n, em_fire_fn fire, void *ctx);
/* The values rule r judges at each point (em_rule_step's return values). */
void em_rule_judged_values(const em_rule_t *r, const em_point_t *pts, size_t n, double *out);

/* The state's fields, added to o: doubles as text that reads back to the same bits. A
 * value JSON cannot carry exactly (not finite, a step beyond 2^53) is written null. */
void em_rule_state_to_json(const em_rule_state_t *st, cJSON *o);
/* The state from o; -1 when a field is missing, of the wrong type or out of range (null
 * included): the caller replays the history instead. */
int em_rule_state_from_json(const cJSON *o, em_rule_state_t *st);

#endif
