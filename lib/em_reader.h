/* SPDX-License-Identifier: MIT */
/* The seam between checkpoint formats and the analysis: a format opens and validates
 * one weight file, lists its tensors and reads byte ranges of their data. Everything
 * above (mapping, sampling, the NIN) sees only em_file_t and em_tensor_t, so a second
 * format plugs in here without touching them. safetensors is the first implementation. */
#ifndef EM_READER_H
#define EM_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "em_dtype.h"
#include "emerge.h"

typedef struct em_file em_file_t;

/* One tensor of a weight file. The strings and the shape belong to the file. */
typedef struct em_tensor {
  const char *name;
  em_dtype_t dtype;
  unsigned rank;
  const uint64_t *shape;      /* rank dims, row-major */
  uint64_t numel;
  uint64_t begin;             /* byte offset of element 0 in the file's data */
  const em_file_t *file;      /* the weight file holding it */
} em_tensor_t;

typedef struct em_format {
  const char *name;                       /* "safetensors" */
  /* Opens and validates path; *impl is the format's own handle. -ENOENT when missing. */
  int (*open)(const char *path, void **impl, em_err_t *err);
  size_t (*ntensors)(const void *impl);
  /* Fills the i-th tensor's description (all but .file). */
  void (*tensor)(const void *impl, size_t i, em_tensor_t *out);
  /* Reads len bytes at byte offset off of the data; EM_ECHANGED when the file shrank. */
  int (*read)(const void *impl, uint64_t off, size_t len, void *buf, em_err_t *err);
  void (*close)(void *impl);
} em_format_t;

struct em_file {
  const em_format_t *format;
  char *path;                 /* as opened; messages start with it */
  void *impl;
};

extern const em_format_t em_format_safetensors;

/* Opens path with format; caller owns *out (em_file_close). */
int em_file_open(const em_format_t *format, const char *path, em_file_t **out, em_err_t *err);
void em_file_close(em_file_t **self_p);

/* Reads nelem elements from element index first (row-major) into buf. The dtype must be
 * byte-sized. EM_ECHANGED when the file shrank under us. */
int em_tensor_read(const em_tensor_t *t, uint64_t first, size_t nelem, void *buf, em_err_t *err);

#endif
