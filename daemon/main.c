/* SPDX-License-Identifier: MIT */
/* emerged: watch a training job's checkpoints, analyse each once, store, publish.
 * Thin: everything lives in the modules of libemerged so the tests can link it. */
#include <signal.h>
#include <stdio.h>

#include "em_config.h"
#include "em_server.h"

int main(int argc, char **argv)
{
  signal(SIGPIPE, SIG_IGN);
  em_config_t cfg;
  char err[768];
  int rc = em_config_load(argc, argv, &cfg, err, sizeof(err));
  if (rc != 0) {
    if (rc < 0)
      fprintf(stderr, "emerged: %s\n(emerged --help lists the options)\n", err);
    em_config_free(&cfg);
    return rc < 0 ? EM_EXIT_USAGE : EM_EXIT_OK;
  }
  int code = em_server_run(&cfg);
  em_config_free(&cfg);
  return code;
}
