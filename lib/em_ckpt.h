/* SPDX-License-Identifier: MIT */
/* An open checkpoint: its weight files and one name-sorted table of their tensors. */
#ifndef EM_CKPT_H
#define EM_CKPT_H

#include "em_safetensors.h"
#include "emerge.h"

typedef struct em_tensor {
  const em_st_tensor_t *st;   /* name, dtype, shape, offsets */
  const em_st_file_t *file;   /* the weight file holding it */
} em_tensor_t;

struct em_ckpt {
  char *path;                 /* as given to em_ckpt_open */
  size_t nfiles;
  em_st_file_t **files;
  size_t ntensors;
  em_tensor_t *tensors;       /* sorted by name */
};

/* The tensor of that name, or NULL. */
const em_tensor_t *em_ckpt_find(const em_ckpt_t *ck, const char *name);

/* Reads nelem elements from element index first (row-major) into buf. The dtype must be
 * byte-sized. EM_ECHANGED when the file shrank under us. */
int em_tensor_read(const em_tensor_t *t, uint64_t first, size_t nelem, void *buf, em_err_t *err);

#endif
