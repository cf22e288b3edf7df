/* SPDX-License-Identifier: MIT */
/* Partition function and spectrum.
 *
 * DESIGN. The reference computes, for every kept node j and radius r of the union R of
 * rounded distances, N_j(r) = 1 + #{d <= r} and M_j = N_j(max R), then
 * Z_q(r) = sum_j (N_j(r) / M_j)^q. N and M are small integers, so (N/M)^q is taken as
 * N^q * M^-q from per-q power tables (a few ulp from numpy's pow of the ratio). A node
 * is folded into Z as soon as its histogram is complete, over all bins 1..threshold;
 * bins absent from R are dropped at the end. From a node's last distance on, its term
 * is exactly 1, so those bins are only counted (an integer per bin) instead of summed;
 * below its first distance its term is M^-q, added once at that bin and spread by a
 * suffix sum at the end (all terms non-negative: no cancellation).
 *
 * Speed (the hot loop of full mode): nodes are folded in batches of BATCH, one slice of
 * QB q values at a time, bins outer and nodes inner. A bin's partial sums then stay in
 * registers (two chains, so additions do not wait on each other), and the batch's N
 * values at one bin are close together, so the power-table rows they read (laid out
 * slice by slice, QB doubles per row) are cache hits. Each bin visits only the nodes
 * whose [first, last) holds it (listed once per batch, padded to an even count with a
 * node whose M^-q is 0), so the loop has no branch and no wasted work.
 *
 * Accumulators that share one power table (em_acc_new_shared) sum disjoint sets of
 * nodes and are merged (em_acc_merge): the result depends only on which nodes each held
 * and the order of merging, never on which thread folded them. */
#include "em_spectrum.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "em_err.h"

#define QB 16        /* q values per slice */
#define BATCH 64     /* nodes folded together */
_Static_assert(BATCH < 256, "act lists node numbers up to BATCH in bytes");

struct em_acc {
  int thr;             /* largest radius */
  size_t nq, nslices;  /* q values; slices of QB (the last one padded with q = 0) */
  double *q;
  double *z;           /* [slice][bin][QB]: partial Z_q(r) over bins first..last-1 of each node */
  double *pre;         /* [slice][bin][QB]: sum of M^-q over nodes whose first distance is at bin */
  uint32_t *cum;       /* [bin][BATCH + 1]: N_j(bin) = 1 + distances <= bin, of the batched
                          nodes; column BATCH is the padding node's (N = 1, M^-q = 0) */
  uint8_t *act;        /* [bin][BATCH + 1]: the nodes with first <= bin < last, then padding */
  uint32_t *nact;      /* [bin]: how many (even) */
  uint32_t bm[BATCH];  /* their M = 1 + distances kept */
  int bfirst[BATCH];   /* their first non-empty bin */
  int blast[BATCH];    /* their last non-empty bin */
  size_t nbatch;
  uint32_t *ones;      /* ones[b]: nodes whose last distance is at bin b */
  uint8_t *present;    /* present[b]: some kept node has a distance at b */
  size_t nodes;        /* kept nodes */
  size_t cap;          /* power table rows 0..cap-1 */
  double *pw;          /* [slice][n][QB]: n^q (1 KiB per row shared by every thread) */
  double *inv;         /* [BATCH + 1][QB]: M^-q of the batched nodes, one slice at a time */
  bool shared;         /* the tables belong to another accumulator */
};

static void *alloc_doubles(size_t n)
{
  return aligned_alloc(64, (n ? n : 1) * sizeof(double) + 63 - ((n ? n : 1) * sizeof(double) + 63) % 64);
}

int em_bin_of(double w, int threshold)
{
  if (!isfinite(w))
    return -1;
  double d = 1.0 / fabs(w);
  if (!(d > 1.0) || !(d <= (double)threshold))
    return 0;
  return (int)rint(d);
}

int em_qgrid(const em_params_t *p, double **q, size_t *nq, em_err_t *err)
{
  double lo = p->q_min * 100, hi = p->q_max * 100, st = p->q_step * 100;
  long klo = lround(lo), khi = lround(hi), kst = lround(st);
  if (fabs(lo - klo) > 1e-6 || fabs(hi - khi) > 1e-6 || fabs(st - kst) > 1e-6)
    return em_err_set(err, -EINVAL, "q_min, q_max and q_step must be multiples of 0.01");
  if (kst <= 0 || khi <= klo || (khi - klo) % kst != 0 || klo < -10000 || khi > 10000)
    return em_err_set(err, -EINVAL, "q grid %g..%g step %g: need q_min < q_max within [-100, 100] and a "
                      "positive step that divides the range", p->q_min, p->q_max, p->q_step);
  size_t n = (size_t)((khi - klo) / kst) + 1;
  if (n < 3)
    return em_err_set(err, -EINVAL, "q grid needs at least 3 values");
  *q = malloc(n * sizeof(**q));
  if (!*q)
    return em_err_set(err, -ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++)
    (*q)[i] = (double)(klo + (long)i * kst) / 100.0;
  *nq = n;
  return 0;
}

em_acc_t *em_acc_new(int threshold, const double *q, size_t nq)
{
  em_acc_t *a = calloc(1, sizeof(*a));
  if (!a)
    return NULL;
  a->thr = threshold;
  a->nq = nq;
  a->nslices = (nq + QB - 1) / QB;
  size_t bins = (size_t)threshold + 1;
  a->q = malloc(nq * sizeof(*a->q));
  a->z = alloc_doubles(a->nslices * bins * QB);
  a->pre = alloc_doubles(a->nslices * bins * QB);
  a->inv = alloc_doubles((BATCH + 1) * QB);
  a->cum = malloc(bins * (BATCH + 1) * sizeof(*a->cum));
  a->act = malloc(bins * (BATCH + 1));
  a->nact = malloc(bins * sizeof(*a->nact));
  a->ones = malloc(bins * sizeof(*a->ones));
  a->present = malloc(bins);
  if (!a->q || !a->z || !a->pre || !a->inv || !a->cum || !a->act || !a->nact || !a->ones || !a->present) {
    em_acc_destroy(&a);
    return NULL;
  }
  memcpy(a->q, q, nq * sizeof(*q));
  memset(a->inv + BATCH * QB, 0, QB * sizeof(*a->inv)); /* the padding node adds nothing */
  em_acc_reset(a);
  return a;
}

void em_acc_destroy(em_acc_t **self_p)
{
  em_acc_t *a = *self_p;
  if (!a)
    return;
  free(a->q);
  free(a->z);
  free(a->pre);
  free(a->inv);
  free(a->cum);
  free(a->act);
  free(a->nact);
  free(a->ones);
  free(a->present);
  if (!a->shared) {
    free(a->pw);
  }
  free(a);
  *self_p = NULL;
}

void em_acc_reset(em_acc_t *a)
{
  size_t bins = (size_t)a->thr + 1;
  memset(a->z, 0, a->nslices * bins * QB * sizeof(*a->z));
  memset(a->pre, 0, a->nslices * bins * QB * sizeof(*a->pre));
  memset(a->ones, 0, bins * sizeof(*a->ones));
  memset(a->present, 0, bins);
  a->nodes = 0;
  a->nbatch = 0;
}

/* Grows the power tables to hold rows 0..need (doubling unless exact), keeping the rows
 * already computed. */
static int grow_tables(em_acc_t *a, size_t need, bool exact)
{
  if (need < a->cap)
    return 0;
  if (a->shared)
    return -ENOMEM; /* em_acc_reserve sized the owner's tables for every node */
  size_t cap = exact ? need + 1 : (a->cap ? a->cap : 128);
  while (cap <= need)
    cap *= 2;
  double *pw = alloc_doubles(a->nslices * cap * QB);
  if (!pw)
    return -ENOMEM;
  for (size_t s = 0; s < a->nslices; s++) {
    if (a->cap) {
      memcpy(pw + s * cap * QB, a->pw + s * a->cap * QB, a->cap * QB * sizeof(*pw));
    }
    for (size_t n = a->cap; n < cap; n++) {
      for (size_t i = 0; i < QB; i++) {
        double qi = s * QB + i < a->nq ? a->q[s * QB + i] : 0;
        pw[(s * cap + n) * QB + i] = pow((double)n, qi);
      }
    }
  }
  free(a->pw);
  a->pw = pw;
  a->cap = cap;
  return 0;
}

/* The hot loop of the analysis. Fixed QB-wide loops that the compiler vectorizes; on
 * x86-64 an AVX-512 or AVX2 clone is picked at load time where the CPU has it (target_clones). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(__SANITIZE_THREAD__) /* ifunc resolvers run before the sanitizer runtimes */
#define HOT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define HOT_CLONES
#endif

/* Eight doubles as one value (GCC/clang vector extension; one AVX-512 register, two
 * AVX2 ones): the fold is written in them because GCC 12 at -O2 does not vectorise
 * loops. Rows of the tables and of Z are QB doubles, 64-byte aligned, so these loads are
 * aligned. Every clone does the same multiplications and additions in the same order
 * (ISO C: no contraction into FMA), so results do not depend on the CPU. */
typedef double v8d __attribute__((vector_size(64)));
#define QV (QB / 8)

/* One slice: zs[b] += sum over the nodes active at b of N_j(b)^q * M_j^-q. pw and
 * inv are this slice's table and the batch's M^-q. */
HOT_CLONES
static void fold_slice(const em_acc_t *a, double *restrict zs, const double *restrict pw,
                       const double *restrict inv, int lo, int hi)
{
  for (int b = lo; b < hi; b++) {
    v8d even[QV], odd[QV];
    v8d *z = (v8d *)(zs + (size_t)b * QB);
#pragma GCC unroll 4
    for (size_t i = 0; i < QV; i++) {
      even[i] = z[i];
      odd[i] = (v8d){0};
    }
    const uint32_t *cum = a->cum + (size_t)b * (BATCH + 1);
    const uint8_t *act = a->act + (size_t)b * (BATCH + 1);
    for (size_t k = 0; k < a->nact[b]; k += 2) {
      unsigned j0 = act[k], j1 = act[k + 1];
      const v8d *p0 = (const v8d *)(pw + (size_t)cum[j0] * QB), *i0 = (const v8d *)(inv + (size_t)j0 * QB);
      const v8d *p1 = (const v8d *)(pw + (size_t)cum[j1] * QB), *i1 = (const v8d *)(inv + (size_t)j1 * QB);
#pragma GCC unroll 4 /* the sums stay in registers; two chains: neither waits on the other */
      for (size_t i = 0; i < QV; i++) {
        even[i] += p0[i] * i0[i];
        odd[i] += p1[i] * i1[i];
      }
    }
#pragma GCC unroll 4
    for (size_t i = 0; i < QV; i++)
      z[i] = even[i] + odd[i];
  }
}

/* Lists, for every bin in [*lo, *hi), the batched nodes with first <= bin < last,
 * padded to an even count with the padding node (column BATCH). */
static void list_active(em_acc_t *a, int *lo, int *hi)
{
  *lo = a->thr;
  *hi = 0;
  for (size_t j = 0; j < a->nbatch; j++) {
    *lo = a->bfirst[j] < *lo ? a->bfirst[j] : *lo;
    *hi = a->blast[j] > *hi ? a->blast[j] : *hi;
  }
  for (int b = *lo; b < *hi; b++) {
    uint8_t *act = a->act + (size_t)b * (BATCH + 1);
    uint32_t n = 0;
    for (size_t j = 0; j < a->nbatch; j++) {
      act[n] = (uint8_t)j;
      n += a->bfirst[j] <= b && b < a->blast[j];
    }
    a->cum[(size_t)b * (BATCH + 1) + BATCH] = 1; /* 1^q = 1, times its M^-q of 0 */
    act[n] = BATCH;
    a->nact[b] = n + (n & 1);
  }
}

/* Folds the batched nodes into Z, one q slice at a time. */
static void flush_batch(em_acc_t *a)
{
  if (a->nbatch == 0)
    return; /* also: an accumulator never sized has no table to point into */
  const size_t bins = (size_t)a->thr + 1;
  int lo, hi;
  list_active(a, &lo, &hi);
  for (size_t s = 0; s < a->nslices; s++) {
    const double *pw = a->pw + s * a->cap * QB;
    double *pre = a->pre + s * bins * QB;
    v8d *inv = (v8d *)a->inv;
    for (size_t j = 0; j < a->nbatch; j++, inv += QV) {
      const v8d *mq = (const v8d *)(pw + (size_t)a->bm[j] * QB);
      v8d *p = (v8d *)(pre + (size_t)a->bfirst[j] * QB);
      for (size_t i = 0; i < QV; i++) {
        inv[i] = 1.0 / mq[i]; /* M^-q as 1 / M^q: no second table of every n */
        p[i] += inv[i];       /* N = 1 below the first distance */
      }
    }
    fold_slice(a, a->z + s * bins * QB, pw, a->inv, lo, hi);
  }
  a->nbatch = 0;
}

int em_acc_add(em_acc_t *a, const uint32_t *hist, uint32_t cnt)
{
  if (cnt <= EM_MIN_DISTANCES)
    return 0;
  uint32_t m = cnt + 1;
  if (grow_tables(a, m, false) != 0)
    return -ENOMEM;
  /* locals, not a->: a store through the uint8_t present may alias any field, and GCC
   * would reload them all on every bin */
  const int thr = a->thr;
  uint32_t *restrict cum = a->cum + a->nbatch;
  uint8_t *restrict present = a->present;
  int first = 0, last = 0;
  uint32_t n = 1;
  for (int b = 1; b <= thr; b++) {
    uint32_t h = hist[b];
    n += h;
    present[b] |= h != 0;
    first = first || !h ? first : b;
    last = h ? b : last;
    cum[(size_t)b * (BATCH + 1)] = n;
  }
  a->ones[last]++; /* from its last distance on, the node's term is exactly 1 */
  a->nodes++;
  a->bm[a->nbatch] = m;
  a->bfirst[a->nbatch] = first;
  a->blast[a->nbatch++] = last;
  if (a->nbatch == BATCH)
    flush_batch(a);
  return 0;
}

int em_acc_reserve(em_acc_t *a, uint32_t max_m) { return grow_tables(a, max_m, true); }

em_acc_t *em_acc_new_shared(const em_acc_t *owner)
{
  em_acc_t *a = em_acc_new(owner->thr, owner->q, owner->nq);
  if (!a)
    return NULL;
  a->pw = owner->pw;
  a->cap = owner->cap;
  a->shared = true;
  return a;
}

void em_acc_merge(em_acc_t *to, em_acc_t *from)
{
  flush_batch(to);
  flush_batch(from);
  size_t bins = (size_t)to->thr + 1, n = to->nslices * bins * QB;
  for (size_t i = 0; i < n; i++) {
    to->z[i] += from->z[i];
    to->pre[i] += from->pre[i];
  }
  for (size_t b = 0; b < bins; b++) {
    to->ones[b] += from->ones[b];
    to->present[b] |= from->present[b];
  }
  to->nodes += from->nodes;
}

size_t em_acc_nodes(const em_acc_t *a) { return a->nodes; }

static double ols_slope(const double *x, const double *y, size_t n)
{
  double xm = 0, ym = 0, sxy = 0, sxx = 0;
  for (size_t k = 0; k < n; k++) {
    xm += x[k];
    ym += y[k];
  }
  xm /= (double)n;
  ym /= (double)n;
  for (size_t k = 0; k < n; k++) {
    sxy += (x[k] - xm) * (y[k] - ym);
    sxx += (x[k] - xm) * (x[k] - xm);
  }
  return sxy / sxx;
}

int em_acc_tau(em_acc_t *a, double *tau, em_err_t *err)
{
  flush_batch(a);
  if (a->nodes == 0)
    return em_err_set(err, EM_EDEGENERATE, "no node has more than %d distances in (1, %d]", EM_MIN_DISTANCES,
                      a->thr);
  size_t k = 0, bins = (size_t)a->thr + 1;
  int d = 0;
  for (size_t b = 1; b < bins; b++) {
    if (a->present[b]) {
      k++;
      d = (int)b;
    }
  }
  if (k < 2)
    return em_err_set(err, EM_EDEGENERATE, "all kept distances round to one radius (%d): no slope to fit", d);
  double *x = malloc(k * sizeof(*x)), *y = malloc(k * sizeof(*y));
  uint32_t *done = malloc(k * sizeof(*done));
  size_t *rb = malloc(k * sizeof(*rb));
  int rc = 0;
  if (!x || !y || !done || !rb) {
    rc = em_err_set(err, -ENOMEM, "out of memory");
    goto out;
  }
  uint32_t ones = 0;
  for (size_t b = 1, j = 0; b < bins; b++) {
    ones += a->ones[b];
    if (a->present[b]) {
      rb[j] = b;
      done[j] = ones;
      x[j++] = log((double)b / d);
    }
  }
  for (size_t i = 0; i < a->nq && !rc; i++) {
    size_t base = (i / QB) * bins * QB + i % QB;
    double below = 0; /* sum of pre[f] for f > the radius */
    for (size_t j = k, b = bins - 1; j-- > 0;) {
      for (; b > rb[j]; b--)
        below += a->pre[base + b * QB];
      y[j] = log(a->z[base + rb[j] * QB] + below + done[j]);
    }
    tau[i] = ols_slope(x, y, k);
    if (!isfinite(tau[i]))
      rc = em_err_set(err, EM_EDEGENERATE, "tau(%g) is not finite", a->q[i]);
  }
out:
  free(x);
  free(y);
  free(done);
  free(rb);
  return rc;
}

/* Index of q == 0 with a neighbour on each side, or -1. */
static long zero_index(const double *q, size_t nq)
{
  for (size_t i = 1; i + 1 < nq; i++) {
    if (q[i] == 0.0)
      return (long)i;
  }
  return -1;
}

static int pick_alpha0(const double *q, const double *tau, const double *alpha, const double *f, size_t nq,
                       em_alpha0_rule_t rule, double *alpha0, em_err_t *err)
{
  long z = zero_index(q, nq);
  if (rule == EM_ALPHA0_CENTRAL) {
    if (z < 0)
      return em_err_set(err, -EINVAL, "alpha0=central needs q = 0 inside the q grid");
    *alpha0 = (tau[z + 1] - tau[z - 1]) / (q[z + 1] - q[z - 1]);
    return 0;
  }
  size_t j = 0;
  for (size_t i = 1; i + 1 < nq; i++) {
    if (f[i] > f[j])
      j = i;
  }
  /* f(-0.1) and f(0) are both 0 in exact arithmetic; numpy's choice between them is
   * rounding noise, and on exact ties it takes the first. */
  if (z > 0 && (long)j == z && fabs(f[z - 1] - f[z]) < 1e-12)
    j = (size_t)z - 1;
  *alpha0 = alpha[j];
  return 0;
}

int em_spectrum(const double *q, const double *tau, size_t nq, em_alpha0_rule_t rule, double *alpha, double *f,
                double *alpha0, double *width, em_err_t *err)
{
  double lo = INFINITY, hi = -INFINITY;
  for (size_t i = 0; i + 1 < nq; i++) {
    alpha[i] = (tau[i + 1] - tau[i]) / (q[i + 1] - q[i]);
    f[i] = q[i] * alpha[i] - tau[i];
    if (!isfinite(alpha[i]) || !isfinite(f[i]))
      return em_err_set(err, EM_EDEGENERATE, "alpha(%g) is not finite", q[i]);
    lo = fmin(lo, alpha[i]);
    hi = fmax(hi, alpha[i]);
  }
  *width = hi - lo;
  int rc = pick_alpha0(q, tau, alpha, f, nq, rule, alpha0, err);
  if (rc)
    return rc;
  if (!(*alpha0 > 0))
    return em_err_set(err, EM_EDEGENERATE, "alpha0 = %g is not positive", *alpha0);
  return 0;
}
