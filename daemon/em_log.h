/* SPDX-License-Identifier: MIT */
/* Logging: one line per event on stderr, syslog priorities, the level test in the macro
 * so filtered messages cost nothing. Under systemd (JOURNAL_STREAM set) lines carry
 * "<N>" priority prefixes and no timestamp. Thread-safe: each line is one write(2). */
#ifndef EM_LOG_H
#define EM_LOG_H

#include <stdatomic.h>

#define EM_LOG_ERR 3
#define EM_LOG_WARNING 4
#define EM_LOG_NOTICE 5
#define EM_LOG_INFO 6
#define EM_LOG_DEBUG 7

extern _Atomic int em_log_level;

void em_log_write(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "err", "warning", "notice", "info", "debug" -> priority; -1 when unknown. */
int em_log_parse_level(const char *name);
const char *em_log_level_name(int prio);

#define EM_LOG(prio, ...)                                                                          \
  do {                                                                                             \
    if ((prio) <= em_log_level)                                                                    \
      em_log_write((prio), __VA_ARGS__);                                                           \
  } while (0)
#define EM_ERR(...) EM_LOG(EM_LOG_ERR, __VA_ARGS__)
#define EM_WARN(...) EM_LOG(EM_LOG_WARNING, __VA_ARGS__)
#define EM_NOTICE(...) EM_LOG(EM_LOG_NOTICE, __VA_ARGS__)
#define EM_INFO(...) EM_LOG(EM_LOG_INFO, __VA_ARGS__)
#define EM_DEBUG(...) EM_LOG(EM_LOG_DEBUG, __VA_ARGS__)

#endif
