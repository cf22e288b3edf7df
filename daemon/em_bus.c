/* SPDX-License-Identifier: MIT */
#include "em_bus.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "em_api.h"
#include "em_log.h"

#define MAX_FRAMES 8 /* identity frames + empty delimiter + body; more is not a request */
/* What one client can cost (docs/SECURITY.md): replies queued to it at most SEND_HWM (a
 * client that never reads loses the rest, as ROUTER drops at the mark), requests being
 * answered for it at most PEER_INFLIGHT (more get an error at once), requests from all
 * clients at most TOTAL_INFLIGHT, and at most TURN_REQUESTS read per loop turn, so timers,
 * the watchdog and inotify run between them whatever a client sends. */
#define SEND_HWM 4
#define PUB_HWM 1000
#define PEER_INFLIGHT 4
#define TOTAL_INFLIGHT 256
#define TURN_REQUESTS 32
/* A subscription is a topic prefix (kind/run/, runs are paths under the root): anything
 * longer is an attack. Without a bound libzmq buffers whatever a peer sends, and a 60 MB
 * subscription frame stalled the loop for 18 s and grew the daemon by 5.6 GB. */
#define PUB_MAX_SUBSCRIPTION 8192

/* A client with requests in flight, by its ROUTER identity. */
typedef struct peer {
  struct peer *next;
  size_t len;
  int inflight;
  unsigned char id[256];
} peer_t;

struct em_bus {
  void *zctx, *pub, *api;
  uv_poll_t poll;
  uv_poll_t pub_poll;        /* the PUB socket's commands: see on_pub */
  uv_idle_t more;            /* runs on_api again next turn when a turn's quota was used */
  bool polling;
  em_bus_request_fn fn;
  void *ctx;
  peer_t *peers;
  int inflight;
};

static int bind_socket(void *ctx, int type, const char *endpoint, void **out, char *err, size_t errlen)
{
  void *s = zmq_socket(ctx, type);
  int zero = 0, hwm = type == ZMQ_ROUTER ? SEND_HWM : PUB_HWM;
  int64_t max = type == ZMQ_ROUTER ? EM_API_MAX_REQUEST : PUB_MAX_SUBSCRIPTION;
  if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
      zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof(hwm)) != 0 ||
      zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max)) != 0 ||
      zmq_bind(s, endpoint) != 0) {
    int e = zmq_errno();
    snprintf(err, errlen, "%s endpoint %s: %s", type == ZMQ_PUB ? "PUB" : "API", endpoint, zmq_strerror(e));
    if (s)
      zmq_close(s);
    return -e;
  }
  *out = s;
  return 0;
}

/* Whether endpoint can be reached only from this host: ipc, inproc, or tcp on a loopback
 * address. Anything else is unauthenticated on the network (docs/SECURITY.md). */
static bool local_only(const char *endpoint)
{
  if (strncmp(endpoint, "tcp://", 6) != 0)
    return strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0;
  const char *host = endpoint + 6;
  return strncmp(host, "127.", 4) == 0 || strncmp(host, "localhost:", 10) == 0 || strncmp(host, "[::1]:", 6) == 0;
}

static void warn_if_exposed(const char *what, const char *endpoint)
{
  if (!local_only(endpoint))
    EM_WARN("bus: the %s endpoint %s is reachable from other hosts, and it has no authentication: anyone who can "
            "reach it can read every result (docs/SECURITY.md)", what, endpoint);
}

/* Receives one multipart message; returns its frame count, 0 when none is waiting. */
static int recv_message(void *sock, zmq_msg_t *frames, int *nframes)
{
  int n = 0, more = 1;
  while (more) {
    zmq_msg_t tmp;
    zmq_msg_t *m = n < MAX_FRAMES ? &frames[n] : &tmp;
    zmq_msg_init(m);
    if (zmq_msg_recv(m, sock, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(m);
      break;
    }
    more = zmq_msg_more(m);
    if (n >= MAX_FRAMES)
      zmq_msg_close(m);
    n++;
  }
  *nframes = n < MAX_FRAMES ? n : MAX_FRAMES;
  return n;
}

/* A request's envelope (identity frames and the empty delimiter), kept to route its
 * reply by, now or later. */
struct em_bus_req {
  int n;
  peer_t *peer;               /* counted in its inflight until replied to or freed */
  em_bus_t *bus;
  zmq_msg_t env[MAX_FRAMES];
};

static peer_t *peer_of(em_bus_t *bus, const zmq_msg_t *id)
{
  size_t len = zmq_msg_size(id);
  if (len > sizeof(((peer_t *)0)->id))
    return NULL;
  for (peer_t *p = bus->peers; p; p = p->next)
    if (p->len == len && memcmp(p->id, zmq_msg_data((zmq_msg_t *)id), len) == 0)
      return p;
  peer_t *p = calloc(1, sizeof(*p));
  if (p) {
    p->len = len;
    memcpy(p->id, zmq_msg_data((zmq_msg_t *)id), len);
    p->next = bus->peers;
    bus->peers = p;
  }
  return p;
}

static void peer_done(em_bus_t *bus, peer_t *peer)
{
  bus->inflight--;
  if (--peer->inflight > 0)
    return;
  for (peer_t **p = &bus->peers; *p; p = &(*p)->next)
    if (*p == peer) {
      *p = peer->next;
      free(peer);
      return;
    }
}

void em_bus_req_free(em_bus_req_t *req)
{
  if (!req)
    return;
  for (int i = 0; i < req->n; i++)
    zmq_msg_close(&req->env[i]);
  if (req->peer)
    peer_done(req->bus, req->peer);
  free(req);
}

static void on_more(uv_idle_t *h);

/* A zmq call on the socket may consume the edge of its ZMQ_FD that announced a request
 * arriving meanwhile; nothing would read that request until the next one came (a status
 * request waited for seconds behind a burst of replies). So after sending, look again. */
static void look_again(em_bus_t *bus) { uv_idle_start(&bus->more, on_more); }

static void free_reply(void *data, void *hint)
{
  (void)hint;
  free(data);
}

void em_bus_reply(em_bus_t *bus, em_bus_req_t *req, char *reply)
{
  em_bus_reply_sized(bus, req, reply, reply ? strlen(reply) : 0);
}

void em_bus_reply_sized(em_bus_t *bus, em_bus_req_t *req, char *reply, size_t len)
{
  if (bus && reply && req->n == 0) /* no envelope to route a reply by */
    EM_DEBUG("bus: dropped a request with no identity frame");
  if (bus && reply && req->n > 0) {
    for (int i = 0; i < req->n; i++)
      zmq_send(bus->api, zmq_msg_data(&req->env[i]), zmq_msg_size(&req->env[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    /* handed over, not copied (a history reply is megabytes): libzmq frees it once sent */
    zmq_msg_t msg;
    if (zmq_msg_init_data(&msg, reply, len, free_reply, NULL) == 0) {
      reply = NULL;
      if (zmq_msg_send(&msg, bus->api, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(&msg);
    }
    look_again(bus);
  }
  free(reply);
  em_bus_req_free(req);
}

static em_bus_req_t *envelope(zmq_msg_t *frames, int n)
{
  em_bus_req_t *req = calloc(1, sizeof(*req));
  for (int i = 0; req && i < n - 1; i++) {
    zmq_msg_init(&req->env[i]);
    zmq_msg_copy(&req->env[i], &frames[i]);
    req->n++;
  }
  return req;
}

/* Counts req against its client's and the daemon's in-flight limits; false when over. */
static bool admit(em_bus_t *bus, em_bus_req_t *req)
{
  peer_t *p = req->n > 0 ? peer_of(bus, &req->env[0]) : NULL;
  if (!p || p->inflight >= PEER_INFLIGHT || bus->inflight >= TOTAL_INFLIGHT) {
    if (p && !p->inflight) { /* just created for this request: not kept */
      p->inflight = 1;
      bus->inflight++;
      peer_done(bus, p);
    }
    return false;
  }
  p->inflight++;
  bus->inflight++;
  req->peer = p;
  req->bus = bus;
  return true;
}

static void answer(em_bus_t *bus, zmq_msg_t *frames, int n, int total)
{
  /* frames[0..n-2] are the envelope (identity, empty delimiter), frames[n-1] the body. */
  em_bus_req_t *req = n >= 1 ? envelope(frames, n) : NULL;
  if (!req)
    return;
  char *reply = total > MAX_FRAMES || n < 2 ? em_api_error("malformed request: too many frames")
                : !admit(bus, req) ? em_api_error("busy: too many requests in flight; read the replies, then retry")
                : bus->fn(bus->ctx, req, zmq_msg_data(&frames[n - 1]), zmq_msg_size(&frames[n - 1]));
  if (reply) /* else the answer comes later, through em_bus_reply */
    em_bus_reply(bus, req, reply);
}

static void drain(em_bus_t *bus)
{
  for (int turn = 0;; turn++) {
    uint32_t ev = 0;
    size_t len = sizeof(ev);
    if (zmq_getsockopt(bus->api, ZMQ_EVENTS, &ev, &len) != 0 || !(ev & ZMQ_POLLIN)) {
      uv_idle_stop(&bus->more);
      break;
    }
    if (turn == TURN_REQUESTS) { /* the rest next turn: ZMQ_FD will not fire again for them */
      look_again(bus);
      break;
    }
    zmq_msg_t frames[MAX_FRAMES];
    int n = 0, total = recv_message(bus->api, frames, &n);
    if (total == 0)
      break;
    answer(bus, frames, n, total);
    for (int i = 0; i < n; i++)
      zmq_msg_close(&frames[i]);
  }
}

static void on_more(uv_idle_t *h) { drain(h->data); }

/* libzmq frees what a departed subscriber held only when the socket's owner thread
 * processes the socket's commands, which happens inside zmq calls on that socket. A PUB
 * socket is otherwise touched only to publish, so subscribers that come and go between
 * two results grew the daemon by tens of MiB a minute. Its ZMQ_FD signals pending
 * commands; ZMQ_EVENTS processes them (and re-arms the edge-triggered FD). */
static void on_pub(uv_poll_t *h, int status, int events)
{
  (void)status;
  (void)events;
  em_bus_t *bus = h->data;
  uint32_t ev = 0;
  size_t len = sizeof(ev);
  zmq_getsockopt(bus->pub, ZMQ_EVENTS, &ev, &len);
}

static void on_api(uv_poll_t *h, int status, int events)
{
  (void)status;
  (void)events;
  drain(h->data);
}

int em_bus_start(em_bus_t **out, uv_loop_t *loop, const char *pub, const char *api, em_bus_request_fn fn, void *ctx,
                 char *err, size_t errlen)
{
  em_bus_t *bus = calloc(1, sizeof(*bus));
  if (!bus)
    return -ENOMEM;
  bus->fn = fn;
  bus->ctx = ctx;
  bus->zctx = zmq_ctx_new();
  int rc = bus->zctx ? bind_socket(bus->zctx, ZMQ_PUB, pub, &bus->pub, err, errlen) : -ENOMEM;
  if (!rc)
    rc = bind_socket(bus->zctx, ZMQ_ROUTER, api, &bus->api, err, errlen);
  int fd = -1, pub_fd = -1;
  size_t len = sizeof(fd);
  /* Both are eventfds, which uv_poll always accepts; checked before either is initialised
   * so that a failure leaves no handle to close. */
  if (!rc && (zmq_getsockopt(bus->api, ZMQ_FD, &fd, &len) != 0 || zmq_getsockopt(bus->pub, ZMQ_FD, &pub_fd, &len) != 0 ||
              fd < 0 || pub_fd < 0)) {
    snprintf(err, errlen, "API endpoint %s: cannot poll its socket", api);
    rc = -EIO;
  }
  if (rc) {
    if (bus->pub)
      zmq_close(bus->pub);
    if (bus->api)
      zmq_close(bus->api);
    if (bus->zctx)
      zmq_ctx_term(bus->zctx);
    free(bus);
    return rc;
  }
  uv_poll_init(loop, &bus->poll, fd);
  uv_poll_init(loop, &bus->pub_poll, pub_fd);
  warn_if_exposed("PUB", pub);
  warn_if_exposed("API", api);
  bus->poll.data = bus;
  bus->polling = true;
  uv_idle_init(loop, &bus->more);
  bus->more.data = bus;
  bus->pub_poll.data = bus;
  uv_poll_start(&bus->pub_poll, UV_READABLE, on_pub);
  uv_poll_start(&bus->poll, UV_READABLE, on_api);
  drain(bus); /* edge-triggered: anything already waiting */
  *out = bus;
  return 0;
}

void em_bus_publish(em_bus_t *bus, const char *topic, const char *payload)
{
  if (zmq_send(bus->pub, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
      zmq_send(bus->pub, payload, strlen(payload), ZMQ_DONTWAIT) < 0)
    EM_WARN("bus: publish %s: %s", topic, zmq_strerror(zmq_errno()));
}

static void close_sockets(uv_handle_t *h)
{
  em_bus_t *bus = h->data;
  if (h == (uv_handle_t *)&bus->poll) { /* then the PUB's poll and the idle handle; the bus goes with the last */
    uv_close((uv_handle_t *)&bus->pub_poll, close_sockets);
    return;
  }
  if (h == (uv_handle_t *)&bus->pub_poll) {
    uv_close((uv_handle_t *)&bus->more, close_sockets);
    return;
  }
  while (bus->peers) { /* requests still unanswered: their tokens are freed without the bus */
    peer_t *next = bus->peers->next;
    free(bus->peers);
    bus->peers = next;
  }
  zmq_close(bus->pub);
  zmq_close(bus->api);
  zmq_ctx_term(bus->zctx);
  free(bus);
}

void em_bus_stop(em_bus_t **self_p)
{
  em_bus_t *bus = *self_p;
  if (!bus)
    return;
  *self_p = NULL;
  uv_poll_stop(&bus->poll);
  uv_poll_stop(&bus->pub_poll);
  uv_idle_stop(&bus->more);
  uv_close((uv_handle_t *)&bus->poll, close_sockets);
}
