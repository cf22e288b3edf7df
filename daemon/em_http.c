/* SPDX-License-Identifier: MIT */
#include "em_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_api.h"
#include "em_db.h"
#include "em_log.h"
#include "em_metrics.h"
#include "em_query.h"
#include "em_sse.h"
#include "em_web.h"

#define CONNECTIONS 512            /* in all; streams count too (at most EM_SSE_MAX_STREAMS) */
#define IDLE_SECONDS 15            /* a request that sends nothing for this long is dropped */
#define STREAM_IDLE_SECONDS 60     /* an event stream whose client reads nothing for this long */
#define CONNECTION_MEMORY (64u << 10) /* request headers and buffers per connection */
#define STATUS_WAIT_MS 2000        /* the loop's answer to "status"; past it: 503 */
#define SEND_BUFFER (256 << 10)    /* the kernel's share of an unread reply, per connection */
#define REPLY_BUDGET (64u << 20)   /* reply bytes held for clients that have not read them yet;
                                    * past it new queries get 503 (a long history is megabytes) */

struct em_http {
  struct MHD_Daemon *mhd;
  em_db_t *db;                     /* the HTTP thread's read-only connection */
  em_sse_t *sse;
  uv_async_t async;                /* asks the loop for its status */
  uv_mutex_t lock;                 /* guards what follows */
  uv_cond_t cond;
  em_status_t status;              /* the loop's last answer */
  uint64_t asked, answered;        /* status generations */
  bool stopping;
  em_durations_t durations;
  size_t reply_bytes;              /* replies built and not yet sent in full */
  em_http_status_fn status_fn;
  void *ctx;
  bool loopback;
  char url[96];
};

/* ---------------------------------------------------------------- the loop's status */

static void on_async(uv_async_t *a)
{
  em_http_t *h = a->data;
  em_status_t st = h->status_fn(h->ctx);
  uv_mutex_lock(&h->lock);
  h->status = st;
  h->answered = h->asked;
  uv_cond_broadcast(&h->cond);
  uv_mutex_unlock(&h->lock);
}

/* The loop's status now, with the durations; false when the loop did not answer in time. */
static bool ask_status(em_http_t *h, em_status_t *st, em_durations_t *d)
{
  uv_mutex_lock(&h->lock);
  uint64_t want = ++h->asked;
  if (!h->stopping) /* once stopping, the handle may be closing */
    uv_async_send(&h->async);
  uint64_t deadline = uv_hrtime() + (uint64_t)STATUS_WAIT_MS * 1000000u;
  while (h->answered < want && !h->stopping) {
    uint64_t now = uv_hrtime();
    if (now >= deadline || uv_cond_timedwait(&h->cond, &h->lock, deadline - now) != 0)
      break;
  }
  bool ok = h->answered >= want;
  *st = h->status;
  *d = h->durations;
  uv_mutex_unlock(&h->lock);
  return ok;
}

/* ---------------------------------------------------------------- responses */

/* A reply held until its client has read it: its bytes count against REPLY_BUDGET. */
typedef struct held {
  em_http_t *h;
  char *body;
  size_t len;
} held_t;

static void release(void *cls)
{
  held_t *r = cls;
  uv_mutex_lock(&r->h->lock);
  r->h->reply_bytes -= r->len;
  uv_mutex_unlock(&r->h->lock);
  free(r->body);
  free(r);
}

static bool over_budget(em_http_t *h)
{
  uv_mutex_lock(&h->lock);
  bool over = h->reply_bytes > REPLY_BUDGET;
  uv_mutex_unlock(&h->lock);
  return over;
}

static enum MHD_Result send_text(em_http_t *h, struct MHD_Connection *c, unsigned code, char *body, const char *type)
{
  held_t *r = body ? malloc(sizeof(*r)) : NULL;
  struct MHD_Response *resp = NULL;
  if (r) {
    *r = (held_t){h, body, strlen(body)};
    resp = MHD_create_response_from_buffer_with_free_callback_cls(r->len, body, release, r);
  }
  if (!resp) {
    free(body);
    free(r);
    return MHD_NO; /* out of memory: drop the connection */
  }
  uv_mutex_lock(&h->lock);
  h->reply_bytes += r->len;
  uv_mutex_unlock(&h->lock);
  MHD_add_response_header(resp, "Content-Type", type);
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
  if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
    MHD_add_response_header(resp, "Allow", "GET, HEAD");
  enum MHD_Result rc = MHD_queue_response(c, code, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result send_json(em_http_t *h, struct MHD_Connection *c, unsigned code, char *body)
{
  return send_text(h, c, code, body, "application/json");
}

static enum MHD_Result send_error(em_http_t *h, struct MHD_Connection *c, unsigned code, const char *fmt, ...)
{
  char msg[1400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  return send_json(h, c, code, em_api_error(msg));
}

static const char *content_type(const char *path)
{
  const char *dot = strrchr(path, '.');
  return !dot ? "application/octet-stream"
         : strcmp(dot, ".html") == 0 ? "text/html; charset=utf-8"
         : strcmp(dot, ".js") == 0 ? "text/javascript; charset=utf-8"
         : strcmp(dot, ".css") == 0 ? "text/css; charset=utf-8"
         : strcmp(dot, ".svg") == 0 ? "image/svg+xml" : "application/octet-stream";
}

/* A file of the dashboard, from the table compiled in; anything else is 404. */
static enum MHD_Result send_asset(em_http_t *h, struct MHD_Connection *c, const char *url)
{
  const char *path = strcmp(url, "/") == 0 ? "/index.html" : url;
  for (const em_asset_t *a = em_web_assets; a->path; a++) {
    if (strcmp(a->path, path) != 0)
      continue;
    struct MHD_Response *r = MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r)
      return MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type(path));
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; "
                                                          "frame-ancestors 'none'; base-uri 'none'");
    enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
  }
  return send_error(h, c, MHD_HTTP_NOT_FOUND, "no such path (the dashboard is at /, the API under /api/v1/, metrics "
                                           "at /metrics)");
}

/* ---------------------------------------------------------------- arguments */

/* A non-negative integer argument; false (with a 400 sent) when it is there but is not one. */
static bool int_arg(em_http_t *h, struct MHD_Connection *c, const char *text, const char *name, bool *has, int64_t *v,
                    enum MHD_Result *rc)
{
  *has = text != NULL;
  if (!text)
    return true;
  char *end;
  errno = 0;
  long long x = strtoll(text, &end, 10);
  if (*text < '0' || *text > '9' || *end || errno || x < 0) {
    *rc = send_error(h, c, MHD_HTTP_BAD_REQUEST, "%s must be a non-negative integer, not '%.64s'", name, text);
    return false;
  }
  *v = x;
  return true;
}

static bool run_arg(em_http_t *h, struct MHD_Connection *c, em_api_request_t *req, enum MHD_Result *rc)
{
  const char *run = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "run");
  if (!run)
    return true;
  if (strlen(run) > EM_API_MAX_RUN || !run[0]) {
    *rc = send_error(h, c, MHD_HTTP_BAD_REQUEST, "run must be 1 to %d bytes", EM_API_MAX_RUN);
    return false;
  }
  snprintf(req->run, sizeof(req->run), "%s", run);
  req->has_run = true;
  return true;
}

/* ---------------------------------------------------------------- the API */

static enum MHD_Result send_query(em_http_t *h, struct MHD_Connection *c, const em_api_request_t *req)
{
  em_query_outcome_t out;
  char *reply = em_query_answer(h->db, req, NULL, &out);
  unsigned code = out == EM_QUERY_UNKNOWN_RUN ? MHD_HTTP_NOT_FOUND
                  : out == EM_QUERY_DB_ERROR ? MHD_HTTP_INTERNAL_SERVER_ERROR : MHD_HTTP_OK;
  return send_json(h, c, code, reply);
}

static enum MHD_Result send_status(em_http_t *h, struct MHD_Connection *c)
{
  em_status_t st;
  em_durations_t d;
  if (!ask_status(h, &st, &d))
    return send_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "the daemon's loop did not answer within %d ms",
                      STATUS_WAIT_MS);
  em_api_request_t req = {.cmd = EM_API_STATUS}; /* st is fresh: the loop made it for this request */
  return send_json(h, c, MHD_HTTP_OK, em_query_reply(NULL, &req, &st));
}

static enum MHD_Result send_metrics(em_http_t *h, struct MHD_Connection *c)
{
  em_status_t st;
  em_durations_t d;
  if (!ask_status(h, &st, &d))
    return send_text(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, strdup("the daemon's loop did not answer\n"), "text/plain");
  char err[512];
  char *text = em_metrics_text(h->db, &st, &d, err, sizeof(err));
  if (!text)
    return send_text(h, c, MHD_HTTP_INTERNAL_SERVER_ERROR, strdup(err), "text/plain");
  return send_text(h, c, MHD_HTTP_OK, text, "text/plain; version=0.0.4; charset=utf-8");
}

static enum MHD_Result send_events(em_http_t *h, struct MHD_Connection *c)
{
  enum MHD_Result rc = MHD_NO;
  em_api_request_t req = {0};
  bool has_after = false, has_since = false;
  int64_t after = 0, since = 0;
  if (!run_arg(h, c, &req, &rc) ||
      !int_arg(h, c, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID"), "Last-Event-ID", &has_after,
               &after, &rc) ||
      !int_arg(h, c, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "since"), "since", &has_since, &since, &rc))
    return rc;
  if (!has_after) /* a reconnecting EventSource sends Last-Event-ID; it wins over the page's since */
    has_after = has_since, after = since;
  struct MHD_Response *r = em_sse_open(h->sse, c, has_after, after, req.has_run ? req.run : NULL);
  if (!r)
    return send_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "too many event streams (%d); retry later",
                      EM_SSE_MAX_STREAMS);
  MHD_add_response_header(r, "Content-Type", "text/event-stream");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  MHD_add_response_header(r, "X-Accel-Buffering", "no");
  MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)STREAM_IDLE_SECONDS);
  rc = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return rc;
}

static enum MHD_Result send_api(em_http_t *h, struct MHD_Connection *c, const char *what)
{
  enum MHD_Result rc = MHD_NO;
  em_api_request_t req = {0};
  bool has_seq = false;
  if (strcmp(what, "status") == 0)
    return send_status(h, c);
  if (strcmp(what, "events") == 0)
    return send_events(h, c);
  if (!run_arg(h, c, &req, &rc))
    return rc;
  if (strcmp(what, "runs") == 0) {
    req.cmd = EM_API_RUNS;
  } else if (strcmp(what, "history") == 0) {
    if (!req.has_run)
      return send_error(h, c, MHD_HTTP_BAD_REQUEST, "history needs ?run=NAME");
    req.cmd = EM_API_HISTORY;
  } else if (strcmp(what, "alerts") == 0) {
    req.cmd = EM_API_ALERTS;
  } else if (strcmp(what, "since") == 0) {
    req.cmd = EM_API_SINCE;
    if (!int_arg(h, c, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "seq"), "seq", &has_seq, &req.seq, &rc))
      return rc;
    if (!has_seq)
      return send_error(h, c, MHD_HTTP_BAD_REQUEST, "since needs ?seq=N, a non-negative integer");
  } else {
    return send_error(h, c, MHD_HTTP_NOT_FOUND, "no such endpoint /api/v1/%.64s (status, runs, history, alerts, since, "
                                             "events)", what);
  }
  return send_query(h, c, &req);
}

/* ---------------------------------------------------------------- requests */

/* A loopback listener answers only to loopback names: a web page elsewhere that rebinds
 * its own name to 127.0.0.1 (DNS rebinding) gets nothing. */
static bool host_allowed(const em_http_t *h, struct MHD_Connection *c)
{
  const char *host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
  if (!h->loopback || !host)
    return true;
  size_t n = host[0] == '[' ? strcspn(host, "]") + 1 : strcspn(host, ":");
  char name[80];
  if (n >= sizeof(name))
    return false;
  memcpy(name, host, n);
  name[n] = 0;
  struct in_addr a4;
  return strcmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0 ||
         (inet_pton(AF_INET, name, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **req_cls)
{
  (void)version, (void)upload, (void)req_cls;
  em_http_t *h = cls;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    *upload_len = 0;
    return send_error(h, c, MHD_HTTP_METHOD_NOT_ALLOWED, "method %.16s not allowed: everything here is read-only "
                                                      "(GET, HEAD)", method);
  }
  if (!host_allowed(h, c))
    return send_error(h, c, MHD_HTTP_FORBIDDEN, "Host is not a loopback name; this listener is bound to loopback");
  bool query = strcmp(url, "/metrics") == 0 || strncmp(url, "/api/v1/", 8) == 0;
  if (query && strcmp(url, "/api/v1/events") != 0 && over_budget(h))
    return send_error(h, c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy: replies of %u MiB wait for their clients to read "
                      "them; retry", REPLY_BUDGET >> 20);
  if (strcmp(url, "/metrics") == 0)
    return send_metrics(h, c);
  if (strncmp(url, "/api/v1/", 8) == 0)
    return send_api(h, c, url + 8);
  return send_asset(h, c, url);
}

/* A connection's kernel send buffer is capped, so a reply its client does not read stays
 * ours to count (REPLY_BUDGET), not the kernel's to grow. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
  (void)cls, (void)socket_context;
  const union MHD_ConnectionInfo *fd = code == MHD_CONNECTION_NOTIFY_STARTED
                                         ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD) : NULL;
  int size = SEND_BUFFER;
  if (fd)
    setsockopt(fd->connect_fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  msg[strcspn(msg, "\n")] = 0;
  EM_INFO("http: %s", msg);
}

/* ---------------------------------------------------------------- start, stop */

/* HOST:PORT into a socket address; -EINVAL with err. */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, bool *loopback, char *err, size_t errlen)
{
  const char *colon = strrchr(addr, ':');
  char host[64], *end;
  size_t n = colon ? (size_t)(colon - addr) : 0;
  long port = colon ? strtol(colon + 1, &end, 10) : -1;
  if (!colon || !colon[1] || *end || port < 0 || port > 65535 || n == 0 || n >= sizeof(host)) {
    snprintf(err, errlen, "http '%.200s': want HOST:PORT (127.0.0.1:5565, [::1]:5565, localhost:5565) or off", addr);
    return -EINVAL;
  }
  memcpy(host, addr, n);
  host[n] = 0;
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  memset(ss, 0, sizeof(*ss));
  if (strcmp(host, "localhost") == 0)
    snprintf(host, sizeof(host), "127.0.0.1");
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET, v4->sin_port = htons((uint16_t)port);
    *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  } else if (n > 2 && host[0] == '[' && host[n - 1] == ']' && (host[n - 1] = 0, 1) &&
             inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6, v6->sin6_port = htons((uint16_t)port);
    *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  } else {
    snprintf(err, errlen, "http '%.200s': '%s' is not an IPv4 address, a [bracketed] IPv6 address or localhost",
             addr, host);
    return -EINVAL;
  }
  return 0;
}

int em_http_check_addr(const char *addr, char *err, size_t errlen)
{
  struct sockaddr_storage ss;
  bool loopback;
  return parse_addr(addr, &ss, &loopback, err, errlen);
}

static int listen_on(em_http_t *h, const struct sockaddr_storage *ss, const char *addr, char *err, size_t errlen)
{
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                   (ss->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_SOCK_ADDR, ss,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT,
                            (unsigned)IDLE_SECONDS, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                            MHD_OPTION_END);
  if (!h->mhd) {
    snprintf(err, errlen, "http %s: cannot listen (address in use or not this machine's; --http off disables it)",
             addr);
    return -EADDRINUSE;
  }
  const union MHD_DaemonInfo *port = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  char host[64];
  if (ss->ss_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, host, sizeof(host));
  else
    inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, host, sizeof(host));
  snprintf(h->url, sizeof(h->url), ss->ss_family == AF_INET6 ? "http://[%s]:%u/" : "http://%s:%u/", host,
           port ? (unsigned)port->port : 0u);
  return 0;
}

int em_http_start(em_http_t **out, uv_loop_t *loop, const char *addr, const char *db_path, em_http_status_fn fn,
                  void *ctx, char *err, size_t errlen)
{
  *out = NULL;
  struct sockaddr_storage ss;
  em_http_t *h = calloc(1, sizeof(*h));
  int rc = h ? 0 : -ENOMEM;
  if (rc == 0 && (rc = parse_addr(addr, &ss, &h->loopback, err, errlen)) == 0)
    rc = em_db_open(db_path, false, &h->db, err, errlen);
  if (rc == 0 && !(h->sse = em_sse_new(h->db)))
    rc = -ENOMEM;
  if (rc != 0 || uv_mutex_init(&h->lock) != 0 || uv_cond_init(&h->cond) != 0) {
    if (rc == -ENOMEM || rc == 0)
      snprintf(err, errlen, "http: out of memory");
    if (h)
      em_db_close(&h->db), em_sse_free(h->sse);
    free(h);
    return rc ? rc : -ENOMEM;
  }
  h->status_fn = fn, h->ctx = ctx;
  uv_async_init(loop, &h->async, on_async);
  h->async.data = h;
  *out = h;
  if ((rc = listen_on(h, &ss, addr, err, errlen)) != 0)
    return rc;
  if (!h->loopback)
    EM_WARN("http: listening on %s, which is not a loopback address: whoever can reach it can read every run's "
            "results and metrics (docs/SECURITY.md)", h->url);
  return 0;
}

const char *em_http_url(const em_http_t *h) { return h ? h->url : NULL; }

void em_http_publish(em_http_t *h, int64_t seq, const char *topic, const char *payload)
{
  if (h)
    em_sse_publish(h->sse, seq, topic, payload);
}

void em_http_analysis_done(em_http_t *h, double seconds)
{
  if (!h)
    return;
  uv_mutex_lock(&h->lock);
  em_durations_observe(&h->durations, seconds);
  uv_mutex_unlock(&h->lock);
}

void em_http_tick(em_http_t *h)
{
  if (h)
    em_sse_tick(h->sse);
}

static void free_http(uv_handle_t *handle)
{
  em_http_t *h = handle->data;
  em_sse_free(h->sse);
  em_db_close(&h->db);
  uv_cond_destroy(&h->cond);
  uv_mutex_destroy(&h->lock);
  free(h);
}

void em_http_stop(em_http_t **self_p)
{
  em_http_t *h = *self_p;
  if (!h)
    return;
  *self_p = NULL;
  uv_mutex_lock(&h->lock);
  h->stopping = true; /* a request waiting for the loop's status stops waiting */
  uv_cond_broadcast(&h->cond);
  uv_mutex_unlock(&h->lock);
  em_sse_close_all(h->sse); /* libmicrohttpd must not stop with suspended connections */
  if (h->mhd)
    MHD_stop_daemon(h->mhd);
  uv_close((uv_handle_t *)&h->async, free_http);
}
