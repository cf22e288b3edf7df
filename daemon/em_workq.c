/* SPDX-License-Identifier: MIT */
/* Analysis workers (libuv threadpool idiom: mutex + cond queue, done list + uv_async). */
#include "em_workq.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "em_log.h"

struct em_workq {
  em_fifo_t fifo;           /* jobs in, finished jobs out */
  _Atomic int cancel;       /* raised by stop: running analyses end at their next read */
  int nthreads;
  uv_thread_t *threads;
  uv_sem_t started;
  em_workq_done_fn done_fn;
  void *ctx;
};

/* Niceness +10 and the idle I/O class, for this thread only. */
static void be_gentle(void)
{
  pid_t tid = (pid_t)syscall(SYS_gettid);
  if (setpriority(PRIO_PROCESS, (id_t)tid, 10) != 0)
    EM_DEBUG("workq: setpriority: %s", strerror(errno));
#ifdef SYS_ioprio_set
  if (syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, tid, 3 << 13 /* IOPRIO_CLASS_IDLE */) != 0)
    EM_DEBUG("workq: ioprio_set: %s", strerror(errno));
#endif
}

static void worker(void *arg)
{
  em_workq_t *q = arg;
  pthread_setname_np(pthread_self(), "em-worker");
  be_gentle();
  uv_sem_post(&q->started);
  em_fifo_item_t *item;
  while ((item = em_fifo_pop(&q->fifo, /* finish_queue = */ false)) != NULL) {
    em_job_run((em_job_t *)item);
    em_fifo_finish(&q->fifo, item);
  }
}

static void job_finished(void *ctx, em_fifo_item_t *item)
{
  em_workq_t *q = ctx;
  q->done_fn(q->ctx, (em_job_t *)item);
}

int em_workq_start(em_workq_t **out, uv_loop_t *loop, int n, em_workq_done_fn done, void *ctx)
{
  em_workq_t *q = calloc(1, sizeof(*q));
  if (!q || !(q->threads = calloc((size_t)n, sizeof(*q->threads)))) {
    free(q);
    return -ENOMEM;
  }
  em_fifo_init(&q->fifo, loop, job_finished, q);
  uv_sem_init(&q->started, 0);
  q->done_fn = done;
  q->ctx = ctx;
  for (int i = 0; i < n; i++) {
    if (uv_thread_create(&q->threads[i], worker, q) != 0)
      break;
    q->nthreads++;
    uv_sem_wait(&q->started);
  }
  *out = q;
  return q->nthreads == n ? 0 : -EAGAIN;
}

void em_workq_push(em_workq_t *q, em_job_t *job)
{
  job->cancel = &q->cancel;
  em_fifo_push(&q->fifo, &job->link);
}

size_t em_workq_busy(const em_workq_t *q) { return q->fifo.busy; }

static void free_workq(uv_handle_t *h)
{
  em_workq_t *q = h->data;
  em_fifo_destroy(&q->fifo);
  uv_sem_destroy(&q->started);
  free(q->threads);
  free(q);
}

void em_workq_stop(em_workq_t **self_p)
{
  em_workq_t *q = *self_p;
  if (!q)
    return;
  *self_p = NULL;
  q->cancel = 1;
  em_fifo_stop(&q->fifo);
  for (int i = 0; i < q->nthreads; i++)
    uv_thread_join(&q->threads[i]);
  /* Finished jobs reach their owner (who drops them while stopping); jobs that never
   * started are still queued in the database and are redone on restart. */
  for (em_fifo_item_t *i = em_fifo_after_join(&q->fifo), *next; i; i = next) {
    next = i->next;
    em_job_free((em_job_t *)i);
  }
  q->fifo.async.data = q;
  em_fifo_close(&q->fifo, free_workq);
}
