/* SPDX-License-Identifier: MIT */
#include "em_scan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "em_fs.h"
#include "emerge.h"

bool em_scan_hidden(const char *name) { return name[0] == '.'; }

/* A checkpoint still being staged: HF's tmp-checkpoint-N, name.tmp, name.part. */
static bool staging(const char *name)
{
  return strncmp(name, "tmp", 3) == 0 || em_name_ends_with(name, ".tmp") || em_name_ends_with(name, ".part");
}

em_entry_t em_scan_classify(const char *name, bool is_dir)
{
  if (em_scan_hidden(name))
    return EM_ENTRY_IGNORE;
  int64_t step;
  if (is_dir && em_name_step(name, &step))
    return staging(name) ? EM_ENTRY_IGNORE : EM_ENTRY_CKPT_DIR;
  if (is_dir) /* a run under tmp_sweep/ is watched; a staged name.tmp/ is not */
    return strncmp(name, "tmp", 3) != 0 && staging(name) ? EM_ENTRY_IGNORE : EM_ENTRY_RUN_DIR;
  if (staging(name) || !em_name_is_weight_file(name) || em_name_is_shard(name))
    return EM_ENTRY_IGNORE;
  return EM_ENTRY_CKPT_FILE;
}

/* FNV-1a, enough to tell versions apart. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 1099511628211ULL;
  return h;
}

static void add_file(em_fingerprint_t *fp, const char *name, const struct stat *st)
{
  int64_t mtime = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  int64_t size = (int64_t)st->st_size, ino = (int64_t)st->st_ino, mode = (int64_t)st->st_mode;
  fp->quiet = mix(mix(mix(mix(fp->quiet, name, strlen(name) + 1), &size, 8), &mtime, 8), &mode, 8);
  if (em_name_is_weight_file(name)) {
    fp->version = mix(mix(mix(mix(fp->version, name, strlen(name) + 1), &size, 8), &mtime, 8), &ino, 8);
    fp->nweights++;
  }
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted names of a directory's entries (not starting with '.'); NULL when empty. */
static char **sorted_names(DIR *d, size_t *count)
{
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.')
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 32;
      char **grown = realloc(names, cap * sizeof(*names));
      if (!grown)
        break;
      names = grown;
    }
    names[n] = strdup(e->d_name);
    if (names[n])
      n++;
  }
  if (n) /* readdir order is not stable */
    qsort(names, n, sizeof(*names), cmp_names);
  *count = n;
  return names;
}

/* Adds a directory's files to fp. Weight files count whatever they are: a FIFO, link or
 * directory of that name makes the checkpoint fail with a reason rather than wait for
 * ever; other entries count only as regular files. Links are not followed. Megatron keeps
 * the weights one level down (iter_N/mp_rank_00/model_optim_rng.pt): that directory's
 * files count as the checkpoint's own. */
static int add_dir(em_fingerprint_t *fp, const char *path, bool top)
{
  DIR *d = em_fs_opendir(path);
  if (!d)
    return -errno;
  size_t n = 0;
  char **names = sorted_names(d, &n);
  struct stat st;
  for (size_t i = 0; i < n; i++) {
    if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) == 0) {
      char sub[PATH_MAX];
      if (top && S_ISDIR(st.st_mode) && strcmp(names[i], "mp_rank_00") == 0 &&
          snprintf(sub, sizeof(sub), "%s/%s", path, names[i]) < (int)sizeof(sub))
        add_dir(fp, sub, false);
      else if (S_ISREG(st.st_mode) || em_name_is_weight_file(names[i]))
        add_file(fp, names[i], &st);
    }
    free(names[i]);
  }
  closedir(d);
  free(names);
  return 0;
}

int em_scan_fingerprint(const char *path, bool is_dir, em_fingerprint_t *fp)
{
  const uint64_t basis = 14695981039346656037ULL;
  *fp = (em_fingerprint_t){basis, basis, 0};
  struct stat st;
  if (!is_dir) {
    int rc = em_fs_stat(path, &st);
    if (rc)
      return rc;
    const char *base = strrchr(path, '/');
    add_file(fp, base ? base + 1 : path, &st);
    return 0;
  }
  int rc = add_dir(fp, path, true);
  if (!rc && fp->nweights == 0)
    fp->version = 0;
  return rc;
}

void em_scan_version_text(uint64_t version, char out[17])
{
  snprintf(out, 17, "%016llx", (unsigned long long)version);
}
