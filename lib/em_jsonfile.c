/* SPDX-License-Identifier: MIT */
#include "em_jsonfile.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_err.h"
#include "em_fs.h"

int em_jsonfile_read(const char *path, cJSON **out, em_err_t *err)
{
  *out = NULL;
  int fd = em_fs_open_regular(path, err);
  if (fd < 0)
    return fd;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size > (off_t)EM_JSONFILE_MAX) {
    close(fd);
    return em_err_set(err, -EINVAL, "%s: larger than %u bytes", path, EM_JSONFILE_MAX);
  }
  size_t len = (size_t)st.st_size, got = 0;
  char *buf = malloc(len + 1);
  if (!buf) {
    close(fd);
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  }
  while (got < len) {
    ssize_t r = read(fd, buf + got, len - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);
  buf[got] = 0;
  *out = cJSON_ParseWithLength(buf, got);
  free(buf);
  if (!*out)
    return em_err_set(err, -EINVAL, "%s: not valid JSON", path);
  return 0;
}
