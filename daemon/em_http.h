/* SPDX-License-Identifier: MIT */
/* emerged's HTTP face (libmicrohttpd): the dashboard at /, GET /metrics for Prometheus,
 * the read API under /api/v1/ and its event stream (proto/PROTOCOL.md "HTTP"). Requests
 * are served on libmicrohttpd's own thread with a read-only database connection of its
 * own, so no client, slow or hostile, holds up the loop thread; what only the loop knows
 * (the status) is asked for through a uv_async with a deadline. Connections, streams,
 * request memory and idle time are bounded (docs/SECURITY.md). Everything is read-only. */
#ifndef EM_HTTP_H
#define EM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "em_status.h"

#define EM_HTTP_DEFAULT "127.0.0.1:5565"

typedef struct em_http em_http_t;
/* The daemon's status, on the loop thread. */
typedef em_status_t (*em_http_status_fn)(void *ctx);

/* 0 when addr is a HOST:PORT em_http_start takes; else -EINVAL with err naming it. */
int em_http_check_addr(const char *addr, char *err, size_t errlen);
/* Listens on addr ("HOST:PORT", HOST an IPv4 or [IPv6] address or localhost; port 0
 * picks a free one). -errno with err naming the address and the reason. Loop thread. */
int em_http_start(em_http_t **out, uv_loop_t *loop, const char *addr, const char *db_path, em_http_status_fn fn,
                  void *ctx, char *err, size_t errlen);
/* "http://HOST:PORT/" as bound. */
const char *em_http_url(const em_http_t *h);
/* A message committed (after its row): to the event stream. Loop thread. */
void em_http_publish(em_http_t *h, int64_t seq, const char *topic, const char *payload);
/* An analysis finished with a result after this long. Loop thread. */
void em_http_analysis_done(em_http_t *h, double seconds);
/* Every few seconds: keepalives for the event streams. Loop thread. */
void em_http_tick(em_http_t *h);
/* Ends the streams, stops the listener. Loop thread. */
void em_http_stop(em_http_t **self_p);

#endif
