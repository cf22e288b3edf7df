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

struct em_bus {
  void *zctx, *pub, *api;
  uv_poll_t poll;
  bool polling;
  em_bus_request_fn fn;
  void *ctx;
};

static int bind_socket(void *ctx, int type, const char *endpoint, void **out, char *err, size_t errlen)
{
  void *s = zmq_socket(ctx, type);
  int zero = 0;
  int64_t max = EM_API_MAX_REQUEST;
  if (!s || zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)) != 0 ||
      (type == ZMQ_ROUTER && zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof(max)) != 0) ||
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
  zmq_msg_t env[MAX_FRAMES];
};

void em_bus_req_free(em_bus_req_t *req)
{
  if (!req)
    return;
  for (int i = 0; i < req->n; i++)
    zmq_msg_close(&req->env[i]);
  free(req);
}

void em_bus_reply(em_bus_t *bus, em_bus_req_t *req, char *reply)
{
  if (bus && reply && req->n == 0) /* no envelope to route a reply by */
    EM_DEBUG("bus: dropped a request with no identity frame");
  if (bus && reply && req->n > 0) {
    for (int i = 0; i < req->n; i++)
      zmq_send(bus->api, zmq_msg_data(&req->env[i]), zmq_msg_size(&req->env[i]), ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send(bus->api, reply, strlen(reply), ZMQ_DONTWAIT);
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

static void answer(em_bus_t *bus, zmq_msg_t *frames, int n, int total)
{
  /* frames[0..n-2] are the envelope (identity, empty delimiter), frames[n-1] the body. */
  em_bus_req_t *req = n >= 1 ? envelope(frames, n) : NULL;
  if (!req)
    return;
  char *reply = total > MAX_FRAMES || n < 2
                    ? em_api_error("malformed request: too many frames")
                    : bus->fn(bus->ctx, req, zmq_msg_data(&frames[n - 1]), zmq_msg_size(&frames[n - 1]));
  if (reply) /* else the answer comes later, through em_bus_reply */
    em_bus_reply(bus, req, reply);
}

static void on_api(uv_poll_t *h, int status, int events)
{
  (void)status;
  (void)events;
  em_bus_t *bus = h->data;
  for (;;) {
    uint32_t ev = 0;
    size_t len = sizeof(ev);
    if (zmq_getsockopt(bus->api, ZMQ_EVENTS, &ev, &len) != 0 || !(ev & ZMQ_POLLIN))
      break;
    zmq_msg_t frames[MAX_FRAMES];
    int n = 0, total = recv_message(bus->api, frames, &n);
    if (total == 0)
      break;
    answer(bus, frames, n, total);
    for (int i = 0; i < n; i++)
      zmq_msg_close(&frames[i]);
  }
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
  int fd = -1;
  size_t len = sizeof(fd);
  if (!rc && (zmq_getsockopt(bus->api, ZMQ_FD, &fd, &len) != 0 || uv_poll_init(loop, &bus->poll, fd) != 0)) {
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
  bus->poll.data = bus;
  bus->polling = true;
  uv_poll_start(&bus->poll, UV_READABLE, on_api);
  on_api(&bus->poll, 0, UV_READABLE); /* edge-triggered: drain anything already waiting */
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
  uv_close((uv_handle_t *)&bus->poll, close_sockets);
}
