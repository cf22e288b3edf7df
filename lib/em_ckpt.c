/* SPDX-License-Identifier: MIT */
/* Opening a checkpoint: one weight file (safetensors, or a torch zip: .bin .pt .pth .ckpt),
 * a sharded set through its *.safetensors.index.json or pytorch_model.bin.index.json, or
 * a checkpoint directory holding one of these (Hugging Face, DeepSpeed global_stepN,
 * Megatron iter_N/mp_rank_00). */
#include "em_ckpt.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "em_dtype.h"
#include "em_err.h"
#include "em_fs.h"
#include "em_jsonfile.h"
#include "em_torch.h"

static char *path_join(const char *dir, const char *name)
{
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  if (p)
    snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static int add_file(em_ckpt_t *ck, const char *path, em_err_t *err)
{
  em_file_t **files = realloc(ck->files, (ck->nfiles + 1) * sizeof(*files));
  if (!files)
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  ck->files = files;
  const em_format_t *format = em_name_is_torch(path) ? &em_format_torch : &em_format_safetensors;
  int rc = em_file_open(format, path, &files[ck->nfiles], err);
  if (rc == -ENOENT)
    em_err_set(err, rc, "%s: missing", path);
  if (rc == 0)
    ck->nfiles++;
  return rc;
}

static int cmp_tensor(const void *a, const void *b)
{
  return strcmp(((const em_tensor_t *)a)->name, ((const em_tensor_t *)b)->name);
}

/* Builds the sorted tensor table; a name held by two files is an error. */
static int build_table(em_ckpt_t *ck, em_err_t *err)
{
  size_t n = 0;
  for (size_t i = 0; i < ck->nfiles; i++)
    n += ck->files[i]->format->ntensors(ck->files[i]->impl);
  ck->tensors = calloc(n ? n : 1, sizeof(*ck->tensors));
  if (!ck->tensors)
    return em_err_set(err, -ENOMEM, "%s: out of memory", ck->path);
  for (size_t i = 0; i < ck->nfiles; i++) {
    const em_file_t *f = ck->files[i];
    for (size_t j = 0, m = f->format->ntensors(f->impl); j < m; j++) {
      em_tensor_t *t = &ck->tensors[ck->ntensors++];
      f->format->tensor(f->impl, j, t);
      t->file = f;
    }
  }
  qsort(ck->tensors, ck->ntensors, sizeof(*ck->tensors), cmp_tensor);
  for (size_t i = 1; i < ck->ntensors; i++) {
    if (strcmp(ck->tensors[i - 1].name, ck->tensors[i].name) == 0)
      return em_err_set(err, -EINVAL, "%s: tensor '%s' is in both %s and %s", ck->path, ck->tensors[i].name,
                        ck->tensors[i - 1].file->path, ck->tensors[i].file->path);
  }
  return 0;
}

const em_tensor_t *em_ckpt_find(const em_ckpt_t *ck, const char *name)
{
  size_t lo = 0, hi = ck->ntensors;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(ck->tensors[mid].name, name);
    if (c == 0)
      return &ck->tensors[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* A shard name from an index must be a plain file name in the index's directory. */
static bool safe_shard_name(const char *s)
{
  return *s && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int cmp_str_ptr(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every tensor the index names must be in the shard it names. */
static int check_index_entries(em_ckpt_t *ck, const cJSON *map, const char *index, em_err_t *err)
{
  for (const cJSON *c = map->child; c; c = c->next) {
    const em_tensor_t *t = em_ckpt_find(ck, c->string);
    const char *base = t ? strrchr(t->file->path, '/') : NULL;
    base = base ? base + 1 : (t ? t->file->path : NULL);
    if (!t || strcmp(base, c->valuestring) != 0)
      return em_err_set(err, -EINVAL, "%s: maps tensor '%s' to %s, which does not hold it", index, c->string,
                        c->valuestring);
  }
  return 0;
}

static int open_index(em_ckpt_t *ck, const char *index, em_err_t *err)
{
  cJSON *root = NULL;
  int rc = em_jsonfile_read(index, &root, err);
  if (rc)
    return rc;
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
  if (!cJSON_IsObject(map) || !map->child) {
    rc = em_err_set(err, -EINVAL, "%s: no weight_map object", index);
    goto done;
  }
  size_t n = 0;
  for (const cJSON *c = map->child; c; c = c->next) {
    if (!cJSON_IsString(c) || !safe_shard_name(c->valuestring)) {
      rc = em_err_set(err, -EINVAL, "%s: weight_map entry '%s' is not a plain shard file name", index, c->string);
      goto done;
    }
    n++;
  }
  /* Open each distinct shard once, in name order. */
  const char **shards = malloc(n * sizeof(*shards));
  char *dir = strdup(index);
  if (!shards || !dir) {
    free(shards);
    free(dir);
    rc = em_err_set(err, -ENOMEM, "%s: out of memory", index);
    goto done;
  }
  n = 0;
  for (const cJSON *c = map->child; c; c = c->next)
    shards[n++] = c->valuestring;
  qsort(shards, n, sizeof(*shards), cmp_str_ptr);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  for (size_t i = 0; i < n && !rc; i++) {
    if (i > 0 && strcmp(shards[i], shards[i - 1]) == 0)
      continue;
    char *shard = slash ? path_join(dir, shards[i]) : strdup(shards[i]);
    rc = shard ? add_file(ck, shard, err) : em_err_set(err, -ENOMEM, "out of memory");
    free(shard);
  }
  free(shards);
  free(dir);
  if (!rc)
    rc = build_table(ck, err);
  if (!rc)
    rc = check_index_entries(ck, map, index, err);
done:
  cJSON_Delete(root);
  return rc;
}

/* What a checkpoint directory holds, by kind: for each, the preferred name if present
 * (else the first seen) and how many there are. */
enum { K_ST_INDEX, K_ST, K_BIN_INDEX, K_TORCH, K_COUNT };
typedef struct listing {
  char *pick[K_COUNT];
  int count[K_COUNT];
  bool distcp, latest, mp_rank;
} listing_t;

static const char *const preferred[K_COUNT][3] = {
  {"model.safetensors.index.json"}, {"model.safetensors"}, {"pytorch_model.bin.index.json"},
  {"pytorch_model.bin", "mp_rank_00_model_states.pt", "model_optim_rng.pt"}};

static int kind_of(const char *n)
{
  if (em_name_ends_with(n, ".safetensors.index.json"))
    return K_ST_INDEX;
  if (em_name_ends_with(n, ".bin.index.json"))
    return K_BIN_INDEX;
  if (em_name_is_shard(n) || !em_name_is_weight_file(n))
    return -1;
  return em_name_ends_with(n, ".safetensors") ? K_ST : K_TORCH;
}

static bool is_preferred(int k, const char *n)
{
  for (int i = 0; i < 3 && preferred[k][i]; i++)
    if (strcmp(n, preferred[k][i]) == 0)
      return true;
  return false;
}

static void note(listing_t *l, const char *n)
{
  l->distcp |= em_name_ends_with(n, ".distcp");
  l->latest |= strcmp(n, "latest") == 0;
  l->mp_rank |= strcmp(n, "mp_rank_00") == 0;
  int k = n[0] == '.' ? -1 : kind_of(n);
  if (k < 0)
    return;
  l->count[k]++;
  if (!l->pick[k] || (is_preferred(k, n) && !is_preferred(k, l->pick[k]))) {
    free(l->pick[k]);
    l->pick[k] = strdup(n);
  }
}

/* The message for a directory with nothing this reader opens. */
static int nothing_to_open(const char *dir, const listing_t *l, em_err_t *err)
{
  if (l->distcp)
    return em_err_set(err, EM_EUNSUPPORTED, "%s: an FSDP / torch.distributed.checkpoint sharded checkpoint (.distcp): "
                      "save with StateDictType.FULL_STATE_DICT, or convert it with "
                      "torch.distributed.checkpoint.format_utils.dcp_to_torch_save", dir);
  if (l->latest)
    return em_err_set(err, -ENOENT, "%s: a DeepSpeed output directory: its checkpoints are the global_stepN "
                      "directories inside", dir);
  return em_err_set(err, -ENOENT, "%s: no weight file (.safetensors, .bin, .pt, .pth, .ckpt) in this directory", dir);
}

/* Safetensors first, then torch files; an index before the files it names. */
static int choose(const char *dir, listing_t *l, char **found, em_err_t *err)
{
  static const char *const what[K_COUNT] = {".safetensors.index.json", ".safetensors", ".bin.index.json",
                                            "torch weight"};
  for (int k = 0; k < K_COUNT; k++) {
    if (!l->pick[k])
      continue;
    if (l->count[k] > 1 && !is_preferred(k, l->pick[k]))
      return em_err_set(err, -EINVAL, "%s: %d %s files and none named %s to choose", dir, l->count[k], what[k],
                        preferred[k][0]);
    *found = path_join(dir, l->pick[k]);
    return *found ? 0 : em_err_set(err, -ENOMEM, "out of memory");
  }
  if (l->mp_rank) { /* Megatron: iter_N/mp_rank_00/model_optim_rng.pt */
    *found = path_join(dir, "mp_rank_00/model_optim_rng.pt");
    return *found ? 0 : em_err_set(err, -ENOMEM, "out of memory");
  }
  return nothing_to_open(dir, l, err);
}

/* Picks what to open inside a checkpoint directory. Caller owns *found. */
static int scan_dir(const char *dir, char **found, em_err_t *err)
{
  DIR *d = em_fs_opendir(dir);
  if (!d)
    return em_err_set(err, -errno, "%s: %s", dir, em_fs_strerror(-errno));
  listing_t l = {0};
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    note(&l, e->d_name);
  closedir(d);
  int rc = choose(dir, &l, found, err);
  for (int k = 0; k < K_COUNT; k++)
    free(l.pick[k]);
  return rc;
}

/* A weight file or an index, by its name; whatever it is, it is opened as a regular file
 * (a directory or FIFO of that name is an error saying so). */
static int open_file(em_ckpt_t *ck, const char *path, em_err_t *err)
{
  if (em_name_ends_with(path, ".index.json"))
    return open_index(ck, path, err);
  if (!em_name_ends_with(path, ".safetensors") && !em_name_is_torch(path))
    return em_err_set(err, -EINVAL, "%s: not a checkpoint (expected a directory, .safetensors, .bin, .pt, .pth, "
                      ".ckpt or .index.json)", path);
  int rc = add_file(ck, path, err);
  return rc ? rc : build_table(ck, err);
}

static int open_path(em_ckpt_t *ck, const char *path, em_err_t *err)
{
  struct stat sb;
  int rc = em_fs_stat(path, &sb);
  if (rc)
    return em_err_set(err, rc, "%s: %s", path, em_fs_strerror(rc));
  if (!S_ISDIR(sb.st_mode))
    return open_file(ck, path, err);
  char *found = NULL;
  rc = scan_dir(path, &found, err);
  if (!rc)
    rc = open_file(ck, found, err);
  free(found);
  return rc;
}

int em_ckpt_open(const char *path, em_ckpt_t **out, em_err_t *err)
{
  *out = NULL;
  em_ckpt_t *ck = calloc(1, sizeof(*ck));
  if (!ck || !(ck->path = strdup(path))) {
    free(ck);
    return em_err_set(err, -ENOMEM, "%s: out of memory", path);
  }
  int rc = open_path(ck, path, err);
  if (rc) {
    em_ckpt_destroy(&ck);
    return rc;
  }
  *out = ck;
  return 0;
}

void em_ckpt_destroy(em_ckpt_t **self_p)
{
  em_ckpt_t *ck = *self_p;
  if (!ck)
    return;
  for (size_t i = 0; i < ck->nfiles; i++)
    em_file_close(&ck->files[i]);
  free(ck->files);
  free(ck->tensors);
  free(ck->path);
  free(ck);
  *self_p = NULL;
}

uint64_t em_ckpt_data_bytes(const em_ckpt_t *ck)
{
  uint64_t bits = 0;
  for (size_t i = 0; i < ck->ntensors; i++)
    bits += ck->tensors[i].numel * em_dtype_bits(ck->tensors[i].dtype);
  return bits / 8;
}
