/* SPDX-License-Identifier: MIT */
/* Settings: one table of keys, read from the config file first and then from the flags,
 * so flags win. Analysis keys go through em_params_set, shared with emergectl. */
#include "em_config.h"

#include <cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "em_http.h"
#include "em_jsonfile.h"
#include "em_log.h"

enum kind { K_STR, K_INT, K_SECONDS, K_LEVEL, K_PARAM, K_FLAG_ONLY };

#define MAX_STRING 4096         /* a path or an endpoint; PATH_MAX on Linux */
#define MAX_STRING_TEXT "4095"

static const struct key {
  const char *name;     /* config key; the flag is the same with '-' for '_' */
  enum kind kind;
  size_t off;           /* into em_config_t */
  int min, max;         /* K_INT range */
  bool takes_arg;
  const char *help;
} keys[] = {
  {"watch", K_STR, offsetof(em_config_t, watch), 0, 0, true, "DIR      the training job's output directory (required)"},
  {"db", K_STR, offsetof(em_config_t, db), 0, 0, true, "PATH        database (default ROOT/.emerge/emerge.db)"},
  {"pub", K_STR, offsetof(em_config_t, pub), 0, 0, true, "ENDPOINT   PUB socket (tcp://127.0.0.1:5563)"},
  {"api", K_STR, offsetof(em_config_t, api), 0, 0, true, "ENDPOINT   API socket (tcp://127.0.0.1:5564)"},
  {"http", K_STR, offsetof(em_config_t, http), 0, 0, true, "ADDR      dashboard, /metrics, /api/v1 (127.0.0.1:5565; off)"},
  {"tensorboard", K_STR, offsetof(em_config_t, tensorboard), 0, 0, true, "DIR TensorBoard event files per run (off)"},
  {"workers", K_INT, offsetof(em_config_t, workers), 1, 64, true, "N      analysis threads (1)"},
  {"poll", K_SECONDS, offsetof(em_config_t, poll), 0, 0, true, "SECONDS   poll instead of inotify"},
  {"rescan", K_SECONDS, offsetof(em_config_t, rescan), 0, 0, true, "SECONDS full rescan period (30)"},
  {"quiet", K_SECONDS, offsetof(em_config_t, quiet), 0, 0, true, "SECONDS  quiet period of in-place writes (2)"},
  {"config", K_FLAG_ONLY, offsetof(em_config_t, config), 0, 0, true, "FILE    JSON config file"},
  {"log_level", K_LEVEL, offsetof(em_config_t, log_level), 0, 0, true, "LEVEL err|warning|notice|info|debug"},
  {"samples", K_PARAM, 0, 0, 0, true, "S       analysis: sampled networks (10)"},
  {"neurons", K_PARAM, 0, 0, 0, true, "L       analysis: neurons per layer (32)"},
  {"seed", K_PARAM, 0, 0, 0, true, "K          analysis: first numpy seed (0)"},
  {"threshold", K_PARAM, 0, 0, 0, true, "T     analysis: largest distance (150)"},
  {"alpha0", K_PARAM, 0, 0, 0, true, "RULE     analysis: central|reference"},
  {"mode", K_PARAM, 0, 0, 0, true, "M          analysis: sampled|full|auto (auto)"},
  {"full", K_PARAM, 0, 0, 0, false, "           analysis: every neuron (= --mode full)"},
  {"arch", K_PARAM, 0, 0, 0, true, "A          analysis: auto|gpt-neox|llama|gpt2|bert|torch-transformer|cnn|mlp"},
  {"threads", K_PARAM, 0, 0, 0, true, "N       analysis: threads per checkpoint (1; results do not change)"},
  {"q_min", K_PARAM, 0, 0, 0, true, "Q         analysis: q grid (-3)"},
  {"q_max", K_PARAM, 0, 0, 0, true, "Q         analysis: q grid (3)"},
  {"q_step", K_PARAM, 0, 0, 0, true, "Q        analysis: q grid (0.1)"},
};
#define NKEYS (sizeof(keys) / sizeof(*keys))

const char *em_config_usage(void)
{
  static char text[3072];
  if (!text[0]) {
    size_t n = (size_t)snprintf(text, sizeof(text), "usage: emerged --watch DIR [OPTIONS]\n\n");
    for (size_t i = 0; i < NKEYS; i++) {
      char flag[32];
      snprintf(flag, sizeof(flag), "%s", keys[i].name);
      for (char *p = flag; *p; p++)
        *p = *p == '_' ? '-' : *p;
      n += (size_t)snprintf(text + n, sizeof(text) - n, "  --%s %s\n", flag, keys[i].help);
    }
    snprintf(text + n, sizeof(text) - n, "\nConfig file keys are the flag names with '_' for '-'; flags win. The config file\n"
             "alone carries \"alerts\" (early-stop rules) and \"on_alert\" (stop file, exec);\n"
             "SIGHUP reloads them, and log_level, live.\n");
  }
  return text;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
  snprintf(err, errlen, fmt, a, b);
  return -EINVAL;
}

/* Sets key k from text. where names the source ("flag --x" or "config file key 'x'"). */
static int set_key(em_config_t *cfg, const struct key *k, const char *v, const char *where, char *err,
                   size_t errlen)
{
  void *field = (char *)cfg + k->off;
  char *end;
  switch (k->kind) {
  case K_STR:
  case K_FLAG_ONLY:
    if (!v || !*v)
      return fail(err, errlen, "%s: empty value%s", where, "");
    if (strlen(v) >= MAX_STRING) /* never cut: a cut path is another directory */
      return fail(err, errlen, "%s: longer than %s bytes", where, MAX_STRING_TEXT);
    free(*(char **)field);
    *(char **)field = strdup(v);
    return 0;
  case K_INT: {
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < k->min || x > k->max) {
      snprintf(err, errlen, "%s: '%s' is not an integer in %d..%d", where, v ? v : "", k->min, k->max);
      return -EINVAL;
    }
    *(int *)field = (int)x;
    return 0;
  }
  case K_SECONDS: {
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || !isfinite(x) || x < 0 || x > 86400)
      return fail(err, errlen, "%s: '%s' is not a number of seconds in 0..86400", where, v ? v : "");
    if (x > 0 && x < 0.001) /* the timers count milliseconds: this would round to 0 */
      return fail(err, errlen, "%s: '%s' seconds is below the daemon's 1 ms resolution: use 0 or at least 0.001",
                  where, v);
    *(double *)field = x;
    return 0;
  }
  case K_LEVEL: {
    int lv = v ? em_log_parse_level(v) : -1;
    if (lv < 0)
      return fail(err, errlen, "%s: '%s' is not err, warning, notice, info or debug", where, v ? v : "");
    *(int *)field = lv;
    return 0;
  }
  case K_PARAM: {
    em_err_t e;
    if (em_params_set(&cfg->params, k->name, v, &e) != 0)
      return fail(err, errlen, "%s: %s", where, e.msg);
    return 0;
  }
  }
  return -EINVAL;
}

static const struct key *find_key(const char *name)
{
  for (size_t i = 0; i < NKEYS; i++)
    if (strcmp(keys[i].name, name) == 0)
      return &keys[i];
  return NULL;
}

/* A JSON value as the text a flag would carry: a string as it is, never cut. */
static const char *json_text(const cJSON *v, char *buf, size_t len)
{
  if (cJSON_IsString(v))
    return v->valuestring;
  if (cJSON_IsNumber(v))
    snprintf(buf, len, "%.17g", v->valuedouble);
  else if (cJSON_IsBool(v))
    snprintf(buf, len, "%s", cJSON_IsTrue(v) ? "true" : "false");
  else
    return NULL;
  return buf;
}

/* The structured keys: `alerts` (a list of rules) and `on_alert`. */
static int load_alerts(em_config_t *cfg, const cJSON *c, const char *path, char *err, size_t errlen)
{
  char why[512];
  bool rules = strcmp(c->string, "alerts") == 0;
  if (rules) {
    em_rules_free(&cfg->alerts);
    if (em_rules_parse(c, &cfg->alerts, why, sizeof(why)) == 0)
      return 0;
  } else {
    em_on_alert_free(&cfg->on_alert);
    if (em_on_alert_parse(c, &cfg->on_alert, why, sizeof(why)) == 0)
      return 0;
  }
  snprintf(err, errlen, "config file %s: %s", path, why);
  return -EINVAL;
}

/* The file is read whole (a regular file of at most EM_JSONFILE_MAX bytes, never a FIFO
 * that would hang the start) and every key is checked. */
static int load_file(em_config_t *cfg, const char *path, char *err, size_t errlen)
{
  cJSON *root = NULL;
  em_err_t e;
  if (em_jsonfile_read(path, &root, &e) != 0)
    return fail(err, errlen, "config file %s%s", e.msg, "");
  int rc = 0;
  if (!cJSON_IsObject(root))
    rc = fail(err, errlen, "config file %s: %s", path, "not a JSON object");
  for (const cJSON *c = root ? root->child : NULL; c && !rc; c = c->next) {
    const struct key *k = find_key(c->string);
    char where[4200], buf[64];
    const char *text = json_text(c, buf, sizeof(buf));
    snprintf(where, sizeof(where), "config file %s: key '%.64s'", path, c->string);
    if (strcmp(c->string, "alerts") == 0 || strcmp(c->string, "on_alert") == 0)
      rc = load_alerts(cfg, c, path, err, errlen);
    else if (!k || k->kind == K_FLAG_ONLY)
      rc = fail(err, errlen, "%s: unknown key%s", where, "");
    else if (!text)
      rc = fail(err, errlen, "%s: must be a string, number or boolean%s", where, "");
    else
      rc = set_key(cfg, k, text, where, err, errlen);
  }
  cJSON_Delete(root);
  return rc;
}

static void defaults(em_config_t *cfg)
{
  memset(cfg, 0, sizeof(*cfg));
  cfg->pub = strdup("tcp://127.0.0.1:5563");
  cfg->api = strdup("tcp://127.0.0.1:5564");
  cfg->http = strdup(EM_HTTP_DEFAULT);
  cfg->tensorboard = strdup("off");
  cfg->workers = 1;
  cfg->rescan = 30;
  cfg->quiet = 2;
  cfg->log_level = EM_LOG_INFO;
  em_params_default(&cfg->params);
  em_on_alert_default(&cfg->on_alert);
}

static int parse_flags(int argc, char **argv, em_config_t *cfg, bool config_only, char *err, size_t errlen)
{
  struct option opts[NKEYS + 3];
  char names[NKEYS][32];
  for (size_t i = 0; i < NKEYS; i++) {
    snprintf(names[i], sizeof(names[i]), "%s", keys[i].name);
    for (char *p = names[i]; *p; p++)
      *p = *p == '_' ? '-' : *p;
    opts[i] = (struct option){names[i], keys[i].takes_arg ? required_argument : no_argument, NULL, (int)i + 256};
  }
  opts[NKEYS] = (struct option){"help", no_argument, NULL, 'h'};
  opts[NKEYS + 1] = (struct option){"version", no_argument, NULL, 'V'};
  opts[NKEYS + 2] = (struct option){NULL, 0, NULL, 0};
  optind = 1;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "hV", opts, NULL)) != -1) {
    if (c == 'h' || c == 'V') {
      if (config_only)
        continue;
      fputs(c == 'h' ? em_config_usage() : "emerged " EM_VERSION "\n", stdout);
      return 1;
    }
    if (c < 256)
      return fail(err, errlen, "unknown or incomplete option '%s'%s", argv[optind - 1], "");
    const struct key *k = &keys[c - 256];
    if (config_only != (k->kind == K_FLAG_ONLY))
      continue;
    char where[64];
    snprintf(where, sizeof(where), "flag --%s", names[c - 256]);
    int rc = set_key(cfg, k, k->takes_arg ? optarg : NULL, where, err, errlen);
    if (rc)
      return rc;
  }
  if (optind < argc)
    return fail(err, errlen, "unexpected argument '%s'%s", argv[optind], "");
  return 0;
}

int em_config_load(int argc, char **argv, em_config_t *cfg, char *err, size_t errlen)
{
  defaults(cfg);
  cfg->argc = argc;
  cfg->argv = argv;
  int rc = parse_flags(argc, argv, cfg, true, err, errlen); /* --config first */
  if (!rc && cfg->config)
    rc = load_file(cfg, cfg->config, err, errlen);
  if (!rc)
    rc = parse_flags(argc, argv, cfg, false, err, errlen);
  if (rc)
    return rc;
  em_err_t e;
  if (em_params_check(&cfg->params, &e) != 0)
    return fail(err, errlen, "analysis parameters: %s%s", e.msg, "");
  struct stat st;
  if (!cfg->watch)
    return fail(err, errlen, "--watch DIR is required%s%s", "", "");
  if (stat(cfg->watch, &st) != 0 || !S_ISDIR(st.st_mode))
    return fail(err, errlen, "watch: %s is not a directory%s", cfg->watch, "");
  if (cfg->rescan < 0.1)
    return fail(err, errlen, "rescan: must be at least 0.1 seconds%s%s", "", "");
  if (strcmp(cfg->http, "off") != 0 && em_http_check_addr(cfg->http, err, errlen) != 0)
    return -EINVAL;
  if (strcmp(cfg->tensorboard, "off") != 0 && (stat(cfg->tensorboard, &st) != 0 || !S_ISDIR(st.st_mode)))
    return fail(err, errlen, "tensorboard: %s is not a directory (make it, or off)%s", cfg->tensorboard, "");
  return 0;
}

void em_config_free(em_config_t *cfg)
{
  free(cfg->watch);
  free(cfg->db);
  free(cfg->pub);
  free(cfg->api);
  free(cfg->http);
  free(cfg->tensorboard);
  free(cfg->config);
  em_rules_free(&cfg->alerts);
  em_on_alert_free(&cfg->on_alert);
  memset(cfg, 0, sizeof(*cfg));
}
