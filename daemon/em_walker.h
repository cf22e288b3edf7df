/* SPDX-License-Identifier: MIT */
/* The walker: everything the daemon does to the watched tree besides reading weights.
 * It owns inotify (em_watch), the rescan timer, and one thread that walks directories,
 * fingerprints checkpoints and reads trainer_state.json, so that no directory listing,
 * stat storm or slow filesystem ever holds up the loop thread. Requests are served in
 * the order they were made; their findings come back to the loop thread in batches.
 * Which entries are checkpoints and run directories is em_scan's (docs/DESIGN.md
 * "Checkpoints, runs, steps"). */
#ifndef EM_WALKER_H
#define EM_WALKER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "em_scan.h"

typedef enum em_walk {
  EM_WALK_SCAN,      /* a full scan: everything found, so what is missing is gone */
  EM_WALK_CONSIDER,  /* an inotify event named an entry of a directory */
  EM_WALK_CHANGED,   /* a file inside a checkpoint directory changed */
  EM_WALK_QUIET      /* a checkpoint's quiet period is over: looked at again */
} em_walk_t;

typedef struct em_found {
  char *path;
  bool is_dir;
  bool renamed;        /* appeared by a rename into place */
  bool gone;           /* could not be fingerprinted (deleted) */
  em_fingerprint_t fp;
  bool has_step;       /* EM_WALK_QUIET of a directory: global_step of its trainer_state.json */
  int64_t step;
} em_found_t;

typedef struct em_walker_cb {
  /* Findings of one request, on the loop thread. */
  void (*found)(void *ctx, em_walk_t why, const em_found_t *f, size_t n);
  /* An inotify event for dir/name (name NULL for the directory itself); dir NULL: the
   * queue overflowed and a full scan is under way. */
  void (*event)(void *ctx, const char *dir, const char *name, uint32_t mask);
} em_walker_cb_t;

typedef struct em_walker em_walker_t;

/* Starts the thread and, unless polling, inotify (falling back to polling, logged);
 * rescans every period seconds. Loop thread. */
int em_walker_start(em_walker_t **out, uv_loop_t *loop, const char *root, bool polling, double period,
                    const em_walker_cb_t *cb, void *ctx);
/* Whether inotify is in use. */
bool em_walker_polling(const em_walker_t *w);
void em_walker_scan(em_walker_t *w);
void em_walker_consider(em_walker_t *w, const char *dir, const char *name, bool renamed);
void em_walker_look(em_walker_t *w, em_walk_t why, const char *path, bool is_dir);
/* Stops the thread (requests not yet served are dropped) and closes every handle. */
void em_walker_stop(em_walker_t **self_p);

#endif
