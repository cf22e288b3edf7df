/* SPDX-License-Identifier: MIT */
/* The daemon's wiring: starts the services (store thread, ZeroMQ bus, deliveries,
 * workers, walker) and hands them to the checkpoint pipeline (em_pipeline.c); owns the
 * signals, the status heartbeat, the systemd watchdog, and routes API requests (status
 * here, queries to the answer thread).
 * docs/DESIGN.md "Threads and ownership" says which thread owns what. Full rescans
 * (every `rescan` seconds, and at once when inotify overflows) catch whatever events
 * missed; with --poll or on a network filesystem they are the only source. */
#include "em_server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <time.h>
#include <uv.h>

#include "em_answer.h"
#include "em_db.h"
#include "em_fs.h"
#include "em_log.h"
#include "em_notify.h"
#include "em_pipeline.h"
#include "em_query.h"

#define HEARTBEAT_MS 10000    /* status/ messages */

typedef struct server {
  em_config_t *cfg;
  uv_loop_t loop;
  char db_path[PATH_MAX];
  char *root;                 /* realpath of the watch root */
  em_pipeline_t pipe;         /* the services live in it */
  em_answer_t *answer;        /* the API's queries, on a thread of their own */
  uv_timer_t heartbeat_timer, watchdog_timer;
  uv_signal_t sigterm, sigint, sighup;
  uint64_t started_ms;
} server_t;

static uint64_t now_ms(server_t *s) { return uv_now(&s->loop); }

/* ---------------------------------------------------------------- status, API */

static em_status_t status_of(server_t *s)
{
  return (em_status_t){.live = true, .uptime = (double)(now_ms(s) - s->started_ms) / 1000.0,
                       .queue = (int64_t)em_pipeline_queue_depth(&s->pipe),
                       .running = (int64_t)em_tracker_count(s->pipe.tracker, EM_T_RUNNING),
                       .workers = s->cfg->workers, .last_seq = s->pipe.last_seq, .watch = s->root, .db = s->db_path,
                       .mode = em_walker_polling(s->pipe.walker) ? "poll" : "inotify", .pid = (int64_t)uv_os_getpid(),
                       .http = em_http_url(s->pipe.http), .pub = s->cfg->pub, .api = s->cfg->api,
                       .ts = (double)time(NULL)};
}

static em_status_t status_for_http(void *ctx) { return status_of(ctx); }

static void on_heartbeat(uv_timer_t *t)
{
  server_t *s = t->data;
  em_http_tick(s->pipe.http);
  em_status_t st = status_of(s);
  cJSON *o = em_status_to_json(&st);
  char *text = o ? cJSON_PrintUnformatted(o) : NULL, topic[16];
  if (text && em_topic(topic, sizeof(topic), "status", NULL))
    em_bus_publish(s->pipe.bus, topic, text);
  char status[128];
  snprintf(status, sizeof(status), "STATUS=queue %zu, last seq %lld", em_pipeline_queue_depth(&s->pipe), (long long)s->pipe.last_seq);
  em_notify(status);
  free(text);
  cJSON_Delete(o);
}

/* Status is the loop's to answer; every query goes to the answer thread. */
static char *on_request(void *ctx, em_bus_req_t *token, const char *body, size_t len)
{
  server_t *s = ctx;
  em_api_request_t req;
  char err[256];
  if (em_api_decode(body, len, &req, err, sizeof(err)) != 0)
    return em_api_error(err);
  if (req.cmd == EM_API_STATUS) {
    em_status_t st = status_of(s);
    return em_query_reply(NULL, &req, &st);
  }
  if (req.cmd == EM_API_STOP) { /* the one write: through the store thread, answered after its commit */
    em_pipeline_stop_run(&s->pipe, req.run, req.reason, token);
    return NULL;
  }
  em_answer_push(s->answer, &req, token);
  return NULL;
}

static void on_answer(void *ctx, void *token, char *reply, size_t len)
{
  server_t *s = ctx;
  em_bus_reply_sized(s->pipe.bus, token, reply, len);
}

/* ---------------------------------------------------------------- signals, reload */

static void close_cb(uv_handle_t *h) { (void)h; }

static void stop_services(server_t *s)
{
  em_walker_stop(&s->pipe.walker);
  em_http_stop(&s->pipe.http);       /* event streams end; requests in progress finish first */
  em_workq_stop(&s->pipe.workq);     /* running analyses are cancelled: still queued in the database */
  em_deliver_stop(&s->pipe.deliver); /* running commands are killed: their alerts are redone at start */
  em_store_stop(&s->pipe.store);     /* operations already queued commit first */
  em_journal_stop(&s->pipe.journal); /* then everything they committed is written out */
  em_answer_stop(&s->answer);        /* answers already computed still go out */
  em_bus_stop(&s->pipe.bus);
}

static void stop(server_t *s)
{
  if (s->pipe.stopping)
    return;
  EM_NOTICE("emerged: stopping");
  em_notify("STOPPING=1");
  em_pipeline_stop(&s->pipe, close_cb);
  uv_handle_t *handles[] = {(uv_handle_t *)&s->heartbeat_timer,
                            (uv_handle_t *)&s->watchdog_timer, (uv_handle_t *)&s->sigterm,
                            (uv_handle_t *)&s->sigint, (uv_handle_t *)&s->sighup};
  for (size_t i = 0; i < sizeof(handles) / sizeof(*handles); i++)
    uv_close(handles[i], close_cb);
  stop_services(s);
}

static void on_stop_signal(uv_signal_t *h, int sig)
{
  EM_NOTICE("emerged: %s received", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  stop(h->data);
}

/* Takes fresh's alerts and on_alert where they differ from the running ones. */
static void apply_live_keys(server_t *s, em_config_t *fresh)
{
  if (fresh->log_level != s->cfg->log_level) {
    EM_NOTICE("reload: log_level %s -> %s", em_log_level_name(s->cfg->log_level), em_log_level_name(fresh->log_level));
    s->cfg->log_level = em_log_level = fresh->log_level;
  }
  if (!em_rules_equal(&fresh->alerts, &s->cfg->alerts)) {
    EM_NOTICE("reload: alerts: %zu rule%s (a new or changed rule judges only later results)", fresh->alerts.n,
              fresh->alerts.n == 1 ? "" : "s");
    em_rules_t old = s->cfg->alerts;
    s->cfg->alerts = fresh->alerts;
    fresh->alerts = old;
    em_pipeline_submit_rules(&s->pipe);
  }
  if (!em_on_alert_equal(&fresh->on_alert, &s->cfg->on_alert)) {
    EM_NOTICE("reload: on_alert updated");
    em_on_alert_t old = s->cfg->on_alert;
    s->cfg->on_alert = fresh->on_alert;
    fresh->on_alert = old;
    em_deliver_configure(s->pipe.deliver, &s->cfg->on_alert);
  }
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
  if (em_config_load(s->cfg->argc, s->cfg->argv, &fresh, err, sizeof(err)) != 0) {
    EM_ERR("reload: %s; keeping the running configuration", err);
  } else {
    apply_live_keys(s, &fresh);
    if (fresh.workers != s->cfg->workers || fresh.quiet != s->cfg->quiet || fresh.rescan != s->cfg->rescan ||
        fresh.poll != s->cfg->poll || memcmp(&fresh.params, &s->cfg->params, sizeof(fresh.params)) != 0 ||
        strcmp(fresh.pub, s->cfg->pub) != 0 || strcmp(fresh.api, s->cfg->api) != 0 ||
        strcmp(fresh.http, s->cfg->http) != 0 || strcmp(fresh.tensorboard, s->cfg->tensorboard) != 0)
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

static int db_path(server_t *s, bool *network, char *err, size_t errlen)
{
  if (!s->cfg->db) {
    return em_db_default_path(s->cfg->watch, s->db_path, sizeof(s->db_path), network, err, errlen);
  }
  *network = em_db_network_fs(s->cfg->watch);
  em_db_resolve(s->cfg->db, s->db_path, sizeof(s->db_path));
  return 0;
}

static int start_services(server_t *s, bool polling, char *err, size_t errlen)
{
  em_config_t *cfg = s->cfg;
  static const em_walker_cb_t walker_cb = {em_pipeline_found, em_pipeline_event};
  int rc = em_store_start(&s->pipe.store, s->db_path, &s->loop, err, errlen);
  if (!rc)
    rc = em_answer_start(&s->answer, &s->loop, s->db_path, on_answer, s, err, errlen);
  if (!rc)
    rc = em_bus_start(&s->pipe.bus, &s->loop, cfg->pub, cfg->api, on_request, s, err, errlen);
  if (!rc)
    rc = em_journal_start(&s->pipe.journal, &s->loop, strcmp(cfg->tensorboard, "off") ? cfg->tensorboard : NULL, err,
                          errlen);
  if (!rc && strcmp(cfg->http, "off") != 0)
    rc = em_http_start(&s->pipe.http, &s->loop, cfg->http, s->db_path, status_for_http, s, err, errlen);
  if (!rc && (em_deliver_start(&s->pipe.deliver, &s->loop, em_pipeline_alert_delivered, &s->pipe) != 0 ||
              em_deliver_configure(s->pipe.deliver, &cfg->on_alert) != 0)) {
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
  }
  if (!rc && (rc = em_workq_start(&s->pipe.workq, &s->loop, cfg->workers, em_pipeline_job_done, &s->pipe)) != 0)
    snprintf(err, errlen, "cannot start %d worker threads", cfg->workers);
  double period = polling && cfg->poll > 0 ? cfg->poll : cfg->rescan;
  if (!rc && (rc = em_walker_start(&s->pipe.walker, &s->loop, s->root, polling, period, &walker_cb, &s->pipe)) != 0)
    snprintf(err, errlen, "cannot start the walker thread");
  return rc;
}

static void start_handles(server_t *s)
{
  uv_timer_init(&s->loop, &s->heartbeat_timer);
  uv_timer_init(&s->loop, &s->watchdog_timer);
  s->heartbeat_timer.data = s;
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

/* What the store does before the first result: the daemon's endpoints, the rules, and
 * alerts a crash left undelivered (between an alert's row and its deliveries). */
static void first_operations(server_t *s)
{
  em_store_op_t *meta = em_store_op_new(EM_OP_META);
  if (meta) {
    meta->pub_endpoint = strdup(s->cfg->pub);
    meta->api_endpoint = strdup(s->cfg->api);
    em_pipeline_submit(&s->pipe, meta, em_pipeline_state_done);
  }
  em_pipeline_submit_rules(&s->pipe);
  em_store_op_t *undelivered = em_store_op_new(EM_OP_UNDELIVERED);
  if (undelivered)
    em_pipeline_submit(&s->pipe, undelivered, em_pipeline_state_done);
}

/* Every PUB subscriber, API client and HTTP stream holds a descriptor, and libzmq aborts
 * the daemon when accepting an ipc:// connection fails for want of one (its ipc listener
 * treats EMFILE as fatal; a tcp:// one drops the connection, and the daemon's own opens
 * fail next). So the soft limit is raised towards the hard one (systemd gives 1024 and
 * 524288), to at most FD_LIMIT (enough for thousands of clients, without handing a huge
 * limit to the commands on_alert runs), and a low limit is said at start. */
#define FD_LIMIT 65536
#define FD_LOW 4096

static void raise_fd_limit(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  rlim_t want = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FD_LIMIT ? rl.rlim_max : FD_LIMIT;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
      getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < FD_LOW)
    EM_WARN("emerged: open files limited to %llu (hard limit %llu): each subscriber, API client and event "
            "stream takes one, and libzmq ends the daemon when an ipc:// client finds none left; raise it "
            "(LimitNOFILE=, ulimit -Hn)", (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

static int serve(server_t *s)
{
  raise_fd_limit(); /* before any thread or socket */
  char err[768] = "";
  bool network = false;
  int confined = s->root ? em_fs_confine(s->root) : 0; /* before any thread: no link below it is followed */
  if (confined)
    snprintf(err, sizeof(err), "cannot open the watch root %s: %s", s->root, strerror(-confined));
  if (!s->root || confined || db_path(s, &network, err, sizeof(err)) != 0 ||
      em_pipeline_init(&s->pipe, &s->loop, s->cfg, s->root) != 0) {
    EM_ERR("emerged: %s", err[0] ? err : "cannot resolve the watch root");
    return EM_EXIT_FAIL;
  }
  bool polling = s->cfg->poll > 0 || network;
  if (network)
    EM_NOTICE("emerged: %s is on a network filesystem: polling, database at %s", s->root, s->db_path);
  if (start_services(s, polling, err, sizeof(err)) != 0) {
    EM_ERR("emerged: %s", err);
    em_pipeline_stop(&s->pipe, close_cb);
    stop_services(s);
    return EM_EXIT_FAIL;
  }
  start_handles(s);
  first_operations(s);
  EM_NOTICE("emerged %s: watching %s (%s), database %s, PUB %s, API %s, HTTP %s, %d worker%s, %d thread%s per "
            "checkpoint", EM_VERSION, s->root, em_walker_polling(s->pipe.walker) ? "polling" : "inotify", s->db_path,
            s->cfg->pub, s->cfg->api, s->pipe.http ? em_http_url(s->pipe.http) : "off", s->cfg->workers,
            s->cfg->workers > 1 ? "s" : "", s->cfg->params.threads, s->cfg->params.threads > 1 ? "s" : "");
  em_walker_scan(s->pipe.walker);
  em_notify("READY=1");
  uv_run(&s->loop, UV_RUN_DEFAULT);
  return EM_EXIT_OK;
}

int em_server_run(em_config_t *cfg)
{
  server_t *s = calloc(1, sizeof(*s));
  if (!s)
    return EM_EXIT_FAIL;
  s->cfg = cfg;
  em_log_level = cfg->log_level;
  s->root = realpath(cfg->watch, NULL);
  uv_loop_init(&s->loop);
  s->started_ms = now_ms(s);
  int code = serve(s);
  uv_run(&s->loop, UV_RUN_DEFAULT); /* close callbacks */
  em_pipeline_free(&s->pipe);
  int lc = uv_loop_close(&s->loop);
  if (lc != 0)
    EM_ERR("emerged: the loop still had handles at exit (%s)", uv_strerror(lc));
  free(s->root);
  free(s);
  return code;
}
