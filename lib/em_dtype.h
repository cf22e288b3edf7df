/* SPDX-License-Identifier: MIT */
/* safetensors dtypes: names, bit sizes, and conversion of the floating ones to double. */
#ifndef EM_DTYPE_H
#define EM_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum em_dtype {
  EM_DT_BOOL, EM_DT_F4, EM_DT_F6_E2M3, EM_DT_F6_E3M2, EM_DT_U8, EM_DT_I8,
  EM_DT_F8_E5M2, EM_DT_F8_E4M3, EM_DT_F8_E8M0, EM_DT_F8_E4M3FNUZ, EM_DT_F8_E5M2FNUZ,
  EM_DT_I16, EM_DT_U16, EM_DT_F16, EM_DT_BF16, EM_DT_I32, EM_DT_U32, EM_DT_F32,
  EM_DT_C64, EM_DT_F64, EM_DT_I64, EM_DT_U64,
  EM_DT_COUNT
} em_dtype_t;

/* Every dtype the safetensors format defines; 0 on success, -1 for an unknown name. */
int em_dtype_parse(const char *name, em_dtype_t *out);
const char *em_dtype_name(em_dtype_t dt);
/* Bits per element (4 and 6 for the sub-byte types). */
unsigned em_dtype_bits(em_dtype_t dt);
/* True for the dtypes the analysis reads: F64 F32 F16 BF16 F8_E4M3 F8_E5M2. */
bool em_dtype_readable(em_dtype_t dt);
/* Converts one little-endian element of a readable dtype. */
double em_dtype_to_double(em_dtype_t dt, const uint8_t *p);

/* Whether any of n little-endian elements of dt is NaN or Inf (by exponent bits, OR-ed
 * without a branch per element, so the compiler vectorises it). */
bool em_dtype_any_nonfinite(em_dtype_t dt, const uint8_t *p, size_t n);

double em_f16_to_double(uint16_t h);
double em_bf16_to_double(uint16_t h);
double em_f8e4m3_to_double(uint8_t v);
double em_f8e5m2_to_double(uint8_t v);

#endif
