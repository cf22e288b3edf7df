/* SPDX-License-Identifier: MIT */
#include "em_utf8.h"

size_t em_utf8_char(const unsigned char *s)
{
  unsigned c = s[0];
  if (c < 0x80)
    return c ? 1 : 0;
  size_t n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (!n)
    return 0;
  /* the second byte's range excludes overlongs (E0, F0), surrogates (ED) and > U+10FFFF (F4) */
  unsigned lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return n;
}

bool em_utf8_valid(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    size_t n = em_utf8_char(p);
    if (!n)
      return false;
    p += n;
  }
  return true;
}
