/* SPDX-License-Identifier: MIT */
/* inotify, owned by the loop thread through uv_poll (libuv's own fs_event drops queue
 * overflows and has no IN_CLOSE_WRITE). Watches are per directory; the owner adds one
 * for every run and checkpoint directory it finds, and rescans on overflow. */
#ifndef EM_WATCH_H
#define EM_WATCH_H

#include <stdint.h>
#include <uv.h>

typedef struct em_watch em_watch_t;
/* dir/name changed (inotify mask). dir is NULL with IN_Q_OVERFLOW: events were lost. */
typedef void (*em_watch_fn)(void *ctx, const char *dir, const char *name, uint32_t mask);

int em_watch_start(em_watch_t **out, uv_loop_t *loop, em_watch_fn fn, void *ctx);
/* Watches dir (once; adding it again is a no-op). -errno, e.g. -ENOSPC past max_user_watches.
 * Any thread: the walker adds watches before it reads a directory. */
int em_watch_add(em_watch_t *w, const char *dir);
void em_watch_stop(em_watch_t **self_p);

#endif
