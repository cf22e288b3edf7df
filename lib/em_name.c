/* SPDX-License-Identifier: MIT */
/* Steps from checkpoint names, and where a user's PATH puts its checkpoint and run. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "em_err.h"
#include "emerge.h"

bool em_name_step(const char *name, int64_t *step)
{
  /* The baseline the training callbacks save where checkpoint rotation never deletes it
   * (Hugging Face's rotation takes only checkpoint-<digits>): the run's step 0. */
  if (strncmp(name, EM_BASELINE_NAME, strlen(EM_BASELINE_NAME)) == 0 &&
      (name[strlen(EM_BASELINE_NAME)] == 0 || name[strlen(EM_BASELINE_NAME)] == '.')) {
    *step = 0;
    return true;
  }
  /* "model" only as model-N (torch loops' model-00050.pt): model_3 is more often a run. */
  static const struct {
    const char *word, *joins;
  } words[] = {{"checkpoint", "-_="}, {"global_step", "-_="}, {"iter", "-_="}, {"step", "-_="}, {"ckpt", "-_="},
               {"model", "-"}};
  bool found = false;
  for (size_t i = 0; name[i]; i++) {
    for (size_t w = 0; w < sizeof(words) / sizeof(*words); w++) {
      size_t len = strlen(words[w].word), j = i + len;
      if (strncasecmp(name + i, words[w].word, len) != 0)
        continue;
      if (name[j] && strchr(words[w].joins, name[j]))
        j++;
      else if (strcmp(words[w].word, "model") == 0)
        continue;
      int64_t v = 0;
      size_t digits = 0;
      while (name[j + digits] >= '0' && name[j + digits] <= '9') {
        if (++digits <= 18) /* a longer run is not a step: it would overflow */
          v = v * 10 + (name[j + digits - 1] - '0');
      }
      if (digits == 0 || digits > 18)
        continue;
      *step = v; /* later matches win: the number after the LAST word */
      found = true;
    }
  }
  return found;
}

bool em_name_epoch(const char *name, int64_t *epoch)
{
  bool found = false;
  for (const char *p = name; (p = strcasestr(p, "epoch")) != NULL; p++) {
    const char *d = p + 5;
    if (*d == '-' || *d == '_' || *d == '=')
      d++;
    int64_t v = 0;
    size_t digits = 0;
    while (d[digits] >= '0' && d[digits] <= '9') {
      if (++digits <= 18) /* a longer run is not an epoch: it would overflow */
        v = v * 10 + (d[digits - 1] - '0');
    }
    if (digits > 0 && digits <= 18) {
      *epoch = v; /* the last one wins, as for steps */
      found = true;
    }
  }
  return found;
}

bool em_name_ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

bool em_name_is_torch(const char *name)
{
  return em_name_ends_with(name, ".bin") || em_name_ends_with(name, ".pt") || em_name_ends_with(name, ".pth") ||
         em_name_ends_with(name, ".ckpt");
}

/* What trainers save beside the weights under torch names: the HF Trainer's optimizer.pt,
 * scheduler.pt, scaler.pt, rng_state*.pth and training_args.bin, DeepSpeed's
 * *_optim_states.pt. Not weights: never chosen, never a checkpoint of their own. */
static bool is_torch_aux(const char *name)
{
  static const char *const starts[] = {"optimizer", "scheduler", "scaler", "rng_state", "training_args"};
  for (size_t i = 0; i < sizeof(starts) / sizeof(*starts); i++)
    if (strncmp(name, starts[i], strlen(starts[i])) == 0)
      return true;
  return em_name_ends_with(name, "optim_states.pt");
}

bool em_name_is_weight_file(const char *name)
{
  if (em_name_is_torch(name) && is_torch_aux(name))
    return false;
  return em_name_ends_with(name, ".safetensors") || em_name_ends_with(name, ".safetensors.index.json") ||
         em_name_ends_with(name, ".bin.index.json") || em_name_is_torch(name);
}

bool em_name_is_shard(const char *name)
{
  const char *of = strstr(name, "-of-");
  return of && (em_name_ends_with(name, ".safetensors") || em_name_ends_with(name, ".bin")) && of > name &&
         of[-1] >= '0' && of[-1] <= '9';
}

static char *dup_dirname(const char *path)
{
  const char *slash = strrchr(path, '/');
  if (!slash)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

static const char *base_name(const char *path)
{
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* The step of a checkpoint directory from its trainer_state.json, if any. */
static bool trainer_step(const char *dir, int64_t *step)
{
  em_trainer_t t;
  if (em_trainer_read(dir, -1, &t, NULL) != 0)
    return false;
  bool ok = t.has_global_step;
  *step = t.global_step;
  em_trainer_free(&t);
  return ok;
}

int em_ckpt_locate(const char *path, em_ckpt_where_t *out, em_err_t *err)
{
  memset(out, 0, sizeof(*out));
  struct stat sb;
  if (stat(path, &sb) != 0)
    return em_err_set(err, -errno, "%s: %s", path, strerror(errno));
  char *clean = strdup(path);
  if (!clean)
    return em_err_set(err, -ENOMEM, "out of memory");
  for (size_t n = strlen(clean); n > 1 && clean[n - 1] == '/'; n--)
    clean[n - 1] = 0;
  char *parent = dup_dirname(clean);
  int64_t step;
  if (parent && !S_ISDIR(sb.st_mode) && em_name_step(base_name(parent), &step)) {
    out->ckpt_path = parent;   /* a file inside checkpoint-N/ belongs to that directory */
    free(clean);
    parent = NULL;
  } else {
    out->ckpt_path = clean;
  }
  free(parent);
  out->run_dir = out->ckpt_path ? dup_dirname(out->ckpt_path) : NULL;
  char *real = out->run_dir ? realpath(out->run_dir, NULL) : NULL;
  out->run = real ? strdup(base_name(real)) : NULL;
  free(real);
  if (!out->ckpt_path || !out->run_dir || !out->run) {
    em_ckpt_where_free(out);
    return em_err_set(err, -ENOMEM, "%s: cannot resolve its directory", path);
  }
  if (em_name_step(base_name(out->ckpt_path), &out->step))
    out->has_step = true;
  else if (stat(out->ckpt_path, &sb) == 0 && S_ISDIR(sb.st_mode))
    out->has_step = trainer_step(out->ckpt_path, &out->step);
  return 0;
}

void em_ckpt_where_free(em_ckpt_where_t *w)
{
  free(w->ckpt_path);
  free(w->run_dir);
  free(w->run);
  memset(w, 0, sizeof(*w));
}
