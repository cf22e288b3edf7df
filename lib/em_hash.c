/* SPDX-License-Identifier: MIT */
#include "em_hash.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* ---------------------------------------------------------------- SipHash-2-4 */
/* From the reference by Aumasson and Bernstein (https://github.com/veorq/SipHash). */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                      \
  do {                                                                                \
    v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                         \
    v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                            \
    v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                            \
    v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                         \
  } while (0)

static uint64_t load_le64(const unsigned char *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

uint64_t em_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
  const unsigned char *in = data;
  uint64_t v0 = 0x736f6d6570736575ULL ^ k0, v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0, v3 = 0x7465646279746573ULL ^ k1;
  size_t whole = len - len % 8;
  for (size_t i = 0; i < whole; i += 8) {
    uint64_t m = load_le64(in + i);
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t i = 0; i < len % 8; i++)
    b |= (uint64_t)in[whole + i] << (8 * i);
  v3 ^= b;
  SIPROUND;
  SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

void em_hash_random_key(uint64_t *k0, uint64_t *k1)
{
  uint64_t k[2] = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  (void)!getrandom(k, sizeof(k), GRND_NONBLOCK);
  *k0 = k[0];
  *k1 = k[1];
}

/* ---------------------------------------------------------------- the table */

static const char tombstone;   /* a removed slot's key: probes pass over it */
#define MIN_CAP 16

void em_hash_init(em_hash_t *m)
{
  *m = (em_hash_t){0};
  em_hash_random_key(&m->k0, &m->k1);
}

void em_hash_free(em_hash_t *m)
{
  free(m->slots);
  m->slots = NULL;
  m->cap = m->n = m->used = 0;
}

static bool live(const em_hash_slot_t *s) { return s->key && s->key != &tombstone; }

/* The slot holding key, or NULL. */
static em_hash_slot_t *find(const em_hash_t *m, const void *key, size_t len, uint64_t h)
{
  if (!m->cap)
    return NULL;
  for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    em_hash_slot_t *s = &m->slots[i];
    if (!s->key)
      return NULL;
    if (live(s) && s->hash == h && s->len == len && memcmp(s->key, key, len) == 0)
      return s;
  }
}

/* Rehashes the live entries into cap slots (a power of two, more than twice n). */
static int rehash(em_hash_t *m, size_t cap)
{
  em_hash_slot_t *slots = calloc(cap, sizeof(*slots));
  if (!slots)
    return -ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    if (!live(&m->slots[i]))
      continue;
    size_t j = m->slots[i].hash & (cap - 1);
    while (slots[j].key)
      j = (j + 1) & (cap - 1);
    slots[j] = m->slots[i];
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
  m->used = m->n;
  return 0;
}

void *em_hash_get(const em_hash_t *m, const void *key, size_t len)
{
  em_hash_slot_t *s = find(m, key, len, em_siphash(m->k0, m->k1, key, len));
  return s ? s->value : NULL;
}

int em_hash_put(em_hash_t *m, const void *key, size_t len, void *value)
{
  uint64_t h = em_siphash(m->k0, m->k1, key, len);
  em_hash_slot_t *s = find(m, key, len, h);
  if (s) {
    s->key = key;
    s->value = value;
    return 0;
  }
  if (2 * (m->used + 1) > m->cap) { /* at most half full, tombstones counted */
    size_t cap = m->cap ? m->cap : MIN_CAP;
    while (cap < 4 * (m->n + 1))
      cap *= 2;
    if (rehash(m, cap) != 0)
      return -ENOMEM;
  }
  size_t i = h & (m->cap - 1);
  while (m->slots[i].key)
    i = (i + 1) & (m->cap - 1);
  m->slots[i] = (em_hash_slot_t){.hash = h, .key = key, .len = len, .value = value};
  m->n++;
  m->used++;
  return 0;
}

void *em_hash_remove(em_hash_t *m, const void *key, size_t len)
{
  em_hash_slot_t *s = find(m, key, len, em_siphash(m->k0, m->k1, key, len));
  if (!s)
    return NULL;
  void *value = s->value;
  s->key = &tombstone;
  s->value = NULL;
  m->n--;
  return value;
}

void *em_hash_next(const em_hash_t *m, size_t *pos)
{
  for (; *pos < m->cap; (*pos)++)
    if (live(&m->slots[*pos]))
      return m->slots[(*pos)++].value;
  return NULL;
}
