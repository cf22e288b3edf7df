/* SPDX-License-Identifier: MIT */
/* Reading a map's sampled weights into node histograms.
 *
 * DESIGN. Weights are read with pread, row by row, over the span between the first and
 * the last needed column (sampled columns are spread over the row, so the span is
 * close to the row anyway); whole consecutive rows (full mode) are read many at a time.
 * The distance bin of a 16- or 8-bit weight depends only on its bits, so those dtypes
 * go through a lookup table built once per reader; 32/64-bit ones are computed. */
#include "em_nin.h"

#include <endian.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"
#include "em_hist16.h"

#define READ_BUF (4u << 20)    /* bytes per pread at most */
#define WHOLE_ROWS (256u << 10) /* whole rows read together: the chunk stays in L2, */
#define MIN_ROWS 128            /* unless rows are wide: then enough rows that a tile's
                                   histograms are reused (each chunk sweeps all of them) */

struct em_nin {
  int thr;
  const _Atomic int *cancel; /* checked before every read; NULL: never */
  int16_t *tab16[2];    /* F16, BF16: bits -> bin (0 skip, -1 non-finite), built on use */
  int16_t *tab8[2];     /* F8_E4M3, F8_E5M2 */
  em_hist16_t h16[2];   /* F16, BF16: full mode's kernels, prepared on use */
  uint8_t *buf;         /* READ_BUF bytes */
  uint32_t *hist;       /* per source node: thr + 2 counters (bin 0: not kept, thr + 1: NaN/Inf) */
  size_t hist_cap;      /* nodes hist can hold */
  uint16_t *hist16;     /* the same, 16-bit, for em_hist16 */
  size_t hist16_cap;
  uint32_t *order;      /* scratch: sorted column -> slot */
  uint32_t *cols;
  size_t cols_cap;
};

void em_nin_set_cancel(em_nin_t *n, const _Atomic int *cancel) { n->cancel = cancel; }

em_nin_t *em_nin_new(int threshold)
{
  em_nin_t *n = calloc(1, sizeof(*n));
  if (!n || !(n->buf = malloc(READ_BUF))) {
    free(n);
    return NULL;
  }
  n->thr = threshold;
  return n;
}

void em_nin_destroy(em_nin_t **self_p)
{
  em_nin_t *n = *self_p;
  if (!n)
    return;
  for (int i = 0; i < 2; i++) {
    em_hist16_free(&n->h16[i]);
    free(n->tab16[i]);
    free(n->tab8[i]);
  }
  free(n->buf);
  free(n->hist);
  free(n->hist16);
  free(n->order);
  free(n->cols);
  free(n);
  *self_p = NULL;
}

/* The bin table of a 16- or 8-bit dtype, or NULL for the wider ones (-ENOMEM in *rc). */
static const int16_t *bin_table(em_nin_t *n, em_dtype_t dt, int *rc)
{
  int16_t **slot;
  size_t size;
  switch (dt) {
  case EM_DT_F16: slot = &n->tab16[0]; size = 65536; break;
  case EM_DT_BF16: slot = &n->tab16[1]; size = 65536; break;
  case EM_DT_F8_E4M3: slot = &n->tab8[0]; size = 256; break;
  case EM_DT_F8_E5M2: slot = &n->tab8[1]; size = 256; break;
  default: return NULL;
  }
  if (*slot)
    return *slot;
  int16_t *t = malloc(size * sizeof(*t));
  if (!t) {
    *rc = -ENOMEM;
    return NULL;
  }
  for (size_t v = 0; v < size; v++) {
    uint8_t le[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    int b = em_bin_of(em_dtype_to_double(dt, le), n->thr);
    t[v] = (int16_t)(b < 0 ? n->thr + 1 : b);
  }
  *slot = t;
  return t;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
  if (need <= *cap)
    return 0;
  void *q = realloc(*p, need * elem);
  if (!q)
    return -ENOMEM;
  *p = q;
  *cap = need;
  return 0;
}

/* A block of rows read at once: row r of it holds the span of columns [first, ...]. */
typedef struct chunk {
  const em_tensor_t *t;
  const int16_t *tab;   /* bin table, or NULL for F32/F64 */
  const uint8_t *data;
  uint64_t row0;        /* tensor row of data's first row */
  uint64_t nrows;
  size_t row_bytes;     /* bytes per row in data */
  size_t es;            /* bytes per element */
  uint64_t first;       /* column of each row's first byte */
} chunk_t;

typedef int (*chunk_sink_fn)(void *ctx, const chunk_t *c);

static int nonfinite(const em_tensor_t *t, uint64_t row, uint64_t col, em_err_t *err)
{
  return em_err_set(err, EM_ENONFINITE, "%s: tensor '%s' holds NaN or Inf at [%llu, %llu]", t->file->path,
                    t->name, (unsigned long long)row, (unsigned long long)col);
}

/* Distance bin of column col of a row: 0 not kept, 1..thr, thr + 1 for NaN/Inf. Every
 * weight lands in some bin, so the hot loops carry no branch on the weight's value (a
 * kept/not-kept branch is a coin flip on real weights, and mispredicts). */
static inline int chunk_bin(const chunk_t *c, int thr, const uint8_t *row, uint32_t col)
{
  const uint8_t *e = row + (size_t)(col - c->first) * c->es;
  if (c->tab && c->es == 2)
    return c->tab[e[0] | e[1] << 8];
  if (c->tab)
    return c->tab[e[0]];
  int b = em_bin_of(em_dtype_to_double(c->t->dtype, e), thr);
  return b < 0 ? thr + 1 : b;
}

/* The first NaN/Inf of the chunk among cols, for the error message. */
static int find_nonfinite(const chunk_t *c, int thr, const uint32_t *cols, uint32_t nc, em_err_t *err)
{
  for (uint64_t r = 0; r < c->nrows; r++) {
    for (uint32_t k = 0; k < nc; k++) {
      if (chunk_bin(c, thr, c->data + r * c->row_bytes, cols[k]) == thr + 1)
        return nonfinite(c->t, c->row0 + r, cols[k], err);
    }
  }
  return nonfinite(c->t, c->row0, cols[0], err);
}

/* Reads rows row0..row0+nrows of t over stored columns [first, first + span) and hands
 * them to sink in chunks: whole rows many at a time, partial spans one row at a time.
 * A row is everything after the first dimension (a kernel's [in, k...] too). */
static int read_rows(em_nin_t *n, const em_tensor_t *t, uint64_t row0, uint64_t nrows, uint64_t first,
                     uint64_t span, chunk_sink_fn sink, void *ctx, em_err_t *err)
{
  if (!em_dtype_readable(t->dtype))
    return em_err_set(err, EM_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, which the analysis cannot read",
                      t->file->path, t->name, em_dtype_name(t->dtype));
  int rc = 0;
  chunk_t c = {.t = t, .tab = bin_table(n, t->dtype, &rc), .data = n->buf};
  if (rc)
    return em_err_set(err, -ENOMEM, "out of memory");
  uint64_t width = t->numel / t->shape[0];
  size_t es = em_dtype_bits(t->dtype) / 8;
  if (span * es > READ_BUF)
    return em_err_set(err, EM_EUNSUPPORTED, "%s: tensor '%s': rows of %llu bytes exceed the %u-byte read buffer",
                      t->file->path, t->name, (unsigned long long)(span * es), READ_BUF);
  bool whole = span == width;
  uint64_t per_read = 1;
  if (whole) {
    per_read = WHOLE_ROWS / (width * es) > MIN_ROWS ? WHOLE_ROWS / (width * es) : MIN_ROWS;
    per_read = per_read * width * es > READ_BUF ? READ_BUF / (width * es) : per_read;
    per_read = per_read ? per_read : 1;
  }
  c.es = es;
  c.first = first;
  c.row_bytes = (size_t)(span * es);
  for (uint64_t r = 0; r < nrows && !rc; r += c.nrows) {
    if (n->cancel && *n->cancel)
      return em_err_set(err, EM_ECANCELED, "%s: analysis cancelled", t->file->path);
    c.row0 = row0 + r;
    c.nrows = nrows - r < per_read ? nrows - r : per_read;
    rc = em_tensor_read(t, c.row0 * width + c.first, (size_t)(c.nrows * span), n->buf, err);
    if (!rc)
      rc = sink(ctx, &c);
  }
  return rc;
}

/* ---------------------------------------------------------------- maps */

/* Folds one node's histogram (bins 1..thr) into the accumulator. */
static int fold_node(em_acc_t *acc, const uint32_t *h, int thr)
{
  uint32_t cnt = 0;
  for (int b = 1; b <= thr; b++)
    cnt += h[b];
  return em_acc_add(acc, h, cnt);
}

typedef struct map_ctx {
  em_nin_t *n;
  chunk_sink_fn sink;
  uint32_t taps;          /* stored columns per source neuron */
  const uint32_t *cols;   /* needed columns (source neurons), ascending */
  const uint32_t *slot;   /* column k -> histogram slot */
  bool identity;          /* slot[k] == k: the columns came sorted */
  uint32_t nc;
  em_acc_t *acc;
  const em_hist16_t *h16; /* full mode's 16-bit kernel, or NULL */
  em_err_t *err;
} map_ctx_t;

#define TILE 32 /* columns binned together: their histograms stay in L1 */

/* Full mode's hot case: whole rows of a 16-bit dtype, column k is node k (em_hist16). */
static int sink_whole16(void *ctx, const chunk_t *c)
{
  map_ctx_t *m = ctx;
  if (em_hist16_add(m->h16, c->data, c->row_bytes, (size_t)c->nrows, m->nc, m->n->hist16, (size_t)m->n->thr + 2))
    return find_nonfinite(c, m->n->thr, m->cols, m->nc, m->err);
  return 0;
}

/* The 16-bit kernel for map m when it qualifies: every column of every part, in order,
 * one 16-bit dtype, and few enough targets for 16-bit counters. NULL otherwise (and
 * -ENOMEM in *rc when preparing it failed). */
static const em_hist16_t *whole16_kernel(em_nin_t *n, const em_map_t *m, const uint32_t *src, uint32_t nsrc,
                                         uint32_t ntgt, int *rc)
{
  em_dtype_t dt = m->parts[0].t->dtype;
  if (m->transposed || m->taps > 1 || ntgt > EM_HIST16_MAX_ROWS || n->thr > 254 ||
      (dt != EM_DT_F16 && dt != EM_DT_BF16))
    return NULL;
  for (int p = 0; p < m->nparts; p++) {
    const em_tensor_t *t = m->parts[p].t;
    if (t->dtype != dt || t->numel / t->shape[0] != nsrc)
      return NULL;
  }
  for (uint32_t i = 0; i < nsrc; i++) {
    if (src[i] != i)
      return NULL;
  }
  em_hist16_t *h = &n->h16[dt == EM_DT_BF16];
  const int16_t *bins = h->tab ? NULL : bin_table(n, dt, rc);
  if (!h->tab && (!bins || (*rc = em_hist16_init(h, dt, n->thr, bins)) != 0))
    return NULL;
  return h;
}

/* Folds the 16-bit histograms of nsrc nodes, in node order. */
static int fold_nodes16(em_nin_t *n, uint32_t nsrc, em_acc_t *acc)
{
  size_t stride = (size_t)n->thr + 2;
  uint32_t *h = n->hist; /* one node's counters, widened */
  for (uint32_t i = 0; i < nsrc; i++) {
    const uint16_t *h16 = n->hist16 + i * stride;
    for (size_t b = 1; b <= (size_t)n->thr; b++)
      h[b] = h16[b];
    if (fold_node(acc, h, n->thr) != 0)
      return -ENOMEM;
  }
  return 0;
}

/* Rows are targets: column k adds to the histogram of source slot[k]. */
static int sink_targets(void *ctx, const chunk_t *c)
{
  map_ctx_t *m = ctx;
  int thr = m->n->thr;
  size_t stride = (size_t)thr + 2;
  uint32_t *hist = m->n->hist, bad = 0;
  for (uint32_t k0 = 0; k0 < m->nc; k0 += TILE) {
    uint32_t k1 = m->nc - k0 < TILE ? m->nc : k0 + TILE;
    for (uint64_t r = 0; r < c->nrows; r++) {
      const uint8_t *row = c->data + r * c->row_bytes;
      for (uint32_t k = k0; k < k1; k++) {
        int b = chunk_bin(c, thr, row, m->cols[k]);
        hist[m->slot[k] * stride + (size_t)b]++;
        bad |= b == thr + 1;
      }
    }
  }
  return bad ? find_nonfinite(c, thr, m->cols, m->nc, m->err) : 0;
}

/* The l2 norm of a source channel's taps e[0..taps), scaled so that no square
 * overflows; -1 (and *bad, the first non-finite tap) when one is NaN or Inf. */
static double kernel_norm(const chunk_t *c, const uint8_t *e, uint32_t taps, uint32_t *bad)
{
  double big = 0;
  for (uint32_t j = 0; j < taps; j++) {
    double w = fabs(em_dtype_to_double(c->t->dtype, e + (size_t)j * c->es));
    if (!isfinite(w)) {
      *bad = j;
      return -1;
    }
    big = w > big ? w : big;
  }
  if (big == 0)
    return 0;
  double ss = 0;
  for (uint32_t j = 0; j < taps; j++) {
    double w = em_dtype_to_double(c->t->dtype, e + (size_t)j * c->es) / big;
    ss += w * w;
  }
  return big * sqrt(ss);
}

/* Rows are targets (output channels) and source k owns taps consecutive columns: the
 * edge is their l2 norm. */
static int sink_kernels(void *ctx, const chunk_t *c)
{
  map_ctx_t *m = ctx;
  int thr = m->n->thr;
  size_t stride = (size_t)thr + 2;
  for (uint64_t r = 0; r < c->nrows; r++) {
    const uint8_t *row = c->data + r * c->row_bytes;
    for (uint32_t k = 0; k < m->nc; k++) {
      uint64_t col = (uint64_t)m->cols[k] * m->taps;
      uint32_t bad = 0;
      double w = kernel_norm(c, row + (size_t)(col - c->first) * c->es, m->taps, &bad);
      if (w < 0)
        return nonfinite(c->t, c->row0 + r, col + bad, m->err);
      int b = em_bin_of(w, thr); /* -1 only when finite taps overflow the norm: distance ~0, not kept */
      m->n->hist[m->slot[k] * stride + (size_t)(b < 0 ? 0 : b)]++;
    }
  }
  return 0;
}

/* Rows are sources (transposed storage): each row is one node. */
static int sink_sources(void *ctx, const chunk_t *c)
{
  map_ctx_t *m = ctx;
  int thr = m->n->thr;
  uint32_t *h = m->n->hist;
  for (uint64_t r = 0; r < c->nrows; r++) {
    const uint8_t *row = c->data + r * c->row_bytes;
    memset(h, 0, ((size_t)thr + 2) * sizeof(*h));
    for (uint32_t k = 0; k < m->nc; k++)
      h[chunk_bin(c, thr, row, m->cols[k])]++;
    if (h[thr + 1])
      return find_nonfinite(c, thr, m->cols, m->nc, m->err);
    if (fold_node(m->acc, h, thr) != 0)
      return -ENOMEM;
  }
  return 0;
}

typedef struct col_slot { uint32_t col, slot; } col_slot_t;

static int cmp_col(const void *a, const void *b)
{
  uint32_t x = ((const col_slot_t *)a)->col, y = ((const col_slot_t *)b)->col;
  return (x > y) - (x < y);
}

/* idx sorted ascending into n->cols, with n->order[k] = position of cols[k] in idx;
 * *identity tells whether idx was sorted already. */
static const uint32_t *sort_cols(em_nin_t *n, const uint32_t *idx, uint32_t count, bool *identity, int *rc)
{
  if (count > n->cols_cap) {
    uint32_t *cols = realloc(n->cols, count * sizeof(*cols));
    if (cols)
      n->cols = cols;
    uint32_t *order = cols ? realloc(n->order, count * sizeof(*order)) : NULL;
    if (!order) {
      *rc = -ENOMEM;
      return NULL;
    }
    n->order = order;
    n->cols_cap = count;
  }
  bool sorted = true;
  for (uint32_t i = 1; i < count && sorted; i++)
    sorted = idx[i - 1] < idx[i];
  *identity = sorted;
  if (sorted) {
    for (uint32_t i = 0; i < count; i++) {
      n->cols[i] = idx[i];
      n->order[i] = i;
    }
    return n->cols;
  }
  col_slot_t *tmp = malloc(count * sizeof(*tmp));
  if (!tmp) {
    *rc = -ENOMEM;
    return NULL;
  }
  for (uint32_t i = 0; i < count; i++)
    tmp[i] = (col_slot_t){idx[i], i};
  qsort(tmp, count, sizeof(*tmp), cmp_col);
  for (uint32_t i = 0; i < count; i++) {
    n->cols[i] = tmp[i].col;
    n->order[i] = tmp[i].slot;
  }
  free(tmp);
  return n->cols;
}

/* Runs of consecutive target rows inside one part, read together. */
static int add_target_rows(em_nin_t *n, const em_map_t *m, const uint32_t *tgt, uint32_t ntgt, const uint32_t *cols,
                           map_ctx_t *ctx, em_err_t *err)
{
  int rc = 0;
  for (uint32_t i = 0; i < ntgt && !rc;) {
    uint32_t row = tgt[i], base = 0;
    int p = 0;
    while (p < m->nparts - 1 && row >= base + m->parts[p].rows)
      base += m->parts[p++].rows;
    uint32_t run = 1;
    while (i + run < ntgt && tgt[i + run] == row + run && row + run < base + m->parts[p].rows)
      run++;
    uint64_t first = (uint64_t)cols[0] * ctx->taps, span = ((uint64_t)cols[ctx->nc - 1] - cols[0] + 1) * ctx->taps;
    rc = read_rows(n, m->parts[p].t, row - base, run, first, span, ctx->sink, ctx, err);
    i += run;
  }
  return rc;
}

int em_nin_add_map(em_nin_t *n, const em_map_t *m, const uint32_t *src, uint32_t nsrc, const uint32_t *tgt,
                   uint32_t ntgt, em_acc_t *acc, em_err_t *err)
{
  int rc = 0;
  size_t stride = (size_t)n->thr + 2;
  map_ctx_t ctx = {.n = n, .sink = m->taps > 1 ? sink_kernels : sink_targets, .taps = m->taps, .acc = acc,
                   .err = err};
  ctx.h16 = whole16_kernel(n, m, src, nsrc, ntgt, &rc);
  size_t nodes = m->transposed || ctx.h16 ? 1 : nsrc; /* 32-bit counters: one node's, or every source's */
  if (rc || grow((void **)&n->hist, &n->hist_cap, nodes * stride, sizeof(*n->hist)))
    return em_err_set(err, -ENOMEM, "out of memory");
  if (m->transposed) {
    /* Stored [in, out]: each sampled source is a stored row; targets are its columns. */
    ctx.cols = sort_cols(n, tgt, ntgt, &ctx.identity, &rc);
    ctx.nc = ntgt;
    for (uint32_t i = 0; i < nsrc && !rc;) {
      uint32_t run = 1;
      while (i + run < nsrc && src[i + run] == src[i] + run)
        run++;
      rc = read_rows(n, m->parts[0].t, src[i], run, ctx.cols[0], ctx.cols[ntgt - 1] - ctx.cols[0] + 1, sink_sources,
                     &ctx, err);
      i += run;
    }
  } else if (ctx.h16) {
    if (grow((void **)&n->hist16, &n->hist16_cap, nsrc * stride, sizeof(*n->hist16)))
      return em_err_set(err, -ENOMEM, "out of memory");
    ctx.cols = sort_cols(n, src, nsrc, &ctx.identity, &rc);
    ctx.nc = nsrc;
    ctx.sink = sink_whole16;
    memset(n->hist16, 0, nsrc * stride * sizeof(*n->hist16));
    if (!rc)
      rc = add_target_rows(n, m, tgt, ntgt, ctx.cols, &ctx, err);
    if (!rc)
      rc = fold_nodes16(n, nsrc, acc);
  } else {
    ctx.cols = sort_cols(n, src, nsrc, &ctx.identity, &rc);
    ctx.slot = n->order;
    ctx.nc = nsrc;
    memset(n->hist, 0, nsrc * stride * sizeof(*n->hist));
    if (!rc)
      rc = add_target_rows(n, m, tgt, ntgt, ctx.cols, &ctx, err);
    for (uint32_t i = 0; i < nsrc && !rc; i++)
      rc = fold_node(acc, n->hist + i * stride, n->thr);
  }
  if (rc == -ENOMEM)
    return em_err_set(err, rc, "out of memory");
  return rc;
}
