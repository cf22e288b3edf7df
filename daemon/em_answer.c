/* SPDX-License-Identifier: MIT */
#include "em_answer.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_db.h"
#include "em_fifo.h"
#include "em_log.h"
#include "em_query.h"

typedef struct question {
  em_fifo_item_t link;      /* first: the queue */
  em_api_request_t req;
  void *token;
  char *reply;
  size_t len;               /* measured here, so the loop never walks a long reply */
} question_t;

struct em_answer {
  em_fifo_t fifo;
  uv_thread_t thread;
  bool started;
  em_db_t *db;              /* the answer thread's own, opened at start: a failure is told then */
  em_answer_fn done;
  void *ctx;
};

static char *answer(em_answer_t *a, const em_api_request_t *req) { return em_query_reply(a->db, req, NULL); }

static void thread_main(void *arg)
{
  em_answer_t *a = arg;
  pthread_setname_np(pthread_self(), "em-answer");
  em_fifo_item_t *item;
  while ((item = em_fifo_pop(&a->fifo, /* finish_queue = */ false)) != NULL) {
    question_t *q = (question_t *)item;
    q->reply = answer(a, &q->req);
    q->len = q->reply ? strlen(q->reply) : 0;
    em_fifo_finish(&a->fifo, item);
  }
  em_db_close(&a->db);
}

static void answered(void *ctx, em_fifo_item_t *item)
{
  em_answer_t *a = ctx;
  question_t *q = (question_t *)item;
  a->done(a->ctx, q->token, q->reply, q->len);
  free(q);
}

int em_answer_start(em_answer_t **out, uv_loop_t *loop, const char *db_path, em_answer_fn done, void *ctx,
                    char *err, size_t errlen)
{
  *out = NULL;
  em_answer_t *a = calloc(1, sizeof(*a));
  if (!a) {
    snprintf(err, errlen, "answer thread: out of memory");
    return -ENOMEM;
  }
  int rc = em_db_open(db_path, false, &a->db, err, errlen);
  if (rc) {
    free(a);
    return rc;
  }
  a->done = done;
  a->ctx = ctx;
  em_fifo_init(&a->fifo, loop, answered, a);
  a->started = uv_thread_create(&a->thread, thread_main, a) == 0;
  *out = a;
  if (!a->started)
    snprintf(err, errlen, "cannot start the answer thread");
  return a->started ? 0 : -EAGAIN;
}

void em_answer_push(em_answer_t *a, const em_api_request_t *req, void *token)
{
  question_t *q = calloc(1, sizeof(*q));
  if (!q) {
    char *reply = em_api_error("out of memory");
    a->done(a->ctx, token, reply, reply ? strlen(reply) : 0);
    return;
  }
  q->req = *req;
  q->token = token;
  em_fifo_push(&a->fifo, &q->link);
}

static void free_answer(uv_handle_t *h)
{
  em_answer_t *a = h->data;
  em_fifo_destroy(&a->fifo);
  em_db_close(&a->db); /* the thread's, if it never started */
  free(a);
}

void em_answer_stop(em_answer_t **self_p)
{
  em_answer_t *a = *self_p;
  if (!a)
    return;
  *self_p = NULL;
  em_fifo_stop(&a->fifo);
  if (a->started)
    uv_thread_join(&a->thread);
  for (em_fifo_item_t *i = em_fifo_after_join(&a->fifo), *next; i; i = next) { /* never asked */
    next = i->next;
    a->done(a->ctx, ((question_t *)i)->token, NULL, 0);
    free(i);
  }
  a->fifo.async.data = a;
  em_fifo_close(&a->fifo, free_answer);
}
