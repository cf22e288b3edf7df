/* SPDX-License-Identifier: MIT */
/* Every weight of a checkpoint checked for NaN/Inf, for the daemon's check_finite rules.
 * The analysis only reads the sampled neurons; a NaN elsewhere would go unseen. Reads go
 * in 1 MiB pieces with pread (a file truncated under us is an error, never SIGBUS), and
 * each piece is tested by exponent bits, OR-ed without a branch per weight (vectorised):
 * only a bad piece is searched again for the element to name. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "em_ckpt.h"
#include "em_err.h"

#define PIECE (1u << 20)

/* Non-zero when element i of a piece of dtype dt is NaN or Inf (all exponent bits set;
 * F8_E4M3 has no Inf, and its NaN is S.1111.111). Used to name the element. */
static unsigned bad_at(em_dtype_t dt, const uint8_t *p, size_t i)
{
  uint64_t v64;
  uint32_t v32;
  uint16_t v16;
  switch (dt) {
  case EM_DT_F64: memcpy(&v64, p + i * 8, 8); return (v64 & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
  case EM_DT_F32: memcpy(&v32, p + i * 4, 4); return (v32 & 0x7f800000u) == 0x7f800000u;
  case EM_DT_F16: memcpy(&v16, p + i * 2, 2); return (v16 & 0x7c00u) == 0x7c00u;
  case EM_DT_BF16: memcpy(&v16, p + i * 2, 2); return (v16 & 0x7f80u) == 0x7f80u;
  case EM_DT_F8_E4M3: return (p[i] & 0x7fu) == 0x7fu;
  case EM_DT_F8_E5M2: return (p[i] & 0x7cu) == 0x7cu;
  default: return 0;
  }
}

static int scan_tensor(const em_tensor_t *t, uint8_t *buf, const _Atomic int *cancel, em_err_t *err)
{
  em_dtype_t dt = t->dtype;
  size_t es = em_dtype_bits(dt) / 8, per = PIECE / es;
  for (uint64_t first = 0; first < t->numel; first += per) {
    if (cancel && *cancel)
      return em_err_set(err, EM_ECANCELED, "%s: finite check cancelled", t->file->path);
    size_t n = t->numel - first < per ? (size_t)(t->numel - first) : per;
    int rc = em_tensor_read(t, first, n, buf, err);
    if (rc)
      return rc;
    if (!em_dtype_any_nonfinite(dt, buf, n))
      continue;
    size_t i = 0;
    while (!bad_at(dt, buf, i))
      i++;
    return em_err_set(err, EM_ENONFINITE, "%s: tensor '%s' holds NaN or Inf at element %llu", t->file->path,
                      t->name, (unsigned long long)(first + i));
  }
  return 0;
}

int em_ckpt_check_finite(em_ckpt_t *ck, const _Atomic int *cancel, em_err_t *err)
{
  uint8_t *buf = malloc(PIECE);
  if (!buf)
    return em_err_set(err, -ENOMEM, "%s: out of memory for the finite check", ck->path);
  int rc = 0;
  for (size_t i = 0; i < ck->ntensors && !rc; i++)
    if (em_dtype_readable(ck->tensors[i].dtype))
      rc = scan_tensor(&ck->tensors[i], buf, cancel, err);
  free(buf);
  return rc;
}
