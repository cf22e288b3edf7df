/* SPDX-License-Identifier: MIT */
#include "em_fifo.h"

static void append(em_fifo_item_t **head, em_fifo_item_t **tail, em_fifo_item_t *item)
{
  item->next = NULL;
  if (*tail)
    (*tail)->next = item;
  else
    *head = item;
  *tail = item;
}

static void drain(uv_async_t *h)
{
  em_fifo_t *f = h->data;
  uv_mutex_lock(&f->lock);
  em_fifo_item_t *list = f->done;
  f->done = f->done_tail = NULL;
  uv_mutex_unlock(&f->lock);
  while (list) {
    em_fifo_item_t *next = list->next;
    f->busy--;
    f->done_fn(f->ctx, list);
    list = next;
  }
}

void em_fifo_init(em_fifo_t *f, uv_loop_t *loop, em_fifo_done_fn done, void *ctx)
{
  *f = (em_fifo_t){.done_fn = done, .ctx = ctx};
  uv_mutex_init(&f->lock);
  uv_cond_init(&f->wake);
  uv_async_init(loop, &f->async, drain);
  f->async.data = f;
}

void em_fifo_push(em_fifo_t *f, em_fifo_item_t *item)
{
  f->busy++;
  uv_mutex_lock(&f->lock);
  append(&f->head, &f->tail, item);
  uv_cond_signal(&f->wake);
  uv_mutex_unlock(&f->lock);
}

em_fifo_item_t *em_fifo_pop(em_fifo_t *f, bool finish_queue)
{
  uv_mutex_lock(&f->lock);
  while (!f->head && !f->stopping)
    uv_cond_wait(&f->wake, &f->lock);
  em_fifo_item_t *item = f->stopping && !finish_queue ? NULL : f->head;
  if (item) {
    f->head = item->next;
    if (!f->head)
      f->tail = NULL;
  }
  uv_mutex_unlock(&f->lock);
  return item;
}

void em_fifo_finish(em_fifo_t *f, em_fifo_item_t *item)
{
  uv_mutex_lock(&f->lock);
  append(&f->done, &f->done_tail, item);
  uv_async_send(&f->async);
  uv_mutex_unlock(&f->lock);
}

void em_fifo_stop(em_fifo_t *f)
{
  uv_mutex_lock(&f->lock);
  f->stopping = true;
  uv_cond_broadcast(&f->wake);
  uv_mutex_unlock(&f->lock);
}

em_fifo_item_t *em_fifo_after_join(em_fifo_t *f)
{
  drain(&f->async);
  em_fifo_item_t *never = f->head;
  f->head = f->tail = NULL;
  return never;
}

void em_fifo_close(em_fifo_t *f, uv_close_cb cb)
{
  uv_close((uv_handle_t *)&f->async, cb);
}

void em_fifo_destroy(em_fifo_t *f)
{
  uv_mutex_destroy(&f->lock);
  uv_cond_destroy(&f->wake);
}
