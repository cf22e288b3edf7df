/* SPDX-License-Identifier: MIT */
/* An open checkpoint: its weight files and one name-sorted table of their tensors. */
#ifndef EM_CKPT_H
#define EM_CKPT_H

#include "em_reader.h"
#include "emerge.h"

struct em_ckpt {
  char *path;                 /* as given to em_ckpt_open */
  size_t nfiles;
  em_file_t **files;
  size_t ntensors;
  em_tensor_t *tensors;       /* sorted by name */
};

/* The bytes of all its tensors' data: the denominator of a progress line. */
uint64_t em_ckpt_data_bytes(const em_ckpt_t *ck);
/* The tensor of that name, or NULL. */
const em_tensor_t *em_ckpt_find(const em_ckpt_t *ck, const char *name);

#endif
