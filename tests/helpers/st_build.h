/* SPDX-License-Identifier: MIT */
/* Building safetensors files in tests: valid ones from a tensor list, raw ones from a
 * header string (for the malformed cases). */
#ifndef ST_BUILD_H
#define ST_BUILD_H

#include <stddef.h>
#include <stdint.h>

#include "emerge.h"

typedef struct st_tensor {
  const char *name;
  const char *dtype;    /* "F32", "F16", ... */
  int rank;
  uint64_t shape[4];
  const void *data;     /* little-endian element bytes */
  size_t nbytes;
} st_tensor_t;

/* A valid file holding the tensors in the given order. Caller frees. */
uint8_t *st_build(const st_tensor_t *t, size_t n, size_t *len);
/* u64 length + header + data_len zero bytes. Caller frees. */
uint8_t *st_raw(const char *header, size_t data_len, size_t *len);
/* Writes buf to path; 0 on success. */
int st_write(const char *path, const uint8_t *buf, size_t len);
/* A fresh temporary directory (mkdtemp); caller frees the string. */
char *st_tmpdir(void);
/* Removes the directory st_tmpdir made, with its contents, and frees the string. */
void st_rmtmp(char *dir);

/* em_ckpt_open + em_analyze of path: the result in *r on 0, else the error. */
int st_analyze(const char *path, const em_params_t *p, em_result_t *r, em_err_t *err);

#endif
