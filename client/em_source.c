/* SPDX-License-Identifier: MIT */
#include "em_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "em_cli.h"
#include "em_db.h"
#include "em_query.h"

/* A running emerged has that pid (a zombie or a reused pid is not one). */
static bool daemon_alive(const char *pid)
{
  char path[64], buf[512] = "";
  snprintf(path, sizeof(path), "/proc/%ld/stat", atol(pid));
  FILE *f = fopen(path, "r");
  if (!f)
    return false;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *close_paren = strrchr(buf, ')');
  return strstr(buf, "(emerged)") && close_paren && close_paren[1] == ' ' && close_paren[2] != 'Z';
}

int em_source_open_db(em_source_t *src, const char *db, bool *live, char *err, size_t errlen)
{
  struct stat st;
  char path[4096];
  *live = false;
  em_db_resolve(db, path, sizeof(path));
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
    snprintf(err, errlen, "%s: no emerge database (expected a database file or a watch root)", path);
    return EM_EXIT_FAIL;
  }
  src->db = strdup(path);
  em_db_t *h = NULL;
  if (em_db_open(path, false, &h, err, errlen) != 0)
    return EM_EXIT_FAIL;
  char *pid = em_db_meta(h, "pid"), *api = em_db_meta(h, "api"), *pub = em_db_meta(h, "pub");
  if (pid && api && daemon_alive(pid)) { /* a running daemon recorded there */
    src->api = src->api_owned = api;
    src->pub = pub;
    *live = true;
    api = pub = NULL;
  }
  free(pid);
  free(api);
  free(pub);
  em_db_close(&h);
  return 0;
}

void em_source_close(em_source_t *src)
{
  free(src->db);
  free(src->pub);
  free(src->api_owned);
  src->db = src->pub = src->api_owned = NULL;
}

static int request_api(const em_source_t *src, const char *text, char **out, char *err, size_t errlen)
{
  void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_REQ);
  int zero = 0, rc = EM_EXIT_UNAVAILABLE;
  zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero));
  if (zmq_connect(s, src->api) != 0) {
    snprintf(err, errlen, "API endpoint %s: %s", src->api, zmq_strerror(zmq_errno()));
    rc = EM_EXIT_USAGE;
  } else if (zmq_send(s, text, strlen(text), 0) >= 0) {
    zmq_pollitem_t item = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, (long)(src->timeout * 1000)) == 1) {
      zmq_msg_t m;
      zmq_msg_init(&m);
      if (zmq_msg_recv(&m, s, 0) >= 0 && (*out = strndup(zmq_msg_data(&m), zmq_msg_size(&m))) != NULL)
        rc = 0;
      zmq_msg_close(&m);
    }
  }
  if (rc == EM_EXIT_UNAVAILABLE)
    snprintf(err, errlen, "no answer from emerged at %s within %g s (is it running? --db ROOT reads the "
             "database directly)", src->api, src->timeout);
  zmq_close(s);
  zmq_ctx_term(ctx);
  return rc;
}

int em_source_request(const em_source_t *src, bool use_db, const em_api_request_t *req, cJSON **reply, char *err,
                      size_t errlen)
{
  char *text = NULL;
  int rc = 0;
  if (use_db) {
    em_db_t *db = NULL;
    if (em_db_open(src->db, false, &db, err, errlen) != 0)
      return EM_EXIT_FAIL;
    char *last = em_db_meta(db, "last_seq"); /* the daemon is down: what the database knows */
    em_status_t status = {.live = false, .db = src->db, .last_seq = last ? atoll(last) : 0};
    free(last);
    text = em_query_reply(db, req, &status);
    em_db_close(&db);
  } else {
    char *body = em_api_encode(req);
    rc = body ? request_api(src, body, &text, err, errlen) : EM_EXIT_FAIL;
    free(body);
  }
  if (rc)
    return rc;
  *reply = text ? cJSON_Parse(text) : NULL;
  free(text);
  if (!*reply) {
    snprintf(err, errlen, "malformed reply");
    return EM_EXIT_FAIL;
  }
  const cJSON *ok = cJSON_GetObjectItemCaseSensitive(*reply, "ok");
  if (!cJSON_IsTrue(ok)) {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(*reply, "error");
    snprintf(err, errlen, "%s", cJSON_IsString(e) ? e->valuestring : "request failed");
    cJSON_Delete(*reply);
    *reply = NULL;
    return EM_EXIT_FAIL;
  }
  return 0;
}
