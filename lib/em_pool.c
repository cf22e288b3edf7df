/* SPDX-License-Identifier: MIT */
/* DESIGN. One mutex guards the next task and the first failure; tasks are whole maps or
 * whole sampled networks (milliseconds each), so handing them out costs nothing next to
 * the work, and no lock is taken inside a task. */
#include "em_pool.h"

#include <pthread.h>
#include <stdint.h>

#define MAX_THREADS 64

typedef struct pool {
  int (*fn)(void *ctx, unsigned worker, size_t task);
  void *ctx;
  size_t ntasks, next, failed;
  int rc;
  pthread_mutex_t lock;
} pool_t;

typedef struct worker {
  pool_t *p;
  unsigned id;
} worker_t;

/* The next task to run, or ntasks when done or a task failed. */
static size_t take(pool_t *p)
{
  pthread_mutex_lock(&p->lock);
  size_t t = p->rc ? p->ntasks : p->next;
  if (t < p->ntasks)
    p->next++;
  pthread_mutex_unlock(&p->lock);
  return t;
}

static void *work(void *arg)
{
  worker_t *w = arg;
  pool_t *p = w->p;
  for (size_t t; (t = take(p)) < p->ntasks;) {
    int rc = p->fn(p->ctx, w->id, t);
    if (rc) {
      pthread_mutex_lock(&p->lock);
      if (!p->rc || t < p->failed) { /* the lowest task's error, whatever the timing */
        p->rc = rc;
        p->failed = t;
      }
      pthread_mutex_unlock(&p->lock);
    }
  }
  return NULL;
}

int em_pool_run(unsigned nthreads, size_t ntasks, int (*fn)(void *ctx, unsigned worker, size_t task), void *ctx,
                size_t *failed)
{
  pool_t p = {.fn = fn, .ctx = ctx, .ntasks = ntasks, .failed = SIZE_MAX};
  pthread_t tid[MAX_THREADS];
  worker_t w[MAX_THREADS];
  unsigned n = nthreads < 1 ? 1 : nthreads > MAX_THREADS ? MAX_THREADS : nthreads, started = 1;
  n = ntasks < n ? (unsigned)(ntasks ? ntasks : 1) : n;
  pthread_mutex_init(&p.lock, NULL);
  for (unsigned i = 0; i < n; i++)
    w[i] = (worker_t){&p, i};
  for (; started < n; started++) {
    if (pthread_create(&tid[started], NULL, work, &w[started]) != 0)
      break;
  }
  work(&w[0]);
  for (unsigned i = 1; i < started; i++)
    pthread_join(tid[i], NULL);
  pthread_mutex_destroy(&p.lock);
  if (failed)
    *failed = p.failed;
  return p.rc;
}
