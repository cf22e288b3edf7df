/* SPDX-License-Identifier: MIT */
/* dtype table and exact conversions of the small float formats to double. */
#include "em_dtype.h"

#include <math.h>
#include <string.h>

static const struct {
  const char *name;
  unsigned bits;
} dtypes[EM_DT_COUNT] = {
  [EM_DT_BOOL] = {"BOOL", 8},          [EM_DT_F4] = {"F4", 4},
  [EM_DT_F6_E2M3] = {"F6_E2M3", 6},    [EM_DT_F6_E3M2] = {"F6_E3M2", 6},
  [EM_DT_U8] = {"U8", 8},              [EM_DT_I8] = {"I8", 8},
  [EM_DT_F8_E5M2] = {"F8_E5M2", 8},    [EM_DT_F8_E4M3] = {"F8_E4M3", 8},
  [EM_DT_F8_E8M0] = {"F8_E8M0", 8},    [EM_DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
  [EM_DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
  [EM_DT_I16] = {"I16", 16},           [EM_DT_U16] = {"U16", 16},
  [EM_DT_F16] = {"F16", 16},           [EM_DT_BF16] = {"BF16", 16},
  [EM_DT_I32] = {"I32", 32},           [EM_DT_U32] = {"U32", 32},
  [EM_DT_F32] = {"F32", 32},           [EM_DT_C64] = {"C64", 64},
  [EM_DT_F64] = {"F64", 64},           [EM_DT_I64] = {"I64", 64},
  [EM_DT_U64] = {"U64", 64},
};

int em_dtype_parse(const char *name, em_dtype_t *out)
{
  for (int i = 0; i < EM_DT_COUNT; i++) {
    if (strcmp(name, dtypes[i].name) == 0) {
      *out = (em_dtype_t)i;
      return 0;
    }
  }
  return -1;
}

const char *em_dtype_name(em_dtype_t dt) { return dtypes[dt].name; }
unsigned em_dtype_bits(em_dtype_t dt) { return dtypes[dt].bits; }

bool em_dtype_readable(em_dtype_t dt)
{
  return dt == EM_DT_F64 || dt == EM_DT_F32 || dt == EM_DT_F16 || dt == EM_DT_BF16 ||
         dt == EM_DT_F8_E4M3 || dt == EM_DT_F8_E5M2;
}

double em_f16_to_double(uint16_t h)
{
  int sign = h >> 15, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  double v;
  if (exp == 0)
    v = ldexp(man, -24);                       /* subnormal: man * 2^-14 / 2^10 */
  else if (exp == 31)
    v = man ? NAN : INFINITY;
  else
    v = ldexp(man | 0x400, exp - 25);          /* (1 + man/2^10) * 2^(exp-15) */
  return sign ? -v : v;
}

double em_bf16_to_double(uint16_t h)
{
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof(f));
  return f;
}

/* float8_e4m3fn: bias 7, no infinities, S.1111.111 is NaN, largest 448. */
double em_f8e4m3_to_double(uint8_t v)
{
  int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 0x7;
  double r;
  if (exp == 0xf && man == 0x7)
    r = NAN;
  else if (exp == 0)
    r = ldexp(man, -9);                        /* man/8 * 2^-6 */
  else
    r = ldexp(man | 0x8, exp - 10);            /* (1 + man/8) * 2^(exp-7) */
  return sign ? -r : r;
}

/* float8_e5m2: the top byte of an IEEE half. */
double em_f8e5m2_to_double(uint8_t v) { return em_f16_to_double((uint16_t)(v << 8)); }

double em_dtype_to_double(em_dtype_t dt, const uint8_t *p)
{
  switch (dt) {
  case EM_DT_F64: {
    uint64_t u = 0;
    for (int i = 7; i >= 0; i--)
      u = (u << 8) | p[i];
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
  }
  case EM_DT_F32: {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
  }
  case EM_DT_F16: return em_f16_to_double((uint16_t)(p[0] | p[1] << 8));
  case EM_DT_BF16: return em_bf16_to_double((uint16_t)(p[0] | p[1] << 8));
  case EM_DT_F8_E4M3: return em_f8e4m3_to_double(p[0]);
  case EM_DT_F8_E5M2: return em_f8e5m2_to_double(p[0]);
  default: return NAN;
  }
}

/* Whether any of n elements has all of mask's bits set: one loop per width, no branch
 * per element, so the compiler vectorises it. */
#define ANY_MASKED(name, type)                                                                     \
  __attribute__((optimize("tree-vectorize"))) static bool name(const uint8_t *p, size_t n, type mask) \
  {                                                                                                \
    unsigned bad = 0;                                                                              \
    for (size_t i = 0; i < n; i++) {                                                               \
      type v;                                                                                      \
      memcpy(&v, p + i * sizeof(type), sizeof(type));                                              \
      bad |= (v & mask) == mask;                                                                   \
    }                                                                                              \
    return bad != 0;                                                                               \
  }
ANY_MASKED(any8, uint8_t)
ANY_MASKED(any16, uint16_t)
ANY_MASKED(any32, uint32_t)
ANY_MASKED(any64, uint64_t)

bool em_dtype_any_nonfinite(em_dtype_t dt, const uint8_t *p, size_t n)
{
  switch (dt) {
  case EM_DT_F64: return any64(p, n, 0x7ff0000000000000ull);
  case EM_DT_F32: return any32(p, n, 0x7f800000u);
  case EM_DT_F16: return any16(p, n, 0x7c00u);
  case EM_DT_BF16: return any16(p, n, 0x7f80u);
  case EM_DT_F8_E4M3: return any8(p, n, 0x7fu);
  case EM_DT_F8_E5M2: return any8(p, n, 0x7cu);
  default: return false;
  }
}
