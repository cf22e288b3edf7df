/* SPDX-License-Identifier: MIT */
#include "em_cli.h"

#include <cJSON.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "em_source.h"

em_cli_globals_t em_cli_globals = {EM_DEFAULT_API, NULL, NULL, 3, false};

void em_cli_globals_init(void)
{
  const char *v;
  if ((v = getenv("EMERGE_API")) && *v)
    em_cli_globals.api = v;
  if ((v = getenv("EMERGE_PUB")) && *v)
    em_cli_globals.pub = v;
  if ((v = getenv("EMERGE_DB")) && *v)
    em_cli_globals.db = v;
}

void em_cli_error(const char *cmd, const char *fmt, ...)
{
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (!em_cli_globals.json) {
    fprintf(stderr, "emergectl: %s%s%s\n", cmd ? cmd : "", cmd ? ": " : "", msg);
    return;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "error", msg);
  if (cmd)
    cJSON_AddStringToObject(o, "command", cmd);
  char *text = cJSON_PrintUnformatted(o);
  fprintf(stderr, "%s\n", text ? text : "{\"error\":\"out of memory\"}");
  free(text);
  cJSON_Delete(o);
}

size_t em_cli_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return 99;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
      best = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
      best = up + 1 < best ? up + 1 : best;
      diag = up;
      row[j] = best;
    }
  }
  return row[lb];
}

const char *em_cli_nearest(const char *s, const char *const *names, size_t n)
{
  const char *best = NULL;
  size_t best_d = 3;
  for (size_t i = 0; i < n; i++) {
    size_t d = strncmp(names[i], s, strlen(s)) == 0 && *s ? 1 : em_cli_distance(s, names[i]);
    if (d < best_d)
      best = names[i], best_d = d;
  }
  return best;
}

bool em_cli_ambiguous(const char *s, const char *const *names, size_t n, char *out, size_t len)
{
  size_t found = 0, used = 0;
  out[0] = 0;
  for (size_t i = 0; i < n && *s; i++)
    if (strncmp(names[i], s, strlen(s)) == 0 && used < len)
      used += (size_t)snprintf(out + used, len - used, "%s--%s", found++ ? ", " : "", names[i]);
  return found > 1;
}

int em_cli_bad_option(const char *cmd, const char *arg, bool missing, const char *const *names, size_t n)
{
  char name[64], which[256];
  snprintf(name, sizeof(name), "%s", arg + strspn(arg, "-"));
  name[strcspn(name, "=")] = 0;
  const char *near = missing ? NULL : em_cli_nearest(name, names, n);
  if (missing)
    em_cli_error(cmd, "--%s needs a value", name);
  else if (em_cli_ambiguous(name, names, n, which, sizeof(which)))
    em_cli_error(cmd, "'%s' is ambiguous: %s", arg, which);
  else
    em_cli_error(cmd, "unknown option '%s'%s%s%s (emergectl %s --help)", arg, near ? "; did you mean --" : "",
                 near ? near : "", near ? "?" : "", cmd ? cmd : "");
  return EM_EXIT_USAGE;
}

int em_cli_timeout(const char *cmd, const char *text, double *out)
{
  char *end;
  double t = strtod(text, &end);
  if (*end || !(t > 0) || t > 3600) {
    em_cli_error(cmd, "--timeout: '%s' is not a number of seconds in (0, 3600]", text);
    return EM_EXIT_USAGE;
  }
  *out = t;
  return 0;
}
