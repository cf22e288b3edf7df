/* SPDX-License-Identifier: MIT */
/* Steps from checkpoint names (docs/DESIGN.md "Checkpoints, runs, steps"), natural name
 * order, where a PATH puts its checkpoint, and trainer_state.json metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_arch.h"
#include "em_jsonfile.h"
#include "helpers/st_build.h"
#include "suites.h"

static const struct {
  const char *name;
  bool has;
  int64_t step;
} steps[] = {
  {"checkpoint-1200", true, 1200},
  {"global_step1200", true, 1200},
  {"iter_0001200", true, 1200},
  {"model-step1200.safetensors", true, 1200},
  {"epoch=3-step=1200.ckpt", true, 1200},          /* the number after the LAST word */
  {"Checkpoint_77", true, 77},                      /* case-insensitive */
  {"step=5-checkpoint-9", true, 9},
  {"model.safetensors", false, 0},
  {"checkpoint-", false, 0},
  {"checkpoint-99999999999999999999", false, 0},    /* too long to be a step */
  {"run3", false, 0},
  {"ckpt_50.pt", true, 50},
  {"ckpt-7", true, 7},
  {"model-00050.pt", true, 50},
  {"model_3", false, 0},                            /* a run's name more often than a step */
  {"model-00001-of-00003.safetensors", true, 1},    /* a shard: the scanner ignores it before asking */
  {"pytorch_model.bin", false, 0},
};

START_TEST(test_name_step)
{
  int64_t step = -1;
  bool has = em_name_step(steps[_i].name, &step);
  ck_assert_msg(has == steps[_i].has, "%s", steps[_i].name);
  if (has)
    ck_assert_int_eq(step, steps[_i].step);
}
END_TEST

START_TEST(test_name_epoch_is_not_a_step)
{
  int64_t v = -1;
  ck_assert(em_name_epoch("epoch_3.pt", &v) && v == 3);
  ck_assert(!em_name_step("epoch_3.pt", &v));
  ck_assert(em_name_step("checkpoint-baseline", &v) && v == 0);
  ck_assert(em_name_step("checkpoint-baseline.ckpt", &v) && v == 0);
  ck_assert(!em_name_step("checkpoint-baselines", &v));
  ck_assert(em_name_epoch("epoch=3-step=1200.ckpt", &v) && v == 3);
  ck_assert(em_name_step("epoch=3-step=1200.ckpt", &v) && v == 1200);
  ck_assert(em_name_epoch("Epoch-12", &v) && v == 12);
  ck_assert(!em_name_epoch("epochs", &v) && !em_name_epoch("checkpoint-5", &v));
  ck_assert(!em_name_epoch("epoch_99999999999999999999", &v)); /* too long to be one */
}
END_TEST

START_TEST(test_name_natural_order)
{
  ck_assert_int_lt(em_natural_cmp("layers.9.weight", "layers.10.weight"), 0);
  ck_assert_int_gt(em_natural_cmp("layers.10.weight", "layers.2.weight"), 0);
  ck_assert_int_eq(em_natural_cmp("a.01", "a.1"), 0);
  ck_assert_int_lt(em_natural_cmp("a", "b"), 0);
  ck_assert_int_lt(em_natural_cmp("fc1", "fc1.x"), 0);
}
END_TEST

static void write_text(const char *path, const char *text)
{
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs(text, f);
  fclose(f);
}

START_TEST(test_name_locate_and_trainer)
{
  char *root = st_tmpdir(), run[600], ck[700], file[800], state[800];
  snprintf(run, sizeof(run), "%s/myrun", root);
  snprintf(ck, sizeof(ck), "%s/checkpoint-40", run);
  snprintf(file, sizeof(file), "%s/model.safetensors", ck);
  snprintf(state, sizeof(state), "%s/trainer_state.json", ck);
  ck_assert_int_eq(mkdir(run, 0700), 0);
  ck_assert_int_eq(mkdir(ck, 0700), 0);
  write_text(file, "x");
  write_text(state, "{\"global_step\":40,\"log_history\":[{\"step\":20,\"loss\":2.0},"
                    "{\"step\":40,\"loss\":1.5,\"epoch\":1},{\"step\":40,\"eval_accuracy\":0.75,\"note\":\"x\"}]}");
  em_ckpt_where_t w;
  em_err_t err;
  ck_assert_int_eq(em_ckpt_locate(file, &w, &err), 0); /* a file inside checkpoint-40/ */
  ck_assert_str_eq(w.ckpt_path, ck);
  ck_assert_str_eq(w.run, "myrun");
  ck_assert(w.has_step);
  ck_assert_int_eq(w.step, 40);
  em_ckpt_where_free(&w);

  em_trainer_t t;
  ck_assert_int_eq(em_trainer_read(ck, 40, &t, &err), 0);
  ck_assert(t.found && t.has_global_step);
  ck_assert_uint_eq(t.nmetrics, 3); /* loss, epoch, eval_accuracy: merged, strings left out */
  ck_assert_str_eq(t.metrics[0].name, "loss");
  ck_assert_double_eq(t.metrics[0].value, 1.5);
  ck_assert_str_eq(t.metrics[2].name, "eval_accuracy");
  em_trainer_free(&t);

  /* Step from trainer_state.json when the name has none. */
  char plain[700];
  snprintf(plain, sizeof(plain), "%s/final", run);
  ck_assert_int_eq(rename(ck, plain), 0);
  ck_assert_int_eq(em_ckpt_locate(plain, &w, &err), 0);
  ck_assert(w.has_step);
  ck_assert_int_eq(w.step, 40);
  em_ckpt_where_free(&w);

  snprintf(state, sizeof(state), "%s/trainer_state.json", plain);
  write_text(state, "{\"global_step\": ");
  ck_assert_int_eq(em_trainer_read(plain, 40, &t, &err), -EINVAL); /* malformed: an error, named */
  ck_assert_ptr_nonnull(strstr(err.msg, "trainer_state.json"));
  ck_assert_int_eq(em_ckpt_locate("/nonexistent/x", &w, &err), -ENOENT);
  snprintf(file, sizeof(file), "rm -rf '%s'", root);
  ck_assert_int_eq(system(file), 0);
  free(root);
}
END_TEST

/* A trainer_state.json made to cost the daemon: an entry of 10,000 distinct metrics keeps
 * the first 256 (each name is looked up among those kept: 10,000 would be quadratic), and
 * a file of more values than the bound is refused before cJSON spends ~64 bytes on each. */
START_TEST(test_trainer_state_costs_are_bounded)
{
  size_t cap = 10000 * 24 + 64, n = 0;
  char *text = malloc(cap);
  n += (size_t)snprintf(text + n, cap - n, "{\"log_history\":[{\"step\":7");
  for (int i = 0; i < 10000; i++)
    n += (size_t)snprintf(text + n, cap - n, ",\"m%d\":%d", i, i);
  n += (size_t)snprintf(text + n, cap - n, "}]}");
  em_trainer_t t;
  em_err_t err;
  ck_assert_int_eq(em_trainer_parse(text, n, 7, &t, &err), 0);
  ck_assert_uint_eq(t.nmetrics, 256);
  ck_assert_str_eq(t.metrics[255].name, "m255");
  em_trainer_free(&t);
  free(text);

  char *root = st_tmpdir(), path[600];
  snprintf(path, sizeof(path), "%s/trainer_state.json", root);
  FILE *f = fopen(path, "w");
  ck_assert_ptr_nonnull(f);
  fputs("{\"log_history\":[", f);
  for (unsigned i = 0; i < EM_JSONFILE_MAX_VALUES; i++)
    fputs("0,", f);
  fputs("0]}", f);
  fclose(f);
  ck_assert_int_eq(em_trainer_read(root, 7, &t, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "more than"));
  ck_assert_ptr_nonnull(strstr(err.msg, "JSON values"));
  unlink(path);
  rmdir(root);
  free(root);
}
END_TEST

Suite *name_suite(void)
{
  Suite *s = suite_create("name");
  TCase *tc = tcase_create("core");
  tcase_add_loop_test(tc, test_name_step, 0, sizeof(steps) / sizeof(*steps));
  tcase_add_test(tc, test_name_natural_order);
  tcase_add_test(tc, test_name_epoch_is_not_a_step);
  tcase_add_test(tc, test_name_locate_and_trainer);
  tcase_add_test(tc, test_trainer_state_costs_are_bounded);
  suite_add_tcase(s, tc);
  return s;
}
