/* SPDX-License-Identifier: MIT */
#include "em_jsonfile.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_err.h"
#include "em_fs.h"

/* At least the number of values cJSON would allocate a node for, less one: the commas
 * and openings outside strings. cJSON spends ~64 bytes a node, so "[0,0,0,...]" of 64 MiB
 * would cost 2 GiB; counting first bounds what a side file can cost. */
static size_t count_values(const char *s, size_t len)
{
  size_t n = 0;
  bool in_string = false;
  for (size_t i = 0; i < len; i++) {
    if (in_string) {
      if (s[i] == '\\')
        i++;
      else if (s[i] == '"')
        in_string = false;
    } else if (s[i] == '"') {
      in_string = true;
    } else if (s[i] == ',' || s[i] == '[' || s[i] == '{') {
      n++;
    }
  }
  return n;
}

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
  if (count_values(buf, got) >= EM_JSONFILE_MAX_VALUES) {
    free(buf);
    return em_err_set(err, -EINVAL, "%s: more than %u JSON values", path, EM_JSONFILE_MAX_VALUES);
  }
  *out = cJSON_ParseWithLength(buf, got);
  free(buf);
  if (!*out)
    return em_err_set(err, -EINVAL, "%s: not valid JSON", path);
  return 0;
}
