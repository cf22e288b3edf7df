/* SPDX-License-Identifier: MIT */
/* The hash table of outside-chosen keys: SipHash-2-4 as its reference computes it, and a
 * table that stays right across growth, removal and removal while iterating. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_hash.h"
#include "suites.h"

START_TEST(test_siphash_reference_vectors)
{
  /* The SipHash paper's appendix: key 00..0f, message 00..0e. And the reference
   * vectors.h entries for lengths 0 and 8. */
  const uint64_t k0 = 0x0706050403020100ULL, k1 = 0x0f0e0d0c0b0a0908ULL;
  unsigned char msg[15];
  for (int i = 0; i < 15; i++)
    msg[i] = (unsigned char)i;
  ck_assert_uint_eq(em_siphash(k0, k1, msg, 15), 0xa129ca6149be45e5ULL);
  ck_assert_uint_eq(em_siphash(k0, k1, msg, 0), 0x726fdb47dd0e0e31ULL);
  ck_assert_uint_eq(em_siphash(k0, k1, msg, 8), 0x93f5f5799a932462ULL);
}
END_TEST

START_TEST(test_map_put_get_remove_across_growth)
{
  enum { N = 20000 };
  char (*keys)[16] = malloc(N * sizeof(*keys));
  em_hash_t m;
  em_hash_init(&m);
  for (int i = 0; i < N; i++) {
    snprintf(keys[i], sizeof(keys[i]), "run/ckpt-%d", i);
    ck_assert_int_eq(em_hash_put(&m, keys[i], strlen(keys[i]), keys[i]), 0);
  }
  ck_assert_uint_eq(em_hash_size(&m), N);
  for (int i = 0; i < N; i += 2)
    ck_assert_ptr_eq(em_hash_remove(&m, keys[i], strlen(keys[i])), keys[i]);
  ck_assert_ptr_null(em_hash_remove(&m, keys[0], strlen(keys[0])));
  for (int i = 0; i < N; i++) {
    char probe[16];
    snprintf(probe, sizeof(probe), "run/ckpt-%d", i); /* equal bytes, another address */
    ck_assert_ptr_eq(em_hash_get(&m, probe, strlen(probe)), i % 2 ? keys[i] : NULL);
  }
  for (int round = 0; round < 5; round++) /* churn: tombstones are reclaimed, not piled up */
    for (int i = 0; i < N; i += 2) {
      ck_assert_int_eq(em_hash_put(&m, keys[i], strlen(keys[i]), keys[i]), 0);
      ck_assert_ptr_eq(em_hash_remove(&m, keys[i], strlen(keys[i])), keys[i]);
    }
  ck_assert_uint_le(m.cap, 8 * N);
  ck_assert_uint_eq(em_hash_size(&m), N / 2);
  em_hash_free(&m);
  free(keys);
}
END_TEST

START_TEST(test_map_remove_while_iterating_visits_each_once)
{
  enum { N = 1000 };
  int vals[N], seen[N] = {0};
  em_hash_t m;
  em_hash_init(&m);
  for (int i = 0; i < N; i++) {
    vals[i] = i;
    em_hash_put(&m, &vals[i], sizeof(vals[i]), &vals[i]);
  }
  size_t pos = 0;
  for (int *v; (v = em_hash_next(&m, &pos)) != NULL;) {
    seen[*v]++;
    if (*v % 3 == 0)
      ck_assert_ptr_eq(em_hash_remove(&m, v, sizeof(*v)), v);
  }
  for (int i = 0; i < N; i++)
    ck_assert_int_eq(seen[i], 1);
  ck_assert_uint_eq(em_hash_size(&m), N - (N + 2) / 3);
  em_hash_free(&m);
}
END_TEST

START_TEST(test_map_keys_are_hashed_under_a_random_key)
{
  em_hash_t a, b;
  em_hash_init(&a);
  em_hash_init(&b);
  ck_assert(a.k0 != b.k0 || a.k1 != b.k1); /* else one crafted set of names fits every table */
}
END_TEST

Suite *hash_suite(void)
{
  Suite *s = suite_create("hash");
  TCase *tc = tcase_create("core");
  tcase_add_test(tc, test_siphash_reference_vectors);
  tcase_add_test(tc, test_map_put_get_remove_across_growth);
  tcase_add_test(tc, test_map_remove_while_iterating_visits_each_once);
  tcase_add_test(tc, test_map_keys_are_hashed_under_a_random_key);
  suite_add_tcase(s, tc);
  return s;
}
