/* SPDX-License-Identifier: MIT */
#include "em_watch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "em_log.h"
#include "em_hash.h"

#define MASK (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CLOSE_WRITE | IN_MODIFY | IN_ATTRIB | \
              IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

/* inotify reads per callback: the loop's other handles run between them whatever a
 * writer in the tree does (the poll is level-triggered, so the rest comes next turn). */
#define READS_PER_TURN 4

typedef struct wd_path {
  int wd;                     /* the key */
  char path[];
} wd_path_t;

struct em_watch {
  int fd;
  uv_mutex_t lock;            /* the table: the walker thread adds, the loop reads */
  uv_poll_t poll;
  em_watch_fn fn;
  void *ctx;
  em_hash_t wds;               /* wd_path_t by wd: one lookup per event, 100,000 watches or ten */
};

static const char *path_of(em_watch_t *w, int wd)
{
  wd_path_t *e = em_hash_get(&w->wds, &wd, sizeof(wd));
  return e ? e->path : NULL;
}

static void forget(em_watch_t *w, int wd) { free(em_hash_remove(&w->wds, &wd, sizeof(wd))); }

static int add_locked(em_watch_t *w, const char *dir, int wd)
{
  const char *known = path_of(w, wd);
  if (known && strcmp(known, dir) == 0)
    return 0;
  if (known) /* the inode moved: the watch follows it, its path changed */
    forget(w, wd);
  size_t len = strlen(dir);
  wd_path_t *e = malloc(sizeof(*e) + len + 1);
  if (!e)
    return -ENOMEM;
  e->wd = wd;
  memcpy(e->path, dir, len + 1);
  if (em_hash_put(&w->wds, &e->wd, sizeof(e->wd), e) != 0) {
    free(e);
    return -ENOMEM;
  }
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
  for (int turn = 0; turn < READS_PER_TURN; turn++) {
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
  em_hash_init(&w->wds);
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
  size_t pos = 0;
  for (wd_path_t *e; (e = em_hash_next(&w->wds, &pos)) != NULL;)
    free(e);
  em_hash_free(&w->wds);
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
