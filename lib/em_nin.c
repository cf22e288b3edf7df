/* SPDX-License-Identifier: MIT */
/* Reading a map's sampled weights into node histograms.
 *
 * DESIGN. Weights are read with pread, row by row, over the span between the first and
 * the last needed column (sampled columns are spread over the row, so the span is
 * close to the row anyway); whole consecutive rows (full mode) are read many at a time.
 * The distance bin of a 16- or 8-bit weight depends only on its bits, so those dtypes
 * go through a lookup table built once per reader; 32/64-bit ones are computed. */
#include "em_nin.h"

#include <stdlib.h>
#include <string.h>

#include "em_err.h"

#define READ_BUF (4u << 20) /* bytes per pread at most */

struct em_nin {
  int thr;
  int16_t *tab16[2];    /* F16, BF16: bits -> bin (0 skip, -1 non-finite), built on use */
  int16_t *tab8[2];     /* F8_E4M3, F8_E5M2 */
  uint8_t *buf;         /* READ_BUF bytes */
  int16_t *bins;        /* one row's bins of the needed columns */
  size_t bins_cap;
  uint32_t *hist;       /* per source node: thr + 1 counters */
  uint32_t *cnt;        /* per source node: distances in range */
  size_t hist_cap;      /* nodes hist can hold */
  uint32_t *order;      /* scratch: sorted column -> slot */
  uint32_t *cols;
  size_t cols_cap;
};

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
    free(n->tab16[i]);
    free(n->tab8[i]);
  }
  free(n->buf);
  free(n->bins);
  free(n->hist);
  free(n->cnt);
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
    t[v] = (int16_t)em_bin_of(em_dtype_to_double(dt, le), n->thr);
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

/* Bins of the elements at columns cols[0..nc) (ascending) of rows row0.. of tensor t,
 * handed to sink one row at a time. */
typedef int (*row_sink_fn)(void *ctx, uint64_t row, const int16_t *bins);

static int nonfinite(const em_tensor_t *t, uint64_t row, uint32_t col, em_err_t *err)
{
  return em_err_set(err, EM_ENONFINITE, "%s: tensor '%s' holds NaN or Inf at [%llu, %u]", t->file->path,
                    t->st->name, (unsigned long long)row, col);
}

static int bin_span(em_nin_t *n, const em_tensor_t *t, const int16_t *tab, const uint8_t *p, uint64_t row,
                    uint32_t first, const uint32_t *cols, uint32_t nc, int16_t *bins, em_err_t *err)
{
  size_t es = em_dtype_bits(t->st->dtype) / 8;
  for (uint32_t k = 0; k < nc; k++) {
    const uint8_t *e = p + (size_t)(cols[k] - first) * es;
    int b;
    if (tab)
      b = tab[es == 2 ? (e[0] | e[1] << 8) : e[0]];
    else
      b = em_bin_of(em_dtype_to_double(t->st->dtype, e), n->thr);
    if (b < 0)
      return nonfinite(t, row, cols[k], err);
    bins[k] = (int16_t)b;
  }
  return 0;
}

static int read_rows(em_nin_t *n, const em_tensor_t *t, uint64_t row0, uint64_t nrows, const uint32_t *cols,
                     uint32_t nc, row_sink_fn sink, void *ctx, em_err_t *err)
{
  if (!em_dtype_readable(t->st->dtype))
    return em_err_set(err, EM_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, which the analysis cannot read",
                      t->file->path, t->st->name, em_dtype_name(t->st->dtype));
  int rc = 0;
  const int16_t *tab = bin_table(n, t->st->dtype, &rc);
  if (rc || grow((void **)&n->bins, &n->bins_cap, nc, sizeof(*n->bins)))
    return em_err_set(err, -ENOMEM, "out of memory");
  uint64_t width = t->st->shape[1];
  size_t es = em_dtype_bits(t->st->dtype) / 8;
  uint32_t first = cols[0], span = cols[nc - 1] - first + 1;
  bool whole = span == width && nc == width;
  uint64_t per_read = whole && width * es <= READ_BUF ? READ_BUF / (width * es) : 1;
  size_t max_span = READ_BUF / es;
  for (uint64_t r = 0; r < nrows && !rc;) {
    uint64_t k = nrows - r < per_read ? nrows - r : per_read;
    if (k > 1 || span <= max_span) {
      rc = em_tensor_read(t, (row0 + r) * width + first, (size_t)(k * span), n->buf, err);
      for (uint64_t i = 0; i < k && !rc; i++) {
        rc = bin_span(n, t, tab, n->buf + i * span * es, row0 + r + i, first, cols, nc, n->bins, err);
        if (!rc)
          rc = sink(ctx, row0 + r + i, n->bins);
      }
    } else {
      /* A span wider than the buffer: read each needed element's chunk separately. */
      for (uint32_t c = 0; c < nc && !rc; c++) {
        rc = em_tensor_read(t, (row0 + r) * width + cols[c], 1, n->buf, err);
        if (!rc)
          rc = bin_span(n, t, tab, n->buf, row0 + r, cols[c], &cols[c], 1, &n->bins[c], err);
      }
      if (!rc)
        rc = sink(ctx, row0 + r, n->bins);
    }
    r += k;
  }
  return rc;
}

/* ---------------------------------------------------------------- maps */

typedef struct map_ctx {
  em_nin_t *n;
  const uint32_t *slot;   /* sorted column k -> histogram slot */
  uint32_t nc;
  em_acc_t *acc;
} map_ctx_t;

/* Rows are targets: column k adds to the histogram of source slot[k]. */
static int sink_targets(void *ctx, uint64_t row, const int16_t *bins)
{
  (void)row;
  map_ctx_t *c = ctx;
  uint32_t stride = (uint32_t)c->n->thr + 1;
  for (uint32_t k = 0; k < c->nc; k++) {
    if (bins[k] > 0) {
      c->n->hist[(size_t)c->slot[k] * stride + (size_t)bins[k]]++;
      c->n->cnt[c->slot[k]]++;
    }
  }
  return 0;
}

/* Rows are sources (transposed storage): the whole row is one node. */
static int sink_source(void *ctx, uint64_t row, const int16_t *bins)
{
  (void)row;
  map_ctx_t *c = ctx;
  uint32_t *h = c->n->hist, cnt = 0;
  memset(h, 0, ((size_t)c->n->thr + 1) * sizeof(*h));
  for (uint32_t k = 0; k < c->nc; k++) {
    if (bins[k] > 0) {
      h[bins[k]]++;
      cnt++;
    }
  }
  return em_acc_add(c->acc, h, cnt);
}

typedef struct col_slot { uint32_t col, slot; } col_slot_t;

static int cmp_col(const void *a, const void *b)
{
  uint32_t x = ((const col_slot_t *)a)->col, y = ((const col_slot_t *)b)->col;
  return (x > y) - (x < y);
}

/* idx sorted ascending into n->cols, with n->order[k] = position of cols[k] in idx. */
static const uint32_t *sort_cols(em_nin_t *n, const uint32_t *idx, uint32_t count, int *rc)
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
    rc = read_rows(n, m->parts[p].t, row - base, run, cols, ctx->nc, sink_targets, ctx, err);
    i += run;
  }
  return rc;
}

int em_nin_add_map(em_nin_t *n, const em_map_t *m, const uint32_t *src, uint32_t nsrc, const uint32_t *tgt,
                   uint32_t ntgt, em_acc_t *acc, em_err_t *err)
{
  int rc = 0;
  size_t stride = (size_t)n->thr + 1, nodes = m->transposed ? 1 : nsrc;
  if (grow((void **)&n->hist, &n->hist_cap, nodes * stride, sizeof(*n->hist)) ||
      !(n->cnt = realloc(n->cnt, (nsrc ? nsrc : 1) * sizeof(*n->cnt))))
    return em_err_set(err, -ENOMEM, "out of memory");
  map_ctx_t ctx = {n, NULL, 0, acc};
  if (m->transposed) {
    /* Stored [in, out]: each sampled source is a stored row; targets are its columns. */
    const uint32_t *cols = sort_cols(n, tgt, ntgt, &rc);
    ctx.nc = ntgt;
    for (uint32_t i = 0; i < nsrc && !rc; i++)
      rc = read_rows(n, m->parts[0].t, src[i], 1, cols, ntgt, sink_source, &ctx, err);
  } else {
    const uint32_t *cols = sort_cols(n, src, nsrc, &rc);
    ctx.slot = n->order;
    ctx.nc = nsrc;
    memset(n->hist, 0, nsrc * stride * sizeof(*n->hist));
    memset(n->cnt, 0, nsrc * sizeof(*n->cnt));
    if (!rc)
      rc = add_target_rows(n, m, tgt, ntgt, cols, &ctx, err);
    for (uint32_t i = 0; i < nsrc && !rc; i++)
      rc = em_acc_add(acc, n->hist + i * stride, n->cnt[i]);
  }
  if (rc == -ENOMEM)
    return em_err_set(err, rc, "out of memory");
  return rc;
}
