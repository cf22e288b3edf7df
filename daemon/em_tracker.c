/* SPDX-License-Identifier: MIT */
#include "em_tracker.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "em_heap.h"
#include "em_hash.h"
#include "emerge.h"

/* A run's schedule: its entries queued, running or done, lowest step on top. */
typedef struct em_run_sched {
  char *name;
  em_heap_t active;
  size_t in_base;                 /* slot in the tracker's heap of runs whose baseline waits */
  uint64_t served;                /* when a baseline of this run was last picked (a tick) */
} run_sched_t;

struct em_tracker {
  char *root;
  em_hash_t entries;               /* by path: names are the job's to choose (em_hash.h) */
  em_hash_t runs;                  /* run_sched_t by name */
  size_t count[EM_T_NSTATES];
  em_heap_t queued;               /* QUEUED entries, highest step on top */
  em_heap_t base;                 /* runs whose lowest active entry is QUEUED, least recently served on top */
  uint64_t tick;
  em_tracked_t *whead, *wtail;    /* PENDING entries waiting out their quiet period, soonest first */
};

/* ---------------------------------------------------------------- heaps' orders */

static bool lower_step(const void *a, const void *b)
{
  const em_tracked_t *x = a, *y = b;
  if (x->step != y->step)
    return x->step < y->step;
  return x->st == EM_T_QUEUED && y->st != EM_T_QUEUED; /* a tie: the queued one is the baseline to do */
}

static bool higher_step(const void *a, const void *b)
{
  return ((const em_tracked_t *)a)->step > ((const em_tracked_t *)b)->step;
}

/* Runs take turns: a run whose baselines keep failing (100,000 empty files) presents a
 * new baseline after each, and must not starve another run's first checkpoint. */
static bool run_base_first(const void *a, const void *b)
{
  const run_sched_t *x = a, *y = b;
  if (x->served != y->served)
    return x->served < y->served;
  return higher_step(em_heap_top(&x->active), em_heap_top(&y->active));
}

em_tracker_t *em_tracker_new(const char *root)
{
  em_tracker_t *t = calloc(1, sizeof(*t));
  if (t && !(t->root = strdup(root))) {
    free(t);
    return NULL;
  }
  if (t) {
    em_hash_init(&t->entries);
    em_hash_init(&t->runs);
    em_heap_init(&t->queued, offsetof(em_tracked_t, in_queued), higher_step);
    em_heap_init(&t->base, offsetof(run_sched_t, in_base), run_base_first);
  }
  return t;
}

void em_tracker_free(em_tracker_t **self_p)
{
  em_tracker_t *t = *self_p;
  if (!t)
    return;
  size_t pos = 0;
  for (em_tracked_t *e; (e = em_hash_next(&t->entries, &pos)) != NULL;)
    em_tracker_drop(t, e);
  pos = 0;
  for (run_sched_t *r; (r = em_hash_next(&t->runs, &pos)) != NULL;) {
    em_heap_free(&r->active);
    free(r->name);
    free(r);
  }
  em_hash_free(&t->entries);
  em_hash_free(&t->runs);
  em_heap_free(&t->queued);
  em_heap_free(&t->base);
  free(t->root);
  free(t);
  *self_p = NULL;
}

em_tracked_t *em_tracker_find(em_tracker_t *t, const char *path)
{
  return em_hash_get(&t->entries, path, strlen(path));
}

/* The run a checkpoint belongs to: its directory relative to the root; the root's own
 * basename for checkpoints directly in it. */
static char *run_name(const em_tracker_t *t, const char *run_dir)
{
  size_t n = strlen(t->root);
  if (strcmp(run_dir, t->root) == 0) {
    const char *base = strrchr(t->root, '/');
    return strdup(base && base[1] ? base + 1 : t->root);
  }
  return strdup(strncmp(run_dir, t->root, n) == 0 && run_dir[n] == '/' ? run_dir + n + 1 : run_dir);
}

static run_sched_t *sched_of(em_tracker_t *t, const char *run)
{
  run_sched_t *r = em_hash_get(&t->runs, run, strlen(run));
  if (r)
    return r;
  if (!(r = calloc(1, sizeof(*r))) || !(r->name = strdup(run)) ||
      em_hash_put(&t->runs, r->name, strlen(r->name), r) != 0) {
    if (r)
      free(r->name);
    free(r);
    return NULL;
  }
  em_heap_init(&r->active, offsetof(em_tracked_t, in_run), lower_step);
  return r;
}

/* ---------------------------------------------------------------- the schedule */

static uint64_t wait_key(const em_tracked_t *e) { return e->renamed ? 0 : e->t_changed; }

static void wait_unlink(em_tracker_t *t, em_tracked_t *e)
{
  if (!e->waiting)
    return;
  *(e->wprev ? &e->wprev->wnext : &t->whead) = e->wnext;
  *(e->wnext ? &e->wnext->wprev : &t->wtail) = e->wprev;
  e->wprev = e->wnext = NULL;
  e->waiting = false;
}

/* In deadline order. Times only grow and a rename is due at once, so the place is almost
 * always an end of the list: searched from the tail, or the head for a rename. */
static void wait_link(em_tracker_t *t, em_tracked_t *e)
{
  uint64_t key = wait_key(e);
  em_tracked_t *after = t->wtail;
  if (t->whead && key <= wait_key(t->whead))
    after = NULL;
  while (after && wait_key(after) > key)
    after = after->wprev;
  e->wprev = after;
  e->wnext = after ? after->wnext : t->whead;
  *(e->wnext ? &e->wnext->wprev : &t->wtail) = e;
  *(after ? &after->wnext : &t->whead) = e;
  e->waiting = true;
}

static void refresh_base(em_tracker_t *t, run_sched_t *r)
{
  const em_tracked_t *top = em_heap_top(&r->active);
  if (top && top->st == EM_T_QUEUED)
    em_heap_put(&t->base, r);
  else
    em_heap_remove(&t->base, r);
}

/* Puts e where its state and times say, after any change to them. Out of memory for a
 * heap leaves e unscheduled, as OOM elsewhere leaves it untracked. */
static void reschedule(em_tracker_t *t, em_tracked_t *e)
{
  bool active = e->st == EM_T_QUEUED || e->st == EM_T_RUNNING || e->st == EM_T_DONE;
  if (active && e->sched)
    em_heap_put(&e->sched->active, e);
  else if (e->sched)
    em_heap_remove(&e->sched->active, e);
  if (e->st == EM_T_QUEUED)
    em_heap_put(&t->queued, e);
  else
    em_heap_remove(&t->queued, e);
  if (e->sched)
    refresh_base(t, e->sched);
  wait_unlink(t, e);
  if (e->st == EM_T_PENDING && !e->checking && e->fp.nweights > 0)
    wait_link(t, e);
}

static void entry_free(em_tracked_t *e)
{
  free(e->path);
  free(e->run);
  free(e->run_dir);
  free(e);
}

em_tracked_t *em_tracker_track(em_tracker_t *t, const char *path, bool is_dir, uint64_t now)
{
  em_tracked_t *e = em_tracker_find(t, path);
  if (e)
    return e;
  const char *slash = strrchr(path, '/');
  if (!slash || !(e = calloc(1, sizeof(*e))))
    return NULL;
  if (!(e->path = strdup(path)) || !(e->run_dir = strndup(path, (size_t)(slash - path))) ||
      !(e->run = run_name(t, e->run_dir)) || !(e->sched = sched_of(t, e->run)) ||
      em_hash_put(&t->entries, e->path, strlen(e->path), e) != 0) {
    entry_free(e);
    return NULL;
  }
  e->is_dir = is_dir;
  e->has_step = em_name_step(slash + 1, &e->step);
  e->st = EM_T_PENDING;
  e->t_changed = now;
  t->count[EM_T_PENDING]++;
  return e;
}

void em_tracker_drop(em_tracker_t *t, em_tracked_t *e)
{
  em_hash_remove(&t->entries, e->path, strlen(e->path));
  t->count[e->st]--;
  em_heap_remove(&e->sched->active, e);
  em_heap_remove(&t->queued, e);
  refresh_base(t, e->sched);
  wait_unlink(t, e);
  entry_free(e);
}

void em_tracker_set_state(em_tracker_t *t, em_tracked_t *e, em_tstate_t st)
{
  t->count[e->st]--;
  t->count[st]++;
  e->st = st;
  reschedule(t, e);
}

size_t em_tracker_count(const em_tracker_t *t, em_tstate_t st) { return t->count[st]; }
size_t em_tracker_size(const em_tracker_t *t) { return em_hash_size(&t->entries); }

bool em_tracker_observe(em_tracker_t *t, em_tracked_t *e, const em_fingerprint_t *fp, bool renamed, uint64_t now)
{
  bool was_renamed = e->renamed;
  e->renamed |= renamed;
  bool same = fp->quiet == e->fp.quiet && fp->version == e->fp.version;
  if (same) { /* nothing changed: a rescan must not restart a quiet period (poll <= quiet) */
    if (e->renamed != was_renamed)
      reschedule(t, e);
    return e->st == EM_T_PENDING;
  }
  bool new_version = fp->version != e->version;
  e->fp = *fp;
  e->t_changed = now;
  if (e->st == EM_T_RUNNING)
    e->dirty = true; /* the job's result will be dropped and the entry re-queued */
  else if (e->st != EM_T_SEEN && (new_version || e->st == EM_T_PENDING))
    em_tracker_set_state(t, e, EM_T_PENDING);
  reschedule(t, e);
  return e->st == EM_T_PENDING;
}

em_quiet_t em_tracker_quiet_check(em_tracker_t *t, em_tracked_t *e, const em_fingerprint_t *fp, uint64_t now)
{
  if (fp->quiet != e->fp.quiet) {
    e->fp = *fp;
    e->t_changed = now;
    e->renamed = false;
    reschedule(t, e);
    return EM_QUIET_WAIT;
  }
  return fp->nweights > 0 ? EM_QUIET_COMPLETE : EM_QUIET_WAIT;
}

void em_tracker_touch(em_tracker_t *t, em_tracked_t *e, uint64_t now)
{
  e->t_changed = now;
  reschedule(t, e);
}

void em_tracker_set_checking(em_tracker_t *t, em_tracked_t *e, bool checking)
{
  e->checking = checking;
  reschedule(t, e);
}

bool em_tracker_due(const em_tracked_t *e, uint64_t now, uint64_t quiet)
{
  return e->st == EM_T_PENDING && !e->checking && (e->renamed || now - e->t_changed >= quiet);
}

uint64_t em_tracker_next_due(const em_tracker_t *t, uint64_t now, uint64_t quiet)
{
  const em_tracked_t *e = t->whead;
  return !e ? UINT64_MAX : e->renamed ? now : e->t_changed + quiet;
}

em_tracked_t *em_tracker_next_ready(em_tracker_t *t, uint64_t now, uint64_t quiet)
{
  em_tracked_t *e = t->whead;
  if (!e || !em_tracker_due(e, now, quiet))
    return NULL;
  em_tracker_set_checking(t, e, true);
  return e;
}

em_tracked_t *em_tracker_pick(em_tracker_t *t)
{
  run_sched_t *r = em_heap_top(&t->base); /* a run's baseline first: every E is measured against it */
  if (!r)
    return em_heap_top(&t->queued);
  r->served = ++t->tick;
  em_heap_put(&t->base, r);
  return em_heap_top(&r->active);
}

void em_tracker_foreach(em_tracker_t *t, void (*fn)(void *ctx, em_tracked_t *e), void *ctx)
{
  size_t pos = 0; /* fn may drop e: removal leaves the table's layout as it is */
  for (em_tracked_t *e; (e = em_hash_next(&t->entries, &pos)) != NULL;)
    fn(ctx, e);
}
