/* SPDX-License-Identifier: MIT */
/* A hand-off between the loop thread and worker threads (the libuv threadpool idiom):
 * items go in FIFO under a mutex and condition; finished items go on a done list and
 * wake the loop through one uv_async, whose callback drains the whole list (sends
 * coalesce). Items are intrusive: embed an em_fifo_item_t as their first member. */
#ifndef EM_FIFO_H
#define EM_FIFO_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

typedef struct em_fifo_item {
  struct em_fifo_item *next;
} em_fifo_item_t;

typedef void (*em_fifo_done_fn)(void *ctx, em_fifo_item_t *item);

typedef struct em_fifo {
  uv_mutex_t lock;
  uv_cond_t wake;
  em_fifo_item_t *head, *tail;        /* queued */
  em_fifo_item_t *done, *done_tail;   /* finished, in finishing order */
  size_t busy;                        /* queued + running; loop thread only */
  bool stopping;
  uv_async_t async;
  em_fifo_done_fn done_fn;            /* loop thread */
  void *ctx;
} em_fifo_t;

/* Loop thread. */
void em_fifo_init(em_fifo_t *f, uv_loop_t *loop, em_fifo_done_fn done, void *ctx);
void em_fifo_push(em_fifo_t *f, em_fifo_item_t *item);
/* Worker threads: the next item, blocking; NULL once stopping (after the queue is empty
 * when finish_queue, at once otherwise). */
em_fifo_item_t *em_fifo_pop(em_fifo_t *f, bool finish_queue);
void em_fifo_finish(em_fifo_t *f, em_fifo_item_t *item);
/* Loop thread: wakes the workers to stop; after joining them, hands every finished item
 * to done and returns the list of items that never started. */
void em_fifo_stop(em_fifo_t *f);
em_fifo_item_t *em_fifo_after_join(em_fifo_t *f);
/* Closes the async handle; in cb, call em_fifo_destroy, then f may be freed. */
void em_fifo_close(em_fifo_t *f, uv_close_cb cb);
void em_fifo_destroy(em_fifo_t *f);

#endif
