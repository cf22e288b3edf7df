/* SPDX-License-Identifier: MIT */
#include "em_scan.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "emerge.h"

bool em_scan_skip_name(const char *name)
{
  return name[0] == '.' || strncmp(name, "tmp", 3) == 0 || em_name_ends_with(name, ".tmp") || em_name_ends_with(name, ".part");
}

em_entry_t em_scan_classify(const char *name, bool is_dir)
{
  if (em_scan_skip_name(name))
    return EM_ENTRY_IGNORE;
  int64_t step;
  if (is_dir)
    return em_name_step(name, &step) ? EM_ENTRY_CKPT_DIR : EM_ENTRY_RUN_DIR;
  if (!em_name_is_weight_file(name) || em_name_is_shard(name))
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
  int64_t size = (int64_t)st->st_size, ino = (int64_t)st->st_ino;
  fp->quiet = mix(mix(mix(fp->quiet, name, strlen(name) + 1), &size, 8), &mtime, 8);
  if (em_name_is_weight_file(name)) {
    fp->version = mix(mix(mix(mix(fp->version, name, strlen(name) + 1), &size, 8), &mtime, 8), &ino, 8);
    fp->nweights++;
  }
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int em_scan_fingerprint(const char *path, bool is_dir, em_fingerprint_t *fp)
{
  const uint64_t basis = 14695981039346656037ULL;
  *fp = (em_fingerprint_t){basis, basis, 0};
  struct stat st;
  if (!is_dir) {
    if (stat(path, &st) != 0)
      return -errno;
    const char *base = strrchr(path, '/');
    add_file(fp, base ? base + 1 : path, &st);
    return 0;
  }
  DIR *d = opendir(path);
  if (!d)
    return -errno;
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
  closedir(d);
  if (n) /* readdir order is not stable */
    qsort(names, n, sizeof(*names), cmp_names);
  for (size_t i = 0; i < n; i++) {
    char full[4096];
    snprintf(full, sizeof(full), "%s/%s", path, names[i]);
    if (stat(full, &st) == 0 && S_ISREG(st.st_mode))
      add_file(fp, names[i], &st);
    free(names[i]);
  }
  free(names);
  if (fp->nweights == 0)
    fp->version = 0;
  return 0;
}

void em_scan_version_text(uint64_t version, char out[17])
{
  snprintf(out, 17, "%016llx", (unsigned long long)version);
}
