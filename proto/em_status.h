/* SPDX-License-Identifier: MIT */
/* The status object (proto/PROTOCOL.md): the daemon's heartbeat and its answer to
 * {"cmd":"status"}, or, with the daemon down, what its database says (live false). */
#ifndef EM_STATUS_H
#define EM_STATUS_H

#include <cJSON.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct em_status {
  bool live;                /* from the running daemon; false: read from its database */
  double uptime;            /* seconds */
  int64_t queue, running, workers, last_seq, pid;
  const char *watch, *db, *mode; /* mode: "inotify" or "poll" */
  const char *http;         /* the HTTP listener's URL; NULL when it is off */
  const char *pub, *api;    /* the ZeroMQ endpoints, so a client that found one finds the other */
  double ts;
} em_status_t;

/* Caller owns the object; NULL on OOM. A status that is not live carries kind, db,
 * last_seq and "running": false. */
cJSON *em_status_to_json(const em_status_t *s);
/* Decodes an untrusted status object; strings point into o. -1 when it is not one. */
int em_status_from_json(const cJSON *o, em_status_t *out);

#endif
