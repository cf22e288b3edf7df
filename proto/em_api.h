/* SPDX-License-Identifier: MIT */
/* API requests (proto/PROTOCOL.md): decoding and validation, shared by daemon and
 * client. Every request is untrusted text. */
#ifndef EM_API_H
#define EM_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EM_API_MAX_REQUEST 65536   /* bytes; larger messages are refused at the socket */
#define EM_API_MAX_RUN 1024        /* bytes of a run name */

typedef enum em_api_cmd { EM_API_STATUS, EM_API_RUNS, EM_API_HISTORY, EM_API_SINCE, EM_API_ALERTS, EM_API_STOP } em_api_cmd_t;
#define EM_API_MAX_REASON 1024     /* bytes of a stop's reason */

typedef struct em_api_request {
  em_api_cmd_t cmd;
  char run[EM_API_MAX_RUN + 1]; /* history (required), alerts (optional) */
  bool has_run;
  int64_t seq;                  /* since */
  char reason[EM_API_MAX_REASON + 1]; /* stop (optional: "stopped by hand") */
} em_api_request_t;

/* Decodes a request; -1 with err set ("unknown cmd 'x'", ...) when it is not valid. */
int em_api_decode(const char *text, size_t len, em_api_request_t *req, char *err, size_t errlen);
/* {"ok":false,"error":msg} as text; caller frees. */
char *em_api_error(const char *msg);
/* The request as text (for clients); caller frees. */
char *em_api_encode(const em_api_request_t *req);

#endif
