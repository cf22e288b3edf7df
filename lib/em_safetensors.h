/* SPDX-License-Identifier: MIT */
/* safetensors reader: every validation rule of the reference parser, data read with
 * pread so that a file truncated under us is an error, never SIGBUS. */
#ifndef EM_SAFETENSORS_H
#define EM_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "em_dtype.h"
#include "em_reader.h"
#include "emerge.h"

#define EM_ST_MAX_HEADER 100000000ULL  /* bytes, as the reference (decimal, not MiB) */
#define EM_ST_MAX_VALUES 2000000       /* JSON values in a header: bounds cJSON's memory */
#define EM_ST_MAX_DEPTH  3             /* {"t": {"shape": [..]}} */

typedef struct em_st_tensor {
  char *name;
  em_dtype_t dtype;
  unsigned rank;
  uint64_t *shape;     /* rank dims */
  uint64_t numel;
  uint64_t begin, end; /* byte offsets relative to the data buffer */
} em_st_tensor_t;

typedef struct em_st_file {
  char *path;            /* as opened; every message starts with it */
  int fd;                /* -1 when parsed from memory */
  uint64_t size;         /* file size at open */
  uint64_t data_start;   /* 8 + header length */
  size_t ntensors;
  em_st_tensor_t *tensors; /* in data order */
} em_st_file_t;

/* Opens and validates PATH. Caller owns *out (em_st_destroy). */
int em_st_open(const char *path, em_st_file_t **out, em_err_t *err);
/* Validates a whole file held in memory (the fuzzer's entry point); fd stays -1. */
int em_st_parse_bytes(const uint8_t *buf, size_t len, const char *label, em_st_file_t **out,
                      em_err_t *err);
void em_st_destroy(em_st_file_t **self_p);

/* Reads len bytes at byte offset off of the data buffer. EM_ECHANGED when the file
 * ends early (it shrank or was replaced while we read). */
int em_st_read(const em_st_file_t *f, uint64_t off, size_t len, void *buf, em_err_t *err);

#endif
