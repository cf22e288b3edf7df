/* SPDX-License-Identifier: MIT */
/* emerged's settings: flags and a JSON config file carry the same keys (the long flag
 * name with '-' written '_'); flags win. One table describes every key. */
#ifndef EM_CONFIG_H
#define EM_CONFIG_H

#include <stdbool.h>

#include "em_rules.h"
#include "emerge.h"

typedef struct em_config {
  char *watch;          /* the watch root (required) */
  char *db;             /* database file; NULL: derived from the root */
  char *pub;            /* PUB endpoint */
  char *api;            /* API endpoint */
  char *http;           /* HTTP listener HOST:PORT, or "off" */
  char *tensorboard;    /* TensorBoard event files' root, or "off" */
  char *config;         /* the JSON config file, if any */
  int workers;          /* analysis threads */
  double poll;          /* > 0: poll every this many seconds instead of inotify */
  double rescan;        /* seconds between full rescans */
  double quiet;         /* seconds a checkpoint written in place must stay unchanged */
  int log_level;        /* syslog priority */
  em_params_t params;   /* analysis parameters */
  em_rules_t alerts;    /* early-stop rules (config file only) */
  em_on_alert_t on_alert; /* what a firing rule does (config file only) */
  char **argv;          /* the flags, kept for reloads (flags win over the file) */
  int argc;
} em_config_t;

/* Fills cfg from argv (and the --config file it names). Returns 0, 1 when --help or
 * --version was printed, or -EINVAL with err naming the key and the reason. */
int em_config_load(int argc, char **argv, em_config_t *cfg, char *err, size_t errlen);
void em_config_free(em_config_t *cfg);
/* The usage text. */
const char *em_config_usage(void);

#endif
