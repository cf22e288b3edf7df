/* SPDX-License-Identifier: MIT */
/* The life of a checkpoint on the loop thread.
 *
 * DESIGN (docs/DESIGN.md "Data flow"). The walker reports what it finds in the tree;
 * the tracker keeps each checkpoint's state. A checkpoint quiet for `quiet` seconds (or
 * renamed into place) is recorded queued by the store thread, which answers whether
 * this version already has a result (a restart). Queued entries go to the workers, a
 * run's baseline first, then newest first; a worker validates, analyses and re-checks
 * the fingerprint, and hands back the result struct. It commits in the store thread,
 * which computes E and judges the rules, and is published only after that commit. */
#include "em_pipeline.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>

#include "em_api.h"
#include "em_log.h"
#include "em_notify.h"

size_t em_pipeline_queue_depth(const em_pipeline_t *s)
{
  return em_tracker_count(s->tracker, EM_T_QUEUED) + em_tracker_count(s->tracker, EM_T_PENDING);
}

/* ---------------------------------------------------------------- store operations */

void em_pipeline_submit(em_pipeline_t *s, em_store_op_t *op, em_store_done_fn done)
{
  op->done = done;
  op->ctx = s;
  em_store_submit(s->store, op);
}

static em_store_op_t *entry_op(em_store_op_type_t type, const em_tracked_t *e)
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

/* An operation's committed messages: published (after the commit, never before), and
 * alerts delivered (log, stop file, command). */
static void publish_committed(em_pipeline_t *s, em_store_op_t *op)
{
  if (op->rc == 0 && op->last_seq > s->last_seq)
    s->last_seq = op->last_seq;
  for (size_t i = 0; i < op->npub; i++) {
    if (s->bus)
      em_bus_publish(s->bus, op->pubs[i].topic, op->pubs[i].payload);
    em_http_publish(s->http, op->pubs[i].seq, op->pubs[i].topic, op->pubs[i].payload);
    em_journal_append(s->journal, op->run, op->run_dir, &op->pubs[i]);
  }
  for (size_t i = 0; i < op->nalerts && s->deliver; i++) /* stopping: redone at start */
    em_deliver_alert(s->deliver, &op->alerts[i]);
}

void em_pipeline_state_done(em_store_op_t *op)
{
  publish_committed(op->ctx, op);
  em_store_op_free(op);
}

/* A stop asked by hand committed (or refused): published and delivered as a rule's alert,
 * then the request that asked is answered. */
static void manual_done(em_store_op_t *op)
{
  em_pipeline_t *s = op->ctx;
  publish_committed(s, op);
  char *reply = NULL;
  if (op->rc != 0) {
    reply = em_api_error("database error: the stop was not recorded (the daemon's log says why)");
  } else if (op->unknown_run) {
    char msg[EM_API_MAX_RUN + 32];
    snprintf(msg, sizeof(msg), "unknown run '%s'", op->run);
    reply = em_api_error(msg);
  } else if (op->npub) {
    size_t n = strlen(op->pubs[0].payload);
    reply = malloc(n + 32);
    if (reply)
      snprintf(reply, n + 32, "{\"ok\":true,\"alert\":%s}", op->pubs[0].payload);
    EM_NOTICE("alert %lld: %s stopped by hand: %s", (long long)op->pubs[0].seq, op->run, op->error);
  }
  em_bus_reply(s->bus, op->reply_to, reply ? reply : em_api_error("out of memory"));
  em_store_op_free(op);
}

void em_pipeline_stop_run(em_pipeline_t *p, const char *run, const char *reason, void *reply_to)
{
  em_store_op_t *op = em_store_op_new(EM_OP_MANUAL);
  if (op && (!(op->run = strdup(run)) || !(op->error = strdup(reason)))) {
    em_store_op_free(op);
    op = NULL;
  }
  if (!op) {
    em_bus_reply(p->bus, reply_to, em_api_error("out of memory"));
    return;
  }
  op->reply_to = reply_to;
  em_pipeline_submit(p, op, manual_done);
}

static void result_done(em_store_op_t *op)
{
  em_pipeline_t *s = op->ctx;
  publish_committed(s, op);
  if (op->npub) {
    EM_INFO("publish: %s step %lld, seq %lld (%zu message%s)", op->run, (long long)op->step,
            (long long)op->last_seq, op->npub, op->npub > 1 ? "s" : "");
    char status[512];
    snprintf(status, sizeof(status), "STATUS=queue %zu, last result %s step %lld (seq %lld)", em_pipeline_queue_depth(s),
             op->run, (long long)op->step, (long long)op->last_seq);
    em_notify(status);
  }
  em_store_op_free(op);
}

/* An alert's deliveries ended: the store marks it, so a restart does not redo them. */
void em_pipeline_alert_delivered(void *ctx, int64_t seq)
{
  em_pipeline_t *s = ctx;
  em_store_op_t *op = s->stopping ? NULL : em_store_op_new(EM_OP_DELIVERED);
  if (op) {
    op->seq = seq;
    em_pipeline_submit(s, op, em_pipeline_state_done);
  }
}

/* The store judges with these rules from its next operation on. */
void em_pipeline_submit_rules(em_pipeline_t *s)
{
  em_store_op_t *op = em_store_op_new(EM_OP_RULES);
  if (op && em_rules_copy(&s->cfg->alerts, &op->rules) == 0)
    em_pipeline_submit(s, op, em_pipeline_state_done);
  else
    em_store_op_free(op);
}

/* ---------------------------------------------------------------- scheduling */

static void dispatch(em_pipeline_t *s)
{
  while (!s->stopping && em_workq_busy(s->workq) < (size_t)s->cfg->workers) {
    em_tracked_t *e = em_tracker_pick(s->tracker);
    if (!e)
      return;
    em_job_t *job = em_job_new(e->ckpt_id, e->path, e->run, e->is_dir, true, e->step, e->version, &s->cfg->params);
    if (!job)
      return;
    job->check_finite = em_rules_check_finite(&s->cfg->alerts);
    em_tracker_set_state(s->tracker, e, EM_T_RUNNING);
    e->dirty = false;
    EM_INFO("work: analysing %s (step %lld)", e->path, (long long)e->step);
    em_workq_push(s->workq, job);
  }
}

static void on_quiet_timer(uv_timer_t *t);

/* Sleeps until the earliest quiet deadline; no timer at all when nothing is pending. */
static void arm_quiet_timer(em_pipeline_t *s)
{
  if (s->stopping)
    return;
  uint64_t now = uv_now(s->loop), due = em_tracker_next_due(s->tracker, now, (uint64_t)(s->cfg->quiet * 1000));
  if (due == UINT64_MAX)
    uv_timer_stop(&s->quiet_timer);
  else
    uv_timer_start(&s->quiet_timer, on_quiet_timer, due > now ? due - now : 0, 0);
}

static void seen_done(em_store_op_t *op)
{
  em_pipeline_t *s = op->ctx;
  em_tracked_t *e = s->stopping ? NULL : em_tracker_find(s->tracker, op->path);
  if (e && e->st == EM_T_SEEN && op->rc == 0) {
    e->ckpt_id = op->ckpt_id;
    e->step = op->step_out;
    em_tracker_set_state(s->tracker, e, op->has_result ? EM_T_DONE : EM_T_QUEUED);
    char at[64];
    em_place_text(at, sizeof(at), e->step, !e->has_step);
    EM_INFO("queue: %s %s %s", e->path, at, op->has_result ? "already analysed" : "queued");
  } else if (e && e->st == EM_T_SEEN) {
    em_tracker_set_state(s->tracker, e, EM_T_PENDING); /* the store failed (logged): again after the quiet period */
    em_tracker_touch(s->tracker, e, uv_now(s->loop));
    arm_quiet_timer(s);
  }
  if (!s->stopping && em_tracker_count(s->tracker, EM_T_SEEN) == 0) /* order a batch (start-up, a burst) as a whole */
    dispatch(s);
  em_store_op_free(op);
}

/* Complete: the store records it queued (the step from the name, else trainer_state.json). */
static void complete(em_pipeline_t *s, em_tracked_t *e, const em_found_t *f)
{
  if (!e->has_step && f->has_step) {
    e->has_step = true;
    e->step = f->step;
  }
  e->version = e->fp.version;
  e->renamed = false;
  em_store_op_t *op = entry_op(EM_OP_SEEN, e);
  if (!op)
    return;
  em_tracker_set_state(s->tracker, e, EM_T_SEEN);
  em_pipeline_submit(s, op, seen_done);
}

/* Pending entries quiet long enough (or renamed into place) are looked at once more. */
static void on_quiet_timer(uv_timer_t *t)
{
  em_pipeline_t *s = t->data;
  uint64_t quiet = (uint64_t)(s->cfg->quiet * 1000);
  em_tracked_t *e;
  while ((e = em_tracker_next_ready(s->tracker, uv_now(s->loop), quiet)) != NULL)
    em_walker_look(s->walker, EM_WALK_QUIET, e->path, e->is_dir);
  arm_quiet_timer(s);
}

/* ---------------------------------------------------------------- results */

void em_pipeline_job_done(void *ctx, em_job_t *job)
{
  em_pipeline_t *s = ctx;
  em_tracked_t *e = em_tracker_find(s->tracker, job->path);
  if (s->stopping || !e || e->st != EM_T_RUNNING) {
    em_job_free(job);
    return;
  }
  if (job->outcome == EM_JOB_CHANGED || e->dirty) {
    EM_INFO("work: %s changed while being analysed; re-queued", e->path);
    em_tracker_set_state(s->tracker, e, EM_T_PENDING);
    em_tracker_touch(s->tracker, e, uv_now(s->loop));
    arm_quiet_timer(s);
  } else {
    bool done = job->outcome == EM_JOB_DONE;
    em_store_op_t *op = entry_op(done ? EM_OP_RESULT : EM_OP_STATE, e);
    if (!done)
      EM_WARN("work: %s: %s: %s", e->path, em_state_name(job->state), job->error ? job->error : "");
    if (done)
      em_http_analysis_done(s->http, job->result.elapsed_ms / 1000.0);
    if (op && done) { /* the result struct moves to the store, which encodes it once */
      op->result = job->result;
      op->trainer = job->trainer;
      memset(&job->result, 0, sizeof(job->result));
      memset(&job->trainer, 0, sizeof(job->trainer));
    } else if (op) {
      op->state = job->state;
      op->error = job->error;
      job->error = NULL;
    }
    em_tracker_set_state(s->tracker, e, done ? EM_T_DONE : EM_T_FINAL);
    if (op)
      em_pipeline_submit(s, op, done ? result_done : em_pipeline_state_done);
  }
  em_job_free(job);
  dispatch(s);
}

/* ---------------------------------------------------------------- the tree */

/* A queued checkpoint deleted before a worker reached it. */
static void record_vanished(em_pipeline_t *s, em_tracked_t *e)
{
  EM_WARN("watch: %s vanished before it could be read", e->path);
  em_store_op_t *op = entry_op(EM_OP_STATE, e);
  if (op) {
    op->state = EM_STATE_VANISHED;
    op->error = strdup("deleted before it could be read");
    em_pipeline_submit(s, op, em_pipeline_state_done);
  }
}

static void found_one(em_pipeline_t *s, const em_found_t *f, bool mark)
{
  em_tracked_t *e = em_tracker_track(s->tracker, f->path, f->is_dir, uv_now(s->loop));
  if (!e) {
    EM_ERR("server: out of memory tracking %s", f->path);
    return;
  }
  e->marked |= mark;
  if (!f->gone)
    em_tracker_observe(s->tracker, e, &f->fp, f->renamed, uv_now(s->loop));
}

static void unmark(void *ctx, em_tracked_t *e)
{
  (void)ctx;
  e->marked = false;
}

/* What a full scan no longer finds is gone (unless a worker or the store has it). */
static void sweep(void *ctx, em_tracked_t *e)
{
  em_pipeline_t *s = ctx;
  if (e->marked || e->st == EM_T_RUNNING || e->st == EM_T_SEEN)
    return;
  if (e->st == EM_T_QUEUED)
    record_vanished(s, e);
  em_tracker_drop(s->tracker, e);
}

static void looked_again(em_pipeline_t *s, const em_found_t *f)
{
  em_tracked_t *e = em_tracker_find(s->tracker, f->path);
  if (!e || !e->checking)
    return;
  em_tracker_set_checking(s->tracker, e, false); /* whatever happened meanwhile: it can be due again */
  if (e->st != EM_T_PENDING)
    return;
  if (f->gone) {
    EM_INFO("watch: %s is gone before it was complete", e->path);
    em_tracker_drop(s->tracker, e);
  } else if (em_tracker_quiet_check(s->tracker, e, &f->fp, uv_now(s->loop)) == EM_QUIET_COMPLETE) {
    complete(s, e, f);
  }
}

void em_pipeline_found(void *ctx, em_walk_t why, const em_found_t *f, size_t n)
{
  em_pipeline_t *s = ctx;
  if (s->stopping)
    return;
  if (why == EM_WALK_SCAN)
    em_tracker_foreach(s->tracker, unmark, s);
  for (size_t i = 0; i < n; i++) {
    if (why == EM_WALK_QUIET)
      looked_again(s, &f[i]);
    else if (why != EM_WALK_CHANGED || em_tracker_find(s->tracker, f[i].path))
      found_one(s, &f[i], why == EM_WALK_SCAN);
  }
  if (why == EM_WALK_SCAN)
    em_tracker_foreach(s->tracker, sweep, s);
  arm_quiet_timer(s);
  dispatch(s);
}

/* One inotify event: the walker looks again at what it names. */
void em_pipeline_event(void *ctx, const char *dir, const char *name, uint32_t mask)
{
  em_pipeline_t *s = ctx;
  if (!dir) {
    EM_WARN("watch: inotify queue overflowed; rescanning everything");
    return;
  }
  em_tracked_t *inside = em_tracker_find(s->tracker, dir);
  if (inside) { /* a file inside a checkpoint directory changed */
    em_walker_look(s->walker, EM_WALK_CHANGED, dir, true);
    return;
  }
  if (!name || (mask & (IN_DELETE_SELF | IN_MOVE_SELF)))
    return;
  if (mask & (IN_DELETE | IN_MOVED_FROM)) {
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    em_tracked_t *e = em_tracker_find(s->tracker, path);
    if (e && e->st == EM_T_QUEUED)
      record_vanished(s, e);
    if (e && e->st != EM_T_RUNNING && e->st != EM_T_SEEN)
      em_tracker_drop(s->tracker, e); /* a running job or a store answer still names it: they see it gone */
    return;
  }
  if (!em_scan_hidden(name))
    em_walker_consider(s->walker, dir, name, (mask & IN_MOVED_TO) != 0);
}

int em_pipeline_init(em_pipeline_t *s, uv_loop_t *loop, em_config_t *cfg, const char *root)
{
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  s->cfg = cfg;
  if (!(s->tracker = em_tracker_new(root)))
    return -1;
  uv_timer_init(loop, &s->quiet_timer);
  s->quiet_timer.data = s;
  return 0;
}

void em_pipeline_stop(em_pipeline_t *s, uv_close_cb closed)
{
  s->stopping = true;
  uv_timer_stop(&s->quiet_timer);
  uv_close((uv_handle_t *)&s->quiet_timer, closed);
}

void em_pipeline_free(em_pipeline_t *s) { em_tracker_free(&s->tracker); }
