/* SPDX-License-Identifier: MIT */
/* UTF-8 validity (RFC 3629: no overlongs, no surrogates, at most U+10FFFF). Names from
 * the tree become JSON strings, Prometheus labels and URLs, which carry only UTF-8: a
 * directory name that is not is refused where it enters (daemon/em_walker.c). */
#ifndef EM_UTF8_H
#define EM_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The length of the valid UTF-8 sequence at s (1-4), or 0 when none starts there. */
size_t em_utf8_char(const unsigned char *s);
bool em_utf8_valid(const char *s);

#endif
