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
  uv_mutex_t lock;
  uv_cond_t wake;
  em_job_t *head, *tail;    /* queued */
  em_job_t *done;           /* finished (LIFO) */
  size_t busy;              /* queued + running; loop thread only */
  bool stopping;
  int nthreads;
  uv_thread_t *threads;
  uv_sem_t started;
  uv_async_t async;
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
  uv_mutex_lock(&q->lock);
  for (;;) {
    while (!q->head && !q->stopping)
      uv_cond_wait(&q->wake, &q->lock);
    if (q->stopping)
      break;
    em_job_t *job = q->head;
    q->head = job->next;
    if (!q->head)
      q->tail = NULL;
    uv_mutex_unlock(&q->lock);
    em_job_run(job);
    uv_mutex_lock(&q->lock);
    job->next = q->done;
    q->done = job;
    uv_async_send(&q->async);
  }
  uv_mutex_unlock(&q->lock);
}

static void drain(uv_async_t *h)
{
  em_workq_t *q = h->data;
  uv_mutex_lock(&q->lock);
  em_job_t *list = q->done;
  q->done = NULL;
  uv_mutex_unlock(&q->lock);
  while (list) {
    em_job_t *next = list->next;
    q->busy--;
    q->done_fn(q->ctx, list);
    list = next;
  }
}

int em_workq_start(em_workq_t **out, uv_loop_t *loop, int n, em_workq_done_fn done, void *ctx)
{
  em_workq_t *q = calloc(1, sizeof(*q));
  if (!q || !(q->threads = calloc((size_t)n, sizeof(*q->threads)))) {
    free(q);
    return -ENOMEM;
  }
  uv_mutex_init(&q->lock);
  uv_cond_init(&q->wake);
  uv_sem_init(&q->started, 0);
  uv_async_init(loop, &q->async, drain);
  q->async.data = q;
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
  job->next = NULL;
  q->busy++;
  uv_mutex_lock(&q->lock);
  if (q->tail)
    q->tail->next = job;
  else
    q->head = job;
  q->tail = job;
  uv_cond_signal(&q->wake);
  uv_mutex_unlock(&q->lock);
}

size_t em_workq_busy(const em_workq_t *q) { return q->busy; }

static void free_workq(uv_handle_t *h)
{
  em_workq_t *q = h->data;
  uv_mutex_destroy(&q->lock);
  uv_cond_destroy(&q->wake);
  uv_sem_destroy(&q->started);
  free(q->threads);
  free(q);
}

static void free_list(em_job_t *j)
{
  while (j) {
    em_job_t *next = j->next;
    em_job_free(j);
    j = next;
  }
}

void em_workq_stop(em_workq_t **self_p)
{
  em_workq_t *q = *self_p;
  if (!q)
    return;
  *self_p = NULL;
  uv_mutex_lock(&q->lock);
  q->stopping = true;
  uv_cond_broadcast(&q->wake);
  uv_mutex_unlock(&q->lock);
  for (int i = 0; i < q->nthreads; i++)
    uv_thread_join(&q->threads[i]);
  free_list(q->head); /* never started: still queued in the database */
  free_list(q->done); /* finished after the stop began: abandoned, redone on restart */
  q->head = q->done = NULL;
  uv_close((uv_handle_t *)&q->async, free_workq);
}
