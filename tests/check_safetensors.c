/* SPDX-License-Identifier: MIT */
/* Every validation rule of the reference safetensors parser, one row each, plus the
 * file cases: offsets past 2^31, and a file truncated while we read it. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "em_safetensors.h"
#include "helpers/st_build.h"
#include "suites.h"

#define T(dt, shape, b, e) "{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

static const struct {
  const char *why;
  const char *header;
  size_t data;        /* bytes after the header */
  int rc;             /* 0 or the expected error */
  const char *msg;    /* a part of the message */
} rows[] = {
  {"empty header object", "{}", 0, 0, NULL},
  {"leading and trailing whitespace", " \n{}\t  ", 0, 0, NULL},
  {"one tensor", "{\"a\":" T("F32", "[2]", 0, 8) "}", 8, 0, NULL},
  {"rank-0 scalar", "{\"a\":" T("F32", "[]", 0, 4) "}", 4, 0, NULL},
  {"zero-size tensor sharing its begin", "{\"z\":" T("F32", "[0]", 0, 0) ",\"b\":" T("U8", "[2]", 0, 2) "}", 2, 0,
   NULL},
  {"metadata strings", "{\"__metadata__\":{\"format\":\"pt\"}}", 0, 0, NULL},
  {"not JSON", "{", 0, -EINVAL, "not valid JSON"},
  {"not an object", "[]", 0, -EINVAL, "not a JSON object"},
  {"trailing bytes after JSON", "{} x", 0, -EINVAL, "after its JSON"},
  {"bad UTF-8", "{\"\xff\":1}", 0, -EINVAL, "UTF-8"},
  {"control byte", "{\x01}", 0, -EINVAL, "control byte"},
  {"too deep", "{\"a\":{\"b\":{\"c\":[1]}}}", 0, -EINVAL, "nests deeper"},
  {"duplicate name", "{\"a\":" T("U8", "[1]", 0, 1) ",\"a\":" T("U8", "[1]", 1, 2) "}", 2, -EINVAL, "named twice"},
  {"metadata not string", "{\"__metadata__\":{\"x\":1}}", 0, -EINVAL, "not a string"},
  {"metadata not object", "{\"__metadata__\":\"x\"}", 0, -EINVAL, "not an object"},
  {"negative offset", "{\"a\":" T("U8", "[1]", -1, 0) "}", 1, -EINVAL, "non-negative integer"},
  {"float offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, -EINVAL, "not a non-negative integer"},
  {"exponent offset", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1000],\"data_offsets\":[0,1e3]}}", 1000, -EINVAL,
   "not a non-negative integer"},
  {"negative zero", "{\"a\":" T("U8", "[0]", -0, 0) "}", 0, -EINVAL, "offset 47 that is not a non-negative integer"},
  {"offset above 2^53", "{\"a\":" T("U8", "[1]", 0, 18014398509481984) "}", 1, -EINVAL, "2^53"},
  {"end before begin", "{\"a\":" T("U8", "[0]", 4, 2) "}", 4, -EINVAL, "before it begins"},
  {"three offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, -EINVAL, "[begin, end]"},
  {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, -EINVAL, "no dtype"},
  {"unknown dtype", "{\"a\":" T("F128", "[1]", 0, 16) "}", 16, -EINVAL, "unknown dtype 'F128'"},
  {"tensor not object", "{\"a\":1}", 0, -EINVAL, "not an object"},
  {"shape not array", "{\"a\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, -EINVAL, "shape"},
  {"overlap", "{\"a\":" T("U8", "[4]", 0, 4) ",\"b\":" T("U8", "[4]", 2, 6) "}", 6, -EINVAL, "overlap"},
  {"hole", "{\"a\":" T("U8", "[4]", 0, 4) ",\"b\":" T("U8", "[4]", 5, 9) "}", 9, -EINVAL, "hole"},
  {"does not start at 0", "{\"a\":" T("U8", "[4]", 4, 8) "}", 8, -EINVAL, "hole"},
  {"trailing data bytes", "{\"a\":" T("U8", "[4]", 0, 4) "}", 5, -EINVAL, "trailing bytes"},
  {"truncated data", "{\"a\":" T("U8", "[4]", 0, 4) "}", 3, -EINVAL, "tensor 'a' ends at 4 but the file has 3"},
  {"size disagrees with shape", "{\"a\":" T("F32", "[2]", 0, 4) "}", 4, -EINVAL, "need 8"},
  {"shape product overflow", "{\"a\":" T("U8", "[4294967296,4294967296,4294967296]", 0, 0) "}", 0, -EINVAL,
   "overflows"},
  {"sub-byte count", "{\"a\":" T("F4", "[3]", 0, 1) "}", 1, -EINVAL, "whole number of bytes"},
  {"sub-byte even count", "{\"a\":" T("F4", "[4]", 0, 2) "}", 2, 0, NULL},
};

START_TEST(test_st_rule)
{
  size_t len;
  uint8_t *buf = st_raw(rows[_i].header, rows[_i].data, &len);
  em_st_file_t *f = NULL;
  em_err_t err = {0};
  int rc = em_st_parse_bytes(buf, len, "x.safetensors", &f, &err);
  if (rc != rows[_i].rc)
    ck_abort_msg("%s: rc %d, want %d (%s)", rows[_i].why, rc, rows[_i].rc, err.msg);
  if (rows[_i].msg && !strstr(err.msg, rows[_i].msg))
    ck_abort_msg("%s: message '%s' lacks '%s'", rows[_i].why, err.msg, rows[_i].msg);
  if (rc)
    ck_assert_ptr_nonnull(strstr(err.msg, "x.safetensors")); /* names the file */
  em_st_destroy(&f);
  free(buf);
}
END_TEST

START_TEST(test_st_prefix)
{
  em_st_file_t *f = NULL;
  em_err_t err;
  uint8_t small[7] = {0};
  ck_assert_int_eq(em_st_parse_bytes(small, sizeof(small), "s", &f, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "too small"));
  uint8_t big[16] = {0x01, 0xe1, 0xf5, 0x05}; /* 100,000,001 */
  ck_assert_int_eq(em_st_parse_bytes(big, sizeof(big), "b", &f, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "exceeds the limit"));
  uint8_t past[16] = {0x20}; /* 32 bytes of header in a 16-byte file */
  ck_assert_int_eq(em_st_parse_bytes(past, sizeof(past), "p", &f, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "runs past the end"));
  uint8_t nul[12] = {4, 0, 0, 0, 0, 0, 0, 0, '{', '}', 0, ' '};
  ck_assert_int_eq(em_st_parse_bytes(nul, sizeof(nul), "n", &f, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "NUL"));
  ck_assert_ptr_null(f);
}
END_TEST

/* A tensor that begins past 2^31 (cJSON's valueint saturates there): sparse file. */
START_TEST(test_st_offsets_past_2g)
{
  char *dir = st_tmpdir(), path[600];
  snprintf(path, sizeof(path), "%s/big.safetensors", dir);
  const uint64_t big = 3000000000ULL;
  char header[256];
  snprintf(header, sizeof(header),
           "{\"pad\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[0,%llu]},"
           "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%llu,%llu]}}",
           (unsigned long long)big, (unsigned long long)big, (unsigned long long)big,
           (unsigned long long)big + 4);
  size_t len;
  uint8_t *buf = st_raw(header, 0, &len);
  ck_assert_int_eq(st_write(path, buf, len), 0);
  int fd = open(path, O_WRONLY);
  float v = -0.25f;
  ck_assert_int_eq(pwrite(fd, &v, 4, (off_t)(len + big)), 4); /* extends the file sparsely */
  close(fd);
  em_st_file_t *f = NULL;
  em_err_t err = {0};
  ck_assert_msg(em_st_open(path, &f, &err) == 0, "%s", err.msg);
  ck_assert_uint_eq(f->tensors[1].begin, big);
  float got = 0;
  ck_assert_int_eq(em_st_read(f, f->tensors[1].begin, 4, &got, &err), 0);
  ck_assert(got == v);
  em_st_destroy(&f);
  unlink(path);
  rmdir(dir);
  free(buf);
  free(dir);
}
END_TEST

START_TEST(test_st_truncated_while_reading)
{
  char *dir = st_tmpdir(), path[600];
  snprintf(path, sizeof(path), "%s/t.safetensors", dir);
  float data[256] = {0};
  st_tensor_t t = {"w", "F32", 2, {16, 16}, data, sizeof(data)};
  size_t len;
  uint8_t *buf = st_build(&t, 1, &len);
  ck_assert_int_eq(st_write(path, buf, len), 0);
  em_st_file_t *f = NULL;
  em_err_t err = {0};
  ck_assert_int_eq(em_st_open(path, &f, &err), 0);
  ck_assert_int_eq(truncate(path, (off_t)(len - 100)), 0);
  ck_assert_int_eq(em_st_read(f, 0, sizeof(data), buf, &err), -ESTALE);
  ck_assert_ptr_nonnull(strstr(err.msg, "shrank"));
  em_st_destroy(&f);
  ck_assert_int_eq(em_st_open(path, &f, &err), -EINVAL); /* and it no longer validates */
  ck_assert_int_eq(em_st_open(dir, &f, &err), -EINVAL);
  ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
  unlink(path);
  ck_assert_int_eq(em_st_open(path, &f, &err), -ENOENT);
  ck_assert_ptr_nonnull(strstr(err.msg, path));
  rmdir(dir);
  free(buf);
  free(dir);
}
END_TEST

Suite *safetensors_suite(void)
{
  Suite *s = suite_create("safetensors");
  TCase *tc = tcase_create("rules");
  tcase_add_loop_test(tc, test_st_rule, 0, sizeof(rows) / sizeof(*rows));
  tcase_add_test(tc, test_st_prefix);
  suite_add_tcase(s, tc);
  tc = tcase_create("files");
  tcase_add_test(tc, test_st_offsets_past_2g);
  tcase_add_test(tc, test_st_truncated_while_reading);
  suite_add_tcase(s, tc);
  return s;
}
