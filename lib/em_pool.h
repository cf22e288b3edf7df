/* SPDX-License-Identifier: MIT */
/* A few threads working through numbered tasks, for one analysis (--threads). */
#ifndef EM_POOL_H
#define EM_POOL_H

#include <stddef.h>

/* Runs fn(ctx, worker, task) for every task 0..ntasks-1 on up to nthreads threads
 * (worker 0 is the calling thread; worker w uses buffers of its own). Tasks are handed
 * out in order; once a task fails (fn returns non-zero) no new task starts. Returns 0,
 * or the return of the lowest-numbered failed task, with that task in *failed. When a
 * thread cannot be started, fewer workers do the work. */
int em_pool_run(unsigned nthreads, size_t ntasks, int (*fn)(void *ctx, unsigned worker, size_t task), void *ctx,
                size_t *failed);

#endif
