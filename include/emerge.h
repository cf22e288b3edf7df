/* SPDX-License-Identifier: MIT */
/* libemerge: open a training checkpoint, compute its multifractal spectrum with
 * Neuron-based Multifractal Analysis (NeuroMFA, Xiao et al., ICLR 2025) and its degree
 * of emergence against a baseline. The method is docs/METHOD.md.
 *
 * Conventions: functions return 0 or a negative errno-style code and, when given an
 * em_err_t, fill it with a message that names the file and the reason. Nothing here
 * aborts on bad input, logs, or starts threads; every object may be used from one
 * thread at a time. */
#ifndef EMERGE_H
#define EMERGE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EM_VERSION "0.1.0"

/* Error codes beyond the plain errno ones (-EINVAL bad input, -ENOENT missing, -EIO,
 * -ENOMEM). The daemon maps them to checkpoint states. */
#define EM_EUNSUPPORTED (-ENOTSUP) /* a format or dtype this version cannot read */
#define EM_ENONFINITE   (-EDOM)    /* NaN or Inf among the weights read */
#define EM_EDEGENERATE  (-ERANGE)  /* no spectrum: no node kept, < 2 radii, alpha0 <= 0 */
#define EM_ECANCELED    (-ECANCELED) /* the caller's cancel flag was raised */

typedef struct em_err {
  int code;       /* the negative code last returned, 0 when none */
  char msg[768];  /* "model.safetensors: tensor 'x' ends at 812 but ..." */
} em_err_t;

/* A short name for a code ("unsupported format", "invalid input", ...). */
const char *em_strerror(int code);

/* ---------------------------------------------------------------- parameters */

typedef enum em_alpha0_rule {
  EM_ALPHA0_CENTRAL = 0,   /* (tau(q+) - tau(q-)) / (q+ - q-) around q = 0: default */
  EM_ALPHA0_REFERENCE      /* alpha at the first argmax of f, as the authors' numpy code */
} em_alpha0_rule_t;

typedef enum em_arch {
  EM_ARCH_AUTO = 0,
  EM_ARCH_GPT_NEOX,
  EM_ARCH_LLAMA,
  EM_ARCH_GPT2,
  EM_ARCH_BERT,
  EM_ARCH_MLP,
  EM_ARCH_TORCH_TRANSFORMER,   /* torch.nn.TransformerEncoder/Decoder layers */
  EM_ARCH_CNN                  /* convolutions (channels as neurons), then linear layers */
} em_arch_t;

/* What is measured: the authors' sampled networks, or every neuron. auto picks full
 * when the checkpoint maps at most EM_AUTO_FULL_WEIGHTS weights (docs/METHOD.md
 * "Sampled and full": full mode then costs no more than a sampled analysis of the 1b
 * shape in bench/RESULTS.md), else sampled. A result's params.mode is never auto. */
typedef enum em_mode { EM_MODE_AUTO = 0, EM_MODE_SAMPLED, EM_MODE_FULL } em_mode_t;
#define EM_AUTO_FULL_WEIGHTS 50000000ULL
/* The widest layer the analysis accepts, in neurons (a larger dimension is refused with a
 * message before anything is allocated for it; docs/SECURITY.md). */
#define EM_MAX_WIDTH (1u << 24)

typedef struct em_params {
  int samples;               /* S, sampled networks per checkpoint (10) */
  int neurons;               /* L, neurons sampled per hidden-width layer (32) */
  uint32_t seed;             /* sample k uses numpy seed seed + k (0) */
  int threshold;             /* largest distance 1/|w| kept (150) */
  double q_min, q_max, q_step; /* q grid, multiples of 0.01 (-3, 3, 0.1) */
  em_alpha0_rule_t alpha0;   /* how alpha0 is read off the spectrum (central) */
  em_mode_t mode;            /* sampled, full or auto (auto) */
  em_arch_t arch;            /* architecture mapping (auto) */
  int threads;               /* threads analysing one checkpoint (1); not a parameter of the
                                measurement: every result is bit-identical for every value */
} em_params_t;

/* Fills the defaults above. */
void em_params_default(em_params_t *p);
/* Checks ranges and consistency; -EINVAL with a message naming the parameter. */
int em_params_check(const em_params_t *p, em_err_t *err);
/* Sets one parameter by name (flag or config key, "q_min" style) from text; -EINVAL
 * names the key and the bad value, -ENOENT for an unknown key. value NULL means "true"
 * for full. */
int em_params_set(em_params_t *p, const char *key, const char *value, em_err_t *err);
/* Parses / names a mode ("auto", "sampled", "full"). */
int em_mode_parse(const char *name, em_mode_t *out);
const char *em_mode_name(em_mode_t mode);
/* Parses / names an architecture ("auto", "gpt-neox", "llama", "gpt2", "bert", "mlp",
 * "torch-transformer"). */
int em_arch_parse(const char *name, em_arch_t *out);
const char *em_arch_name(em_arch_t arch);

/* ---------------------------------------------------------------- checkpoints */

typedef struct em_ckpt em_ckpt_t;

/* Opens a checkpoint: a .safetensors file, a model.safetensors.index.json, or a
 * directory holding either (a Hugging Face checkpoint directory). Every weight file is
 * validated by the safetensors rules before this returns. Torch files (.bin .pt .pth
 * .ckpt) give EM_EUNSUPPORTED. Caller owns *out and destroys it with em_ckpt_destroy. */
int em_ckpt_open(const char *path, em_ckpt_t **out, em_err_t *err);
void em_ckpt_destroy(em_ckpt_t **self_p);
/* Checks every weight of every floating-point tensor for NaN/Inf (the analysis reads only
 * the sampled neurons). EM_ENONFINITE names the tensor and element; EM_ECANCELED soon
 * after *cancel (may be NULL) becomes non-zero. */
int em_ckpt_check_finite(em_ckpt_t *ck, const _Atomic int *cancel, em_err_t *err);

/* ---------------------------------------------------------------- analysis */

typedef struct em_sample {
  uint32_t seed;     /* numpy seed of this sampled network */
  double alpha0;     /* alpha0 of its spectrum */
  double width;      /* max alpha - min alpha */
  size_t nodes;      /* nodes kept (more than 10 distances in range) */
  double *tau;       /* nq values */
} em_sample_t;

/* A weight tensor the mapping did not read, and why (static text). */
typedef struct em_skipped {
  char *name;
  const char *why;
} em_skipped_t;

typedef struct em_result {
  em_arch_t arch;          /* the mapping used (never AUTO) */
  /* What was measured (docs/FORMATS.md "Coverage"): the weight tensors the mapping read,
   * those it did not, and the fraction of the checkpoint's weights (floating tensors of
   * rank >= 2 that are not embeddings, norms or the output head) that it read. */
  size_t ntensors;
  char **tensors;
  size_t nskipped;
  em_skipped_t *skipped;
  double coverage;
  em_params_t params;      /* the parameters it was computed with */
  size_t nq;               /* number of q values */
  double *q;               /* nq */
  double *tau;             /* nq: mean of the samples' tau */
  double *alpha;           /* nq - 1: forward differences of tau */
  double *f;               /* nq - 1: q * alpha - tau */
  double alpha0;           /* mean over samples of each sample's alpha0 */
  double width;            /* mean over samples of each sample's width */
  double alpha0_se;        /* standard errors of those means over the samples; 0 for the */
  double width_se;         /*   full network (one network, nothing sampled) */
  size_t nsamples;
  em_sample_t *samples;
  size_t nodes;            /* nodes kept, summed over samples */
  double elapsed_ms;       /* wall time of em_analyze */
} em_result_t;

/* Computes the spectrum of an open checkpoint. On success the caller owns *out and
 * frees it with em_result_free. EM_ENONFINITE when a weight read is NaN or Inf,
 * EM_EDEGENERATE when no spectrum exists (the message says why). */
int em_analyze(em_ckpt_t *ck, const em_params_t *p, em_result_t *out, em_err_t *err);
/* The mode auto resolves to for this checkpoint (p->mode itself unless auto), and the
 * number of weights full mode would read. */
int em_mode_resolve(em_ckpt_t *ck, const em_params_t *p, em_mode_t *out, uint64_t *weights, em_err_t *err);
/* The same, returning EM_ECANCELED soon after *cancel becomes non-zero (it is checked
 * between weight reads), so a daemon can stop in the middle of a long analysis. The
 * flag may be raised from another thread. */
int em_analyze_cancellable(em_ckpt_t *ck, const em_params_t *p, const _Atomic int *cancel, em_result_t *out,
                           em_err_t *err);
void em_result_free(em_result_t *r);

/* E = (width / base_width) * ln(base_alpha0 / alpha0). EM_EDEGENERATE when an alpha0
 * or the base width is not positive. */
int em_emergence(double alpha0, double width, double base_alpha0, double base_width,
                 double *out, em_err_t *err);

/* The standard error of E against a baseline from the per-sample values: a delete-one
 * jackknife over the pairs of samples with the same seed (the method draws the same
 * neurons for a seed at every checkpoint, so the pairs share their sampling error;
 * docs/METHOD.md "Uncertainty"). 0 when both are single full networks. EM_EDEGENERATE
 * when the seeds do not pair up, fewer than two pairs exist, or a leave-one-out E is
 * undefined. */
int em_emergence_se(const em_sample_t *s, size_t n, const em_sample_t *base, size_t nbase, double *out,
                    em_err_t *err);

/* ---------------------------------------------------------------- names, trainer state */

/* The baseline the training callbacks save (checkpoint-baseline/, checkpoint-baseline.ckpt):
 * step 0 by name, in a place checkpoint rotation leaves alone. */
#define EM_BASELINE_NAME "checkpoint-baseline"
/* The training step carried by a checkpoint's own name: the number after the last of the
 * words checkpoint, global_step, iter, step, ckpt (case-insensitive, optionally joined by
 * - _ =) or model- (model-00050.pt; model_3 is left alone, as it often names a run);
 * 0 for EM_BASELINE_NAME. Returns true and sets *step when there is one. */
bool em_name_step(const char *name, int64_t *step);
/* The epoch a name carries (epoch_3.pt, epoch=3-step=1200.ckpt): reported as an epoch,
 * never taken for a step. */
bool em_name_epoch(const char *name, int64_t *epoch);

/* Weight-file names: one list for the reader and the watcher. A weight file is a
 * .safetensors file, a *.safetensors.index.json, or a torch file (.bin .pt .pth .ckpt)
 * other than the Trainer's training_args.bin. */
bool em_name_ends_with(const char *s, const char *suffix);
bool em_name_is_torch(const char *name);
bool em_name_is_weight_file(const char *name);
/* model-00001-of-00003.safetensors: part of a sharded checkpoint, not one itself. */
bool em_name_is_shard(const char *name);

/* Where a PATH given by a user puts its checkpoint: the checkpoint's own path (a file
 * inside a step-named directory belongs to that directory), its run directory (the one
 * holding it) and its step (name, else trainer_state.json, else none). */
typedef struct em_ckpt_where {
  char *ckpt_path;   /* the checkpoint: the directory or the file */
  char *run_dir;     /* the directory that holds it */
  char *run;         /* basename of run_dir */
  bool has_step;
  int64_t step;
} em_ckpt_where_t;
int em_ckpt_locate(const char *path, em_ckpt_where_t *out, em_err_t *err);
void em_ckpt_where_free(em_ckpt_where_t *w);

/* Numeric fields of the trainer_state.json log_history entries for one step. */
typedef struct em_metric { char *name; double value; } em_metric_t;
typedef struct em_trainer {
  bool found;              /* trainer_state.json was read */
  bool has_global_step;
  int64_t global_step;
  size_t nmetrics;
  em_metric_t *metrics;    /* merged over the entries whose "step" equals the step */
} em_trainer_t;
/* Reads DIR/trainer_state.json if present. A missing file is not an error (found=false);
 * a malformed one is -EINVAL. step < 0 asks for no metrics. */
int em_trainer_read(const char *dir, int64_t step, em_trainer_t *out, em_err_t *err);
/* The same from text in memory (messages name "trainer_state.json"). */
int em_trainer_parse(const char *text, size_t len, int64_t step, em_trainer_t *out, em_err_t *err);
void em_trainer_free(em_trainer_t *t);

#endif /* EMERGE_H */
