/* SPDX-License-Identifier: MIT */
/* Runs every Check suite. CK_RUN_SUITE / CK_RUN_CASE select; CK_FORK=no for gdb. */
#include <stdlib.h>

#include "suites.h"

int main(void)
{
  Suite *(*const suites[])(void) = {mt_suite, hash_suite, spectrum_suite, dtype_suite, hist16_suite, safetensors_suite, torch_suite,
                                    name_suite, params_suite, analyze_suite, cnn_suite, rules_suite,
                                    tracker_suite, history_suite, judge_suite, replies_suite};
  SRunner *sr = srunner_create(NULL);
  for (size_t i = 0; i < sizeof(suites) / sizeof(*suites); i++)
    srunner_add_suite(sr, suites[i]());
  srunner_run_all(sr, CK_NORMAL);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
