/* SPDX-License-Identifier: MIT */
#include "em_walker.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "em_fifo.h"
#include "em_fs.h"
#include "em_log.h"
#include "em_utf8.h"
#include "em_hash.h"
#include "em_watch.h"
#include "emerge.h"

#define MAX_DEPTH 8           /* run directories nest at most this deep below the root */
/* Looks waiting for the walker thread beyond which events are dropped for one rescan: a
 * writer creating files faster than the walker can stat them must not grow the queue
 * without bound (docs/SECURITY.md). A rescan finds whatever the dropped events named. */
#define MAX_BEHIND 65536

typedef struct request {
  em_fifo_item_t link;        /* first: the walker's queue */
  em_walk_t why;
  char *path;                 /* CONSIDER: the directory; CHANGED, QUIET: the checkpoint */
  char *name;                 /* CONSIDER: the entry */
  bool is_dir, renamed;
  bool again;                 /* loop thread: asked for again while in flight */
  size_t n, cap;
  em_found_t *found;
} request_t;

struct em_walker {
  em_fifo_t fifo;
  uv_thread_t thread;
  bool started;
  char *root;
  em_watch_t *watch;
  uv_timer_t rescan;
  em_walker_cb_t cb;
  void *ctx;
  uint64_t *told;             /* walker thread: hashes of paths already logged (once_only) */
  size_t ntold, cap_told;
  uint64_t told_k0, told_k1;  /* their hash's random key: names are the job's (em_hash.h) */
  bool told_watch_limit;
  em_hash_t changed;           /* loop thread: CHANGED looks not yet served, by path */
  request_t *scan;            /* loop thread: the scan not yet served */
  bool told_behind;
};

/* ---------------------------------------------------------------- walker thread */

static void add_found(request_t *r, const char *path, bool is_dir, bool renamed)
{
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 16;
    em_found_t *grown = realloc(r->found, cap * sizeof(*grown));
    if (!grown)
      return;
    r->found = grown;
    r->cap = cap;
  }
  em_found_t *f = &r->found[r->n];
  *f = (em_found_t){.is_dir = is_dir, .renamed = renamed, .path = strdup(path)};
  if (!f->path)
    return;
  f->gone = em_scan_fingerprint(path, is_dir, &f->fp) != 0;
  r->n++;
}

/* Whether path is logged for the first time: a rescan every 30 s must not repeat what it
 * found skipped. An open-addressing set of 64-bit path hashes, at most 2^19 of them;
 * past that nothing more is logged (one line says so). */
#define MAX_TOLD (1u << 19)

static void told_insert(uint64_t *set, size_t cap, uint64_t h)
{
  size_t j = h % cap;
  while (set[j] && set[j] != h)
    j = (j + 1) % cap;
  set[j] = h;
}

static bool once_only(em_walker_t *w, const char *path)
{
  uint64_t h = em_siphash(w->told_k0, w->told_k1, path, strlen(path)) | 1; /* 0 marks a free slot */
  for (size_t j = w->cap_told ? h % w->cap_told : 0; w->cap_told && w->told[j]; j = (j + 1) % w->cap_told)
    if (w->told[j] == h)
      return false;
  if (w->ntold >= MAX_TOLD) {
    if (w->ntold++ == MAX_TOLD)
      EM_NOTICE("watch: %u skipped entries logged; later ones are not", MAX_TOLD);
    return false;
  }
  if (2 * (w->ntold + 1) > w->cap_told) {
    size_t cap = w->cap_told ? 2 * w->cap_told : 256;
    uint64_t *grown = calloc(cap, sizeof(*grown));
    if (!grown)
      return false;
    for (size_t i = 0; i < w->cap_told; i++)
      if (w->told[i])
        told_insert(grown, cap, w->told[i]);
    free(w->told);
    w->told = grown;
    w->cap_told = cap;
  }
  told_insert(w->told, w->cap_told, h);
  w->ntold++;
  return true;
}

static void watch_dir(em_walker_t *w, const char *dir)
{
  int rc = w->watch ? em_watch_add(w->watch, dir) : 0;
  if (rc == -ENOSPC && !w->told_watch_limit) {
    w->told_watch_limit = true;
    EM_WARN("watch: cannot watch %s and later directories: the inotify watch limit is reached (raise "
            "fs.inotify.max_user_watches); rescans still find their checkpoints", dir);
  } else if (rc && rc != -ENOSPC && once_only(w, dir)) {
    EM_WARN("watch: cannot watch %s: %s (rescans still find its checkpoints)", dir, strerror(-rc));
  }
}

static void walk_dir(em_walker_t *w, request_t *r, const char *dir, int depth);

static void consider(em_walker_t *w, request_t *r, const char *dir, const char *name, int depth, bool renamed)
{
  char path[PATH_MAX];
  struct stat st;
  if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
    if (once_only(w, dir))
      EM_WARN("watch: skipping an entry of %s: its path is longer than %d bytes", dir, PATH_MAX);
    return;
  }
  if (!em_utf8_valid(name)) {
    if (once_only(w, path))
      EM_WARN("watch: skipping %s/...: the name is not UTF-8, and results, metrics and the dashboard carry only "
              "UTF-8 (rename it)", dir);
    return;
  }
  if (em_fs_stat(path, &st) != 0)
    return;
  em_entry_t kind = em_scan_classify(name, S_ISDIR(st.st_mode));
  if (S_ISLNK(st.st_mode) && once_only(w, path)) /* a link is never a directory to us */
    EM_NOTICE("watch: not following %s: a symbolic link (links below the root are not followed)", path);
  switch (kind) {
  case EM_ENTRY_RUN_DIR:
    if (depth < MAX_DEPTH)
      walk_dir(w, r, path, depth + 1);
    else if (once_only(w, path))
      EM_NOTICE("watch: not descending into %s: more than %d directories below the root", path, MAX_DEPTH);
    break;
  case EM_ENTRY_CKPT_DIR:
    watch_dir(w, path);
    add_found(r, path, true, renamed);
    break;
  case EM_ENTRY_CKPT_FILE: /* a link or FIFO of that name fails with its reason when read */
    add_found(r, path, false, renamed);
    break;
  case EM_ENTRY_IGNORE:
    break;
  }
}

static void walk_dir(em_walker_t *w, request_t *r, const char *dir, int depth)
{
  watch_dir(w, dir); /* before reading it: what appears after the read raises an event */
  DIR *d = em_fs_opendir(dir);
  if (!d) {
    if (errno != ENOENT && once_only(w, dir))
      EM_WARN("watch: cannot read %s: %s", dir, em_fs_strerror(-errno));
    return;
  }
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL)
    if (!em_scan_hidden(ent->d_name))
      consider(w, r, dir, ent->d_name, depth, false);
  closedir(d);
}

static int depth_of(const em_walker_t *w, const char *dir)
{
  int depth = 0;
  for (const char *p = dir + strlen(w->root); *p; p++)
    depth += *p == '/';
  return depth;
}

/* A checkpoint looked at again; a directory without a step in its name takes the
 * global_step of its trainer_state.json. */
static void look(request_t *r)
{
  add_found(r, r->path, r->is_dir, false);
  if (r->why != EM_WALK_QUIET || !r->n || !r->is_dir)
    return;
  em_found_t *f = &r->found[r->n - 1];
  const char *base = strrchr(r->path, '/');
  if (em_name_step(base ? base + 1 : r->path, &f->step))
    return;
  em_trainer_t t;
  if (em_trainer_read(r->path, -1, &t, NULL) == 0 && t.has_global_step) {
    f->has_step = true;
    f->step = t.global_step;
  }
  em_trainer_free(&t);
}

/* An event names dir/name. When dir is itself a checkpoint directory (its watch was added
 * here before the loop learnt of it), the event is about that checkpoint: its files are
 * never checkpoints of their own. */
static void consider_event(em_walker_t *w, request_t *r)
{
  const char *base = strrchr(r->path, '/');
  if (base && em_scan_classify(base + 1, true) == EM_ENTRY_CKPT_DIR) {
    add_found(r, r->path, true, false);
    return;
  }
  consider(w, r, r->path, r->name, depth_of(w, r->path), r->renamed);
}

static void serve(em_walker_t *w, request_t *r)
{
  switch (r->why) {
  case EM_WALK_SCAN: walk_dir(w, r, w->root, 0); break;
  case EM_WALK_CONSIDER: consider_event(w, r); break;
  case EM_WALK_CHANGED:
  case EM_WALK_QUIET: look(r); break;
  }
}

static void thread_main(void *arg)
{
  em_walker_t *w = arg;
  pthread_setname_np(pthread_self(), "em-walker");
  em_fifo_item_t *item;
  while ((item = em_fifo_pop(&w->fifo, /* finish_queue = */ false)) != NULL) {
    serve(w, (request_t *)item);
    em_fifo_finish(&w->fifo, item);
  }
}

/* ---------------------------------------------------------------- loop thread */

static void request_free(request_t *r)
{
  for (size_t i = 0; i < r->n; i++)
    free(r->found[i].path);
  free(r->found);
  free(r->path);
  free(r->name);
  free(r);
}

static void submit(em_walker_t *w, em_walk_t why, const char *path, const char *name, bool is_dir, bool renamed);

static void served(void *ctx, em_fifo_item_t *item)
{
  em_walker_t *w = ctx;
  request_t *r = (request_t *)item;
  if (r == w->scan)
    w->scan = NULL;
  if (r->why == EM_WALK_CHANGED && em_hash_get(&w->changed, r->path, strlen(r->path)) == r)
    em_hash_remove(&w->changed, r->path, strlen(r->path));
  if (!w->cb.found) { /* stopping */
    request_free(r);
    return;
  }
  w->cb.found(w->ctx, r->why, r->found, r->n);
  if (r->again) /* changed again after this look began: one more look covers every change since */
    submit(w, r->why, r->path, NULL, r->is_dir, false);
  if (w->told_behind && w->fifo.busy < MAX_BEHIND / 2) {
    w->told_behind = false;
    EM_NOTICE("watch: the walker has caught up with events");
  }
  request_free(r);
}

/* An earlier look not yet served that this one would repeat, marked to run again. */
static bool coalesced(em_walker_t *w, em_walk_t why, const char *path)
{
  request_t *q = why == EM_WALK_SCAN ? w->scan
                 : why == EM_WALK_CHANGED ? em_hash_get(&w->changed, path, strlen(path)) : NULL;
  if (q)
    q->again = true;
  return q != NULL;
}

/* Whether the walker is too far behind for another event-driven look; if so one scan
 * stands for the dropped ones. */
static bool behind(em_walker_t *w, em_walk_t why)
{
  if (why == EM_WALK_SCAN || why == EM_WALK_QUIET || w->fifo.busy < MAX_BEHIND)
    return false; /* scans and quiet looks are bounded by the timers and the tracked entries */
  if (!w->told_behind) {
    w->told_behind = true;
    EM_WARN("watch: %d looks wait for the walker; dropping events and rescanning instead", MAX_BEHIND);
  }
  if (!coalesced(w, EM_WALK_SCAN, NULL))
    submit(w, EM_WALK_SCAN, NULL, NULL, true, false);
  return true;
}

static void submit(em_walker_t *w, em_walk_t why, const char *path, const char *name, bool is_dir, bool renamed)
{
  if (coalesced(w, why, path) || behind(w, why))
    return;
  request_t *r = calloc(1, sizeof(*r));
  if (!r || (path && !(r->path = strdup(path))) || (name && !(r->name = strdup(name)))) {
    EM_ERR("walker: out of memory");
    if (r)
      request_free(r);
    return;
  }
  r->why = why;
  r->is_dir = is_dir;
  r->renamed = renamed;
  if (why == EM_WALK_SCAN)
    w->scan = r;
  if (why == EM_WALK_CHANGED) /* out of memory: this look is simply not coalesced */
    (void)em_hash_put(&w->changed, r->path, strlen(r->path), r);
  em_fifo_push(&w->fifo, &r->link);
}

void em_walker_scan(em_walker_t *w) { submit(w, EM_WALK_SCAN, NULL, NULL, true, false); }

void em_walker_consider(em_walker_t *w, const char *dir, const char *name, bool renamed)
{
  submit(w, EM_WALK_CONSIDER, dir, name, true, renamed);
}

void em_walker_look(em_walker_t *w, em_walk_t why, const char *path, bool is_dir)
{
  submit(w, why, path, NULL, is_dir, false);
}

bool em_walker_polling(const em_walker_t *w) { return w->watch == NULL; }

static void on_rescan(uv_timer_t *t) { em_walker_scan(t->data); }

static void on_event(void *ctx, const char *dir, const char *name, uint32_t mask)
{
  em_walker_t *w = ctx;
  if (!dir)
    em_walker_scan(w);
  w->cb.event(w->ctx, dir, name, mask);
}

int em_walker_start(em_walker_t **out, uv_loop_t *loop, const char *root, bool polling, double period,
                    const em_walker_cb_t *cb, void *ctx)
{
  em_walker_t *w = calloc(1, sizeof(*w));
  if (!w || !(w->root = strdup(root))) {
    free(w);
    return -ENOMEM;
  }
  w->cb = *cb;
  w->ctx = ctx;
  em_fifo_init(&w->fifo, loop, served, w);
  em_hash_init(&w->changed);
  em_hash_random_key(&w->told_k0, &w->told_k1);
  int rc = polling ? 0 : em_watch_start(&w->watch, loop, on_event, w);
  if (rc)
    EM_WARN("watch: inotify unavailable (%s); polling every %g s instead", strerror(-rc), period);
  uv_timer_init(loop, &w->rescan);
  w->rescan.data = w;
  uint64_t ms = (uint64_t)(period * 1000);
  uv_timer_start(&w->rescan, on_rescan, ms, ms);
  w->started = uv_thread_create(&w->thread, thread_main, w) == 0;
  *out = w;
  return w->started ? 0 : -EAGAIN;
}

static void free_walker(uv_handle_t *h)
{
  em_walker_t *w = h->data;
  em_fifo_destroy(&w->fifo);
  em_hash_free(&w->changed);
  free(w->told);
  free(w->root);
  free(w);
}

static void timer_closed(uv_handle_t *h)
{
  em_walker_t *w = h->data;
  w->fifo.async.data = w;
  em_fifo_close(&w->fifo, free_walker);
}

void em_walker_stop(em_walker_t **self_p)
{
  em_walker_t *w = *self_p;
  if (!w)
    return;
  *self_p = NULL;
  em_fifo_stop(&w->fifo);
  if (w->started)
    uv_thread_join(&w->thread);
  w->cb.found = NULL;
  for (em_fifo_item_t *i = em_fifo_after_join(&w->fifo), *next; i; i = next) {
    next = i->next;
    request_free((request_t *)i);
  }
  em_watch_stop(&w->watch);
  uv_close((uv_handle_t *)&w->rescan, timer_closed);
}
