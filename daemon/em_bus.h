/* SPDX-License-Identifier: MIT */
/* The ZeroMQ side, owned by the loop thread: a PUB socket for results, alerts and status,
 * and the API socket (ROUTER, so REQ and DEALER clients both work) driven by uv_poll on
 * ZMQ_FD. ZMQ_FD is edge-triggered: every callback drains until ZMQ_EVENTS has no
 * POLLIN. Oversized requests are refused at the socket (ZMQ_MAXMSGSIZE). */
#ifndef EM_BUS_H
#define EM_BUS_H

#include <stddef.h>
#include <uv.h>

typedef struct em_bus em_bus_t;
typedef struct em_bus_req em_bus_req_t;   /* where a reply goes */
/* Answers one request body: returns the reply text (the bus frees it), or NULL when the
 * answer comes later through em_bus_reply(req). body lives only during the call. */
typedef char *(*em_bus_request_fn)(void *ctx, em_bus_req_t *req, const char *body, size_t len);

/* Binds both endpoints; -EADDRINUSE etc. with err naming the endpoint. Loop thread. */
int em_bus_start(em_bus_t **out, uv_loop_t *loop, const char *pub, const char *api, em_bus_request_fn fn, void *ctx,
                 char *err, size_t errlen);
/* Two frames, topic then payload; never blocks (a slow subscriber loses messages, which
 * it recovers with "since"). Loop thread. */
void em_bus_publish(em_bus_t *bus, const char *topic, const char *payload);
/* Sends reply to where req came from; frees both (reply NULL, or bus NULL: the request
 * goes unanswered). Loop thread. */
void em_bus_reply(em_bus_t *bus, em_bus_req_t *req, char *reply);
/* The same, for a reply whose length (strlen) another thread has measured: the loop
 * hands a history reply of tens of megabytes over without walking it. */
void em_bus_reply_sized(em_bus_t *bus, em_bus_req_t *req, char *reply, size_t len);
void em_bus_req_free(em_bus_req_t *req);
/* Closes the sockets once the poll handle is closed. Loop thread. */
void em_bus_stop(em_bus_t **self_p);

#endif
