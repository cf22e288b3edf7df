/* SPDX-License-Identifier: MIT */
/* The multifractal core (docs/METHOD.md, steps 4-8): node masses, partition function,
 * tau(q) by least squares, and the spectrum alpha, f(alpha), alpha0, width. */
#ifndef EM_SPECTRUM_H
#define EM_SPECTRUM_H

#include <stddef.h>
#include <stdint.h>

#include "emerge.h"

#define EM_MIN_DISTANCES 10 /* a node is kept with MORE than this many distances in range */

/* Distance bin of one weight: 0 when it is not kept (zero, d <= 1 or d > threshold),
 * -1 when it is NaN or Inf, else rint(1/|w|) in 1..threshold. */
int em_bin_of(double w, int threshold);

/* Fills *q with the grid of p (multiples of 0.01, as the reference's q/100).
 * Caller owns *q. -EINVAL with a message for a bad grid. */
int em_qgrid(const em_params_t *p, double **q, size_t *nq, em_err_t *err);

/* Accumulates the partition function Z_q(r) node by node, so that no per-node state is
 * kept: a node's histogram is folded in as soon as it is complete. */
typedef struct em_acc em_acc_t;

/* Caller owns the result (em_acc_destroy); NULL when out of memory. */
em_acc_t *em_acc_new(int threshold, const double *q, size_t nq);
void em_acc_destroy(em_acc_t **self_p);
void em_acc_reset(em_acc_t *acc);
/* Folds one node: hist[1..threshold] counts its rounded distances, cnt their sum. Nodes
 * with cnt <= EM_MIN_DISTANCES are ignored. -ENOMEM when a table cannot grow. */
int em_acc_add(em_acc_t *acc, const uint32_t *hist, uint32_t cnt);
/* Sizes the power tables for nodes of up to max_m - 1 distances (the largest
 * out-degree), so they are built once, exactly; -ENOMEM. Optional. */
int em_acc_reserve(em_acc_t *acc, uint32_t max_m);
/* An empty accumulator that reads owner's power tables (owner must be reserved for
 * every node it will see, and outlive it); NULL when out of memory. */
em_acc_t *em_acc_new_shared(const em_acc_t *owner);
/* Adds from's nodes to to (same threshold and q grid). from is unchanged but flushed. */
void em_acc_merge(em_acc_t *to, em_acc_t *from);
/* Nodes kept so far. */
size_t em_acc_nodes(const em_acc_t *acc);
/* tau(q) over the radii present; EM_EDEGENERATE when no node was kept, fewer than two
 * radii exist, or a tau is not finite. */
int em_acc_tau(em_acc_t *acc, double *tau, em_err_t *err);

/* alpha and f (nq - 1 values each), alpha0 by rule, width = max alpha - min alpha.
 * EM_EDEGENERATE when alpha0 is not positive or a value is not finite. */
int em_spectrum(const double *q, const double *tau, size_t nq, em_alpha0_rule_t rule, double *alpha,
                double *f, double *alpha0, double *width, em_err_t *err);

#endif
