/* SPDX-License-Identifier: MIT */
/* Error values: a negative code plus a message naming the thing and the reason. */
#include "em_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int em_err_set(em_err_t *err, int code, const char *fmt, ...)
{
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

void em_err_prefix(em_err_t *err, const char *prefix)
{
  if (!err)
    return;
  size_t p = strlen(prefix), m = strlen(err->msg), cap = sizeof(err->msg);
  if (p + 3 > cap)
    return;
  if (p + 2 + m >= cap)
    m = cap - p - 3; /* keep the head of the message */
  memmove(err->msg + p + 2, err->msg, m);
  err->msg[p + 2 + m] = 0;
  memcpy(err->msg, prefix, p);
  err->msg[p] = ':';
  err->msg[p + 1] = ' ';
}

const char *em_strerror(int code)
{
  switch (code) {
  case 0: return "ok";
  case EM_EUNSUPPORTED: return "unsupported format";
  case EM_ENONFINITE: return "non-finite weights";
  case EM_EDEGENERATE: return "no spectrum";
  case EM_ECHANGED: return "file changed while read";
  case -EINVAL: return "invalid input";
  case -ENOENT: return "not found";
  case -ENOMEM: return "out of memory";
  case -EIO: return "I/O error";
  default: return "error";
  }
}
