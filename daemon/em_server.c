/* SPDX-License-Identifier: MIT */
/* The daemon's loop.
 *
 * DESIGN. A checkpoint is tracked from first sight. Each observation fingerprints it
 * (em_scan); a change restarts its quiet period. When it has been quiet for `quiet`
 * seconds (or appeared by a rename into place) it is recorded queued in the store,
 * which answers whether this version already has a result (a restart). Queued entries
 * go to the workers, a run's baseline first and then newest first; a worker validates,
 * analyses and re-checks the fingerprint. A result commits in the store thread and is
 * published only after that commit. Full rescans (every `rescan` seconds, and at once
 * when inotify overflows) catch whatever events missed; with --poll or on a network
 * filesystem they are the only source. */
#include "em_server.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <uv.h>

#include "em_api.h"
#include "em_bus.h"
#include "em_deliver.h"
#include "em_log.h"
#include "em_notify.h"
#include "em_query.h"
#include "em_scan.h"
#include "em_store.h"
#include "em_watch.h"
#include "em_workq.h"

#define MAX_DEPTH 8           /* run directories nest at most this deep below the root */
#define HEARTBEAT_MS 10000    /* status/ messages */
#define BUCKETS 4096

typedef enum estate { E_PENDING, E_SEEN, E_QUEUED, E_RUNNING, E_DONE, E_FINAL } estate_t;

typedef struct entry {
  char *path, *run, *run_dir;
  bool is_dir, has_step, renamed, marked, dirty;
  int64_t step;               /* as the store keeps it */
  em_fingerprint_t fp;        /* last observed */
  uint64_t t_changed;         /* ms: when fp last changed */
  uint64_t version;           /* the version recorded queued */
  estate_t st;
  int64_t ckpt_id;
  struct entry *next;         /* hash chain */
} entry_t;

typedef struct server {
  em_config_t *cfg;
  uv_loop_t loop;
  char db_path[PATH_MAX];
  char *root;                 /* realpath of the watch root */
  bool polling, stopping;
  em_store_t *store;
  em_workq_t *workq;
  em_bus_t *bus;
  em_watch_t *watch;
  em_deliver_t *deliver;
  sqlite3 *reader;
  uv_timer_t quiet_timer, rescan_timer, heartbeat_timer, watchdog_timer;
  uv_signal_t sigterm, sigint, sighup;
  entry_t *buckets[BUCKETS];
  size_t nentries;
  int64_t last_seq;
  uint64_t started_ms;
  size_t store_inflight;
} server_t;


static uint64_t now_ms(server_t *s) { return uv_now(&s->loop); }

/* ---------------------------------------------------------------- entries */

static unsigned bucket_of(const char *path)
{
  unsigned h = 2166136261u;
  for (; *path; path++)
    h = (h ^ (unsigned char)*path) * 16777619u;
  return h % BUCKETS;
}

static entry_t *find(server_t *s, const char *path)
{
  for (entry_t *e = s->buckets[bucket_of(path)]; e; e = e->next)
    if (strcmp(e->path, path) == 0)
      return e;
  return NULL;
}

static void drop(server_t *s, entry_t *e)
{
  entry_t **p = &s->buckets[bucket_of(e->path)];
  while (*p != e)
    p = &(*p)->next;
  *p = e->next;
  free(e->path);
  free(e->run);
  free(e->run_dir);
  free(e);
  s->nentries--;
}

/* The run a checkpoint belongs to: its directory relative to the root. */
static char *run_name(server_t *s, const char *run_dir)
{
  size_t n = strlen(s->root);
  if (strcmp(run_dir, s->root) == 0) {
    const char *base = strrchr(s->root, '/');
    return strdup(base && base[1] ? base + 1 : s->root);
  }
  return strdup(run_dir + n + 1);
}

static entry_t *track(server_t *s, const char *path, bool is_dir)
{
  entry_t *e = find(s, path);
  if (e)
    return e;
  e = calloc(1, sizeof(*e));
  const char *slash = strrchr(path, '/');
  if (!e || !slash || !(e->path = strdup(path)) || !(e->run_dir = strndup(path, (size_t)(slash - path))) ||
      !(e->run = run_name(s, e->run_dir))) {
    if (e) {
      free(e->path);
      free(e->run_dir);
      free(e);
    }
    EM_ERR("server: out of memory tracking %s", path);
    return NULL;
  }
  e->is_dir = is_dir;
  e->has_step = em_name_step(slash + 1, &e->step);
  e->st = E_PENDING;
  e->t_changed = now_ms(s);
  unsigned b = bucket_of(path);
  e->next = s->buckets[b];
  s->buckets[b] = e;
  s->nentries++;
  EM_DEBUG("watch: new checkpoint %s (run %s)", path, e->run);
  return e;
}

/* ---------------------------------------------------------------- scheduling */

static void arm_quiet_timer(server_t *s);
static void dispatch(server_t *s);

static void submit(server_t *s, em_store_op_t *op, em_store_done_fn done)
{
  op->done = done;
  op->ctx = s;
  s->store_inflight++;
  em_store_submit(s->store, op);
}

static em_store_op_t *entry_op(em_store_op_type_t type, const entry_t *e)
{
  em_store_op_t *op = em_store_op_new(type);
  if (!op)
    return NULL;
  op->run = strdup(e->run);
  op->run_dir = strdup(e->run_dir);
  op->path = strdup(e->path);
  op->has_step = e->has_step;
  op->step = e->step;
  op->ckpt_id = e->ckpt_id;
  em_scan_version_text(e->version, op->version);
  if (!op->run || !op->run_dir || !op->path) {
    em_store_op_free(op);
    return NULL;
  }
  return op;
}

static size_t count_state(server_t *s, estate_t st);

static void seen_done(em_store_op_t *op)
{
  server_t *s = op->ctx;
  s->store_inflight--;
  entry_t *e = s->stopping ? NULL : find(s, op->path);
  if (e && e->st == E_SEEN && op->rc == 0) {
    e->ckpt_id = op->ckpt_id;
    e->step = op->step_out;
    e->st = op->has_result ? E_DONE : E_QUEUED;
    EM_INFO("queue: %s step %lld %s", e->path, (long long)e->step, op->has_result ? "already analysed" : "queued");
  } else if (e && e->st == E_SEEN) {
    e->st = E_PENDING; /* the store failed (logged there): try again after the quiet period */
    e->t_changed = now_ms(s);
    arm_quiet_timer(s);
  }
  if (!s->stopping && count_state(s, E_SEEN) == 0) /* order a batch (start-up, a burst) as a whole */
    dispatch(s);
  em_store_op_free(op);
}

/* The step to record: from the name, else trainer_state.json, else the store assigns. */
static void settle_step(entry_t *e)
{
  if (e->has_step || !e->is_dir)
    return;
  em_trainer_t t;
  if (em_trainer_read(e->path, -1, &t, NULL) == 0 && t.has_global_step) {
    e->has_step = true;
    e->step = t.global_step;
  }
  em_trainer_free(&t);
}

static void complete(server_t *s, entry_t *e)
{
  settle_step(e);
  e->version = e->fp.version;
  e->renamed = false;
  em_store_op_t *op = entry_op(EM_OP_SEEN, e);
  if (!op)
    return;
  e->st = E_SEEN;
  submit(s, op, seen_done);
}

/* Pending entries quiet long enough (or renamed into place) become complete. */
static void on_quiet_timer(uv_timer_t *t)
{
  server_t *s = t->data;
  uint64_t now = now_ms(s), quiet = (uint64_t)(s->cfg->quiet * 1000);
  for (size_t b = 0; b < BUCKETS; b++) {
    for (entry_t *e = s->buckets[b], *next; e; e = next) {
      next = e->next;
      if (e->st != E_PENDING || (!e->renamed && now - e->t_changed < quiet))
        continue;
      em_fingerprint_t fp;
      if (em_scan_fingerprint(e->path, e->is_dir, &fp) != 0) {
        EM_INFO("watch: %s is gone before it was complete", e->path);
        drop(s, e);
      } else if (fp.quiet != e->fp.quiet) {
        e->fp = fp;
        e->t_changed = now;
        e->renamed = false;
      } else if (fp.nweights > 0) {
        complete(s, e);
      }
    }
  }
  arm_quiet_timer(s);
}

/* Sleeps until the earliest quiet deadline; no timer at all when nothing is pending. */
static void arm_quiet_timer(server_t *s)
{
  if (s->stopping)
    return;
  uint64_t now = now_ms(s), quiet = (uint64_t)(s->cfg->quiet * 1000), best = UINT64_MAX;
  for (size_t b = 0; b < BUCKETS; b++) {
    for (entry_t *e = s->buckets[b]; e; e = e->next) {
      if (e->st != E_PENDING || e->fp.nweights == 0)
        continue;
      uint64_t due = e->renamed ? now : e->t_changed + quiet;
      best = due < best ? due : best;
    }
  }
  if (best == UINT64_MAX)
    uv_timer_stop(&s->quiet_timer);
  else
    uv_timer_start(&s->quiet_timer, on_quiet_timer, best > now ? best - now : 0, 0);
}

/* The lowest known step of each run, for pick(): open addressing keyed by run name. */
typedef struct run_min {
  const char *run;
  int64_t step;
} run_min_t;

static run_min_t *run_slot(run_min_t *t, size_t cap, const char *run)
{
  size_t i = bucket_of(run) % cap;
  while (t[i].run && strcmp(t[i].run, run) != 0)
    i = (i + 1) % cap;
  return &t[i];
}

/* Queued entries in order: a run's lowest step (its baseline) first, then newest. O(n). */
static entry_t *pick(server_t *s)
{
  size_t cap = 2 * s->nentries + 1;
  run_min_t *mins = calloc(cap, sizeof(*mins));
  if (!mins)
    return NULL;
  for (size_t b = 0; b < BUCKETS; b++) {
    for (entry_t *e = s->buckets[b]; e; e = e->next) {
      if (e->st < E_QUEUED || e->st > E_DONE)
        continue;
      run_min_t *m = run_slot(mins, cap, e->run);
      if (!m->run || e->step < m->step)
        *m = (run_min_t){e->run, e->step};
    }
  }
  entry_t *best = NULL;
  bool best_base = false;
  for (size_t b = 0; b < BUCKETS; b++) {
    for (entry_t *e = s->buckets[b]; e; e = e->next) {
      if (e->st != E_QUEUED)
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

static void dispatch(server_t *s)
{
  while (!s->stopping && em_workq_busy(s->workq) < (size_t)s->cfg->workers) {
    entry_t *e = pick(s);
    if (!e)
      return;
    em_job_t *job = em_job_new(e->ckpt_id, e->path, e->run, e->is_dir, true, e->step, e->version, &s->cfg->params);
    if (!job)
      return;
    job->check_finite = em_rules_check_finite(&s->cfg->alerts);
    e->st = E_RUNNING;
    e->dirty = false;
    EM_INFO("work: analysing %s (step %lld)", e->path, (long long)e->step);
    em_workq_push(s->workq, job);
  }
}

/* ---------------------------------------------------------------- results */

/* An operation's committed messages: published (after the commit, never before), and
 * alerts delivered (log, stop file, command). */
static void publish_committed(server_t *s, em_store_op_t *op)
{
  if (op->rc == 0 && op->last_seq > s->last_seq)
    s->last_seq = op->last_seq;
  for (size_t i = 0; i < op->npub && s->bus; i++) {
    em_bus_publish(s->bus, op->pubs[i].topic, op->pubs[i].payload);
    if (s->deliver && strncmp(op->pubs[i].topic, "alert/", 6) == 0) /* stopping: redone at start */
      em_deliver_alert(s->deliver, op->pubs[i].payload);
  }
}

static void result_done(em_store_op_t *op)
{
  server_t *s = op->ctx;
  s->store_inflight--;
  publish_committed(s, op);
  if (op->npub) {
    EM_INFO("publish: %s step %lld, seq %lld (%zu message%s)", op->run, (long long)op->step,
            (long long)op->last_seq, op->npub, op->npub > 1 ? "s" : "");
    char status[512];
    snprintf(status, sizeof(status), "STATUS=queue %zu, last result %s step %lld (seq %lld)",
             count_state(s, E_QUEUED) + count_state(s, E_PENDING), op->run, (long long)op->step,
             (long long)op->last_seq);
    em_notify(status);
  }
  em_store_op_free(op);
}

static void state_done(em_store_op_t *op)
{
  server_t *s = op->ctx;
  s->store_inflight--;
  publish_committed(s, op); /* a non-finite checkpoint can raise an alert; undelivered alerts at start */
  em_store_op_free(op);
}

/* An alert's deliveries ended: the store marks it, so a restart does not redo them. */
static void alert_delivered(void *ctx, int64_t seq)
{
  server_t *s = ctx;
  em_store_op_t *op = s->stopping ? NULL : em_store_op_new(EM_OP_DELIVERED);
  if (op) {
    op->seq = seq;
    submit(s, op, state_done);
  }
}

/* The store judges with these rules from its next operation on. */
static void submit_rules(server_t *s)
{
  em_store_op_t *op = em_store_op_new(EM_OP_RULES);
  if (op && em_rules_copy(&s->cfg->alerts, &op->rules) == 0)
    submit(s, op, state_done);
  else
    em_store_op_free(op);
}

static void job_done(void *ctx, em_job_t *job)
{
  server_t *s = ctx;
  entry_t *e = find(s, job->path);
  if (s->stopping || !e || e->st != E_RUNNING) {
    em_job_free(job);
    return;
  }
  if (job->outcome == EM_JOB_CHANGED || e->dirty) {
    EM_INFO("work: %s changed while being analysed; re-queued", e->path);
    e->st = E_PENDING;
    e->t_changed = now_ms(s);
    arm_quiet_timer(s);
  } else {
    em_store_op_t *op = entry_op(job->outcome == EM_JOB_DONE ? EM_OP_RESULT : EM_OP_STATE, e);
    if (op && job->outcome == EM_JOB_DONE) {
      op->json = job->json;
      job->json = NULL;
      op->alpha0 = job->alpha0;
      op->width = job->width;
      op->step = e->step;
      e->st = E_DONE;
      submit(s, op, result_done);
    } else if (op) {
      EM_WARN("work: %s: %s: %s", e->path, job->state, job->error ? job->error : "");
      op->state = job->state;
      op->error = job->error;
      job->error = NULL;
      e->st = E_FINAL;
      submit(s, op, state_done);
    }
  }
  em_job_free(job);
  dispatch(s);
}

/* ---------------------------------------------------------------- observing the tree */

static void observe(server_t *s, const char *path, bool is_dir, bool renamed)
{
  entry_t *e = track(s, path, is_dir);
  if (!e)
    return;
  e->marked = true;
  em_fingerprint_t fp;
  if (em_scan_fingerprint(path, is_dir, &fp) != 0)
    return;
  e->renamed |= renamed;
  if (fp.quiet == e->fp.quiet && fp.version == e->fp.version && e->st != E_PENDING)
    return;
  bool new_version = fp.version != e->version;
  e->fp = fp;
  e->t_changed = now_ms(s);
  if (e->st == E_RUNNING)
    e->dirty = true; /* the job's result will be dropped and the entry re-queued */
  else if (e->st != E_SEEN && (new_version || e->st == E_PENDING))
    e->st = E_PENDING;
  arm_quiet_timer(s);
}

static void scan_dir(server_t *s, const char *dir, int depth);

static void consider(server_t *s, const char *dir, const char *name, int depth, bool renamed)
{
  char path[PATH_MAX];
  if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
    return;
  struct stat st;
  if (stat(path, &st) != 0)
    return;
  switch (em_scan_classify(name, S_ISDIR(st.st_mode))) {
  case EM_ENTRY_RUN_DIR:
    if (depth < MAX_DEPTH)
      scan_dir(s, path, depth + 1);
    break;
  case EM_ENTRY_CKPT_DIR:
    if (s->watch && em_watch_add(s->watch, path) != 0)
      EM_WARN("watch: cannot watch %s: %s", path, strerror(errno));
    observe(s, path, true, renamed);
    break;
  case EM_ENTRY_CKPT_FILE:
    if (S_ISREG(st.st_mode))
      observe(s, path, false, renamed);
    break;
  case EM_ENTRY_IGNORE:
    break;
  }
}

static void scan_dir(server_t *s, const char *dir, int depth)
{
  if (s->watch) {
    int rc = em_watch_add(s->watch, dir);
    if (rc)
      EM_WARN("watch: cannot watch %s: %s (rescans still find its checkpoints)", dir, strerror(-rc));
  }
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *ent;
  while ((ent = readdir(d)) != NULL)
    if (ent->d_name[0] != '.')
      consider(s, dir, ent->d_name, depth, false);
  closedir(d);
}

/* A queued checkpoint deleted before a worker reached it. */
static void record_vanished(server_t *s, entry_t *e)
{
  EM_WARN("watch: %s vanished before it could be read", e->path);
  em_store_op_t *op = entry_op(EM_OP_STATE, e);
  if (op) {
    op->state = "vanished";
    op->error = strdup("deleted before it could be read");
    submit(s, op, state_done);
  }
}

/* Mark and sweep: what a full scan no longer finds is gone. */
static void full_scan(server_t *s)
{
  for (size_t b = 0; b < BUCKETS; b++)
    for (entry_t *e = s->buckets[b]; e; e = e->next)
      e->marked = false;
  scan_dir(s, s->root, 0);
  for (size_t b = 0; b < BUCKETS; b++) {
    for (entry_t *e = s->buckets[b], *next; e; e = next) {
      next = e->next;
      if (e->marked || e->st == E_RUNNING || e->st == E_SEEN)
        continue;
      if (e->st == E_QUEUED)
        record_vanished(s, e);
      drop(s, e);
    }
  }
  arm_quiet_timer(s);
  dispatch(s);
}

static void on_rescan(uv_timer_t *t) { full_scan(t->data); }

/* One inotify event: look again at what it names. */
static void on_event(void *ctx, const char *dir, const char *name, uint32_t mask)
{
  server_t *s = ctx;
  if (!dir) {
    EM_WARN("watch: inotify queue overflowed; rescanning everything");
    full_scan(s);
    return;
  }
  entry_t *inside = find(s, dir);
  if (inside) { /* a file inside a checkpoint directory changed */
    observe(s, dir, true, false);
    return;
  }
  if (!name || (mask & (IN_DELETE_SELF | IN_MOVE_SELF)))
    return;
  if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    entry_t *e = find(s, path);
    if (e && e->st == E_QUEUED)
      record_vanished(s, e);
    if (e && e->st != E_RUNNING && e->st != E_SEEN)
      drop(s, e); /* a running job or a store answer still names it: they see it gone */
    return;
  }
  if (em_scan_skip_name(name))
    return;
  int depth = 0;
  for (const char *p = dir + strlen(s->root); *p; p++)
    depth += *p == '/';
  consider(s, dir, name, depth, (mask & IN_MOVED_TO) != 0);
}

/* ---------------------------------------------------------------- status, API */

static size_t count_state(server_t *s, estate_t st)
{
  size_t n = 0;
  for (size_t b = 0; b < BUCKETS; b++)
    for (entry_t *e = s->buckets[b]; e; e = e->next)
      n += e->st == st;
  return n;
}

static cJSON *status_object(server_t *s)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "kind", "status");
  cJSON_AddNumberToObject(o, "uptime", (double)(now_ms(s) - s->started_ms) / 1000.0);
  cJSON_AddNumberToObject(o, "queue", (double)(count_state(s, E_QUEUED) + count_state(s, E_PENDING)));
  cJSON_AddNumberToObject(o, "running", (double)count_state(s, E_RUNNING));
  cJSON_AddNumberToObject(o, "workers", s->cfg->workers);
  cJSON_AddNumberToObject(o, "last_seq", (double)s->last_seq);
  cJSON_AddStringToObject(o, "watch", s->root);
  cJSON_AddStringToObject(o, "db", s->db_path);
  cJSON_AddStringToObject(o, "mode", s->polling ? "poll" : "inotify");
  cJSON_AddNumberToObject(o, "pid", (double)uv_os_getpid());
  cJSON_AddNumberToObject(o, "ts", (double)time(NULL));
  return o;
}

static void on_heartbeat(uv_timer_t *t)
{
  server_t *s = t->data;
  cJSON *o = status_object(s);
  char *text = cJSON_PrintUnformatted(o);
  if (text)
    em_bus_publish(s->bus, "status/", text);
  char status[128];
  snprintf(status, sizeof(status), "STATUS=queue %.0f, last seq %lld",
           cJSON_GetObjectItem(o, "queue")->valuedouble, (long long)s->last_seq);
  em_notify(status);
  free(text);
  cJSON_Delete(o);
}

static char *on_request(void *ctx, const char *body, size_t len)
{
  server_t *s = ctx;
  em_api_request_t req;
  char err[256];
  if (em_api_decode(body, len, &req, err, sizeof(err)) != 0)
    return em_api_error(err);
  if (!s->reader && !(s->reader = em_query_open(s->db_path)))
    return em_api_error("database unavailable");
  cJSON *status = req.cmd == EM_API_STATUS ? status_object(s) : NULL;
  char *reply = em_query_reply(s->reader, &req, status);
  cJSON_Delete(status);
  return reply;
}

/* ---------------------------------------------------------------- signals, reload */

static void close_cb(uv_handle_t *h) { (void)h; }

static void stop(server_t *s)
{
  if (s->stopping)
    return;
  s->stopping = true;
  EM_NOTICE("emerged: stopping");
  em_notify("STOPPING=1");
  uv_timer_stop(&s->quiet_timer);
  uv_close((uv_handle_t *)&s->quiet_timer, close_cb);
  uv_close((uv_handle_t *)&s->rescan_timer, close_cb);
  uv_close((uv_handle_t *)&s->heartbeat_timer, close_cb);
  uv_close((uv_handle_t *)&s->watchdog_timer, close_cb);
  uv_close((uv_handle_t *)&s->sigterm, close_cb);
  uv_close((uv_handle_t *)&s->sigint, close_cb);
  uv_close((uv_handle_t *)&s->sighup, close_cb);
  em_watch_stop(&s->watch);
  em_workq_stop(&s->workq);   /* running analyses are cancelled: still queued in the database */
  em_deliver_stop(&s->deliver); /* running commands are killed: their alerts are redone at start */
  em_store_stop(&s->store);   /* operations already queued commit first */
  em_bus_stop(&s->bus);
}

static void on_stop_signal(uv_signal_t *h, int sig)
{
  EM_NOTICE("emerged: %s received", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  stop(h->data);
}

/* SIGHUP: log_level, alerts and on_alert change live; other keys need a restart, and
 * the log says so. */
static void on_sighup(uv_signal_t *h, int sig)
{
  (void)sig;
  server_t *s = h->data;
  em_notify("RELOADING=1");
  em_config_t fresh;
  char err[512];
  int rc = em_config_load(s->cfg->argc, s->cfg->argv, &fresh, err, sizeof(err));
  if (rc) {
    EM_ERR("reload: %s; keeping the running configuration", err);
  } else {
    if (fresh.log_level != s->cfg->log_level) {
      EM_NOTICE("reload: log_level %s -> %s", em_log_level_name(s->cfg->log_level),
                em_log_level_name(fresh.log_level));
      s->cfg->log_level = em_log_level = fresh.log_level;
    }
    if (!em_rules_equal(&fresh.alerts, &s->cfg->alerts)) {
      EM_NOTICE("reload: alerts: %zu rule%s (a new or changed rule judges only later results)", fresh.alerts.n,
                fresh.alerts.n == 1 ? "" : "s");
      em_rules_t old = s->cfg->alerts;
      s->cfg->alerts = fresh.alerts;
      fresh.alerts = old;
      submit_rules(s);
    }
    if (!em_on_alert_equal(&fresh.on_alert, &s->cfg->on_alert)) {
      EM_NOTICE("reload: on_alert updated");
      em_on_alert_t old = s->cfg->on_alert;
      s->cfg->on_alert = fresh.on_alert;
      fresh.on_alert = old;
      em_deliver_configure(s->deliver, &s->cfg->on_alert);
    }
    if (fresh.workers != s->cfg->workers || fresh.quiet != s->cfg->quiet || fresh.rescan != s->cfg->rescan ||
        fresh.poll != s->cfg->poll || memcmp(&fresh.params, &s->cfg->params, sizeof(fresh.params)) != 0 ||
        strcmp(fresh.pub, s->cfg->pub) != 0 || strcmp(fresh.api, s->cfg->api) != 0)
      EM_NOTICE("reload: changes other than log_level, alerts and on_alert take effect after a restart");
  }
  em_config_free(&fresh); /* also what a rejected file left half-loaded */
  em_notify("READY=1");
}

static void on_watchdog(uv_timer_t *t)
{
  (void)t;
  em_notify("WATCHDOG=1");
}

/* ---------------------------------------------------------------- start */

static bool network_fs(const char *path)
{
  struct statfs sf;
  if (statfs(path, &sf) != 0)
    return false;
  switch ((unsigned long)sf.f_type) {
  case 0x6969:     /* NFS */
  case 0xFF534D42: /* CIFS */
  case 0xFE534D42: /* SMB2 */
  case 0x517B:     /* SMB */
  case 0x65735546: /* FUSE */
  case 0x0BD00BD0: /* Lustre */
  case 0x47504653: /* GPFS */
  case 0x00C36400: /* Ceph */
  case 0x01021997: /* 9p */
    return true;
  default:
    return false;
  }
}

int em_server_db_path(const em_config_t *cfg, char *out, size_t len, bool *network, char *err, size_t errlen)
{
  *network = network_fs(cfg->watch);
  if (cfg->db) {
    struct stat st;
    if (stat(cfg->db, &st) == 0 && S_ISDIR(st.st_mode))
      snprintf(out, len, "%s/.emerge/emerge.db", cfg->db);
    else
      snprintf(out, len, "%s", cfg->db);
    return 0;
  }
  char dir[PATH_MAX];
  if (*network) { /* WAL is unsafe on network filesystems: keep the database local */
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char *real = realpath(cfg->watch, NULL);
    const char *base = real && strrchr(real, '/') ? strrchr(real, '/') + 1 : "root";
    if (state && *state)
      snprintf(dir, sizeof(dir), "%s/emerge", state);
    else
      snprintf(dir, sizeof(dir), "%s/.local/state/emerge", home ? home : "/tmp");
    snprintf(out, len, "%s/%s.db", dir, base);
    free(real);
  } else {
    snprintf(dir, sizeof(dir), "%s/.emerge", cfg->watch);
    snprintf(out, len, "%s/emerge.db", dir);
  }
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof(tmp), "%s", dir);
  for (char *p = tmp + 1; *p; p++) { /* mkdir -p */
    if (*p == '/') {
      *p = 0;
      mkdir(tmp, 0755);
      *p = '/';
    }
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
    snprintf(err, errlen, "database directory %s: %s", tmp, strerror(errno));
    return -errno;
  }
  return 0;
}

static int start_services(server_t *s, char *err, size_t errlen)
{
  int rc = em_store_start(&s->store, s->db_path, &s->loop, err, errlen);
  if (!rc)
    rc = em_bus_start(&s->bus, &s->loop, s->cfg->pub, s->cfg->api, on_request, s, err, errlen);
  if (!rc && (em_deliver_start(&s->deliver, &s->loop, alert_delivered, s) != 0 ||
              em_deliver_configure(s->deliver, &s->cfg->on_alert) != 0)) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
  }
  if (!rc && (rc = em_workq_start(&s->workq, &s->loop, s->cfg->workers, job_done, s)) != 0)
    snprintf(err, errlen, "cannot start %d worker threads", s->cfg->workers);
  if (!rc && !s->polling && (rc = em_watch_start(&s->watch, &s->loop, on_event, s)) != 0) {
    EM_WARN("watch: inotify unavailable (%s); polling every %g s instead", strerror(-rc), s->cfg->rescan);
    s->polling = true;
    rc = 0;
  }
  return rc;
}

static void start_handles(server_t *s)
{
  uv_timer_init(&s->loop, &s->quiet_timer);
  uv_timer_init(&s->loop, &s->rescan_timer);
  uv_timer_init(&s->loop, &s->heartbeat_timer);
  uv_timer_init(&s->loop, &s->watchdog_timer);
  s->quiet_timer.data = s->rescan_timer.data = s->heartbeat_timer.data = s;
  uint64_t period = (uint64_t)((s->polling ? (s->cfg->poll > 0 ? s->cfg->poll : s->cfg->rescan) : s->cfg->rescan) *
                               1000);
  uv_timer_start(&s->rescan_timer, on_rescan, period, period);
  uv_timer_start(&s->heartbeat_timer, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
  uint64_t wd = em_notify_watchdog_usec();
  if (wd)
    uv_timer_start(&s->watchdog_timer, on_watchdog, wd / 2000, wd / 2000);
  uv_signal_init(&s->loop, &s->sigterm);
  uv_signal_init(&s->loop, &s->sigint);
  uv_signal_init(&s->loop, &s->sighup);
  s->sigterm.data = s->sigint.data = s->sighup.data = s;
  uv_signal_start(&s->sigterm, on_stop_signal, SIGTERM);
  uv_signal_start(&s->sigint, on_stop_signal, SIGINT);
  uv_signal_start(&s->sighup, on_sighup, SIGHUP);
}

static void free_entries(server_t *s)
{
  for (size_t b = 0; b < BUCKETS; b++)
    while (s->buckets[b])
      drop(s, s->buckets[b]);
}

int em_server_run(em_config_t *cfg)
{
  server_t *s = calloc(1, sizeof(*s));
  if (!s)
    return EM_EXIT_FAIL;
  s->cfg = cfg;
  em_log_level = cfg->log_level;
  char err[768] = "";
  bool network = false;
  int code = EM_EXIT_OK;
  s->root = realpath(cfg->watch, NULL);
  uv_loop_init(&s->loop);
  s->started_ms = now_ms(s);
  if (!s->root || em_server_db_path(cfg, s->db_path, sizeof(s->db_path), &network, err, sizeof(err)) != 0) {
    EM_ERR("emerged: %s", err[0] ? err : "cannot resolve the watch root");
    code = EM_EXIT_FAIL;
    goto out;
  }
  s->polling = cfg->poll > 0 || network;
  if (network)
    EM_NOTICE("emerged: %s is on a network filesystem: polling, database at %s", s->root, s->db_path);
  if (start_services(s, err, sizeof(err)) != 0) {
    EM_ERR("emerged: %s", err);
    s->stopping = true;
    em_watch_stop(&s->watch);
    em_workq_stop(&s->workq);
    em_deliver_stop(&s->deliver);
    em_store_stop(&s->store);
    em_bus_stop(&s->bus);
    code = EM_EXIT_FAIL;
    goto out;
  }
  start_handles(s);
  em_store_op_t *meta = em_store_op_new(EM_OP_META);
  if (meta) {
    meta->pub_endpoint = strdup(cfg->pub);
    meta->api_endpoint = strdup(cfg->api);
    submit(s, meta, state_done);
  }
  submit_rules(s); /* before the first result */
  em_store_op_t *undelivered = em_store_op_new(EM_OP_UNDELIVERED);
  if (undelivered)
    submit(s, undelivered, state_done); /* a crash came between an alert's row and its deliveries */
  EM_NOTICE("emerged %s: watching %s (%s), database %s, PUB %s, API %s, %d worker%s", EM_VERSION, s->root,
            s->polling ? "polling" : "inotify", s->db_path, cfg->pub, cfg->api, cfg->workers,
            cfg->workers > 1 ? "s" : "");
  full_scan(s);
  em_notify("READY=1");
  uv_run(&s->loop, UV_RUN_DEFAULT);
out:
  uv_run(&s->loop, UV_RUN_DEFAULT); /* close callbacks */
  if (s->reader)
    sqlite3_close(s->reader);
  free_entries(s);
  int lc = uv_loop_close(&s->loop);
  if (lc != 0)
    EM_ERR("emerged: the loop still had handles at exit (%s)", uv_strerror(lc));
  free(s->root);
  free(s);
  return code;
}
