/* SPDX-License-Identifier: MIT */
/* Architecture mapping.
 *
 * DESIGN. Every transformer family is mapped onto the GPT-NeoX chain of the reference
 * (docs/ARCHITECTURES.md "The common chain"): per block, qkv [3h, h] -> attention output
 * [h, h] -> MLP up [I, h] -> MLP down [h, I], the virtual qkv->context block omitted (its
 * weights are all 1: inert).
 * Groups are drawn per block in the reference's order: nums1 (L of h), T (L of the
 * attention width), nums4 (L of h), nums5 (round(2L*I/4h) of I, = 2L for I = 4h), and
 * nums6 (L of h) after the last block. qkv targets are T, T+hq, T+hq+hkv, so for
 * NeoX, GPT-2 and BERT the index sets equal the authors'. Choices for the other
 * families (written down in docs/ARCHITECTURES.md):
 *   llama: q;k;v stacked; with grouped K/V (hkv != hq) a group K of min(L, hkv) is drawn
 *          right after T for the k and v rows. gate;up stacked, targets nums5, I+nums5.
 *   gpt2:  Conv1D weights are stored [in, out] and read transposed.
 *   mlp:   every 2-D weight in numeric-aware name order, chained; L per layer.
 *   cnn:   the convolution kernels, then the 2-D weights, each in numeric-aware name
 *          order, chained as the mlp; channels are neurons (see em_map_t.taps). */
#include "em_arch.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"

typedef struct family {
  em_arch_t arch;
  int nqkv;
  const char *qkv[3];
  const char *proj;
  int nup;
  const char *up[2];
  const char *down;
  bool transposed;
} family_t;

static const family_t families[] = {
  {EM_ARCH_GPT_NEOX, 1, {"attention.query_key_value.weight"}, "attention.dense.weight", 1,
   {"mlp.dense_h_to_4h.weight"}, "mlp.dense_4h_to_h.weight", false},
  {EM_ARCH_LLAMA, 3, {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"},
   "self_attn.o_proj.weight", 2, {"mlp.gate_proj.weight", "mlp.up_proj.weight"}, "mlp.down_proj.weight", false},
  {EM_ARCH_GPT2, 1, {"attn.c_attn.weight"}, "attn.c_proj.weight", 1, {"mlp.c_fc.weight"}, "mlp.c_proj.weight", true},
  {EM_ARCH_BERT, 3, {"attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight"},
   "attention.output.dense.weight", 1, {"intermediate.dense.weight"}, "output.dense.weight", false},
  /* PyTorch's own nn.TransformerEncoderLayer / DecoderLayer self-attention path */
  {EM_ARCH_TORCH_TRANSFORMER, 1, {"self_attn.in_proj_weight"}, "self_attn.out_proj.weight", 1, {"linear1.weight"},
   "linear2.weight", false},
};

static const char *arch_names[] = {"auto", "gpt-neox", "llama", "gpt2", "bert", "mlp", "torch-transformer", "cnn"};

static const family_t *family_of(em_arch_t arch)
{
  for (size_t i = 0; i < sizeof(families) / sizeof(*families); i++)
    if (families[i].arch == arch)
      return &families[i];
  return NULL;
}

const char *em_arch_name(em_arch_t arch) { return arch_names[arch]; }

int em_arch_parse(const char *name, em_arch_t *out)
{
  for (size_t i = 0; i < sizeof(arch_names) / sizeof(*arch_names); i++) {
    if (strcmp(name, arch_names[i]) == 0) {
      *out = (em_arch_t)i;
      return 0;
    }
  }
  return -EINVAL;
}

int em_natural_cmp(const char *a, const char *b)
{
  while (*a && *b) {
    if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
      while (*a == '0' && isdigit((unsigned char)a[1]))
        a++;
      while (*b == '0' && isdigit((unsigned char)b[1]))
        b++;
      size_t la = 0, lb = 0;
      while (isdigit((unsigned char)a[la]))
        la++;
      while (isdigit((unsigned char)b[lb]))
        lb++;
      if (la != lb)
        return la < lb ? -1 : 1;
      int c = strncmp(a, b, la);
      if (c)
        return c;
      a += la;
      b += lb;
    } else {
      if (*a != *b)
        return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++;
      b++;
    }
  }
  return (unsigned char)*a - (unsigned char)*b;
}

/* ---------------------------------------------------------------- plan building */

typedef struct builder {
  const em_ckpt_t *ck;
  em_plan_t *plan;
  int neurons;
  bool full;
  em_err_t *err;
} builder_t;

static int add_group(builder_t *bd, uint64_t width, double want)
{
  long count = lround(want);
  if (count < 1)
    count = 1;
  em_group_t *g = &bd->plan->groups[bd->plan->ngroups];
  g->width = (uint32_t)width;
  g->count = bd->full || (uint64_t)count > width ? (uint32_t)width : (uint32_t)count;
  return (int)bd->plan->ngroups++;
}

/* Logical [out, in] of a 2-D tensor. A layer wider than EM_MAX_WIDTH is refused before
 * anything is allocated for it: sampling shuffles a permutation of the whole layer (as
 * numpy's choice does), so a header declaring 2^28 neurons over a sparse file would cost
 * a gigabyte and half a minute. The widest layer of a real model is its vocabulary
 * (256k), far below. */
static int dims(builder_t *bd, const em_tensor_t *t, bool transposed, uint64_t *out, uint64_t *in)
{
  if (t->rank != 2 || t->shape[0] == 0 || t->shape[1] == 0)
    return em_err_set(bd->err, -EINVAL, "%s: tensor '%s' is not a non-empty 2-D weight matrix", bd->ck->path,
                      t->name);
  if (t->shape[0] > EM_MAX_WIDTH || t->shape[1] > EM_MAX_WIDTH)
    return em_err_set(bd->err, -EINVAL, "%s: tensor '%s' is %llu x %llu: wider than the %u neurons a layer may have",
                      bd->ck->path, t->name, (unsigned long long)t->shape[0], (unsigned long long)t->shape[1],
                      EM_MAX_WIDTH);
  *out = t->shape[transposed ? 1 : 0];
  *in = t->shape[transposed ? 0 : 1];
  return 0;
}

static const em_tensor_t *block_tensor(builder_t *bd, const char *prefix, int b, const char *suffix)
{
  char name[512];
  snprintf(name, sizeof(name), "%s%d.%s", prefix, b, suffix);
  const em_tensor_t *t = em_ckpt_find(bd->ck, name);
  if (!t)
    em_err_set(bd->err, -EINVAL, "%s: tensor '%s' is missing", bd->ck->path, name);
  return t;
}

static int shape_error(builder_t *bd, const em_tensor_t *t, const char *want)
{
  return em_err_set(bd->err, -EINVAL, "%s: tensor '%s' has shape [%llu, %llu], expected %s", bd->ck->path,
                    t->name, (unsigned long long)t->shape[0], (unsigned long long)t->shape[1], want);
}

/* Finds "<prefix><digits>.<suffix>" names; sets prefix and the block count. */
static int find_blocks(const em_ckpt_t *ck, const char *suffix, char *prefix, size_t cap, int *nblocks)
{
  size_t sl = strlen(suffix);
  int max = -1;
  prefix[0] = 0;
  for (size_t i = 0; i < ck->ntensors; i++) {
    const char *n = ck->tensors[i].name;
    size_t nl = strlen(n);
    if (nl < sl + 3 || strcmp(n + nl - sl, suffix) != 0 || n[nl - sl - 1] != '.')
      continue;
    size_t e = nl - sl - 1, s = e;
    while (s > 0 && isdigit((unsigned char)n[s - 1]))
      s--;
    if (s == e || e - s > 6 || s >= cap)
      continue;
    if (!prefix[0] && s > 0) {
      memcpy(prefix, n, s);
      prefix[s] = 0;
    }
    if (strncmp(n, prefix, s) != 0 || prefix[s] != 0)
      continue;
    int b = atoi(n + s);
    max = b > max ? b : max;
  }
  *nblocks = max + 1;
  return max >= 0 ? 0 : -1;
}

typedef struct block_dims { uint64_t h, hq, hkv, inter; } block_dims_t;

static int qkv_dims(builder_t *bd, const family_t *f, const em_tensor_t *const *qkv, block_dims_t *d)
{
  uint64_t out, in;
  if (dims(bd, qkv[0], f->transposed, &out, &in))
    return bd->err->code;
  d->h = in;
  if (f->nqkv == 1) {
    if (out != 3 * in)
      return shape_error(bd, qkv[0], f->transposed ? "[h, 3h]" : "[3h, h]");
    d->hq = d->hkv = in;
    return 0;
  }
  d->hq = out;
  uint64_t kout, kin, vout, vin;
  if (dims(bd, qkv[1], false, &kout, &kin) || dims(bd, qkv[2], false, &vout, &vin))
    return bd->err->code;
  if (kin != in || vin != in || vout != kout)
    return shape_error(bd, qkv[2], "the k and v shapes to agree, with the input width of q");
  d->hkv = kout;
  return 0;
}

/* Checks one block's shapes against the dims of block 0. */
static int block_shapes(builder_t *bd, const family_t *f, const em_tensor_t *const *t, block_dims_t *d,
                        const block_dims_t *first)
{
  if (qkv_dims(bd, f, t, d))
    return bd->err->code;
  const em_tensor_t *proj = t[3], *up = t[4], *down = t[6];
  uint64_t out, in;
  if (dims(bd, proj, f->transposed, &out, &in))
    return bd->err->code;
  if (out != d->h || in != d->hq)
    return shape_error(bd, proj, "[h, attention width]");
  if (dims(bd, up, f->transposed, &d->inter, &in))
    return bd->err->code;
  if (in != d->h)
    return shape_error(bd, up, "[I, h]");
  if (f->nup == 2) {
    if (dims(bd, t[5], false, &out, &in))
      return bd->err->code;
    if (out != d->inter || in != d->h)
      return shape_error(bd, t[5], "the shape of the gate projection");
  }
  if (dims(bd, down, f->transposed, &out, &in))
    return bd->err->code;
  if (out != d->h || in != d->inter)
    return shape_error(bd, down, "[h, I]");
  if (first && memcmp(first, d, sizeof(*d)) != 0)
    return shape_error(bd, t[0], "the same widths in every block");
  return 0;
}

static void add_map(builder_t *bd, const em_tensor_t *const *parts, const uint64_t *rows, int nparts,
                    bool transposed, int src, int ntgt, const int *tgt_group, const uint64_t *tgt_off)
{
  em_map_t *m = &bd->plan->maps[bd->plan->nmaps++];
  memset(m, 0, sizeof(*m));
  m->taps = 1;
  m->nparts = nparts;
  m->transposed = transposed;
  for (int i = 0; i < nparts; i++) {
    m->parts[i].t = parts[i];
    m->parts[i].rows = (uint32_t)rows[i];
    m->out_dim += (uint32_t)rows[i];
  }
  m->in_dim = bd->plan->groups[src].width;
  m->src = src;
  m->ntgt = ntgt;
  for (int i = 0; i < ntgt; i++) {
    m->tgt[i].group = tgt_group[i];
    m->tgt[i].offset = (uint32_t)tgt_off[i];
  }
}

/* Adds block b's groups and maps; *g1 is its nums1 group and becomes the next block's. */
static void add_block(builder_t *bd, const family_t *f, const em_tensor_t *const *t, const block_dims_t *d,
                      int *g1)
{
  int L = bd->neurons;
  int gT = add_group(bd, d->hq, L);
  int gK = d->hkv != d->hq ? add_group(bd, d->hkv, L) : gT;
  int g4 = add_group(bd, d->h, L);
  int g5 = add_group(bd, d->inter, 2.0 * L * (double)d->inter / (4.0 * (double)d->h));
  int next = add_group(bd, d->h, L); /* nums1 of block b+1, or nums6 after the last */
  uint64_t qkv_rows[3] = {f->nqkv == 1 ? 3 * d->h : d->hq, d->hkv, d->hkv};
  add_map(bd, t, qkv_rows, f->nqkv, f->transposed, *g1, 3, (int[]){gT, gK, gK},
          (uint64_t[]){0, d->hq, d->hq + d->hkv});
  add_map(bd, &t[3], (uint64_t[]){d->h}, 1, f->transposed, gT, 1, (int[]){g4}, (uint64_t[]){0});
  add_map(bd, &t[4], (uint64_t[]){d->inter, d->inter}, f->nup, f->transposed, g4, f->nup, (int[]){g5, g5},
          (uint64_t[]){0, d->inter});
  add_map(bd, &t[6], (uint64_t[]){d->h}, 1, f->transposed, g5, 1, (int[]){next}, (uint64_t[]){0});
  *g1 = next;
}

static int alloc_plan(em_plan_t *plan, size_t groups, size_t maps)
{
  plan->groups = calloc(groups, sizeof(*plan->groups));
  plan->maps = calloc(maps, sizeof(*plan->maps));
  return plan->groups && plan->maps ? 0 : -ENOMEM;
}

/* Draw order note: the next block's nums1 is drawn after this block's nums5, which is
 * where the reference draws it (first draw of block b+1); nums6 comes last. */
static int build_transformer(builder_t *bd, const family_t *f, const char *prefix, int nblocks)
{
  if (alloc_plan(bd->plan, (size_t)nblocks * 6 + 1, (size_t)nblocks * 4))
    return em_err_set(bd->err, -ENOMEM, "out of memory");
  block_dims_t first = {0}, d = {0};
  int g1 = -1;
  for (int b = 0; b < nblocks; b++) {
    const em_tensor_t *t[7] = {0};
    for (int i = 0; i < f->nqkv; i++)
      if (!(t[i] = block_tensor(bd, prefix, b, f->qkv[i])))
        return bd->err->code;
    if (!(t[3] = block_tensor(bd, prefix, b, f->proj)) || !(t[6] = block_tensor(bd, prefix, b, f->down)))
      return bd->err->code;
    for (int i = 0; i < f->nup; i++)
      if (!(t[4 + i] = block_tensor(bd, prefix, b, f->up[i])))
        return bd->err->code;
    if (block_shapes(bd, f, t, &d, b ? &first : NULL))
      return bd->err->code;
    if (b == 0) {
      first = d;
      g1 = add_group(bd, d.h, bd->neurons);
    }
    add_block(bd, f, t, &d, &g1);
  }
  return 0;
}

static bool weight_name(const char *n)
{
  return !strstr(n, "embed") && !strstr(n, "norm") && !strstr(n, "lm_head") && !strstr(n, "wte") && !strstr(n, "wpe");
}

bool em_arch_is_weight(const em_tensor_t *t)
{
  return t->rank >= 2 && em_dtype_readable(t->dtype) && weight_name(t->name);
}

/* Integer matrices are candidates too: reading them fails with a message naming the dtype. */
static bool is_matrix(const em_tensor_t *t) { return t->rank == 2 && weight_name(t->name); }
static bool is_kernel(const em_tensor_t *t) { return t->rank >= 3 && weight_name(t->name); }

static int cmp_natural_tensor(const void *a, const void *b)
{
  return em_natural_cmp((*(const em_tensor_t *const *)a)->name, (*(const em_tensor_t *const *)b)->name);
}

/* Appends the tensors `want` accepts to w[*n], in numeric-aware name order. */
static void collect(const em_ckpt_t *ck, bool (*want)(const em_tensor_t *), const em_tensor_t **w, size_t *n)
{
  size_t first = *n;
  for (size_t i = 0; i < ck->ntensors; i++)
    if (want(&ck->tensors[i]))
      w[(*n)++] = &ck->tensors[i];
  qsort(w + first, *n - first, sizeof(*w), cmp_natural_tensor);
}

/* Output and input neurons of a kernel [out, in, k...] and its taps per input channel. */
static int kernel_dims(builder_t *bd, const em_tensor_t *t, uint64_t *out, uint64_t *in, uint64_t *taps)
{
  *taps = 1;
  for (unsigned d = 2; d < t->rank; d++)
    *taps *= t->shape[d];
  if (t->shape[0] == 0 || t->shape[1] == 0 || *taps == 0)
    return em_err_set(bd->err, -EINVAL, "%s: tensor '%s' is an empty convolution kernel", bd->ck->path, t->name);
  if (*taps > UINT32_MAX)
    return em_err_set(bd->err, -EINVAL, "%s: tensor '%s' has %llu taps per channel pair: more than a kernel may have",
                      bd->ck->path, t->name, (unsigned long long)*taps);
  if (t->shape[0] > EM_MAX_WIDTH || t->shape[1] > EM_MAX_WIDTH)
    return em_err_set(bd->err, -EINVAL, "%s: tensor '%s' has %llu x %llu channels: more than the %u neurons a "
                      "layer may have", bd->ck->path, t->name, (unsigned long long)t->shape[0],
                      (unsigned long long)t->shape[1], EM_MAX_WIDTH);
  *out = t->shape[0];
  *in = t->shape[1];
  return 0;
}

/* Neurons of link i of the chain: a kernel's channels, or a matrix's rows and columns,
 * where a matrix after a kernel may take the kernel's channels flattened (torch's
 * flatten of [C, H, W] puts each channel's H*W positions together). */
static int link_dims(builder_t *bd, const em_tensor_t *const *w, size_t i, uint64_t prev_out, uint64_t *out,
                     uint64_t *in, uint64_t *taps)
{
  if (w[i]->rank >= 3)
    return kernel_dims(bd, w[i], out, in, taps);
  *taps = 1;
  int rc = dims(bd, w[i], false, out, in);
  if (!rc && i > 0 && w[i - 1]->rank >= 3 && prev_out > 1 && *in != prev_out && *in % prev_out == 0) {
    *taps = *in / prev_out;
    *in = prev_out;
  }
  return rc;
}

/* Chains the n tensors of w: the outputs of each are the inputs of the next. */
static int build_chain(builder_t *bd, const em_tensor_t *const *w, size_t n)
{
  uint64_t prev_out = 0;
  int src = -1;
  for (size_t i = 0; i < n; i++) {
    uint64_t out, in, taps;
    if (link_dims(bd, w, i, prev_out, &out, &in, &taps))
      return bd->err->code;
    if (i > 0 && in != prev_out)
      return em_err_set(bd->err, -EINVAL, "%s: %s chain breaks: '%s' takes %llu inputs but '%s' gives %llu outputs",
                        bd->ck->path, em_arch_name(bd->plan->arch), w[i]->name, (unsigned long long)in,
                        w[i - 1]->name, (unsigned long long)prev_out);
    if (i == 0)
      src = add_group(bd, in, bd->neurons);
    int tgt = add_group(bd, out, bd->neurons);
    add_map(bd, &w[i], (uint64_t[]){out}, 1, false, src, 1, (int[]){tgt}, (uint64_t[]){0});
    bd->plan->maps[bd->plan->nmaps - 1].taps = (uint32_t)taps;
    src = tgt;
    prev_out = out;
  }
  return 0;
}

/* mlp: the 2-D weights; cnn: the convolution kernels first, then the 2-D weights. */
static int build_sequential(builder_t *bd)
{
  const em_ckpt_t *ck = bd->ck;
  const em_tensor_t **w = calloc(ck->ntensors ? ck->ntensors : 1, sizeof(*w));
  if (!w)
    return em_err_set(bd->err, -ENOMEM, "out of memory");
  size_t n = 0;
  if (bd->plan->arch == EM_ARCH_CNN)
    collect(ck, is_kernel, w, &n);
  collect(ck, is_matrix, w, &n);
  int rc = n ? alloc_plan(bd->plan, n + 1, n) : -1;
  if (rc == -ENOMEM)
    rc = em_err_set(bd->err, -ENOMEM, "out of memory");
  else if (rc)
    rc = em_err_set(bd->err, -EINVAL, "%s: no weight %s to map as %s", ck->path,
                    bd->plan->arch == EM_ARCH_CNN ? "kernel or matrix" : "matrix", em_arch_name(bd->plan->arch));
  else
    rc = build_chain(bd, w, n);
  free(w);
  return rc;
}

static bool has_kernel(const em_ckpt_t *ck)
{
  for (size_t i = 0; i < ck->ntensors; i++)
    if (is_kernel(&ck->tensors[i]) && em_dtype_readable(ck->tensors[i].dtype))
      return true;
  return false;
}

/* The "nothing matched" message: what the checkpoint holds. */
static int unmappable(builder_t *bd)
{
  char list[400] = "";
  size_t used = 0;
  for (size_t i = 0; i < bd->ck->ntensors && i < 6 && used < sizeof(list); i++) {
    const em_tensor_t *t = &bd->ck->tensors[i];
    used += (size_t)snprintf(list + used, sizeof(list) - used, "%s'%s' (rank %u %s)", i ? ", " : "", t->name,
                             t->rank, em_dtype_name(t->dtype));
  }
  return em_err_set(bd->err, -EINVAL, "%s: cannot map to gpt-neox, llama, gpt2, bert, torch-transformer, cnn or mlp; "
                    "it holds %zu tensors: %s%s; pass --arch", bd->ck->path, bd->ck->ntensors, list,
                    bd->ck->ntensors > 6 ? ", ..." : "");
}

/* PEFT/LoRA adapter files hold the low-rank updates A, B of each adapted layer, not a
 * network: chained as an mlp they give a meaningless spectrum (B is 0 at init). */
static int refuse_adapter(const em_ckpt_t *ck, em_err_t *err)
{
  for (size_t i = 0; i < ck->ntensors; i++)
    if (strstr(ck->tensors[i].name, "lora_A") || strstr(ck->tensors[i].name, "lora_B"))
      return em_err_set(err, EM_EUNSUPPORTED, "%s: a LoRA/PEFT adapter ('%s'), not a network: merge it into "
                        "its base model (merge_and_unload) and save that, or analyse the base model", ck->path,
                        ck->tensors[i].name);
  return 0;
}

int em_plan_build(const em_ckpt_t *ck, em_arch_t arch, int neurons, bool full, em_plan_t *out, em_err_t *err)
{
  memset(out, 0, sizeof(*out));
  builder_t bd = {ck, out, neurons, full, err};
  int rc = refuse_adapter(ck, err);
  if (rc)
    return rc;
  rc = -1;
  for (size_t i = 0; i < sizeof(families) / sizeof(*families) && rc == -1; i++) {
    const family_t *f = &families[i];
    char prefix[256];
    int nblocks;
    if ((arch != EM_ARCH_AUTO && arch != f->arch) || find_blocks(ck, f->qkv[0], prefix, sizeof(prefix), &nblocks))
      continue;
    out->arch = f->arch;
    rc = build_transformer(&bd, f, prefix, nblocks);
  }
  if (rc == -1 && (arch == EM_ARCH_AUTO || arch == EM_ARCH_MLP || arch == EM_ARCH_CNN)) {
    out->arch = arch == EM_ARCH_CNN || (arch == EM_ARCH_AUTO && has_kernel(ck)) ? EM_ARCH_CNN : EM_ARCH_MLP;
    rc = build_sequential(&bd);
    if (rc && rc != -ENOMEM && arch == EM_ARCH_AUTO && out->arch == EM_ARCH_CNN) {
      /* convolutions that do not chain (a ResNet's branches): the linear layers alone, as
       * before the cnn mapping existed; coverage says what that leaves out */
      em_plan_free(out);
      out->arch = EM_ARCH_MLP;
      rc = build_sequential(&bd);
    }
    if (rc && arch == EM_ARCH_AUTO && rc != -ENOMEM)
      rc = unmappable(&bd);
  } else if (rc == -1) {
    rc = em_err_set(err, -EINVAL, "%s: no tensor named like %s (--arch %s); try --arch auto", ck->path,
                    family_of(arch)->qkv[0], em_arch_name(arch));
  }
  if (rc)
    em_plan_free(out);
  return rc;
}

void em_plan_free(em_plan_t *plan)
{
  free(plan->groups);
  free(plan->maps);
  memset(plan, 0, sizeof(*plan));
}
