/* SPDX-License-Identifier: MIT */
/* emergectl watch [RUN]: follow results, alerts and checkpoint events (a checkpoint
 * that failed, vanished, was non-finite or unsupported) live until Ctrl-C. Subscribes
 * first, then asks `since` for what came before, and drops duplicates by seq, so a
 * late start shows the full history and then live results with no gap and no repeat.
 * With --db and no daemon running it follows the database instead. */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "em_alert.h"
#include "em_history.h"
#include "em_runs.h"
#include "em_status.h"
#include "em_cli.h"
#include "em_cmd.h"
#include "em_wire.h"

#define SPARK 32 /* E values in a run's sparkline */

static volatile sig_atomic_t stop_requested;
static void on_signal(int sig) { (void)sig; stop_requested = 1; }

typedef struct watch {
  em_cmd_opts_t o;
  char prefix[3][1100];      /* result/, alert/ and checkpoint/ topics of the run(s) watched */
  int64_t last_seq;
  bool tty;
  double spark[SPARK];
  int nspark;
} watch_t;

/* A run's topic prefix: every run with no RUN; otherwise exactly that run (and below). */
static bool wanted(const watch_t *w, const char *topic)
{
  for (size_t i = 0; i < sizeof(w->prefix) / sizeof(*w->prefix); i++)
    if (strncmp(topic, w->prefix[i], strlen(w->prefix[i])) == 0)
      return true;
  return false;
}

static void sparkline(watch_t *w, double e, char *out, size_t n)
{
  static const char *bars[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  if (w->nspark == SPARK)
    memmove(w->spark, w->spark + 1, (SPARK - 1) * sizeof(double)), w->nspark--;
  w->spark[w->nspark++] = e;
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < w->nspark; i++)
    lo = fmin(lo, w->spark[i]), hi = fmax(hi, w->spark[i]);
  out[0] = 0;
  size_t used = 0;
  for (int i = 0; i < w->nspark && used + 4 < n; i++) {
    int k = hi > lo ? (int)((w->spark[i] - lo) / (hi - lo) * 7.999) : 0;
    used += (size_t)snprintf(out + used, n - used, "%s", bars[k]);
  }
}

static void show_alert(const cJSON *p)
{
  em_alert_t al;
  char err[200];
  if (em_alert_from_json(p, &al, err, sizeof(err)) != 0) {
    em_cli_error("watch", "skipping a malformed alert: %s", err);
    return;
  }
  char at[64];
  em_place_text(at, sizeof(at), al.step, al.by_arrival);
  printf("ALERT %s %s rule %s: %s\n", al.run, at, al.rule, al.reason);
  em_alert_free(&al);
}

/* A checkpoint that failed, vanished, was non-finite or unsupported, with why. */
static void show_checkpoint(const cJSON *p)
{
  const char *run;
  em_hist_entry_t e;
  if (em_checkpoint_event_decode(p, &run, &e) != 0) {
    em_cli_error("watch", "skipping a malformed checkpoint event (needs seq, run, step and state)");
    return;
  }
  char at[64];
  em_place_text(at, sizeof(at), e.step, e.by_arrival);
  printf("%-16s %s  %s: %s\n", run, at, em_state_name(e.state), e.error ? e.error : "(no reason given)");
}

static void show_result(watch_t *w, const cJSON *p)
{
  em_result_view_t r;
  char err[200], step[24], metrics[256], spark[SPARK * 4 + 1] = "";
  if (em_result_decode(p, &r, err, sizeof(err)) != 0) {
    em_cli_error("watch", "skipping a malformed result: %s", err);
    return;
  }
  em_cmd_trainer_text(&r, metrics, sizeof(metrics));
  if (w->tty && !isnan(r.emergence))
    sparkline(w, r.emergence, spark, sizeof(spark));
  char se[24];
  em_cmd_fmt_result_place(step, sizeof(step), &r);
  em_cmd_fmt_num(se, sizeof(se), r.emergence_se, "%.4f");
  printf("%-16s step %8s  E %+.4f ±%s  alpha0 %.4f  width %.4f  %s %s\n", r.run, step, r.emergence, se, r.alpha0,
         r.width, metrics, spark);
  em_result_view_free(&r);
}

static void show(watch_t *w, const char *topic, const cJSON *p)
{
  int64_t seq;
  if (!em_json_int(p, "seq", &seq) || seq <= w->last_seq)
    return; /* seen already (since and live overlap) */
  w->last_seq = seq;
  if (w->o.json) {
    char *s = cJSON_PrintUnformatted(p);
    printf("%s\n", s ? s : "{}");
    free(s);
  } else if (strncmp(topic, "alert/", 6) == 0) {
    show_alert(p);
  } else if (strncmp(topic, "checkpoint/", 11) == 0) {
    show_checkpoint(p);
  } else {
    show_result(w, p);
  }
  fflush(stdout);
}

/* Everything after last_seq, page by page. Returns 0 or an exit code. */
static int catch_up(watch_t *w, bool use_db)
{
  for (;;) {
    em_api_request_t req = {.cmd = EM_API_SINCE, .seq = w->last_seq};
    cJSON *reply = NULL;
    char err[1024];
    int rc = em_source_request(&w->o.src, use_db, &req, &reply, err, sizeof(err));
    if (rc) {
      em_cli_error("watch", "%s", err);
      return rc;
    }
    const cJSON *m;
    int64_t seq;
    int64_t before = w->last_seq;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(reply, "messages"))
    {
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(m, "topic");
      const cJSON *payload = cJSON_GetObjectItemCaseSensitive(m, "payload");
      const char *topic = cJSON_IsString(t) ? t->valuestring : "";
      if (wanted(w, topic))
        show(w, topic, payload);
      else if (em_json_int(payload, "seq", &seq))
        w->last_seq = seq;
    }
    bool more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "more"));
    cJSON_Delete(reply);
    if (!more || w->last_seq == before)
      return 0;
  }
}

static double monotonic_seconds(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int follow_live(watch_t *w, const char *pub)
{
  void *ctx = zmq_ctx_new(), *sub = zmq_socket(ctx, ZMQ_SUB);
  int zero = 0, rc = 0;
  zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof(zero));
  if (zmq_connect(sub, pub) != 0) {
    em_cli_error("watch", "PUB endpoint %s: %s", pub, zmq_strerror(zmq_errno()));
    rc = EM_EXIT_USAGE;
    goto out;
  }
  for (size_t i = 0; i < sizeof(w->prefix) / sizeof(*w->prefix); i++)
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, w->prefix[i], strlen(w->prefix[i]));
  usleep(200000); /* the subscription must reach the daemon before we ask what we missed */
  if ((rc = catch_up(w, false)) != 0)
    goto out;
  /* A subscription takes effect asynchronously and a slow machine can need more than
   * the pause above; one more look once it surely has closes that window. */
  bool rechecked = false;
  double recheck_at = monotonic_seconds() + 2.0;
  while (!stop_requested) {
    zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
    if (!rechecked && monotonic_seconds() >= recheck_at) {
      rechecked = true;
      if ((rc = catch_up(w, false)) != 0)
        goto out;
    }
    if (zmq_poll(&item, 1, 200) != 1)
      continue;
    char topic[1200];
    int n = zmq_recv(sub, topic, sizeof(topic) - 1, 0);
    zmq_msg_t body;
    zmq_msg_init(&body);
    if (n >= 0 && zmq_msg_recv(&body, sub, 0) >= 0) {
      topic[n < (int)sizeof(topic) - 1 ? n : (int)sizeof(topic) - 1] = 0;
      cJSON *p = cJSON_ParseWithLength(zmq_msg_data(&body), zmq_msg_size(&body));
      if (p)
        show(w, topic, p);
      cJSON_Delete(p);
    }
    zmq_msg_close(&body);
  }
out:
  zmq_close(sub);
  zmq_ctx_term(ctx);
  return rc;
}

/* With --db and no daemon: poll the database. */
static int follow_db(watch_t *w)
{
  int rc = 0;
  while (!stop_requested && (rc = catch_up(w, true)) == 0)
    usleep(500000);
  return rc;
}

static const em_cmd_spec_t spec = {"watch", EM_RUN_OPTIONAL, EM_OPT_PUB | EM_OPT_WAIT,
  "emergectl watch: a run's (or every run's) stored results first, then new results, alerts and\n"
  "checkpoints that failed, live, each once, until Ctrl-C. With --db and no daemon it follows the database.\n\n"
  "usage: emergectl watch [RUN] [--pub ENDPOINT] [--wait] [SOURCE]\n\n"
  "  --pub ENDPOINT     the daemon's PUB socket (default: the one the daemon names; EMERGE_PUB)\n"
  "  --wait             a RUN the daemon does not know yet: wait for it (else: exit 1, naming the runs)\n"
  EM_CMD_SOURCE_HELP "\nexamples:\n  emergectl watch mlp\n  emergectl watch sweep --json | jq -c '{step, emergence}'\n"
  "  emergectl watch new-run --wait\n\n" EM_CMD_EXIT_HELP};

/* The daemon's own PUB endpoint, from its status; NULL when it does not say. */
static char *daemon_pub(watch_t *w)
{
  em_api_request_t req = {.cmd = EM_API_STATUS};
  cJSON *reply = NULL;
  char err[512];
  char *pub = NULL;
  em_status_t st;
  if (em_source_request(&w->o.src, false, &req, &reply, err, sizeof(err)) == 0 &&
      em_status_from_json(cJSON_GetObjectItemCaseSensitive(reply, "status"), &st) == 0 && st.pub && st.pub[0])
    pub = strdup(st.pub);
  cJSON_Delete(reply);
  return pub;
}

/* Whether RUN is a run the source knows, or a folder of runs (watch follows those below). */
static int run_or_folder(watch_t *w, bool use_db, bool *known, char *err, size_t errlen)
{
  em_api_request_t req = {.cmd = EM_API_RUNS};
  cJSON *reply = NULL;
  em_run_info_t *v = NULL;
  size_t n = 0, len = strlen(w->o.run);
  int rc = em_source_request(&w->o.src, use_db, &req, &reply, err, errlen);
  if (rc == 0 && em_runs_decode(reply, &v, &n, err, errlen) != 0)
    rc = EM_EXIT_FAIL;
  *known = false;
  for (size_t i = 0; i < n && !*known; i++)
    *known = strncmp(v[i].run, w->o.run, len) == 0 && (v[i].run[len] == 0 || v[i].run[len] == '/');
  free(v);
  cJSON_Delete(reply);
  return rc;
}

/* A RUN the daemon does not know: say so with the known ones (0 to go on only with --wait). */
static int known_run(watch_t *w, bool use_db)
{
  if (!w->o.run)
    return 0;
  char err[512];
  bool known;
  int rc = run_or_folder(w, use_db, &known, err, sizeof(err));
  if (rc)
    return em_cli_error("watch", "%s", err), rc;
  if (known)
    return 0;
  if (w->o.wait) {
    fprintf(stderr, "emergectl: watch: no run '%s' yet; waiting for it (--wait)\n", w->o.run);
    return 0;
  }
  snprintf(err, sizeof(err), "no run '%s' yet", w->o.run);
  em_cmd_suggest_runs("watch", &w->o, err);
  return EM_EXIT_FAIL;
}

int em_cmd_watch(int argc, char **argv)
{
  watch_t w = {0};
  int rc = em_cmd_parse(&spec, argc, argv, &w.o);
  if (rc)
    return rc < 0 ? EM_EXIT_OK : rc;
  static const char *const kinds[] = {"result", "alert", "checkpoint"};
  for (size_t i = 0; i < sizeof(kinds) / sizeof(*kinds); i++)
    snprintf(w.prefix[i], sizeof(w.prefix[i]), "%s/%s%s", kinds[i], w.o.run ? w.o.run : "", w.o.run ? "/" : "");
  w.tty = isatty(STDOUT_FILENO);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  bool live = false;
  char err[1024];
  if (w.o.db && em_source_open_db(&w.o.src, w.o.db, &live, err, sizeof(err)) != 0) {
    em_cli_error("watch", "%s", err);
    rc = EM_EXIT_FAIL;
  } else if ((rc = known_run(&w, w.o.db && !live)) != 0) {
    /* said why */
  } else if (w.o.db && !live) {
    rc = follow_db(&w);
  } else {
    char *asked = w.o.pub || (live && w.o.src.pub) ? NULL : daemon_pub(&w);
    rc = follow_live(&w, w.o.pub ? w.o.pub : live && w.o.src.pub ? w.o.src.pub : asked ? asked : EM_DEFAULT_PUB);
    free(asked);
  }
  em_source_close(&w.o.src);
  return rc;
}
