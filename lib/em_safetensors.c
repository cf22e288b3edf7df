/* SPDX-License-Identifier: MIT */
/* safetensors reader.
 *
 * DESIGN. A file is u64 N (little-endian), N bytes of JSON, then the data buffer. The
 * header is untrusted: before cJSON sees it a lexical pre-scan rejects what cJSON would
 * let through or blow up on (NUL, bad UTF-8, control bytes, deep nesting, too many
 * values, any number that is not a plain non-negative integer: cJSON keeps numbers as
 * doubles, so "1e3" or "-0" would pass unseen). Then the reference rules: tensors tile
 * the data buffer from 0 to the end of the file with no hole or overlap, and each one's
 * byte length equals numel * dtype bits / 8, all products overflow-checked. */
#include "em_safetensors.h"

#include <cJSON.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_err.h"
#include "em_fs.h"

#define MAX_EXACT_INT 9007199254740992.0 /* 2^53: larger offsets lose precision */

typedef unsigned long long ull;

/* ---------------------------------------------------------------- pre-scan */

/* Length of the UTF-8 sequence at p (1..4) or 0 when it is invalid or truncated. */
static size_t utf8_len(const uint8_t *p, size_t left)
{
  uint8_t c = p[0];
  size_t n;
  uint32_t cp;
  if (c < 0x80)
    return 1;
  if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
  else return 0;
  if (left < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xc0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
    return 0;
  return n;
}

static bool is_json_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Lexical checks on the raw header; see DESIGN above. */
static int prescan(const uint8_t *h, size_t n, const char *label, em_err_t *err)
{
  int depth = 0;
  size_t values = 0;
  bool in_str = false;
  for (size_t i = 0; i < n;) {
    uint8_t c = h[i];
    if (c == 0)
      return em_err_set(err, -EINVAL, "%s: header has a NUL byte at offset %zu", label, i);
    size_t len = utf8_len(h + i, n - i);
    if (len == 0)
      return em_err_set(err, -EINVAL, "%s: header is not valid UTF-8 at offset %zu", label, i);
    if (in_str) {
      if (c == '\\') {
        if (i + 1 >= n)
          break;
        i += 2;
        continue;
      }
      if (c < 0x20)
        return em_err_set(err, -EINVAL, "%s: header has a control byte in a string at offset %zu", label, i);
      if (c == '"')
        in_str = false;
      i += len;
      continue;
    }
    if (c == '"') {
      in_str = true;
      values++;
    } else if (c == '{' || c == '[') {
      if (++depth > EM_ST_MAX_DEPTH)
        return em_err_set(err, -EINVAL, "%s: header nests deeper than %d levels", label, EM_ST_MAX_DEPTH);
      values++;
    } else if (c == '}' || c == ']') {
      depth--;
    } else if (c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9')) {
      size_t j = i;
      while (j < n && h[j] && strchr("0123456789+-.eE", h[j]))
        j++;
      for (size_t k = i; k < j; k++) {
        if (h[k] < '0' || h[k] > '9')
          return em_err_set(err, -EINVAL, "%s: header has a number at offset %zu that is not a non-negative integer",
                            label, i);
      }
      values++;
      i = j;
      continue;
    } else if (c < 0x20 && !is_json_space(c)) {
      return em_err_set(err, -EINVAL, "%s: header has a control byte at offset %zu", label, i);
    }
    if (values > EM_ST_MAX_VALUES)
      return em_err_set(err, -EINVAL, "%s: header has more than %d JSON values", label, EM_ST_MAX_VALUES);
    i += len;
  }
  if (in_str)
    return em_err_set(err, -EINVAL, "%s: header ends inside a string", label);
  return 0;
}

/* ---------------------------------------------------------------- tensor entries */

/* A JSON number that must be an exact non-negative integer (the pre-scan saw digits only). */
static int json_u64(const cJSON *v, uint64_t *out)
{
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > MAX_EXACT_INT)
    return -1;
  *out = (uint64_t)v->valuedouble;
  return 0;
}

static int parse_metadata(const cJSON *meta, const char *label, em_err_t *err)
{
  if (!cJSON_IsObject(meta))
    return em_err_set(err, -EINVAL, "%s: header: __metadata__ is not an object", label);
  for (const cJSON *m = meta->child; m; m = m->next) {
    if (!cJSON_IsString(m))
      return em_err_set(err, -EINVAL, "%s: header: __metadata__ value '%s' is not a string", label, m->string);
  }
  return 0;
}

static int parse_shape(const cJSON *shape, em_st_tensor_t *t, const char *label, em_err_t *err)
{
  if (!cJSON_IsArray(shape))
    return em_err_set(err, -EINVAL, "%s: tensor '%s': shape is not an array", label, t->name);
  t->rank = (unsigned)cJSON_GetArraySize(shape);
  t->shape = calloc(t->rank ? t->rank : 1, sizeof(*t->shape));
  if (!t->shape)
    return em_err_set(err, -ENOMEM, "%s: out of memory", label);
  t->numel = 1;
  unsigned i = 0;
  for (const cJSON *d = shape->child; d; d = d->next, i++) {
    if (json_u64(d, &t->shape[i]) != 0)
      return em_err_set(err, -EINVAL, "%s: tensor '%s': shape[%u] is not a non-negative integer below 2^53",
                        label, t->name, i);
    if (t->shape[i] != 0 && t->numel > UINT64_MAX / t->shape[i])
      return em_err_set(err, -EINVAL, "%s: tensor '%s': shape product overflows", label, t->name);
    t->numel *= t->shape[i];
  }
  return 0;
}

static int parse_tensor(const cJSON *obj, em_st_tensor_t *t, const char *label, em_err_t *err)
{
  t->name = strdup(obj->string ? obj->string : "");
  if (!t->name)
    return em_err_set(err, -ENOMEM, "%s: out of memory", label);
  if (!cJSON_IsObject(obj))
    return em_err_set(err, -EINVAL, "%s: tensor '%s' is not an object", label, t->name);
  const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(obj, "dtype");
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(obj, "shape");
  const cJSON *offs = cJSON_GetObjectItemCaseSensitive(obj, "data_offsets");
  if (!cJSON_IsString(dtype))
    return em_err_set(err, -EINVAL, "%s: tensor '%s' has no dtype string", label, t->name);
  if (em_dtype_parse(dtype->valuestring, &t->dtype) != 0)
    return em_err_set(err, -EINVAL, "%s: tensor '%s' has unknown dtype '%.32s'", label, t->name, dtype->valuestring);
  int rc = parse_shape(shape, t, label, err);
  if (rc)
    return rc;
  if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || json_u64(offs->child, &t->begin) != 0 ||
      json_u64(offs->child->next, &t->end) != 0)
    return em_err_set(err, -EINVAL, "%s: tensor '%s': data_offsets is not [begin, end] of integers below 2^53",
                      label, t->name);
  if (t->end < t->begin)
    return em_err_set(err, -EINVAL, "%s: tensor '%s' ends at %llu before it begins at %llu", label, t->name,
                      (ull)t->end, (ull)t->begin);
  unsigned bits = em_dtype_bits(t->dtype);
  if (t->numel > UINT64_MAX / bits)
    return em_err_set(err, -EINVAL, "%s: tensor '%s': size in bits overflows", label, t->name);
  uint64_t nbits = t->numel * bits;
  if (nbits % 8)
    return em_err_set(err, -EINVAL, "%s: tensor '%s': %llu elements of %s are not a whole number of bytes",
                      label, t->name, (ull)t->numel, em_dtype_name(t->dtype));
  if (t->end - t->begin != nbits / 8)
    return em_err_set(err, -EINVAL, "%s: tensor '%s' spans %llu bytes but its shape and dtype need %llu",
                      label, t->name, (ull)(t->end - t->begin), (ull)(nbits / 8));
  return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
  const em_st_tensor_t *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return (x->end > y->end) - (x->end < y->end);
}

static int cmp_name_ptr(const void *a, const void *b)
{
  return strcmp((*(em_st_tensor_t *const *)a)->name, (*(em_st_tensor_t *const *)b)->name);
}

static int check_duplicates(em_st_file_t *f, em_err_t *err)
{
  if (f->ntensors < 2)
    return 0;
  em_st_tensor_t **v = malloc(f->ntensors * sizeof(*v));
  if (!v)
    return em_err_set(err, -ENOMEM, "%s: out of memory", f->path);
  for (size_t i = 0; i < f->ntensors; i++)
    v[i] = &f->tensors[i];
  qsort(v, f->ntensors, sizeof(*v), cmp_name_ptr);
  int rc = 0;
  for (size_t i = 1; i < f->ntensors && !rc; i++) {
    if (strcmp(v[i - 1]->name, v[i]->name) == 0)
      rc = em_err_set(err, -EINVAL, "%s: tensor '%s' is named twice", f->path, v[i]->name);
  }
  free(v);
  return rc;
}

/* Contiguity from 0 and the size equation 8 + N + last_end == file size. */
static int check_layout(em_st_file_t *f, em_err_t *err)
{
  qsort(f->tensors, f->ntensors, sizeof(*f->tensors), cmp_by_offset);
  uint64_t end = 0;
  for (size_t i = 0; i < f->ntensors; i++) {
    const em_st_tensor_t *t = &f->tensors[i];
    if (t->begin != end)
      return em_err_set(err, -EINVAL, "%s: tensor '%s' begins at %llu but the previous data ends at %llu (%s)",
                        f->path, t->name, (ull)t->begin, (ull)end, t->begin > end ? "hole" : "overlap");
    end = t->end;
  }
  uint64_t avail = f->size - f->data_start;
  if (end > avail) {
    const char *last = f->ntensors ? f->tensors[f->ntensors - 1].name : "";
    return em_err_set(err, -EINVAL, "%s: tensor '%s' ends at %llu but the file has %llu bytes of data (incomplete)",
                      f->path, last, (ull)end, (ull)avail);
  }
  if (end < avail)
    return em_err_set(err, -EINVAL, "%s: the file has %llu bytes of data but its tensors end at %llu (trailing bytes)",
                      f->path, (ull)avail, (ull)end);
  return 0;
}

static int parse_header(em_st_file_t *f, const uint8_t *h, size_t n, em_err_t *err)
{
  int rc = prescan(h, n, f->path, err);
  if (rc)
    return rc;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts((const char *)h, n, &end, 0);
  if (!root)
    return em_err_set(err, -EINVAL, "%s: header is not valid JSON (near offset %zu)", f->path,
                      cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - (const char *)h) : 0);
  for (const char *p = end; p < (const char *)h + n; p++) {
    if (!is_json_space((uint8_t)*p)) {
      cJSON_Delete(root);
      return em_err_set(err, -EINVAL, "%s: header has bytes after its JSON object", f->path);
    }
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return em_err_set(err, -EINVAL, "%s: header is not a JSON object", f->path);
  }
  size_t count = 0;
  for (const cJSON *c = root->child; c; c = c->next)
    count++;
  f->tensors = calloc(count ? count : 1, sizeof(*f->tensors));
  if (!f->tensors) {
    cJSON_Delete(root);
    return em_err_set(err, -ENOMEM, "%s: out of memory", f->path);
  }
  for (const cJSON *c = root->child; c && !rc; c = c->next) {
    if (c->string && strcmp(c->string, "__metadata__") == 0)
      rc = parse_metadata(c, f->path, err);
    else
      rc = parse_tensor(c, &f->tensors[f->ntensors++], f->path, err);
  }
  cJSON_Delete(root);
  if (!rc)
    rc = check_duplicates(f, err);
  if (!rc)
    rc = check_layout(f, err);
  return rc;
}

/* ---------------------------------------------------------------- files */

static em_st_file_t *file_new(const char *path)
{
  em_st_file_t *f = calloc(1, sizeof(*f));
  if (!f)
    return NULL;
  f->fd = -1;
  f->path = strdup(path);
  if (!f->path) {
    free(f);
    return NULL;
  }
  return f;
}

void em_st_destroy(em_st_file_t **self_p)
{
  em_st_file_t *f = *self_p;
  if (!f)
    return;
  for (size_t i = 0; i < f->ntensors; i++) {
    free(f->tensors[i].name);
    free(f->tensors[i].shape);
  }
  free(f->tensors);
  if (f->fd >= 0)
    close(f->fd);
  free(f->path);
  free(f);
  *self_p = NULL;
}

static uint64_t le64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* The checks on the 8-byte length prefix. */
static int check_prefix(em_st_file_t *f, uint64_t n, em_err_t *err)
{
  if (n > EM_ST_MAX_HEADER)
    return em_err_set(err, -EINVAL, "%s: the header length (first 8 bytes) exceeds the limit of %llu bytes",
                      f->path, (ull)EM_ST_MAX_HEADER);
  if (n > f->size - 8)
    return em_err_set(err, -EINVAL, "%s: the header length (first 8 bytes) runs past the end of the %llu-byte file",
                      f->path, (ull)f->size);
  f->data_start = 8 + n;
  return 0;
}

int em_st_parse_bytes(const uint8_t *buf, size_t len, const char *label, em_st_file_t **out, em_err_t *err)
{
  *out = NULL;
  em_st_file_t *f = file_new(label);
  if (!f)
    return em_err_set(err, -ENOMEM, "%s: out of memory", label);
  f->size = len;
  int rc = len < 8 ? em_err_set(err, -EINVAL, "%s: %zu bytes is too small for a safetensors file", label, len)
                   : check_prefix(f, le64(buf), err);
  if (!rc)
    rc = parse_header(f, buf + 8, f->data_start - 8, err);
  if (rc) {
    em_st_destroy(&f);
    return rc;
  }
  *out = f;
  return 0;
}

int em_st_open(const char *path, em_st_file_t **out, em_err_t *err)
{
  *out = NULL;
  em_st_file_t *f = file_new(path);
  if (!f)
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  uint8_t *hdr = NULL;
  struct stat st;
  int rc = 0;
  f->fd = em_fs_open_regular(path, err);
  if (f->fd < 0) {
    rc = f->fd;
    goto fail;
  }
  if (fstat(f->fd, &st) != 0) {
    rc = em_err_set(err, -errno, "%s: %s", path, strerror(errno));
    goto fail;
  }
  f->size = (uint64_t)st.st_size;
  if (f->size < 8) {
    rc = em_err_set(err, -EINVAL, "%s: %llu bytes is too small for a safetensors file", path, (ull)f->size);
    goto fail;
  }
  uint8_t pre[8];
  if ((rc = em_fs_pread(f->fd, pre, 8, 0)) != 0)
    goto read_fail;
  if ((rc = check_prefix(f, le64(pre), err)) != 0)
    goto fail;
  size_t n = (size_t)(f->data_start - 8);
  hdr = malloc(n ? n : 1);
  if (!hdr) {
    rc = em_err_set(err, -ENOMEM, "%s: out of memory for a %zu-byte header", path, n);
    goto fail;
  }
  if ((rc = em_fs_pread(f->fd, hdr, n, 8)) != 0)
    goto read_fail;
  if ((rc = parse_header(f, hdr, n, err)) != 0)
    goto fail;
  free(hdr);
  *out = f;
  return 0;
read_fail:
  em_err_set(err, rc, "%s: reading the header: %s", path, rc == EM_ECHANGED ? "the file shrank" : strerror(-rc));
fail:
  free(hdr);
  em_st_destroy(&f);
  return rc;
}

int em_st_read(const em_st_file_t *f, uint64_t off, size_t len, void *buf, em_err_t *err)
{
  return em_fs_read_at(f->fd, f->path, f->data_start + off, len, buf, err);
}

/* ---------------------------------------------------------------- as an em_format_t */

static int fmt_open(const char *path, void **impl, em_err_t *err)
{
  em_st_file_t *f = NULL;
  int rc = em_st_open(path, &f, err);
  *impl = f;
  return rc;
}

static size_t fmt_ntensors(const void *impl) { return ((const em_st_file_t *)impl)->ntensors; }

static void fmt_tensor(const void *impl, size_t i, em_tensor_t *out)
{
  const em_st_tensor_t *t = &((const em_st_file_t *)impl)->tensors[i];
  *out = (em_tensor_t){.name = t->name, .dtype = t->dtype, .rank = t->rank, .shape = t->shape, .numel = t->numel,
                       .begin = t->begin};
}

static int fmt_read(const void *impl, uint64_t off, size_t len, void *buf, em_err_t *err)
{
  return em_st_read(impl, off, len, buf, err);
}

static void fmt_close(void *impl)
{
  em_st_file_t *f = impl;
  em_st_destroy(&f);
}

const em_format_t em_format_safetensors = {"safetensors", fmt_open, fmt_ntensors, fmt_tensor, fmt_read, fmt_close};
