/* SPDX-License-Identifier: MIT */
/* libFuzzer target: any bytes as a whole torch checkpoint file (zip archive, pickle,
 * storages). It must never crash, leak or hang, and a file it accepts must describe
 * tensors that lie inside it. The bytes go to a memfd, opened by its /proc path. */
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "em_torch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  int fd = memfd_create("fuzz.pt", 0);
  if (fd < 0 || write(fd, data, size) != (ssize_t)size) {
    if (fd >= 0)
      close(fd);
    return 0;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  em_torch_file_t *f = NULL;
  em_err_t err;
  if (em_torch_open(path, &f, &err) == 0) {
    for (size_t i = 0; i < f->ntensors; i++) {
      const em_torch_tensor_t *t = &f->tensors[i];
      uint64_t bytes = t->numel * (em_dtype_bits(t->dtype) / 8);
      if (t->begin > size || bytes > size - t->begin)
        __builtin_trap();
    }
  }
  em_torch_destroy(&f);
  close(fd);
  return 0;
}
