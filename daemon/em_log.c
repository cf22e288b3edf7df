/* SPDX-License-Identifier: MIT */
#include "em_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int em_log_level = EM_LOG_INFO;

static const char *names[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};

int em_log_parse_level(const char *name)
{
  for (int i = EM_LOG_ERR; i <= EM_LOG_DEBUG; i++)
    if (strcmp(name, names[i]) == 0)
      return i;
  return -1;
}

const char *em_log_level_name(int prio) { return names[prio & 7]; }

void em_log_write(int prio, const char *fmt, ...)
{
  char line[2048];
  size_t n;
  if (getenv("JOURNAL_STREAM")) {
    n = (size_t)snprintf(line, sizeof(line), "<%d>", prio);
  } else {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld %s ", ts.tv_nsec / 1000000, names[prio & 7]);
  }
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
  va_end(ap);
  n = m < 0 ? n : (n + (size_t)m < sizeof(line) - 1 ? n + (size_t)m : sizeof(line) - 2);
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
}
