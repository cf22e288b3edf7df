/* SPDX-License-Identifier: MIT */
/* An indexed binary heap of pointers: push, remove or re-sort any member in O(log n).
 * Each member keeps its own slot (index + 1, 0 when not in the heap) in a size_t at
 * pos_offset, so a member can sit in several heaps at once, one slot field per heap.
 * The tracker uses it to schedule without scanning every checkpoint. */
#ifndef EM_HEAP_H
#define EM_HEAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct em_heap {
  void **v;
  size_t n, cap;
  size_t pos_offset;                          /* offsetof(member, its slot field) */
  bool (*above)(const void *a, const void *b); /* a belongs nearer the top than b */
} em_heap_t;

void em_heap_init(em_heap_t *h, size_t pos_offset, bool (*above)(const void *, const void *));
void em_heap_free(em_heap_t *h);
/* Adds item, or re-sorts it when already in; -ENOMEM when the heap cannot grow. */
int em_heap_put(em_heap_t *h, void *item);
void em_heap_remove(em_heap_t *h, void *item);
bool em_heap_has(const em_heap_t *h, const void *item);
void *em_heap_top(const em_heap_t *h);

#endif
