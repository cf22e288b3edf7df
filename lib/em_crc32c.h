/* SPDX-License-Identifier: MIT */
/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord framing uses it
 * (proto/em_tfevents.c). Debian has no C library of it; a table is twenty lines.
 * tests/check_tfevents.c checks it against RFC 3720's vectors. */
#ifndef EM_CRC32C_H
#define EM_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t em_crc32c(const void *data, size_t len);

#endif
