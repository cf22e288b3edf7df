"""An independent port of the authors' NeuroMFA pipeline (docs/METHOD.md), kept
deliberately close to their Python: explicit edge lists (virtual attention block
included), grouping by source id, Counter histograms, numpy pow, linregress via np.cov.
Used to check the C library number for number. GPT-NeoX names only."""
from collections import Counter

import numpy as np

Q = [q / 100 for q in range(-300, 301, 10)]


def sample_indices(seed, blocks, h, L):
    """np.random.seed(k); per block nums1, T, nums4, nums5; then nums6 (docs/ARCHITECTURES.md, "The common chain")."""
    np.random.seed(seed)
    per_block = []
    for _ in range(blocks):
        nums1 = np.random.choice(h, L, replace=False)
        T = np.random.choice(h, L, replace=False)
        nums4 = np.random.choice(h, L, replace=False)
        nums5 = np.random.choice(4 * h, 2 * L, replace=False)
        per_block.append((nums1, T, nums4, nums5))
    nums6 = np.random.choice(h, L, replace=False)
    return per_block, nums6


def make_edges(W, xs, ys, x_off, y_off, edges):
    """W is [out, in]; an edge from every sampled input to every sampled output."""
    for i in xs:
        for j in ys:
            if W[j, i] != 0:
                edges.append((x_off + i, y_off + j, W[j, i]))


def extract(weights, seed, blocks, h, L, prefix="gpt_neox.layers."):
    per_block, nums6 = sample_indices(seed, blocks, h, L)
    A = np.vstack([np.eye(h), np.ones((2 * h, h))])   # the virtual qkv -> context block
    edges = []
    for b in range(blocks):
        nums1, T, nums4, nums5 = per_block[b]
        nums2 = np.concatenate([T, T + h, T + 2 * h])
        nxt = per_block[b + 1][0] if b + 1 < blocks else nums6
        base = 10 * h * b
        p = f"{prefix}{b}."
        make_edges(weights[p + "attention.query_key_value.weight"], nums1, nums2, base, base + h, edges)
        make_edges(A.T, nums2, T, base + h, base + 4 * h, edges)
        make_edges(weights[p + "attention.dense.weight"], T, nums4, base + 4 * h, base + 5 * h, edges)
        make_edges(weights[p + "mlp.dense_h_to_4h.weight"], nums4, nums5, base + 5 * h, base + 6 * h, edges)
        make_edges(weights[p + "mlp.dense_4h_to_h.weight"], nums5, nxt, base + 6 * h, base + 10 * h, edges)
    return np.array(edges, dtype=np.float64)


def preprocess(edges):
    groups = {}
    for src, _, w in edges:
        groups.setdefault(src, []).append(1 / np.abs(w))
    return [groups[k] for k in sorted(groups)]


def tau_of(mat, threshold=150):
    sel = []
    for g in mat:
        g = [d for d in g if 1 < d <= threshold]
        if len(g) > 10:
            sel.append(Counter(np.rint(np.array(g))))
    if not sel:
        raise ValueError("no node selected")
    R = sorted(set().union(*[set(s) for s in sel]))
    D = R[-1]
    N = np.array([[1 + sum(c for r, c in s.items() if r <= rk) for rk in R] for s in sel], dtype=np.float64)
    x = np.log(np.array(R) / D)
    tau = []
    for q in Q:
        Z = np.sum((N / N[:, -1:]) ** q, axis=0)
        y = np.log(Z)
        ssxm, ssxym, _, _ = np.cov(x, y, bias=1).flat
        tau.append(ssxym / ssxm)
    return np.array(tau), len(sel)


def spectrum(tau):
    q = np.array(Q)
    alpha = (tau[1:] - tau[:-1]) / (q[1:] - q[:-1])
    f = q[:-1] * alpha - tau[:-1]
    central = (tau[31] - tau[29]) / (q[31] - q[29])
    return alpha, f, alpha[np.argmax(f)], central, alpha.max() - alpha.min()


def analyze(weights, blocks, h, samples=10, L=32, seed=0):
    """Per-sample (tau, nodes, alpha0_numpy, alpha0_central, width)."""
    out = []
    for k in range(samples):
        tau, n = tau_of(preprocess(extract(weights, seed + k, blocks, h, L)))
        _, _, a0_np, a0_c, w = spectrum(tau)
        out.append({"tau": tau, "nodes": n, "alpha0_numpy": a0_np, "alpha0": a0_c, "width": w})
    return out


def emergence(a0, w, a0_base, w_base):
    return (w / w_base) * np.log(a0_base / a0)
