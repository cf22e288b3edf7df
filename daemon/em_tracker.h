/* SPDX-License-Identifier: MIT */
/* The checkpoints the daemon tracks, from first sight until their version has a result
 * or a final state, and the state machine they move through:
 *
 *   PENDING --quiet period over (or renamed into place)--> SEEN --store: new--> QUEUED
 *   SEEN --store: this version has a result--> DONE        QUEUED --worker--> RUNNING
 *   RUNNING --result--> DONE      RUNNING --failed/unsupported/...--> FINAL
 *   RUNNING --changed while read--> PENDING   any but RUNNING/SEEN --new version--> PENDING
 *
 * Every change goes through em_tracker_set_state (and the other em_tracker_ calls that
 * change what scheduling reads: observe, quiet_check, touch, set_checking), which keep
 * per-state counts and the schedule: a heap of queued entries by step, a heap per run of
 * its analysed-or-queued entries (the lowest is its baseline), a heap of runs whose
 * baseline waits, and a list of pending entries in deadline order. Counting is O(1),
 * picking and every change O(log n), so 100,000 entries cost no more per event than ten
 * (docs/SECURITY.md). Pure bookkeeping: no libuv, no I/O (fingerprints come from the
 * walker), times are the caller's milliseconds. */
#ifndef EM_TRACKER_H
#define EM_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_scan.h"

typedef enum em_tstate {
  EM_T_PENDING,   /* seen; waiting for its quiet period */
  EM_T_SEEN,      /* complete; the store is recording it */
  EM_T_QUEUED,    /* recorded queued; waiting for a worker */
  EM_T_RUNNING,   /* a worker analyses it */
  EM_T_DONE,      /* this version has a result */
  EM_T_FINAL,     /* this version has a final state (failed, unsupported, ...) */
  EM_T_NSTATES
} em_tstate_t;

typedef struct em_tracked {
  char *path, *run, *run_dir;
  bool is_dir, has_step;
  bool renamed;               /* appeared by a rename into place: complete at once */
  bool marked;                /* found by the current full scan */
  bool dirty;                 /* changed while RUNNING: its result is dropped */
  bool checking;              /* the walker is looking at it again (quiet period over) */
  int64_t step;               /* as the store keeps it */
  em_fingerprint_t fp;        /* last observed */
  uint64_t t_changed;         /* ms: when fp last changed */
  uint64_t version;           /* the version recorded queued */
  int64_t ckpt_id;
  em_tstate_t st;             /* read only: em_tracker_set_state changes it */
  /* The tracker's own scheduling links (read only): */
  struct em_run_sched *sched; /* its run's baseline heap */
  size_t in_run, in_queued;   /* em_heap slots */
  struct em_tracked *wprev, *wnext; /* the list of entries waiting out their quiet period */
  bool waiting;
} em_tracked_t;

typedef struct em_tracker em_tracker_t;

/* root: the watch root, whose relative paths name runs. NULL on OOM. */
em_tracker_t *em_tracker_new(const char *root);
void em_tracker_free(em_tracker_t **self_p);

em_tracked_t *em_tracker_find(em_tracker_t *t, const char *path);
/* The entry of path, created PENDING (step from its name) when new; NULL on OOM. */
em_tracked_t *em_tracker_track(em_tracker_t *t, const char *path, bool is_dir, uint64_t now);
void em_tracker_drop(em_tracker_t *t, em_tracked_t *e);
void em_tracker_set_state(em_tracker_t *t, em_tracked_t *e, em_tstate_t st);
size_t em_tracker_count(const em_tracker_t *t, em_tstate_t st);
size_t em_tracker_size(const em_tracker_t *t);

/* An observation of e with fingerprint fp. A changed fingerprint restarts the quiet
 * period; a new version makes it PENDING again (a RUNNING one is marked dirty). Returns
 * true when e is PENDING afterwards (the quiet timer needs arming). */
bool em_tracker_observe(em_tracker_t *t, em_tracked_t *e, const em_fingerprint_t *fp, bool renamed, uint64_t now);

typedef enum em_quiet { EM_QUIET_WAIT, EM_QUIET_COMPLETE } em_quiet_t;
/* A PENDING entry looked at again after its quiet period: COMPLETE when nothing changed
 * and it has weight files; otherwise its quiet period restarts. */
em_quiet_t em_tracker_quiet_check(em_tracker_t *t, em_tracked_t *e, const em_fingerprint_t *fp, uint64_t now);
/* Whether e's quiet period is over, and the earliest deadline of any PENDING entry
 * (UINT64_MAX when none waits). */
bool em_tracker_due(const em_tracked_t *e, uint64_t now, uint64_t quiet);
uint64_t em_tracker_next_due(const em_tracker_t *t, uint64_t now, uint64_t quiet);
/* The next entry whose quiet period is over, now marked checking (the walker looks at it
 * again); NULL when none is due. */
em_tracked_t *em_tracker_next_ready(em_tracker_t *t, uint64_t now, uint64_t quiet);
/* Restarts e's quiet period at now. */
void em_tracker_touch(em_tracker_t *t, em_tracked_t *e, uint64_t now);
/* Whether the walker is looking at e again; a checking entry is never due. */
void em_tracker_set_checking(em_tracker_t *t, em_tracked_t *e, bool checking);

/* The QUEUED entry to analyse next: a run's lowest step (its baseline) first, runs taking
 * turns, then the newest, so a daemon that falls behind shows the present. NULL when
 * none is queued. The caller starts it (a pick counts as the run's turn). */
em_tracked_t *em_tracker_pick(em_tracker_t *t);

/* Calls fn for every entry; fn may drop the entry it is given. */
void em_tracker_foreach(em_tracker_t *t, void (*fn)(void *ctx, em_tracked_t *e), void *ctx);

#endif
