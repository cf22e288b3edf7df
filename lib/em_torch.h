/* SPDX-License-Identifier: MIT */
/* The torch checkpoint reader (torch.save since torch 1.6: .pt .pth .bin .ckpt), behind
 * the reader interface beside safetensors. The archive is a zip (lib/em_zip.c) holding
 * PREFIX/data.pkl, a pickle whose tensors name storages by persistent id, and each
 * storage as a stored entry PREFIX/data/KEY. The pickle is run by the restricted VM of
 * lib/em_pickle.c, which builds data and never calls what it names; this file interprets
 * what it built:
 *
 * - a tensor is torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
 *   (inside _rebuild_parameter for an nn.Parameter), whose storage is the persistent id
 *   ('storage', torch.<Dtype>Storage, KEY, location, numel);
 * - the state dict is the top-level dict, or its "state_dict" (Lightning), "module"
 *   (DeepSpeed) or "model" (Megatron) entry; nested dicts are flattened with dots, as
 *   Megatron's language_model.encoder...;
 * - a tensor that cannot be read in place (not contiguous, an integer or complex dtype,
 *   rank above EM_TORCH_MAX_RANK) is left out of the table and kept in `skipped` with
 *   the reason;
 * - a big-endian archive, the legacy (pre-1.6) format, TorchScript archives, and ZeRO-3
 *   partitioned placeholders (every weight empty) are refused with what to do instead. */
#ifndef EM_TORCH_H
#define EM_TORCH_H

#include <stddef.h>
#include <stdint.h>

#include "em_dtype.h"
#include "em_reader.h"
#include "emerge.h"

#define EM_TORCH_MAX_RANK 8
#define EM_TORCH_MAX_PICKLE (64u << 20)

typedef struct em_torch_tensor {
  char *name;
  em_dtype_t dtype;
  unsigned rank;
  uint64_t shape[EM_TORCH_MAX_RANK];
  uint64_t numel;
  uint64_t begin;             /* absolute byte offset of element 0 in the file */
} em_torch_tensor_t;

typedef struct em_torch_skipped {
  char *name;
  const char *why;            /* static text */
} em_torch_skipped_t;

typedef struct em_torch_file {
  char *path;
  int fd;
  uint64_t size;
  const char *layout;         /* "state_dict", "lightning", "deepspeed", "megatron" */
  em_torch_tensor_t *tensors;
  size_t ntensors, cap;
  em_torch_skipped_t *skipped;
  size_t nskipped, cap_skipped;
} em_torch_file_t;

int em_torch_open(const char *path, em_torch_file_t **out, em_err_t *err);
void em_torch_destroy(em_torch_file_t **self_p);
/* Reads len bytes at absolute offset off; EM_ECHANGED when the file shrank. */
int em_torch_read(const em_torch_file_t *f, uint64_t off, size_t len, void *buf, em_err_t *err);

extern const em_format_t em_format_torch;

#endif
