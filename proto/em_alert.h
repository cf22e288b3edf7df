/* SPDX-License-Identifier: MIT */
/* The alert object (proto/PROTOCOL.md "The alert object"): what a firing rule records,
 * publishes, writes into the stop file and hands to the user's command. */
#ifndef EM_ALERT_H
#define EM_ALERT_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#include "em_rules.h"

typedef struct em_alert {
  int64_t seq;
  char *run;
  char *rule;
  em_condition_t cond;
  bool has_cond;            /* false only in alerts recorded before conditions existed */
  em_monitor_t monitor;     /* EM_MON_NONE for check_finite: "monitor": null */
  double value;             /* NaN: "value": null */
  int64_t step;             /* the checkpoint's place: its step, or its arrival number */
  bool by_arrival;          /* nothing named a step: "step": null, "arrival": step */
  char *path;
  char *run_dir;
  char *reason;
  bool stop;                /* the rule asks the job to stop: the stop file is written (onset: not by default) */
  double ts;
} em_alert_t;

/* Caller owns the object; NULL on OOM. */
cJSON *em_alert_to_json(const em_alert_t *a);
/* The alert as text; caller frees. */
char *em_alert_print(const em_alert_t *a);
/* Decodes an untrusted alert object; -1 with err naming the bad key. seq, run and rule
 * are required; other keys may be missing (alerts of schema 1), strings then "". */
int em_alert_from_json(const cJSON *o, em_alert_t *out, char *err, size_t errlen);
int em_alert_copy(const em_alert_t *from, em_alert_t *to);
void em_alert_free(em_alert_t *a);

#endif
