/* SPDX-License-Identifier: MIT */
#include "em_api.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *cmds[] = {"status", "runs", "history", "since", "alerts", "stop"};

static int bad(char *err, size_t errlen, const char *fmt, const char *arg)
{
  snprintf(err, errlen, fmt, arg);
  return -1;
}

int em_api_decode(const char *text, size_t len, em_api_request_t *req, char *err, size_t errlen)
{
  memset(req, 0, sizeof(*req));
  if (len > EM_API_MAX_REQUEST)
    return bad(err, errlen, "request larger than %s bytes", "65536");
  cJSON *o = cJSON_ParseWithLength(text, len);
  int rc = 0;
  const cJSON *cmd = o ? cJSON_GetObjectItemCaseSensitive(o, "cmd") : NULL;
  if (!cJSON_IsObject(o)) {
    rc = bad(err, errlen, "request is not a JSON object%s", "");
  } else if (!cJSON_IsString(cmd)) {
    rc = bad(err, errlen, "request has no \"cmd\" string%s", "");
  } else {
    rc = -1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++) {
      if (strcmp(cmd->valuestring, cmds[i]) == 0) {
        req->cmd = (em_api_cmd_t)i;
        rc = 0;
      }
    }
    if (rc)
      bad(err, errlen, "unknown cmd '%.64s' (status, runs, history, since, alerts, stop)", cmd->valuestring);
  }
  const cJSON *run = rc ? NULL : cJSON_GetObjectItemCaseSensitive(o, "run");
  if (!rc && run) {
    if (!cJSON_IsString(run) || strlen(run->valuestring) > EM_API_MAX_RUN)
      rc = bad(err, errlen, "\"run\" must be a string of at most %s bytes", "1024");
    else {
      snprintf(req->run, sizeof(req->run), "%s", run->valuestring);
      req->has_run = true;
    }
  }
  if (!rc && (req->cmd == EM_API_HISTORY || req->cmd == EM_API_STOP) && !req->has_run)
    rc = bad(err, errlen, "%s needs \"run\"", cmds[req->cmd]);
  const cJSON *reason = rc || req->cmd != EM_API_STOP ? NULL : cJSON_GetObjectItemCaseSensitive(o, "reason");
  if (reason && (!cJSON_IsString(reason) || strlen(reason->valuestring) > EM_API_MAX_REASON))
    rc = bad(err, errlen, "\"reason\" must be a string of at most %s bytes", "1024");
  else if (!rc && req->cmd == EM_API_STOP)
    snprintf(req->reason, sizeof(req->reason), "%s", reason ? reason->valuestring : "stopped by hand");
  if (!rc && req->cmd == EM_API_SINCE) {
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
    if (!cJSON_IsNumber(seq) || seq->valuedouble < 0 || seq->valuedouble > 9007199254740992.0 ||
        seq->valuedouble != floor(seq->valuedouble))
      rc = bad(err, errlen, "since needs \"seq\", a non-negative integer%s", "");
    else
      req->seq = (int64_t)seq->valuedouble;
  }
  cJSON_Delete(o);
  return rc;
}

char *em_api_error(const char *msg)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddFalseToObject(o, "ok");
  cJSON_AddStringToObject(o, "error", msg);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

char *em_api_encode(const em_api_request_t *req)
{
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "cmd", cmds[req->cmd]);
  if (req->has_run)
    cJSON_AddStringToObject(o, "run", req->run);
  if (req->cmd == EM_API_SINCE)
    cJSON_AddNumberToObject(o, "seq", (double)req->seq);
  if (req->cmd == EM_API_STOP)
    cJSON_AddStringToObject(o, "reason", req->reason);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}
