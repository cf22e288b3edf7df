/* SPDX-License-Identifier: MIT */
/* libFuzzer target for what the daemon reads back of a TensorBoard event file before it
 * appends to it (proto/em_tfevents.c em_tf_valid_prefix): any bytes; the prefix it keeps
 * must be whole records, and must read as whole records again. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "em_tfevents.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  size_t keep = em_tf_valid_prefix(data, size);
  if (keep > size || em_tf_valid_prefix(data, keep) != keep)
    abort();
  em_tf_scalar_t v = {"emerge/emergence", 0.5f};
  size_t len;
  uint8_t *rec = em_tf_scalars_record(1.0, (int64_t)size, &v, 1, &len);
  uint8_t *both = rec ? malloc(keep + len) : NULL;
  if (both) { /* a good record after the kept prefix is kept too */
    memcpy(both, data, keep);
    memcpy(both + keep, rec, len);
    if (em_tf_valid_prefix(both, keep + len) != keep + len)
      abort();
  }
  free(both);
  free(rec);
  return 0;
}
