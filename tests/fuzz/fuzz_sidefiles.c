/* SPDX-License-Identifier: MIT */
/* libFuzzer target for the small parsers beside the weights: trainer_state.json (first
 * byte even) and checkpoint names (first byte odd: the step parser). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "emerge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size == 0)
    return 0;
  if (data[0] % 2 == 0) {
    em_trainer_t t;
    em_err_t err;
    int64_t step = size > 1 ? data[1] : -1;
    if (em_trainer_parse((const char *)data + 1, size - 1, step, &t, &err) == 0)
      em_trainer_free(&t);
  } else {
    char *name = malloc(size);
    if (!name)
      return 0;
    memcpy(name, data + 1, size - 1);
    name[size - 1] = 0;
    int64_t step;
    if (em_name_step(name, &step) && step < 0)
      __builtin_trap();
    free(name);
  }
  return 0;
}
