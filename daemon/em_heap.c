/* SPDX-License-Identifier: MIT */
#include "em_heap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

static size_t *slot(const em_heap_t *h, const void *item) { return (size_t *)((char *)item + h->pos_offset); }

static void place(em_heap_t *h, size_t i, void *item)
{
  h->v[i] = item;
  *slot(h, item) = i + 1;
}

static size_t sift_up(em_heap_t *h, size_t i)
{
  void *item = h->v[i];
  while (i > 0 && h->above(item, h->v[(i - 1) / 2])) {
    place(h, i, h->v[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  place(h, i, item);
  return i;
}

static void sift_down(em_heap_t *h, size_t i)
{
  void *item = h->v[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n)
      break;
    if (c + 1 < h->n && h->above(h->v[c + 1], h->v[c]))
      c++;
    if (!h->above(h->v[c], item))
      break;
    place(h, i, h->v[c]);
    i = c;
  }
  place(h, i, item);
}

static void resort(em_heap_t *h, size_t i)
{
  if (sift_up(h, i) == i)
    sift_down(h, i);
}

void em_heap_init(em_heap_t *h, size_t pos_offset, bool (*above)(const void *, const void *))
{
  *h = (em_heap_t){.pos_offset = pos_offset, .above = above};
}

void em_heap_free(em_heap_t *h)
{
  for (size_t i = 0; i < h->n; i++)
    *slot(h, h->v[i]) = 0;
  free(h->v);
  h->v = NULL;
  h->n = h->cap = 0;
}

int em_heap_put(em_heap_t *h, void *item)
{
  size_t at = *slot(h, item);
  if (at) {
    resort(h, at - 1);
    return 0;
  }
  if (h->n == h->cap) {
    size_t cap = h->cap ? 2 * h->cap : 64;
    void **grown = realloc(h->v, cap * sizeof(*grown));
    if (!grown)
      return -ENOMEM;
    h->v = grown;
    h->cap = cap;
  }
  place(h, h->n++, item);
  sift_up(h, h->n - 1);
  return 0;
}

void em_heap_remove(em_heap_t *h, void *item)
{
  size_t at = *slot(h, item);
  if (!at)
    return;
  *slot(h, item) = 0;
  void *last = h->v[--h->n];
  if (at - 1 < h->n) {
    place(h, at - 1, last);
    resort(h, at - 1);
  }
}

bool em_heap_has(const em_heap_t *h, const void *item) { return *slot(h, item) != 0; }
void *em_heap_top(const em_heap_t *h) { return h->n ? h->v[0] : NULL; }
