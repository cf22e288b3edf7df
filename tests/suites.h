/* SPDX-License-Identifier: MIT */
/* The Check suites run by run_tests; one per module (tests/check_<module>.c). */
#ifndef EM_SUITES_H
#define EM_SUITES_H

#include <check.h>

Suite *mt_suite(void);
Suite *hash_suite(void);
Suite *spectrum_suite(void);
Suite *dtype_suite(void);
Suite *hist16_suite(void);
Suite *safetensors_suite(void);
Suite *torch_suite(void);
Suite *name_suite(void);
Suite *params_suite(void);
Suite *analyze_suite(void);
Suite *cnn_suite(void);
Suite *rules_suite(void);
Suite *tracker_suite(void);
Suite *history_suite(void);
Suite *judge_suite(void);
Suite *replies_suite(void);

#endif
