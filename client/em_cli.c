/* SPDX-License-Identifier: MIT */
#include "em_cli.h"

#include <stdarg.h>

void em_cli_error(const char *cmd, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  fprintf(stderr, "emergectl: %s%s%s\n", cmd ? cmd : "", cmd ? ": " : "", msg);
}
