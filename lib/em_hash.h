/* SPDX-License-Identifier: MIT */
/* A hash table from byte strings to pointers, for tables whose keys come from outside
 * (paths and run names written by the job, inotify descriptors): a fixed bucket count or
 * an unkeyed hash let a crafted tree put every entry in one chain and stall the loop for
 * a minute (docs/SECURITY.md). Keys are hashed with SipHash-2-4 under a key drawn from
 * getrandom(2) per table, slots are open-addressed and the table grows, so lookups stay
 * O(1) whatever names arrive.
 *
 * The table stores the key's address, not a copy: the key must live, unchanged, as long
 * as its entry (it is usually a field of the value). Removing marks the slot, so removing
 * the current entry while iterating with em_hash_next is safe; adding is not. */
#ifndef EM_HASH_H
#define EM_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct em_hash_slot {
  uint64_t hash;
  const void *key;            /* NULL: free; the table's own tombstone: removed */
  size_t len;
  void *value;
} em_hash_slot_t;

typedef struct em_hash {
  em_hash_slot_t *slots;
  size_t cap, n, used;        /* used: live entries and tombstones */
  uint64_t k0, k1;
} em_hash_t;

/* SipHash-2-4 of data under the 128-bit key (k0, k1). */
uint64_t em_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len);
/* Fills k0, k1 from getrandom(2) (a fixed fallback if it fails: still correct, no longer
 * collision-resistant). */
void em_hash_random_key(uint64_t *k0, uint64_t *k1);

void em_hash_init(em_hash_t *m);
void em_hash_free(em_hash_t *m);  /* the slots; keys and values are the caller's */
void *em_hash_get(const em_hash_t *m, const void *key, size_t len);
/* Adds key -> value, or replaces the value of an equal key. 0, or -ENOMEM. */
int em_hash_put(em_hash_t *m, const void *key, size_t len, void *value);
/* Removes key; returns its value, NULL when absent. */
void *em_hash_remove(em_hash_t *m, const void *key, size_t len);
/* Iterates: start with *pos = 0; returns the next value, NULL at the end. */
void *em_hash_next(const em_hash_t *m, size_t *pos);
static inline size_t em_hash_size(const em_hash_t *m) { return m->n; }

#endif
