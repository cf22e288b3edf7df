/* SPDX-License-Identifier: MIT */
#include "em_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "em_fifo.h"
#include "em_fs.h"
#include "em_hash.h"
#include "em_log.h"
#include "em_tfevents.h"
#include "em_wire.h"

#define MAX_TB_FILE (256u << 20) /* an event file read back at open for torn records */

typedef struct entry {
  em_fifo_item_t link;      /* first: the queue */
  char *run, *run_dir, *line; /* line: the payload and its newline */
  size_t len;
  bool result, has_point;
  em_point_t point;
} entry_t;

struct em_journal {
  em_fifo_t fifo;
  uv_thread_t thread;
  bool started;
  char *tensorboard;        /* NULL: off */
  em_hash_t checked;        /* event files already cut back to whole records; journal thread */
  em_hash_t warned;         /* files whose failure was logged: once each until they work again */
};

/* ---------------------------------------------------------------- appending */

/* One write of the whole buffer at the end; a short one is cut back, so the file never
 * holds half a record before a whole one. 0 or -errno. */
static int append_whole(int fd, const void *buf, size_t len)
{
  struct stat st;
  if (fstat(fd, &st) != 0)
    return -errno;
  ssize_t n = write(fd, buf, len);
  if (n == (ssize_t)len)
    return 0;
  int rc = n < 0 ? -errno : -ENOSPC;
  if (n > 0 && ftruncate(fd, st.st_size) != 0)
    EM_WARN("journal: cannot cut back a short write: %s", strerror(errno));
  return rc;
}

/* A file of ours in dir: made by this process, one link, a regular file. A planted file
 * or hard link is not written to. */
static int open_own(int dir, const char *name, int flags)
{
  int fd = openat(dir, name, flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid()) {
    close(fd);
    return -EPERM;
  }
  if (st.st_size == 0)
    fchmod(fd, 0644); /* the job reads it whatever our umask */
  return fd;
}

/* A failure to write path, logged once until a write to it works again (a read-only
 * tree would otherwise log every message). */
static void failed_once(em_journal_t *j, const char *path, int rc, const char *why)
{
  bool known = em_hash_get(&j->warned, path, strlen(path)) != NULL;
  if (!rc) {
    free(known ? em_hash_remove(&j->warned, path, strlen(path)) : NULL);
    return;
  }
  if (known)
    return;
  EM_WARN("journal: %s: %s (logged once until it works again)", path, why);
  char *key = strdup(path);
  if (key && em_hash_put(&j->warned, key, strlen(key), key) != 0)
    free(key);
}

/* RUN_DIR/.emerge/results.jsonl += line. */
static void append_results(em_journal_t *j, const entry_t *e)
{
  int run = em_fs_open_inside(e->run_dir, O_RDONLY | O_DIRECTORY, 0);
  int dir = run < 0 ? run : em_fs_own_dir(run, EM_DOT_DIR, 0755);
  int fd = dir < 0 ? dir : open_own(dir, EM_RESULTS_FILE, O_WRONLY | O_APPEND);
  int rc = fd < 0 ? fd : append_whole(fd, e->line, e->len);
  char path[4200];
  snprintf(path, sizeof(path), "%s/" EM_DOT_DIR "/" EM_RESULTS_FILE, e->run_dir);
  failed_once(j, path, rc, rc == -EPERM ? "not a file of the daemon's own (a link or another's file): not written"
                                        : em_fs_strerror(rc));
  if (fd >= 0)
    close(fd);
  if (dir >= 0)
    close(dir);
  if (run >= 0)
    close(run);
}

/* ---------------------------------------------------------------- TensorBoard */

/* TENSORBOARD/<run> (each component made if missing, none followed if a link). */
static int run_dir_fd(const char *root, const char *run)
{
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  char name[4096];
  for (const char *p = run; *p && fd >= 0;) {
    size_t n = strcspn(p, "/");
    if (n == 0 || n >= sizeof(name) || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.')) {
      close(fd);
      return -EINVAL;
    }
    memcpy(name, p, n);
    name[n] = 0;
    int next = em_fs_own_dir(fd, name, 0755);
    close(fd);
    fd = next;
    p += n + (p[n] == '/');
  }
  return fd;
}

/* The first time this run's file is opened: cut a torn last record, write the header
 * records into an empty file. 0 or -errno. */
static int prepare_tb(em_journal_t *j, int fd, const char *run)
{
  if (em_hash_get(&j->checked, run, strlen(run)))
    return 0;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size > MAX_TB_FILE)
    return st.st_size > MAX_TB_FILE ? -EFBIG : -errno;
  uint8_t *buf = malloc((size_t)st.st_size + 1);
  ssize_t got = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
  size_t keep = got == st.st_size ? em_tf_valid_prefix(buf, (size_t)got) : 0;
  free(buf);
  if (got != st.st_size)
    return -EIO;
  if (keep < (size_t)st.st_size) {
    EM_WARN("journal: %s: a torn record after byte %zu (a crash mid-write): cut off", run, keep);
    if (ftruncate(fd, (off_t)keep) != 0)
      return -errno;
  }
  size_t n1 = 0, n2 = 0;
  uint8_t *version = keep ? NULL : em_tf_version_record((double)time(NULL), &n1);
  uint8_t *layout = keep ? NULL : em_tf_layout_record((double)time(NULL), &n2);
  int rc = keep ? 0 : !version || !layout ? -ENOMEM : append_whole(fd, version, n1);
  if (!rc && layout)
    rc = append_whole(fd, layout, n2);
  free(version);
  free(layout);
  char *key = rc ? NULL : strdup(run);
  if (key && em_hash_put(&j->checked, key, strlen(key), key) != 0)
    free(key);
  return rc;
}

static uint8_t *scalars_of(const em_point_t *p, size_t *len)
{
  em_tf_scalar_t v[5];
  size_t n = 0;
  if (!isnan(p->value[0])) {
    v[n++] = (em_tf_scalar_t){"emerge/emergence", (float)p->value[0]};
    if (!isnan(p->se[0])) {
      v[n++] = (em_tf_scalar_t){"emerge/emergence_lo", (float)(p->value[0] - 2 * p->se[0])};
      v[n++] = (em_tf_scalar_t){"emerge/emergence_hi", (float)(p->value[0] + 2 * p->se[0])};
    }
  }
  v[n++] = (em_tf_scalar_t){"emerge/alpha0", (float)p->value[1]};
  v[n++] = (em_tf_scalar_t){"emerge/width", (float)p->value[2]};
  return em_tf_scalars_record((double)time(NULL), p->step, v, n, len);
}

static void append_tensorboard(em_journal_t *j, const entry_t *e)
{
  int dir = run_dir_fd(j->tensorboard, e->run);
  int fd = dir < 0 ? dir : open_own(dir, EM_TB_FILE, O_RDWR | O_APPEND);
  int rc = fd < 0 ? fd : prepare_tb(j, fd, e->run);
  size_t len = 0;
  uint8_t *rec = rc ? NULL : scalars_of(&e->point, &len);
  if (!rc)
    rc = rec ? append_whole(fd, rec, len) : -ENOMEM;
  free(rec);
  char path[4200];
  snprintf(path, sizeof(path), "%s/%s/" EM_TB_FILE, j->tensorboard, e->run);
  failed_once(j, path, rc, em_fs_strerror(rc));
  if (fd >= 0)
    close(fd);
  if (dir >= 0)
    close(dir);
}

/* ---------------------------------------------------------------- the thread */

static void free_entry(entry_t *e)
{
  free(e->run);
  free(e->run_dir);
  free(e->line);
  free(e);
}

static void thread_main(void *arg)
{
  em_journal_t *j = arg;
  pthread_setname_np(pthread_self(), "em-journal");
  em_fifo_item_t *item;
  while ((item = em_fifo_pop(&j->fifo, /* finish_queue = */ true)) != NULL) {
    entry_t *e = (entry_t *)item;
    append_results(j, e);
    if (j->tensorboard && e->result && e->has_point)
      append_tensorboard(j, e);
    em_fifo_finish(&j->fifo, item);
  }
}

static void written(void *ctx, em_fifo_item_t *item)
{
  (void)ctx;
  free_entry((entry_t *)item);
}

int em_journal_start(em_journal_t **out, uv_loop_t *loop, const char *tensorboard, char *err, size_t errlen)
{
  *out = NULL;
  em_journal_t *j = calloc(1, sizeof(*j));
  if (!j || (tensorboard && !(j->tensorboard = strdup(tensorboard)))) {
    free(j);
    snprintf(err, errlen, "journal: out of memory");
    return -ENOMEM;
  }
  em_hash_init(&j->checked);
  em_hash_init(&j->warned);
  em_fifo_init(&j->fifo, loop, written, j);
  j->started = uv_thread_create(&j->thread, thread_main, j) == 0;
  *out = j;
  if (!j->started)
    snprintf(err, errlen, "cannot start the journal thread");
  return j->started ? 0 : -EAGAIN;
}

void em_journal_append(em_journal_t *j, const char *run, const char *run_dir, const em_pub_t *pub)
{
  if (!j || !run || !run_dir)
    return;
  entry_t *e = calloc(1, sizeof(*e));
  size_t n = strlen(pub->payload);
  if (e && (e->line = malloc(n + 2)) != NULL) {
    memcpy(e->line, pub->payload, n);
    memcpy(e->line + n, "\n", 2);
    e->len = n + 1;
  }
  if (!e || !e->line || !(e->run = strdup(run)) || !(e->run_dir = strdup(run_dir))) {
    EM_ERR("journal: out of memory: %s seq %lld not appended to " EM_RESULTS_FILE, run, (long long)pub->seq);
    if (e)
      free_entry(e);
    return;
  }
  e->result = strncmp(pub->topic, "result/", 7) == 0;
  e->has_point = pub->has_point;
  e->point = pub->point;
  em_fifo_push(&j->fifo, &e->link);
}

static void free_journal(uv_handle_t *h)
{
  em_journal_t *j = h->data;
  em_fifo_destroy(&j->fifo);
  em_hash_t *sets[] = {&j->checked, &j->warned};
  for (size_t k = 0; k < 2; k++) {
    char *key;
    for (size_t pos = 0; (key = em_hash_next(sets[k], &pos)) != NULL;)
      free(key);
    em_hash_free(sets[k]);
  }
  free(j->tensorboard);
  free(j);
}

void em_journal_stop(em_journal_t **self_p)
{
  em_journal_t *j = *self_p;
  if (!j)
    return;
  *self_p = NULL;
  em_fifo_stop(&j->fifo);
  if (j->started)
    uv_thread_join(&j->thread);
  for (em_fifo_item_t *i = em_fifo_after_join(&j->fifo), *next; i; i = next) { /* never started */
    next = i->next;
    free_entry((entry_t *)i);
  }
  j->fifo.async.data = j;
  em_fifo_close(&j->fifo, free_journal);
}
