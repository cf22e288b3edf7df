/* SPDX-License-Identifier: MIT */
/* What torch.save writes is described in torch/serialization.py (_save, the persistent_id
 * of storages) and torch/_utils.py (_rebuild_tensor_v2); this reads it without torch. */
#include "em_torch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "em_err.h"
#include "em_fs.h"
#include "em_hash.h"
#include "em_pickle.h"
#include "em_zip.h"

typedef unsigned long long ull;

#define MAX_NESTING 16        /* dicts inside the state dict (Megatron nests 4) */
#define MAX_NAME 1024
/* What one file's names may cost: the memo lets 4 bytes of pickle add a tensor under a
 * 1 KB name again and again, which no bound of the unpickler sees. */
#define MAX_VALUES (1u << 20)            /* tensors and skipped values */
#define MAX_NAME_BYTES (64u << 20)

/* A storage as first seen: torch caches storages by key, so the first dtype and size
 * are what torch.load uses; a later different one is refused. */
typedef struct storage_seen {
  em_dtype_t dtype;
  int64_t numel;
} storage_seen_t;

/* What opening one file needs besides the result. */
typedef struct load {
  em_torch_file_t *f;
  em_zip_t zip;
  char prefix[512];           /* the archive's top directory, as torch names it */
  const em_py_t *opaque;      /* the first value of the state dict that only a call would build */
  em_hash_t names;            /* flattened names given so far: a repeat is refused */
  size_t name_bytes;
  em_hash_t storages;         /* storage key (in the pickle's arena) -> index in seen + 1 */
  storage_seen_t *seen;
  size_t nseen, cap_seen;
  em_err_t *err;
} load_t;

/* ---------------------------------------------------------------- storages and tensors */

static const struct {
  const char *name;
  em_dtype_t dtype;
} storages[] = {
  {"DoubleStorage", EM_DT_F64}, {"FloatStorage", EM_DT_F32}, {"HalfStorage", EM_DT_F16},
  {"BFloat16Storage", EM_DT_BF16}, {"Float8_e4m3fnStorage", EM_DT_F8_E4M3}, {"Float8_e5m2Storage", EM_DT_F8_E5M2},
  {"LongStorage", EM_DT_I64}, {"IntStorage", EM_DT_I32}, {"ShortStorage", EM_DT_I16}, {"CharStorage", EM_DT_I8},
  {"ByteStorage", EM_DT_U8}, {"BoolStorage", EM_DT_BOOL},
};

static const char NONCONTIGUOUS[] = "not contiguous";

/* A tensor as the pickle describes it, before its bytes are located. */
typedef struct desc {
  em_dtype_t dtype;
  const char *key;            /* the storage's entry under data/ */
  int64_t storage_numel, offset;
  unsigned rank;
  uint64_t shape[EM_TORCH_MAX_RANK];
  uint64_t numel;
} desc_t;

/* The storage persistent id ('storage', torch.XStorage, key, location, numel). */
static const char *parse_storage(const em_py_t *v, desc_t *d)
{
  const em_py_t *pid = v && v->kind == EM_PY_PERSID ? v->u.pid : NULL;
  const em_py_t *tag = em_py_item(pid, 0), *type = em_py_item(pid, 1), *key = em_py_item(pid, 2);
  if (!tag || tag->kind != EM_PY_STR || strcmp(tag->u.str.s, "storage") != 0 || !key || key->kind != EM_PY_STR ||
      !type || type->kind != EM_PY_GLOBAL || strcmp(type->u.global.module, "torch") != 0 ||
      !em_py_int(em_py_item(pid, 4), &d->storage_numel) || d->storage_numel < 0)
    return "its storage is not one torch.save writes";
  for (size_t i = 0; i < sizeof(storages) / sizeof(*storages); i++)
    if (strcmp(type->u.global.name, storages[i].name) == 0) {
      d->dtype = storages[i].dtype;
      d->key = key->u.str.s;
      return em_dtype_readable(d->dtype) ? NULL : "not a floating-point tensor";
    }
  return "a storage type this reader does not know (complex, quantized, untyped)";
}

/* size and stride tuples: the shape, and whether the layout is row-major contiguous. */
static const char *parse_layout(const em_py_t *size, const em_py_t *stride, desc_t *d)
{
  if (!size || size->kind != EM_PY_TUPLE || !stride || stride->kind != EM_PY_TUPLE ||
      size->u.seq.n != stride->u.seq.n)
    return "its size and stride are not tuples of one length";
  if (size->u.seq.n > EM_TORCH_MAX_RANK)
    return "more than 8 dimensions";
  d->rank = (unsigned)size->u.seq.n;
  d->numel = 1;
  for (unsigned i = 0; i < d->rank; i++) {
    int64_t n;
    if (!em_py_int(size->u.seq.items[i], &n) || n < 0 || (n > 0 && d->numel > (UINT64_MAX >> 8) / (uint64_t)n))
      return "a size that is not a small non-negative integer";
    d->shape[i] = (uint64_t)n;
    d->numel *= (uint64_t)n;
  }
  uint64_t want = 1;
  for (unsigned i = d->rank; i-- > 0;) {
    int64_t s;
    if (!em_py_int(stride->u.seq.items[i], &s))
      return "a stride that is not an integer";
    if (d->shape[i] > 1 && (uint64_t)s != want)
      return NONCONTIGUOUS;
    want *= d->shape[i];
  }
  return NULL;
}

/* NULL when v is a readable tensor (filled into d); "" when v is not a tensor at all;
 * otherwise why the tensor is skipped. */
static const char *parse_tensor(const em_py_t *v, desc_t *d)
{
  if (em_py_is_call(v, "torch._utils", "_rebuild_parameter") ||
      em_py_is_call(v, "torch._utils", "_rebuild_parameter_with_state"))
    v = em_py_item(v->u.obj.args, 0);
  if (!em_py_is_call(v, "torch._utils", "_rebuild_tensor_v2"))
    return em_py_is_call(v, "torch._utils", "_rebuild_tensor_v3") || em_py_is_call(v, "torch._utils",
                                                                                     "_rebuild_qtensor")
               ? "a tensor kind this reader does not know"
               : "";
  const em_py_t *args = v->u.obj.args;
  memset(d, 0, sizeof(*d));
  const char *why = parse_storage(em_py_item(args, 0), d);
  if (!why && (!em_py_int(em_py_item(args, 1), &d->offset) || d->offset < 0))
    why = "its storage offset is not a non-negative integer";
  return why ? why : parse_layout(em_py_item(args, 2), em_py_item(args, 3), d);
}

/* ---------------------------------------------------------------- the table */

/* Room for item n of a doubling array of elem-sized items; false when out of memory. */
static bool room(void **items, size_t *cap, size_t n, size_t elem)
{
  if (n < *cap)
    return true;
  size_t grown = *cap ? 2 * *cap : 64;
  void *p = realloc(*items, grown * elem);
  if (!p)
    return false;
  *items = p;
  *cap = grown;
  return true;
}

/* Counts a name against the file's bounds and refuses a repeat (Python would keep the
 * last value of a repeated key; which one torch.load gives is not worth guessing). */
static int account_name(load_t *ld, const char *name)
{
  size_t len = strlen(name);
  if (ld->f->ntensors + ld->f->nskipped >= MAX_VALUES || ld->name_bytes + len > MAX_NAME_BYTES)
    return em_err_set(ld->err, -EINVAL, "%s: more than %u values or %u MiB of names in its state dict: refused",
                      ld->f->path, MAX_VALUES, MAX_NAME_BYTES >> 20);
  if (em_hash_get(&ld->names, name, len))
    return em_err_set(ld->err, -EINVAL, "%s: '%.200s' appears twice in its state dict", ld->f->path, name);
  ld->name_bytes += len;
  return 0;
}

static int remember_name(load_t *ld, const char *name)
{
  return em_hash_put(&ld->names, name, strlen(name), (void *)name) == 0
             ? 0 : em_err_set(ld->err, -ENOMEM, "%s: out of memory", ld->f->path);
}

/* The first use of a storage fixes its dtype and size; a tensor that disagrees is refused. */
static int check_storage(load_t *ld, const char *name, const desc_t *d)
{
  size_t klen = strlen(d->key);
  uintptr_t at = (uintptr_t)em_hash_get(&ld->storages, d->key, klen);
  if (at) {
    const storage_seen_t *s = &ld->seen[at - 1];
    if (s->dtype == d->dtype && s->numel == d->storage_numel)
      return 0;
    return em_err_set(ld->err, -EINVAL, "%s: tensor '%s' reads storage '%s' as %s of %lld, but it was %s of %lld "
                      "before", ld->f->path, name, d->key, em_dtype_name(d->dtype), (long long)d->storage_numel,
                      em_dtype_name(s->dtype), (long long)s->numel);
  }
  if (!room((void **)&ld->seen, &ld->cap_seen, ld->nseen, sizeof(*ld->seen)))
    return em_err_set(ld->err, -ENOMEM, "%s: out of memory", ld->f->path);
  ld->seen[ld->nseen++] = (storage_seen_t){d->dtype, d->storage_numel};
  return em_hash_put(&ld->storages, d->key, klen, (void *)(uintptr_t)ld->nseen) == 0
             ? 0 : em_err_set(ld->err, -ENOMEM, "%s: out of memory", ld->f->path);
}

static int skip(load_t *ld, const char *name, const char *why)
{
  em_torch_file_t *f = ld->f;
  int rc = account_name(ld, name);
  if (rc)
    return rc;
  if (!room((void **)&f->skipped, &f->cap_skipped, f->nskipped, sizeof(*f->skipped)) ||
      !(f->skipped[f->nskipped].name = strdup(name)))
    return em_err_set(ld->err, -ENOMEM, "%s: out of memory", f->path);
  f->skipped[f->nskipped].why = why;
  return remember_name(ld, f->skipped[f->nskipped++].name);
}

/* Locates d's bytes: its storage entry must be stored (not compressed) and hold it. */
static int add_tensor(load_t *ld, const char *name, const desc_t *d)
{
  em_torch_file_t *f = ld->f;
  char entry[1024];
  snprintf(entry, sizeof(entry), "%s/data/%s", ld->prefix, d->key);
  const em_zip_entry_t *e = em_zip_find(&ld->zip, entry);
  uint64_t es = em_dtype_bits(d->dtype) / 8;
  if (!e)
    return em_err_set(ld->err, -EINVAL, "%s: tensor '%s': its storage %s is missing from the archive", f->path, name,
                      entry);
  if (!e->stored)
    return skip(ld, name, "its storage is compressed in the archive (torch never does this)");
  int rc = account_name(ld, name);
  if (!rc)
    rc = check_storage(ld, name, d);
  if (rc)
    return rc;
  if ((uint64_t)d->storage_numel > e->size / es || (uint64_t)d->offset > (uint64_t)d->storage_numel ||
      d->numel > (uint64_t)d->storage_numel - (uint64_t)d->offset)
    return em_err_set(ld->err, -EINVAL, "%s: tensor '%s' reaches past its storage %s (%llu bytes)", f->path, name,
                      entry, (ull)e->size);
  if (!room((void **)&f->tensors, &f->cap, f->ntensors, sizeof(*f->tensors)))
    return em_err_set(ld->err, -ENOMEM, "%s: out of memory", f->path);
  em_torch_tensor_t *t = &f->tensors[f->ntensors];
  *t = (em_torch_tensor_t){.dtype = d->dtype, .rank = d->rank, .numel = d->numel,
                           .begin = e->offset + (uint64_t)d->offset * es};
  memcpy(t->shape, d->shape, sizeof(t->shape));
  if (!(t->name = strdup(name)))
    return em_err_set(ld->err, -ENOMEM, "%s: out of memory", f->path);
  f->ntensors++;
  return remember_name(ld, t->name);
}

/* Every tensor of dict under its dotted name; nested dicts are flattened. Values that
 * are neither (numbers, strings, optimizer placeholders) are not weights: ignored. */
static int flatten(load_t *ld, em_py_t *dict, const char *prefix, int depth)
{
  if (dict->seen) /* a cycle through the memo */
    return 0;
  if (depth > MAX_NESTING)
    return em_err_set(ld->err, -EINVAL, "%s: '%s' is nested more than %d dicts deep", ld->f->path, prefix,
                      MAX_NESTING);
  dict->seen = true;
  int rc = 0;
  for (size_t i = 0; i < dict->u.dict.keys.n && !rc; i++) {
    const em_py_t *k = dict->u.dict.keys.items[i];
    em_py_t *v = dict->u.dict.values.items[i];
    char name[MAX_NAME];
    if (k->kind != EM_PY_STR) /* optimizer states key by integers: not names of weights */
      continue;
    if (memchr(k->u.str.s, 0, k->u.str.len)) /* "w\0x" must not pass for "w" */
      return em_err_set(ld->err, -EINVAL, "%s: a key of '%s' holds a NUL byte", ld->f->path, prefix);
    if (snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", k->u.str.s) >= (int)sizeof(name)) {
      rc = skip(ld, name, "a name longer than 1023 bytes (kept cut)");
      continue;
    }
    desc_t d;
    const char *why = v->kind == EM_PY_DICT ? "" : parse_tensor(v, &d);
    if (v->kind == EM_PY_DICT)
      rc = flatten(ld, v, name, depth + 1);
    else if (!why)
      rc = add_tensor(ld, name, &d);
    else if (why == NONCONTIGUOUS) /* a weight read wrongly would be worse than none */
      rc = em_err_set(ld->err, EM_EUNSUPPORTED, "%s: tensor '%s' is not contiguous (a transposed or sliced view): "
                      "save it with .contiguous()", ld->f->path, name);
    else if (*why)
      rc = skip(ld, name, why);
    else if (v->kind == EM_PY_OBJECT && !ld->opaque)
      ld->opaque = v;
  }
  return rc;
}

/* ---------------------------------------------------------------- layouts */

/* The state dict inside what torch.load would return, and which layout holds it. */
static em_py_t *state_dict_of(em_py_t *root, const char **layout)
{
  static const struct {
    const char *key, *layout;
  } wrappers[] = {{"state_dict", "lightning"}, {"module", "deepspeed"}, {"model", "megatron"}};
  for (size_t i = 0; i < sizeof(wrappers) / sizeof(*wrappers); i++) {
    em_py_t *inner = (em_py_t *)em_py_get(root, wrappers[i].key);
    if (inner && inner->kind == EM_PY_DICT) {
      *layout = wrappers[i].layout;
      return inner;
    }
  }
  *layout = "state_dict";
  return root->kind == EM_PY_DICT ? root : NULL;
}

/* ZeRO-3 saves each rank's partition and leaves empty placeholders in the module. */
static int check_not_partitioned(load_t *ld)
{
  em_torch_file_t *f = ld->f;
  size_t empty = 0;
  for (size_t i = 0; i < f->ntensors; i++)
    empty += f->tensors[i].numel == 0;
  if (f->ntensors > 0 && empty == f->ntensors)
    return em_err_set(ld->err, EM_EUNSUPPORTED, "%s: every weight is an empty placeholder: a DeepSpeed ZeRO-3 "
                      "partitioned checkpoint; consolidate it with zero_to_fp32.py, or save with "
                      "stage3_gather_16bit_weights_on_model_save", f->path);
  const em_py_t *c = ld->opaque ? ld->opaque->u.obj.callable : NULL;
  bool named = c && c->kind == EM_PY_GLOBAL;
  if (f->ntensors == 0)
    return em_err_set(ld->err, -EINVAL, "%s: no floating-point tensor in its %s (%zu others skipped)%s%s%s%s", f->path,
                      f->layout, f->nskipped, named ? "; it holds objects torch.load would build by calling " : "",
                      named ? c->u.global.module : "", named ? "." : "", named ? c->u.global.name : "");
  return 0;
}

/* ---------------------------------------------------------------- the archive */

static int read_entry(load_t *ld, const char *leaf, size_t max, char **out, size_t *len, bool *found)
{
  char name[600];
  snprintf(name, sizeof(name), "%s/%s", ld->prefix, leaf);
  const em_zip_entry_t *e = em_zip_find(&ld->zip, name);
  *found = e != NULL;
  if (!e)
    return 0;
  int rc = em_zip_read_all(&ld->zip, e, max, out, len, ld->err);
  if (rc)
    em_err_prefix(ld->err, ld->f->path);
  return rc;
}

/* The archive's top directory; a TorchScript archive or a zip torch did not write is refused. */
static int find_prefix(load_t *ld)
{
  const char *first = ld->zip.entries[0].name, *slash = strchr(first, '/');
  if (!slash || (size_t)(slash - first) >= sizeof(ld->prefix))
    return em_err_set(ld->err, -EINVAL, "%s: a zip, but not one torch.save wrote (no top directory)", ld->f->path);
  memcpy(ld->prefix, first, (size_t)(slash - first));
  ld->prefix[slash - first] = 0;
  char name[600];
  snprintf(name, sizeof(name), "%s/constants.pkl", ld->prefix);
  if (em_zip_find(&ld->zip, name))
    return em_err_set(ld->err, EM_EUNSUPPORTED, "%s: a TorchScript archive (torch.jit.save): save the model's "
                      "state_dict with torch.save instead", ld->f->path);
  return 0;
}

static int check_byteorder(load_t *ld)
{
  char *text = NULL;
  size_t len = 0;
  bool found;
  int rc = read_entry(ld, "byteorder", 16, &text, &len, &found);
  if (!rc && found && strcmp(text, "little") != 0)
    rc = em_err_set(ld->err, EM_EUNSUPPORTED, "%s: written on a big-endian machine (byteorder '%s'): re-save it on a "
                    "little-endian one", ld->f->path, strcmp(text, "big") == 0 ? "big" : "unknown");
  free(text);
  return rc; /* absent before torch 2.1, which wrote only little-endian archives */
}

static int load_pickle(load_t *ld)
{
  char *pkl = NULL, what[4200];
  size_t len = 0;
  bool found;
  int rc = read_entry(ld, "data.pkl", EM_TORCH_MAX_PICKLE, &pkl, &len, &found);
  if (!rc && !found)
    rc = em_err_set(ld->err, -EINVAL, "%s: a zip without %s/data.pkl: not a checkpoint torch.save wrote",
                    ld->f->path, ld->prefix);
  em_pickle_t *pk = NULL;
  em_py_t *root = NULL;
  snprintf(what, sizeof(what), "%s: data.pkl", ld->f->path);
  if (!rc)
    rc = em_pickle_load(pkl, len, what, &pk, &root, ld->err);
  free(pkl);
  em_py_t *sd = rc ? NULL : state_dict_of(root, &ld->f->layout);
  if (!rc && !sd)
    rc = em_err_set(ld->err, -EINVAL, "%s: holds no dict of tensors (a whole pickled model? save its state_dict)",
                    ld->f->path);
  if (!rc)
    rc = flatten(ld, sd, "", 0);
  if (!rc)
    rc = check_not_partitioned(ld); /* before the free: its message may name an object in the arena */
  em_pickle_free(&pk);
  return rc;
}

/* Zip files start with a local header; the legacy format is a bare pickle stream. */
static int check_magic(em_torch_file_t *f, em_err_t *err)
{
  uint8_t magic[4] = {0};
  int rc = f->size >= 4 ? em_fs_pread(f->fd, magic, 4, 0) : EM_ECHANGED;
  if (rc == 0 && memcmp(magic, "PK\x03\x04", 4) == 0)
    return 0;
  if (rc == 0 && magic[0] == 0x80)
    return em_err_set(err, EM_EUNSUPPORTED, "%s: the legacy torch format (torch < 1.6, or "
                      "_use_new_zipfile_serialization=False): load and re-save it with a newer torch", f->path);
  return em_err_set(err, -EINVAL, "%s: not a torch checkpoint (no zip archive%s)", f->path,
                    rc == EM_ECHANGED ? ": under 4 bytes" : "");
}

int em_torch_open(const char *path, em_torch_file_t **out, em_err_t *err)
{
  *out = NULL;
  em_torch_file_t *f = calloc(1, sizeof(*f));
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  }
  load_t ld = {.f = f, .err = err};
  em_hash_init(&ld.names);
  em_hash_init(&ld.storages);
  struct stat st;
  int rc = f->fd = em_fs_open_regular(path, err);
  if (f->fd >= 0)
    rc = fstat(f->fd, &st) == 0 ? 0 : em_err_set(err, -errno, "%s: %s", path, strerror(errno));
  if (!rc) {
    f->size = (uint64_t)st.st_size;
    rc = check_magic(f, err);
  }
  if (!rc)
    rc = em_zip_open(f->fd, path, &ld.zip, err);
  if (!rc && !(rc = find_prefix(&ld)) && !(rc = check_byteorder(&ld)))
    rc = load_pickle(&ld);
  if (ld.zip.entries)
    em_zip_close(&ld.zip);
  em_hash_free(&ld.names);
  em_hash_free(&ld.storages);
  free(ld.seen);
  if (rc)
    em_torch_destroy(&f);
  *out = f;
  return rc;
}

void em_torch_destroy(em_torch_file_t **self_p)
{
  em_torch_file_t *f = *self_p;
  if (!f)
    return;
  if (f->fd >= 0)
    close(f->fd);
  for (size_t i = 0; i < f->ntensors; i++)
    free(f->tensors[i].name);
  for (size_t i = 0; i < f->nskipped; i++)
    free(f->skipped[i].name);
  free(f->tensors);
  free(f->skipped);
  free(f->path);
  free(f);
  *self_p = NULL;
}

int em_torch_read(const em_torch_file_t *f, uint64_t off, size_t len, void *buf, em_err_t *err)
{
  return em_fs_read_at(f->fd, f->path, off, len, buf, err);
}

/* ---------------------------------------------------------------- as an em_format_t */

static int fmt_open(const char *path, void **impl, em_err_t *err)
{
  em_torch_file_t *f = NULL;
  int rc = em_torch_open(path, &f, err);
  *impl = f;
  return rc;
}

static size_t fmt_ntensors(const void *impl) { return ((const em_torch_file_t *)impl)->ntensors; }

static void fmt_tensor(const void *impl, size_t i, em_tensor_t *out)
{
  const em_torch_tensor_t *t = &((const em_torch_file_t *)impl)->tensors[i];
  *out = (em_tensor_t){.name = t->name, .dtype = t->dtype, .rank = t->rank, .shape = t->shape, .numel = t->numel,
                       .begin = t->begin};
}

static int fmt_read(const void *impl, uint64_t off, size_t len, void *buf, em_err_t *err)
{
  return em_torch_read(impl, off, len, buf, err);
}

static void fmt_close(void *impl)
{
  em_torch_file_t *f = impl;
  em_torch_destroy(&f);
}

const em_format_t em_format_torch = {"torch", fmt_open, fmt_ntensors, fmt_tensor, fmt_read, fmt_close};
