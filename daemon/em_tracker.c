/* SPDX-License-Identifier: MIT */
#include "em_tracker.h"

#include <stdlib.h>
#include <string.h>

#include "emerge.h"

#define BUCKETS 4096

struct em_tracker {
  char *root;
  em_tracked_t *buckets[BUCKETS];
  size_t n;
  size_t count[EM_T_NSTATES];
};

static unsigned hash(const char *s)
{
  unsigned h = 2166136261u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

em_tracker_t *em_tracker_new(const char *root)
{
  em_tracker_t *t = calloc(1, sizeof(*t));
  if (t && !(t->root = strdup(root))) {
    free(t);
    return NULL;
  }
  return t;
}

void em_tracker_free(em_tracker_t **self_p)
{
  em_tracker_t *t = *self_p;
  if (!t)
    return;
  for (size_t b = 0; b < BUCKETS; b++)
    while (t->buckets[b])
      em_tracker_drop(t, t->buckets[b]);
  free(t->root);
  free(t);
  *self_p = NULL;
}

em_tracked_t *em_tracker_find(em_tracker_t *t, const char *path)
{
  for (em_tracked_t *e = t->buckets[hash(path) % BUCKETS]; e; e = e->next)
    if (strcmp(e->path, path) == 0)
      return e;
  return NULL;
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
      !(e->run = run_name(t, e->run_dir))) {
    entry_free(e);
    return NULL;
  }
  e->is_dir = is_dir;
  e->has_step = em_name_step(slash + 1, &e->step);
  e->st = EM_T_PENDING;
  e->t_changed = now;
  unsigned b = hash(path) % BUCKETS;
  e->next = t->buckets[b];
  t->buckets[b] = e;
  t->n++;
  t->count[EM_T_PENDING]++;
  return e;
}

void em_tracker_drop(em_tracker_t *t, em_tracked_t *e)
{
  em_tracked_t **p = &t->buckets[hash(e->path) % BUCKETS];
  while (*p != e)
    p = &(*p)->next;
  *p = e->next;
  t->count[e->st]--;
  t->n--;
  entry_free(e);
}

void em_tracker_set_state(em_tracker_t *t, em_tracked_t *e, em_tstate_t st)
{
  t->count[e->st]--;
  t->count[st]++;
  e->st = st;
}

size_t em_tracker_count(const em_tracker_t *t, em_tstate_t st) { return t->count[st]; }
size_t em_tracker_size(const em_tracker_t *t) { return t->n; }

bool em_tracker_observe(em_tracker_t *t, em_tracked_t *e, const em_fingerprint_t *fp, bool renamed, uint64_t now)
{
  e->renamed |= renamed;
  if (fp->quiet == e->fp.quiet && fp->version == e->fp.version && e->st != EM_T_PENDING)
    return false;
  bool new_version = fp->version != e->version;
  e->fp = *fp;
  e->t_changed = now;
  if (e->st == EM_T_RUNNING)
    e->dirty = true; /* the job's result will be dropped and the entry re-queued */
  else if (e->st != EM_T_SEEN && (new_version || e->st == EM_T_PENDING))
    em_tracker_set_state(t, e, EM_T_PENDING);
  return e->st == EM_T_PENDING;
}

em_quiet_t em_tracker_quiet_check(em_tracker_t *t, em_tracked_t *e, const em_fingerprint_t *fp, uint64_t now)
{
  (void)t;
  if (fp->quiet != e->fp.quiet) {
    e->fp = *fp;
    e->t_changed = now;
    e->renamed = false;
    return EM_QUIET_WAIT;
  }
  return fp->nweights > 0 ? EM_QUIET_COMPLETE : EM_QUIET_WAIT;
}

bool em_tracker_due(const em_tracked_t *e, uint64_t now, uint64_t quiet)
{
  return e->st == EM_T_PENDING && !e->checking && (e->renamed || now - e->t_changed >= quiet);
}

uint64_t em_tracker_next_due(const em_tracker_t *t, uint64_t now, uint64_t quiet)
{
  uint64_t best = UINT64_MAX;
  if (t->count[EM_T_PENDING] == 0)
    return best;
  for (size_t b = 0; b < BUCKETS; b++) {
    for (const em_tracked_t *e = t->buckets[b]; e; e = e->next) {
      if (e->st != EM_T_PENDING || e->fp.nweights == 0 || e->checking)
        continue;
      uint64_t due = e->renamed ? now : e->t_changed + quiet;
      best = due < best ? due : best;
    }
  }
  return best;
}

/* The lowest known step of each run, for pick(): open addressing keyed by run name. */
typedef struct run_min {
  const char *run;
  int64_t step;
} run_min_t;

static run_min_t *run_slot(run_min_t *m, size_t cap, const char *run)
{
  size_t i = hash(run) % cap;
  while (m[i].run && strcmp(m[i].run, run) != 0)
    i = (i + 1) % cap;
  return &m[i];
}

static void collect_mins(em_tracker_t *t, run_min_t *mins, size_t cap)
{
  for (size_t b = 0; b < BUCKETS; b++) {
    for (em_tracked_t *e = t->buckets[b]; e; e = e->next) {
      if (e->st < EM_T_QUEUED || e->st > EM_T_DONE)
        continue;
      run_min_t *m = run_slot(mins, cap, e->run);
      if (!m->run || e->step < m->step)
        *m = (run_min_t){e->run, e->step};
    }
  }
}

em_tracked_t *em_tracker_pick(em_tracker_t *t)
{
  if (t->count[EM_T_QUEUED] == 0)
    return NULL;
  size_t cap = 2 * t->n + 1;
  run_min_t *mins = calloc(cap, sizeof(*mins));
  if (!mins)
    return NULL;
  collect_mins(t, mins, cap);
  em_tracked_t *best = NULL;
  bool best_base = false;
  for (size_t b = 0; b < BUCKETS; b++) {
    for (em_tracked_t *e = t->buckets[b]; e; e = e->next) {
      if (e->st != EM_T_QUEUED)
        continue;
      bool base = run_slot(mins, cap, e->run)->step == e->step;
      if (!best || (base && !best_base) || (base == best_base && e->step > best->step)) {
        best = e;
        best_base = base;
      }
    }
  }
  free(mins);
  return best;
}

void em_tracker_foreach(em_tracker_t *t, void (*fn)(void *ctx, em_tracked_t *e), void *ctx)
{
  for (size_t b = 0; b < BUCKETS; b++) {
    for (em_tracked_t *e = t->buckets[b], *next; e; e = next) {
      next = e->next;
      fn(ctx, e);
    }
  }
}
