/* SPDX-License-Identifier: MIT */
/* Alert deliveries: log line, stop file, user command.
 *
 * DESIGN. A delivery that fails (a read-only run directory, a command that does not
 * exist) is logged and not retried: "delivered" means the deliveries ran to their end.
 * Only a crash between the committed row and that end makes them run again, so a
 * command may, rarely, run twice for one alert (at least once, never lost). The command
 * gets its own process group, so the timeout kills whatever it started too. */
#include "em_deliver.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_fs.h"
#include "em_log.h"
#include "em_wire.h"

#define MAX_COMMANDS 4 /* running at once; more alerts wait their turn (a sweep's start-up) */

extern char **environ;

typedef struct waiting {
  struct waiting *next;
  em_alert_t alert;
  uv_work_t write;          /* the stop file, on the threadpool */
  em_deliver_t *owner;
  bool stop_file;
} waiting_t;

typedef struct hook {
  uv_process_t proc;
  uv_timer_t timer;
  em_deliver_t *owner;
  int64_t seq;
  double timeout;
  int open_handles;
  bool timed_out;
  struct hook *next;
} hook_t;

struct em_deliver {
  uv_loop_t *loop;
  em_on_alert_t on_alert;
  em_delivered_fn delivered;
  void *ctx;
  hook_t *hooks;            /* commands still running */
  size_t running;
  waiting_t *waiting, **waiting_tail; /* alerts whose command has not started, in order */
  size_t writing;           /* stop files being written: d lives until they end */
  bool stopped;
};

int em_deliver_start(em_deliver_t **out, uv_loop_t *loop, em_delivered_fn delivered, void *ctx)
{
  em_deliver_t *d = calloc(1, sizeof(*d));
  if (!d)
    return -ENOMEM;
  d->loop = loop;
  d->delivered = delivered;
  d->ctx = ctx;
  d->waiting_tail = &d->waiting;
  em_on_alert_default(&d->on_alert);
  *out = d;
  return 0;
}

int em_deliver_configure(em_deliver_t *d, const em_on_alert_t *on_alert)
{
  em_on_alert_t copy;
  if (em_on_alert_copy(on_alert, &copy) != 0)
    return -ENOMEM;
  em_on_alert_free(&d->on_alert);
  d->on_alert = copy;
  return 0;
}

/* ---------------------------------------------------------------- stop file */

/* RUN_DIR/.emerge/STOP by temp + fsync + rename: a reader sees the whole alert or none.
 * The tree is writable by others (docs/SECURITY.md): the run directory is opened without
 * following links (em_fs), .emerge and the temp file relative to it with O_NOFOLLOW and
 * O_EXCL, so a planted link or file is never written through. Both are made readable by
 * the job whatever our umask (the unit's is 0077). Returns 0 or -errno; *what names the
 * step that failed. */
static int stop_file_at(int run_fd, int64_t seq, const char *payload, const char **what)
{
  *what = "create or open " EM_DOT_DIR " (a symbolic link is not followed)";
  int dir = em_fs_own_dir(run_fd, EM_DOT_DIR, 0755);
  if (dir < 0)
    return dir;
  char tmp[64];
  snprintf(tmp, sizeof(tmp), EM_STOP_FILE ".tmp-%lld", (long long)seq);
  unlinkat(dir, tmp, 0); /* whatever was planted under our temp name: the link, not its target */
  *what = "create the temp file";
  int fd = openat(dir, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  int rc = fd < 0 ? -errno : 0;
  size_t len = strlen(payload);
  if (!rc) {
    *what = "write the temp file";
    bool ok = fchmod(fd, 0644) == 0 && write(fd, payload, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
              fsync(fd) == 0;
    rc = ok ? 0 : -errno;
    close(fd);
  }
  if (!rc) {
    *what = "rename the temp file";
    rc = renameat(dir, tmp, dir, EM_STOP_FILE) == 0 ? 0 : -errno;
  }
  if (rc && fd >= 0)
    unlinkat(dir, tmp, 0);
  if (!rc)
    fsync(dir);
  close(dir);
  return rc;
}

/* Runs on libuv's threadpool: the fsync must not hold up the loop. */
static void write_stop_file(uv_work_t *req)
{
  waiting_t *w = req->data;
  const em_alert_t *a = &w->alert;
  char final[4200];
  char *payload = em_alert_print(a);
  if (!payload || !em_stop_path(final, sizeof(final), a->run_dir)) {
    EM_ERR("alert %lld: stop file: out of memory or path too long", (long long)a->seq);
    free(payload);
    return;
  }
  const char *what = "open the run directory";
  int run_fd = em_fs_open_inside(a->run_dir, O_RDONLY | O_DIRECTORY, 0); /* a stored row may name any dir */
  int rc = run_fd < 0 ? run_fd : stop_file_at(run_fd, a->seq, payload, &what);
  if (run_fd >= 0)
    close(run_fd);
  free(payload);
  if (rc)
    EM_ERR("alert %lld: stop file %s: cannot %s: %s", (long long)a->seq, final, what, em_fs_strerror(rc));
  else
    EM_NOTICE("alert %lld: stop file %s written", (long long)a->seq, final);
}

/* ---------------------------------------------------------------- command */

static void hook_closed(uv_handle_t *h)
{
  hook_t *k = h->data;
  if (--k->open_handles > 0)
    return;
  if (k->owner) { /* NULL once the deliverer stopped and let go of its list */
    hook_t **p = &k->owner->hooks;
    while (*p != k)
      p = &(*p)->next;
    *p = k->next;
  }
  free(k);
}

static void start_waiting(em_deliver_t *d);

static void hook_exited(uv_process_t *proc, int64_t status, int sig)
{
  hook_t *k = proc->data;
  if (k->timed_out)
    EM_WARN("alert %lld: command killed after its %g s timeout", (long long)k->seq, k->timeout);
  else if (sig)
    EM_WARN("alert %lld: command ended by signal %d", (long long)k->seq, sig);
  else
    EM_NOTICE("alert %lld: command exited %lld", (long long)k->seq, (long long)status);
  em_deliver_t *d = k->owner;
  d->delivered(d->ctx, k->seq);
  uv_timer_stop(&k->timer);
  uv_close((uv_handle_t *)&k->timer, hook_closed);
  uv_close((uv_handle_t *)&k->proc, hook_closed);
  d->running--;
  start_waiting(d);
}

static void hook_kill(hook_t *k)
{
  kill(-k->proc.pid, SIGKILL); /* its process group: whatever it started goes too */
  uv_process_kill(&k->proc, SIGKILL);
}

static void hook_timeout(uv_timer_t *t)
{
  hook_t *k = t->data;
  k->timed_out = true;
  hook_kill(k);
}

/* environ without EMERGE_* plus the alert's variables; the strings in vars[] stay owned
 * by the caller. NULL on OOM. */
static char **hook_env(char *vars[], size_t nvars)
{
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + nvars + 1, sizeof(char *));
  if (!env)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "EMERGE_", 7) != 0)
      env[k++] = environ[i];
  for (size_t i = 0; i < nvars; i++)
    env[k++] = vars[i];
  return env;
}

/* The alert as EMERGE_* variables; numbers as %.17g, a null value (or step) as "". */
enum { NVARS = 10 };
static bool alert_vars(const em_alert_t *a, char *vars[NVARS])
{
  char step[32] = "", arrival[32] = "", value[40], seq[32];
  snprintf(a->by_arrival ? arrival : step, sizeof(step), "%lld", (long long)a->step);
  snprintf(seq, sizeof(seq), "%lld", (long long)a->seq);
  if (isnan(a->value))
    value[0] = 0;
  else
    snprintf(value, sizeof(value), "%.17g", a->value);
  const char *const kv[NVARS][2] = {{"EMERGE_RUN", a->run}, {"EMERGE_RULE", a->rule}, {"EMERGE_STEP", step},
                                    {"EMERGE_VALUE", value}, {"EMERGE_REASON", a->reason},
                                    {"EMERGE_CONDITION", em_condition_name(a->cond)}, {"EMERGE_SEQ", seq},
                                    {"EMERGE_RUN_DIR", a->run_dir}, {"EMERGE_PATH", a->path},
                                    {"EMERGE_ARRIVAL", arrival}};
  bool ok = true;
  for (size_t i = 0; i < NVARS && ok; i++) {
    const char *v = kv[i][1] ? kv[i][1] : "";
    size_t n = strlen(kv[i][0]) + strlen(v) + 2;
    if ((ok = (vars[i] = malloc(n)) != NULL))
      snprintf(vars[i], n, "%s=%s", kv[i][0], v);
  }
  return ok;
}

/* Starts the command; false when it could not start (logged). */
static bool run_command(em_deliver_t *d, const em_alert_t *alert, int64_t seq)
{
  char *vars[NVARS] = {0};
  bool ok = alert_vars(alert, vars);
  char **env = ok ? hook_env(vars, NVARS) : NULL;
  hook_t *k = env ? calloc(1, sizeof(*k)) : NULL;
  int rc = -ENOMEM;
  if (k) {
    uv_stdio_container_t stdio[3] = {{.flags = UV_IGNORE}, {.flags = UV_INHERIT_FD, .data.fd = 1},
                                     {.flags = UV_INHERIT_FD, .data.fd = 2}};
    uv_process_options_t opt = {.exit_cb = hook_exited, .file = d->on_alert.exec[0], .args = d->on_alert.exec,
                                .env = env, .flags = UV_PROCESS_DETACHED, .stdio_count = 3, .stdio = stdio};
    k->owner = d;
    k->seq = seq;
    k->timeout = d->on_alert.exec_timeout;
    k->proc.data = k->timer.data = k;
    rc = uv_spawn(d->loop, &k->proc, &opt);
  }
  for (size_t i = 0; i < NVARS; i++)
    free(vars[i]);
  free(env);
  if (rc != 0) {
    EM_ERR("alert %lld: command %s: %s", (long long)seq, d->on_alert.exec[0], uv_strerror(rc));
    if (k && rc != -ENOMEM) {
      k->open_handles = 1; /* uv_spawn leaves the handle to close */
      k->next = d->hooks;
      d->hooks = k;
      uv_close((uv_handle_t *)&k->proc, hook_closed);
    } else {
      free(k);
    }
    return false;
  }
  k->open_handles = 2;
  k->next = d->hooks;
  d->hooks = k;
  d->running++;
  uv_timer_init(d->loop, &k->timer);
  uv_timer_start(&k->timer, hook_timeout, (uint64_t)(d->on_alert.exec_timeout * 1000), 0);
  EM_INFO("alert %lld: command %s started (pid %d)", (long long)seq, d->on_alert.exec[0], k->proc.pid);
  return true;
}

/* ---------------------------------------------------------------- alerts */

static void waiting_free(waiting_t *w)
{
  em_alert_free(&w->alert);
  free(w);
}

/* Commands of waiting alerts, while fewer than MAX_COMMANDS run. */
static void start_waiting(em_deliver_t *d)
{
  while (d->waiting && d->running < MAX_COMMANDS) {
    waiting_t *w = d->waiting;
    if (!(d->waiting = w->next))
      d->waiting_tail = &d->waiting;
    if (!d->on_alert.exec || !run_command(d, &w->alert, w->alert.seq)) /* exec removed by a reload, or failed */
      d->delivered(d->ctx, w->alert.seq);
    waiting_free(w);
  }
}

/* After the stop file: the command, or the end of the deliveries. */
static void after_stop_file(em_deliver_t *d, waiting_t *w)
{
  if (!d->on_alert.exec) {
    d->delivered(d->ctx, w->alert.seq);
    waiting_free(w);
    return;
  }
  w->next = NULL;
  *d->waiting_tail = w;
  d->waiting_tail = &w->next;
  start_waiting(d);
}

static void stop_file_written(uv_work_t *req, int status)
{
  (void)status;
  waiting_t *w = req->data;
  em_deliver_t *d = w->owner;
  d->writing--;
  if (d->stopped) { /* never delivered: redone at the next start */
    waiting_free(w);
    if (d->writing == 0)
      free(d);
    return;
  }
  after_stop_file(d, w);
}

void em_deliver_alert(em_deliver_t *d, const em_alert_t *alert)
{
  char at[64];
  em_place_text(at, sizeof(at), alert->step, alert->by_arrival);
  EM_WARN("alert %lld: run %s rule %s %s: %s", (long long)alert->seq, alert->run, alert->rule, at, alert->reason);
  waiting_t *w = calloc(1, sizeof(*w));
  if (!w || em_alert_copy(alert, &w->alert) != 0) {
    free(w);
    EM_ERR("alert %lld: out of memory: not delivered", (long long)alert->seq);
    return;
  }
  w->owner = d;
  w->write.data = w;
  if (d->on_alert.stop_file && alert->stop && alert->run_dir && alert->run_dir[0] &&
      uv_queue_work(d->loop, &w->write, write_stop_file, stop_file_written) == 0) {
    d->writing++;
    return;
  }
  after_stop_file(d, w);
}

void em_deliver_stop(em_deliver_t **self_p)
{
  em_deliver_t *d = *self_p;
  if (!d)
    return;
  *self_p = NULL;
  for (hook_t *k = d->hooks; k; k = k->next) {
    k->owner = NULL;
    if (uv_is_closing((uv_handle_t *)&k->proc))
      continue; /* exited; its handles are closing */
    EM_NOTICE("alert %lld: stopping: command killed; redone at the next start", (long long)k->seq);
    hook_kill(k);
    uv_timer_stop(&k->timer);
    uv_close((uv_handle_t *)&k->timer, hook_closed);
    uv_close((uv_handle_t *)&k->proc, hook_closed);
  }
  while (d->waiting) { /* never started: undelivered, redone at the next start */
    waiting_t *w = d->waiting;
    d->waiting = w->next;
    waiting_free(w);
  }
  em_on_alert_free(&d->on_alert);
  d->stopped = true;
  if (d->writing == 0) /* else the last stop file to finish frees it */
    free(d);
}
