/* SPDX-License-Identifier: MIT */
#include "st_build.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint8_t *st_raw(const char *header, size_t data_len, size_t *len)
{
  size_t hl = strlen(header);
  *len = 8 + hl + data_len;
  uint8_t *b = calloc(1, *len);
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
  memcpy(b + 8, header, hl);
  return b;
}

uint8_t *st_build(const st_tensor_t *t, size_t n, size_t *len)
{
  char header[8192];
  size_t used = (size_t)snprintf(header, sizeof(header), "{\"__metadata__\":{\"format\":\"pt\"}");
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    used += (size_t)snprintf(header + used, sizeof(header) - used, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                             t[i].name, t[i].dtype);
    for (int d = 0; d < t[i].rank; d++)
      used += (size_t)snprintf(header + used, sizeof(header) - used, "%s%llu", d ? "," : "",
                               (unsigned long long)t[i].shape[d]);
    used += (size_t)snprintf(header + used, sizeof(header) - used, "],\"data_offsets\":[%zu,%zu]}", off,
                             off + t[i].nbytes);
    off += t[i].nbytes;
  }
  snprintf(header + used, sizeof(header) - used, "}");
  uint8_t *b = st_raw(header, off, len);
  off = *len - off;
  for (size_t i = 0; i < n; i++) {
    memcpy(b + off, t[i].data, t[i].nbytes);
    off += t[i].nbytes;
  }
  return b;
}

int st_write(const char *path, const uint8_t *buf, size_t len)
{
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  size_t w = fwrite(buf, 1, len, f);
  return fclose(f) == 0 && w == len ? 0 : -1;
}

char *st_tmpdir(void)
{
  const char *base = getenv("TMPDIR");
  char tmpl[512];
  snprintf(tmpl, sizeof(tmpl), "%s/emerge-test-XXXXXX", base && *base ? base : "/tmp");
  return mkdtemp(tmpl) ? strdup(tmpl) : NULL;
}

void st_rmtmp(char *dir)
{
  char cmd[800];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", dir);
  free(dir);
}

int st_analyze(const char *path, const em_params_t *p, em_result_t *r, em_err_t *err)
{
  em_ckpt_t *ck = NULL;
  int rc = em_ckpt_open(path, &ck, err);
  if (!rc)
    rc = em_analyze(ck, p, r, err);
  em_ckpt_destroy(&ck);
  return rc;
}
