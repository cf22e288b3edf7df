/* SPDX-License-Identifier: MIT */
/* GET /metrics: the Prometheus text exposition format (version 0.0.4). Per run, from the
 * database: the latest result's E, its standard error, alpha0 and width (labelled with the
 * mode they were measured in), the last step, checkpoints by state, alerts by rule. Daemon
 * wide, from the loop: queue depth, analyses running, an analysis-duration histogram, the
 * build. docs/DEPLOY.md shows them in Prometheus and Grafana. */
#ifndef EM_METRICS_H
#define EM_METRICS_H

#include <stdint.h>

#include "em_db.h"
#include "em_status.h"

#define EM_DURATION_BUCKETS 14

/* Wall time of finished analyses, cumulative as Prometheus histograms are. */
typedef struct em_durations {
  uint64_t le[EM_DURATION_BUCKETS]; /* how many took at most em_duration_bounds[i] seconds */
  uint64_t count;
  double sum;
} em_durations_t;

extern const double em_duration_bounds[EM_DURATION_BUCKETS];

void em_durations_observe(em_durations_t *d, double seconds);
/* The exposition text (caller frees), or NULL on a database error (err says which) or OOM. */
char *em_metrics_text(em_db_t *db, const em_status_t *st, const em_durations_t *d, char *err, size_t errlen);

#endif
