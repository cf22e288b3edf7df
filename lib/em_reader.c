/* SPDX-License-Identifier: MIT */
#include "em_reader.h"

#include <stdlib.h>
#include <string.h>

#include "em_err.h"

int em_file_open(const em_format_t *format, const char *path, em_file_t **out, em_err_t *err)
{
  *out = NULL;
  em_file_t *f = calloc(1, sizeof(*f));
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  }
  f->format = format;
  int rc = format->open(path, &f->impl, err);
  if (rc) {
    free(f->path);
    free(f);
    return rc;
  }
  *out = f;
  return 0;
}

void em_file_close(em_file_t **self_p)
{
  em_file_t *f = *self_p;
  if (!f)
    return;
  f->format->close(f->impl);
  free(f->path);
  free(f);
  *self_p = NULL;
}

int em_tensor_read(const em_tensor_t *t, uint64_t first, size_t nelem, void *buf, em_err_t *err)
{
  size_t es = em_dtype_bits(t->dtype) / 8;
  if (first > t->numel || nelem > t->numel - first)
    return em_err_set(err, -EINVAL, "%s: tensor '%s': read past its %llu elements", t->file->path, t->name,
                      (unsigned long long)t->numel);
  return t->file->format->read(t->file->impl, t->begin + first * es, nelem * es, buf, err);
}
