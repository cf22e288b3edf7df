/* SPDX-License-Identifier: MIT */
#include "em_status.h"

#include <math.h>
#include <string.h>

#include "em_wire.h"

cJSON *em_status_to_json(const em_status_t *s)
{
  cJSON *o = cJSON_CreateObject();
  if (!o)
    return NULL;
  cJSON_AddStringToObject(o, "kind", "status");
  if (!s->live) {
    cJSON_AddStringToObject(o, "db", s->db ? s->db : "");
    cJSON_AddNumberToObject(o, "last_seq", (double)s->last_seq);
    cJSON_AddBoolToObject(o, "running", false);
    return o;
  }
  cJSON_AddNumberToObject(o, "uptime", s->uptime);
  cJSON_AddNumberToObject(o, "queue", (double)s->queue);
  cJSON_AddNumberToObject(o, "running", (double)s->running);
  cJSON_AddNumberToObject(o, "workers", (double)s->workers);
  cJSON_AddNumberToObject(o, "last_seq", (double)s->last_seq);
  cJSON_AddStringToObject(o, "watch", s->watch ? s->watch : "");
  cJSON_AddStringToObject(o, "db", s->db ? s->db : "");
  cJSON_AddStringToObject(o, "mode", s->mode ? s->mode : "");
  cJSON_AddStringToObject(o, "pub", s->pub ? s->pub : "");
  cJSON_AddStringToObject(o, "api", s->api ? s->api : "");
  if (s->http)
    cJSON_AddStringToObject(o, "http", s->http);
  else
    cJSON_AddNullToObject(o, "http");
  cJSON_AddNumberToObject(o, "pid", (double)s->pid);
  cJSON_AddNumberToObject(o, "ts", s->ts);
  return o;
}

int em_status_from_json(const cJSON *o, em_status_t *s)
{
  memset(s, 0, sizeof(*s));
  const char *kind = em_json_str(o, "kind");
  if (!kind || strcmp(kind, "status") != 0)
    return -1;
  s->db = em_json_str(o, "db");
  em_json_int(o, "last_seq", &s->last_seq);
  s->live = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(o, "running"));
  if (!s->live)
    return 0;
  s->uptime = em_json_num(o, "uptime");
  em_json_int(o, "queue", &s->queue);
  em_json_int(o, "running", &s->running);
  em_json_int(o, "workers", &s->workers);
  em_json_int(o, "pid", &s->pid);
  s->watch = em_json_str(o, "watch");
  s->mode = em_json_str(o, "mode");
  s->http = em_json_str(o, "http");
  s->pub = em_json_str(o, "pub");
  s->api = em_json_str(o, "api");
  s->ts = em_json_num(o, "ts");
  return 0;
}
