/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the daemon's API request decoder: any bytes as a request. A
 * request that decodes must encode back into one that decodes to the same thing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "em_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  em_api_request_t req, again;
  char err[256];
  if (em_api_decode((const char *)data, size, &req, err, sizeof(err)) != 0) {
    char *reply = em_api_error(err);
    free(reply);
    return 0;
  }
  char *text = em_api_encode(&req);
  if (!text || em_api_decode(text, strlen(text), &again, err, sizeof(err)) != 0 || again.cmd != req.cmd ||
      again.seq != req.seq || strcmp(again.run, req.run) != 0)
    __builtin_trap();
  free(text);
  return 0;
}
