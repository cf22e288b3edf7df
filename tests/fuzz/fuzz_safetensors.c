/* SPDX-License-Identifier: MIT */
/* libFuzzer target: any bytes as a whole safetensors file. Must never crash, leak or
 * hang; `make fuzz` runs it, `make check` replays the corpus through replay.c. */
#include <stddef.h>
#include <stdint.h>

#include "em_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  em_st_file_t *f = NULL;
  em_err_t err;
  if (em_st_parse_bytes(data, size, "fuzz.safetensors", &f, &err) == 0) {
    /* A file that validates must describe tensors inside the data it claims. */
    for (size_t i = 0; i < f->ntensors; i++) {
      if (f->tensors[i].end > size - f->data_start)
        __builtin_trap();
    }
  }
  em_st_destroy(&f);
  return 0;
}
