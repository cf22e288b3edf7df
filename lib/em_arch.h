/* SPDX-License-Identifier: MIT */
/* Architecture mapping: which weight matrices form the neuron interaction network, in
 * forward order, and which neuron groups are sampled (docs/METHOD.md step 1, docs/ARCHITECTURES.md). */
#ifndef EM_ARCH_H
#define EM_ARCH_H

#include "em_ckpt.h"
#include "emerge.h"

#define EM_MAP_PARTS 3
#define EM_MAP_TARGETS 3

/* A neuron group: one layer's neurons, of which `count` are drawn (numpy choice). Groups
 * are listed in draw order. */
typedef struct em_group {
  uint32_t width;  /* neurons in the layer */
  uint32_t count;  /* neurons sampled (width in full mode) */
} em_group_t;

/* One linear map W[out, in] (logical orientation): sampled source neurons (columns) send
 * edges to sampled target neurons (rows). W may stack row blocks of several tensors
 * (q;k;v or gate;up) or be one tensor stored [in, out] (GPT-2 Conv1D: transposed). A
 * convolution kernel [out, in, k...] is a map whose source neurons are input channels
 * that own `taps` consecutive stored columns each (its k... taps, or the spatial
 * positions of a channel flattened into a linear layer); the edge weight is their l2
 * norm (docs/ARCHITECTURES.md "Convolutions"). */
typedef struct em_map {
  int nparts;
  struct {
    const em_tensor_t *t;
    uint32_t rows;            /* logical rows this part contributes */
  } parts[EM_MAP_PARTS];
  bool transposed;            /* single part stored [in, out] */
  uint32_t in_dim, out_dim;   /* neurons */
  uint32_t taps;              /* stored columns per source neuron: 1 but for convolutions */
  int src;                    /* group of the source neurons (columns) */
  int ntgt;                   /* targets: group g's indices shifted by offset */
  struct {
    int group;
    uint32_t offset;
  } tgt[EM_MAP_TARGETS];
} em_map_t;

typedef struct em_plan {
  em_arch_t arch;
  size_t ngroups, nmaps;
  em_group_t *groups;
  em_map_t *maps;
} em_plan_t;

/* Maps the checkpoint's tensors for arch (AUTO detects it). neurons is L; full samples
 * every neuron. An unmappable checkpoint is -EINVAL with a message listing what was
 * found. Caller owns out (em_plan_free). */
int em_plan_build(const em_ckpt_t *ck, em_arch_t arch, int neurons, bool full, em_plan_t *out, em_err_t *err);
void em_plan_free(em_plan_t *plan);

/* Whether t counts among a checkpoint's weights for coverage: a floating-point tensor of
 * rank 2 or more (matrices, convolution kernels) that is not an embedding, a norm or the
 * output head, which no mapping reads. */
bool em_arch_is_weight(const em_tensor_t *t);

/* strcmp that orders digit runs by value: layers.9 < layers.10. */
int em_natural_cmp(const char *a, const char *b);

#endif
