/* SPDX-License-Identifier: MIT */
/* The torch reader on files real torch wrote (tests/fixtures/torch, see VERSION there):
 * the same tensors, bit for bit, as the safetensors twin of the same weights; the layouts
 * trainers save; and what must be refused. Plus the unpickler on hand-made streams. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "em_ckpt.h"
#include "em_pickle.h"
#include "em_torch.h"
#include "suites.h"

#define FIX "tests/fixtures/torch/"

static em_ckpt_t *open_ok(const char *path)
{
  em_ckpt_t *ck = NULL;
  em_err_t err;
  int rc = em_ckpt_open(path, &ck, &err);
  ck_assert_msg(rc == 0, "%s: %s", path, err.msg);
  return ck;
}

static void *read_whole(const em_tensor_t *t)
{
  size_t es = em_dtype_bits(t->dtype) / 8;
  void *buf = malloc(t->numel * es + 1);
  em_err_t err;
  ck_assert_int_eq(em_tensor_read(t, 0, t->numel, buf, &err), 0);
  return buf;
}

static const char *const twins[][2] = {
  {FIX "plain.pt", FIX "plain.safetensors"},
  {FIX "half.pt", FIX "half.safetensors"},
  {FIX "bf16.pt", FIX "bf16.safetensors"},
  {FIX "params.pt", FIX "plain.safetensors"},
  {FIX "deepspeed/global_step100", FIX "plain.safetensors"},
  {FIX "hf-sharded", FIX "plain.safetensors"},
};

START_TEST(test_torch_reads_what_its_safetensors_twin_holds)
{
  em_ckpt_t *pt = open_ok(twins[_i][0]), *st = open_ok(twins[_i][1]);
  ck_assert_uint_eq(pt->ntensors, st->ntensors);
  for (size_t i = 0; i < st->ntensors; i++) {
    const em_tensor_t *a = &pt->tensors[i], *b = &st->tensors[i];
    ck_assert_str_eq(a->name, b->name);
    ck_assert_int_eq(a->dtype, b->dtype);
    ck_assert_uint_eq(a->rank, b->rank);
    ck_assert_uint_eq(a->numel, b->numel);
    for (unsigned d = 0; d < a->rank; d++)
      ck_assert_uint_eq(a->shape[d], b->shape[d]);
    void *x = read_whole(a), *y = read_whole(b);
    ck_assert_msg(memcmp(x, y, a->numel * (em_dtype_bits(a->dtype) / 8)) == 0, "%s differs", a->name);
    free(x);
    free(y);
  }
  em_ckpt_destroy(&pt);
  em_ckpt_destroy(&st);
}
END_TEST

START_TEST(test_torch_layouts_trainers_save)
{
  em_torch_file_t *f = NULL;
  em_err_t err;
  ck_assert_int_eq(em_torch_open(FIX "lightning.ckpt", &f, &err), 0);
  ck_assert_str_eq(f->layout, "lightning");
  ck_assert_uint_eq(f->ntensors, 4); /* model.0.{weight,bias}, model.2.{...}: not the optimizer's */
  ck_assert_str_eq(f->tensors[0].name, "model.0.weight");
  em_torch_destroy(&f);
  ck_assert_int_eq(em_torch_open(FIX "megatron/iter_0000100/mp_rank_00/model_optim_rng.pt", &f, &err), 0);
  ck_assert_str_eq(f->layout, "megatron");
  ck_assert_str_eq(f->tensors[0].name, "language_model.encoder.layers.0.weight");
  em_torch_destroy(&f);
  em_ckpt_t *ck = open_ok(FIX "megatron/iter_0000100");
  ck_assert_uint_eq(ck->ntensors, 6);
  em_ckpt_destroy(&ck);
  ck_assert_int_eq(em_torch_open(FIX "views.pt", &f, &err), EM_EUNSUPPORTED);
}
END_TEST

static const struct {
  const char *path;
  int rc;
  const char *says;
} refused[] = {
  {FIX "zero3.pt", EM_EUNSUPPORTED, "zero_to_fp32.py"},
  {FIX "legacy.pt", EM_EUNSUPPORTED, "legacy torch format"},
  {FIX "noncontig.pt", EM_EUNSUPPORTED, "tensor 'layers.1.weight' is not contiguous"},
  {FIX "views.pt", EM_EUNSUPPORTED, "tensor 'b' is not contiguous"},
  {FIX "evil.pt", -EINVAL, "by calling posix.system"},
  {FIX "memo.pt", -EINVAL, "memo index"},
  {FIX "plain.safetensors", -EINVAL, "not a torch checkpoint"},
  {FIX "VERSION", -EINVAL, "not a torch checkpoint"},
};

START_TEST(test_torch_refuses_with_the_reason)
{
  em_torch_file_t *f = NULL;
  em_err_t err;
  unlink("/tmp/emerge-pickle-executed");
  ck_assert_int_eq(em_torch_open(refused[_i].path, &f, &err), refused[_i].rc);
  ck_assert_msg(strstr(err.msg, refused[_i].says) && strncmp(err.msg, refused[_i].path, strlen(refused[_i].path)) == 0,
                "%s", err.msg);
  ck_assert_ptr_null(f);
  ck_assert_int_ne(access("/tmp/emerge-pickle-executed", F_OK), 0); /* evil.pt's os.system never ran */
}
END_TEST

START_TEST(test_torch_cut_short_is_incomplete)
{
  FILE *in = fopen(FIX "plain.pt", "rb");
  ck_assert_ptr_nonnull(in);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof(buf), in);
  fclose(in);
  char path[] = "/tmp/emerge-torch-XXXXXX";
  int fd = mkstemp(path);
  ck_assert_int_ge(fd, 0);
  ck_assert_int_eq(write(fd, buf, n - 200), (ssize_t)(n - 200)); /* still being written: no directory yet */
  close(fd);
  em_torch_file_t *f = NULL;
  em_err_t err;
  ck_assert_int_eq(em_torch_open(path, &f, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "incomplete"));
  unlink(path);
}
END_TEST

/* ---------------------------------------------------------------- the unpickler */

static int load(const char *bytes, size_t len, em_pickle_t **pk, em_py_t **root, em_err_t *err)
{
  return em_pickle_load(bytes, len, "t.pkl", pk, root, err);
}

START_TEST(test_pickle_builds_data_and_never_calls)
{
  em_pickle_t *pk;
  em_py_t *root;
  em_err_t err;
  /* OrderedDict() filled by SETITEMS; a GLOBAL REDUCE kept as an object naming its callable. */
  static const char od[] = "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00" "aK\x07"
                           "X\x01\x00\x00\x00" "b" "cposix\nsystem\nX\x04\x00\x00\x00" "true\x85Ru.";
  ck_assert_int_eq(load(od, sizeof(od) - 1, &pk, &root, &err), 0);
  ck_assert_int_eq(root->kind, EM_PY_DICT);
  int64_t a;
  ck_assert(em_py_int(em_py_get(root, "a"), &a) && a == 7);
  ck_assert(em_py_is_call(em_py_get(root, "b"), "posix", "system"));
  em_pickle_free(&pk);
  /* MEMOIZE stores at len(memo): four of them fill 0..3, and GET 3 is the fourth value. */
  static const char memoize[] = "\x80\x04]\x94K\x01\x94" "0K\x02\x94" "0K\x03\x94" "0h\x03" "a.";
  ck_assert_int_eq(load(memoize, sizeof(memoize) - 1, &pk, &root, &err), 0);
  int64_t three;
  ck_assert(em_py_int(em_py_item(root, 0), &three) && three == 3);
  em_pickle_free(&pk);
  /* A key set twice holds its last value, as a Python dict does. */
  static const char twice[] = "\x80\x02}(X\x01\x00\x00\x00" "aK\x01X\x01\x00\x00\x00" "aK\x02u.";
  ck_assert_int_eq(load(twice, sizeof(twice) - 1, &pk, &root, &err), 0);
  ck_assert(em_py_int(em_py_get(root, "a"), &three) && three == 2);
  em_pickle_free(&pk);
  static const char cycle[] = "\x80\x02]q\x00h\x00" "a."; /* a list holding itself */
  ck_assert_int_eq(load(cycle, sizeof(cycle) - 1, &pk, &root, &err), 0);
  ck_assert_ptr_eq(em_py_item(root, 0), root);
  em_pickle_free(&pk);
}
END_TEST

static const struct {
  const char *bytes;
  size_t len;
  int rc;
  const char *says;
} bad_pickles[] = {
  {"\x80\x02]", 3, -EINVAL, "ends without STOP"},
  {"\x80\x02X\xff\xff\xff\x7f" "ab.", 9, -EINVAL, "runs past the end"},
  {"\x80\x02I1\n.", 6, -EINVAL, "opcode 0x49"},            /* text protocol INT */
  {"\x80\x02h\x05.", 5, -EINVAL, "never PUT"},
  {"\x80\x02]r\x00\x00\x40\x00.", 9, -EINVAL, "memo index beyond"}, /* index 2^22 */
  {"\x80\x02K\x01K\x02.", 7, -EINVAL, "STOP with other than one value"},
  {"\x80\x02u.", 4, -EINVAL, "no MARK"},
  {"\x80\x02" "ctorch._utils\x00x\n_rebuild_tensor_v2\n.", 38, -EINVAL, "NUL byte"},
};

START_TEST(test_pickle_refuses_with_the_offset)
{
  em_pickle_t *pk;
  em_py_t *root;
  em_err_t err;
  ck_assert_int_eq(load(bad_pickles[_i].bytes, bad_pickles[_i].len, &pk, &root, &err), bad_pickles[_i].rc);
  ck_assert_msg(strstr(err.msg, bad_pickles[_i].says) != NULL, "%s", err.msg);
  ck_assert_ptr_null(pk);
}
END_TEST

START_TEST(test_pickle_allocation_is_bounded)
{
  size_t n = 12u << 20; /* 12 M empty lists: more than the bound allows */
  char *s = malloc(n + 3);
  memcpy(s, "\x80\x02", 2);
  memset(s + 2, ']', n);
  s[n + 2] = '.';
  em_pickle_t *pk;
  em_py_t *root;
  em_err_t err;
  ck_assert_int_eq(load(s, n + 3, &pk, &root, &err), -ENOMEM);
  ck_assert_ptr_nonnull(strstr(err.msg, "refused"));
  free(s);
}
END_TEST

Suite *torch_suite(void)
{
  Suite *s = suite_create("torch");
  TCase *tc = tcase_create("core");
  tcase_set_timeout(tc, 60);
  tcase_add_loop_test(tc, test_torch_reads_what_its_safetensors_twin_holds, 0, sizeof(twins) / sizeof(*twins));
  tcase_add_test(tc, test_torch_layouts_trainers_save);
  tcase_add_loop_test(tc, test_torch_refuses_with_the_reason, 0, sizeof(refused) / sizeof(*refused));
  tcase_add_test(tc, test_torch_cut_short_is_incomplete);
  tcase_add_test(tc, test_pickle_builds_data_and_never_calls);
  tcase_add_loop_test(tc, test_pickle_refuses_with_the_offset, 0, sizeof(bad_pickles) / sizeof(*bad_pickles));
  tcase_add_test(tc, test_pickle_allocation_is_bounded);
  suite_add_tcase(s, tc);
  return s;
}
