/* SPDX-License-Identifier: MIT */
#include "em_watch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "em_log.h"

#define MASK (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
              IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct em_watch {
  int fd;
  uv_mutex_t lock;            /* the table: the walker thread adds, the loop reads */
  uv_poll_t poll;
  em_watch_fn fn;
  void *ctx;
  size_t n, cap;
  struct wd_path {
    int wd;
    char *path;
  } *wds;
};

static const char *path_of(em_watch_t *w, int wd)
{
  for (size_t i = 0; i < w->n; i++)
    if (w->wds[i].wd == wd)
      return w->wds[i].path;
  return NULL;
}

static void forget(em_watch_t *w, int wd)
{
  for (size_t i = 0; i < w->n; i++) {
    if (w->wds[i].wd == wd) {
      free(w->wds[i].path);
      w->wds[i] = w->wds[--w->n];
      return;
    }
  }
}

static int add_locked(em_watch_t *w, const char *dir, int wd)
{
  const char *known = path_of(w, wd);
  if (known && strcmp(known, dir) == 0)
    return 0;
  if (known) /* the inode moved: the watch follows it, its path changed */
    forget(w, wd);
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 64;
    struct wd_path *grown = realloc(w->wds, cap * sizeof(*grown));
    if (!grown)
      return -ENOMEM;
    w->wds = grown;
    w->cap = cap;
  }
  w->wds[w->n].wd = wd;
  if (!(w->wds[w->n].path = strdup(dir)))
    return -ENOMEM;
  w->n++;
  return 0;
}

int em_watch_add(em_watch_t *w, const char *dir)
{
  int wd = inotify_add_watch(w->fd, dir, MASK);
  if (wd < 0)
    return -errno;
  uv_mutex_lock(&w->lock);
  int rc = add_locked(w, dir, wd);
  uv_mutex_unlock(&w->lock);
  return rc;
}

/* A copy of the directory of wd (the table may change while the callback runs). */
static char *dir_of(em_watch_t *w, int wd, bool ignored)
{
  uv_mutex_lock(&w->lock);
  const char *dir = path_of(w, wd);
  char *copy = dir && !ignored ? strdup(dir) : NULL;
  if (dir && ignored)
    forget(w, wd);
  uv_mutex_unlock(&w->lock);
  return copy;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
  (void)status;
  (void)events;
  em_watch_t *w = h->data;
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t len = read(w->fd, buf, sizeof(buf));
    if (len <= 0)
      break;
    for (char *p = buf; p < buf + len;) {
      const struct inotify_event *ev = (const struct inotify_event *)p;
      p += sizeof(*ev) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {
        w->fn(w->ctx, NULL, NULL, IN_Q_OVERFLOW);
        continue;
      }
      char *dir = dir_of(w, ev->wd, (ev->mask & IN_IGNORED) != 0);
      if (dir)
        w->fn(w->ctx, dir, ev->len ? ev->name : NULL, ev->mask);
      free(dir);
    }
  }
}

int em_watch_start(em_watch_t **out, uv_loop_t *loop, em_watch_fn fn, void *ctx)
{
  em_watch_t *w = calloc(1, sizeof(*w));
  if (!w)
    return -ENOMEM;
  w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (w->fd < 0 || uv_poll_init(loop, &w->poll, w->fd) != 0) {
    int e = errno;
    if (w->fd >= 0)
      close(w->fd);
    free(w);
    return -e;
  }
  w->fn = fn;
  w->ctx = ctx;
  uv_mutex_init(&w->lock);
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  *out = w;
  return 0;
}

static void free_watch(uv_handle_t *h)
{
  em_watch_t *w = h->data;
  close(w->fd);
  uv_mutex_destroy(&w->lock);
  for (size_t i = 0; i < w->n; i++)
    free(w->wds[i].path);
  free(w->wds);
  free(w);
}

void em_watch_stop(em_watch_t **self_p)
{
  em_watch_t *w = *self_p;
  if (!w)
    return;
  *self_p = NULL;
  uv_poll_stop(&w->poll);
  uv_close((uv_handle_t *)&w->poll, free_watch);
}
