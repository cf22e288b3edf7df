/* SPDX-License-Identifier: MIT */
#include "em_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_err.h"

static struct {
  char root[PATH_MAX];
  size_t len;
  int fd;
} confined = {.fd = -1};

int em_fs_confine(const char *root)
{
  size_t len = strlen(root);
  while (len > 1 && root[len - 1] == '/')
    len--;
  if (len >= sizeof(confined.root))
    return -ENAMETOOLONG;
  int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* the root itself is the admin's choice */
  if (fd < 0)
    return -errno;
  if (confined.fd >= 0)
    close(confined.fd);
  memcpy(confined.root, root, len);
  confined.root[len] = 0;
  confined.len = len;
  confined.fd = fd;
  return 0;
}

/* The part of path below the confinement root, "" for the root itself; NULL when path
 * is not under it (or nothing is confined). */
static const char *below_root(const char *path)
{
  if (confined.fd < 0 || strncmp(path, confined.root, confined.len) != 0)
    return NULL;
  const char *rest = path + confined.len;
  if (*rest == 0)
    return rest;
  if (*rest != '/' && !(confined.len == 1 && confined.root[0] == '/'))
    return NULL;
  while (*rest == '/')
    rest++;
  return rest;
}

/* Walks rel from the root descriptor, a component at a time, never following a symlink;
 * returns a descriptor of the last component's parent (O_PATH) and *last, or -errno. */
static int walk_parent(const char *rel, char *buf, size_t cap, const char **last)
{
  size_t n = strlen(rel);
  if (n >= cap)
    return -ENAMETOOLONG;
  memcpy(buf, rel, n + 1);
  while (n > 0 && buf[n - 1] == '/')
    buf[--n] = 0;
  int fd = dup(confined.fd);
  if (fd < 0)
    return -errno;
  char *comp = buf, *slash;
  while ((slash = strchr(comp, '/')) != NULL) {
    *slash = 0;
    if (strcmp(comp, "..") == 0) {
      close(fd);
      return -EXDEV;
    }
    if (*comp && strcmp(comp, ".") != 0) {
      int next = openat(fd, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      int saved = errno;
      close(fd);
      if (next < 0)
        return saved == ENOTDIR ? -ELOOP : -saved; /* O_PATH|O_NOFOLLOW on a symlink: ENOTDIR */
      fd = next;
    }
    comp = slash + 1;
    while (*comp == '/')
      comp++;
  }
  if (strcmp(comp, "..") == 0) {
    close(fd);
    return -EXDEV;
  }
  *last = *comp ? comp : ".";
  return fd;
}

int em_fs_open(const char *path, int flags, mode_t mode)
{
  const char *rel = below_root(path);
  if (!rel) {
    int fd = open(path, flags | O_CLOEXEC, mode);
    return fd < 0 ? -errno : fd;
  }
  char buf[PATH_MAX];
  const char *last;
  int dir = walk_parent(rel, buf, sizeof(buf), &last);
  if (dir < 0)
    return dir;
  int fd = openat(dir, last, flags | O_CLOEXEC | O_NOFOLLOW, mode);
  int saved = errno;
  close(dir);
  return fd < 0 ? -saved : fd;
}

int em_fs_open_inside(const char *path, int flags, mode_t mode)
{
  if (confined.fd >= 0 && !below_root(path))
    return -EXDEV;
  return em_fs_open(path, flags, mode);
}

int em_fs_own_dir(int parent_fd, const char *name, mode_t mode)
{
  bool made = mkdirat(parent_fd, name, mode) == 0;
  if (!made && errno != EEXIST)
    return -errno;
  int dir = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0)
    return -errno;
  if (made)
    fchmod(dir, mode);
  return dir;
}

int em_fs_stat(const char *path, struct stat *st)
{
  const char *rel = below_root(path);
  if (!rel)
    return stat(path, st) == 0 ? 0 : -errno;
  char buf[PATH_MAX];
  const char *last;
  int dir = walk_parent(rel, buf, sizeof(buf), &last);
  if (dir < 0)
    return dir;
  int rc = fstatat(dir, last, st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
  close(dir);
  return rc;
}

static const char *kind_of(mode_t m)
{
  if (S_ISDIR(m))
    return "a directory";
  if (S_ISFIFO(m))
    return "a FIFO";
  if (S_ISSOCK(m))
    return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m))
    return "a device";
  return "not a plain file";
}

int em_fs_open_regular(const char *path, em_err_t *err)
{
  int fd = em_fs_open(path, O_RDONLY | O_NONBLOCK, 0); /* a FIFO must not block us */
  if (fd < 0)
    return em_err_set(err, fd, "%s: %s", path, em_fs_strerror(fd));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int rc = -errno;
    close(fd);
    return em_err_set(err, rc, "%s: %s", path, strerror(-rc));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return em_err_set(err, -EINVAL, "%s: not a regular file (%s)", path, kind_of(st.st_mode));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

DIR *em_fs_opendir(const char *path)
{
  int fd = em_fs_open(path, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) {
    errno = -fd;
    return NULL;
  }
  DIR *d = fdopendir(fd);
  if (!d) {
    int saved = errno;
    close(fd);
    errno = saved;
  }
  return d;
}

static _Atomic uint64_t bytes_read;

uint64_t em_fs_bytes_read(void) { return bytes_read; }

int em_fs_pread(int fd, void *buf, size_t len, uint64_t off)
{
  size_t done = 0;
  while (done < len) {
    ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      return EM_ECHANGED;
    done += (size_t)r;
    bytes_read += (uint64_t)r;
  }
  return 0;
}

int em_fs_read_at(int fd, const char *path, uint64_t off, size_t len, void *buf, em_err_t *err)
{
  int rc = em_fs_pread(fd, buf, len, off);
  if (rc == EM_ECHANGED)
    return em_err_set(err, rc, "%s: the file ended before byte %llu: it shrank while being read", path,
                      (unsigned long long)(off + len));
  if (rc)
    return em_err_set(err, rc, "%s: read at byte %llu: %s", path, (unsigned long long)off, strerror(-rc));
  return 0;
}

const char *em_fs_strerror(int neg_errno)
{
  if (neg_errno == -ELOOP)
    return "a symbolic link (links inside the watched tree are not followed)";
  if (neg_errno == -EXDEV)
    return "outside the watched tree (or leaves it with '..')";
  return strerror(-neg_errno);
}
