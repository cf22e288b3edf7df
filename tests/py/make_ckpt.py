"""Synthetic checkpoints shaped like real models, for tests and benchmarks.

    make_ckpt.py neox OUT.safetensors --hidden 512 --blocks 6 [--dtype F16] [--seed 0] [--scale 1]
    make_ckpt.py llama|gpt2|bert|mlp OUT.safetensors ...

GPT-NeoX weights follow Pythia's init (small_init for the input projections,
wang_init for attention.dense and dense_4h_to_h); --scale multiplies every weight,
which moves the spectrum the way training does (docs/VALIDATION.md)."""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stio  # noqa: E402


def neox(h, blocks, rng, scale):
    s_in, s_out = math.sqrt(2 / (5 * h)), 2 / (blocks * math.sqrt(h))
    t = {"gpt_neox.embed_in.weight": rng.normal(0, s_in, (64, h))}
    for b in range(blocks):
        p = f"gpt_neox.layers.{b}."
        t[p + "attention.query_key_value.weight"] = rng.normal(0, s_in, (3 * h, h))
        t[p + "attention.query_key_value.bias"] = np.zeros(3 * h)
        t[p + "attention.dense.weight"] = rng.normal(0, s_out, (h, h))
        t[p + "mlp.dense_h_to_4h.weight"] = rng.normal(0, s_in, (4 * h, h))
        t[p + "mlp.dense_4h_to_h.weight"] = rng.normal(0, s_out, (h, 4 * h))
        t[p + "input_layernorm.weight"] = np.ones(h)
    return {k: v * scale if v.ndim == 2 else v for k, v in t.items()}


def llama(h, blocks, rng, scale, kv=None, inter=None):
    kv, inter = kv or h // 2, inter or (8 * h) // 3
    s = scale / math.sqrt(h)
    t = {}
    for b in range(blocks):
        p = f"model.layers.{b}."
        t[p + "self_attn.q_proj.weight"] = rng.normal(0, s, (h, h))
        t[p + "self_attn.k_proj.weight"] = rng.normal(0, s, (kv, h))
        t[p + "self_attn.v_proj.weight"] = rng.normal(0, s, (kv, h))
        t[p + "self_attn.o_proj.weight"] = rng.normal(0, s, (h, h))
        t[p + "mlp.gate_proj.weight"] = rng.normal(0, s, (inter, h))
        t[p + "mlp.up_proj.weight"] = rng.normal(0, s, (inter, h))
        t[p + "mlp.down_proj.weight"] = rng.normal(0, s / 2, (h, inter))
    return t


def gpt2(h, blocks, rng, scale):
    s = 0.02 * scale
    t = {"transformer.wte.weight": rng.normal(0, s, (64, h))}
    for b in range(blocks):
        p = f"transformer.h.{b}."
        t[p + "attn.c_attn.weight"] = rng.normal(0, s, (h, 3 * h))   # Conv1D: [in, out]
        t[p + "attn.c_proj.weight"] = rng.normal(0, s, (h, h))
        t[p + "mlp.c_fc.weight"] = rng.normal(0, s, (h, 4 * h))
        t[p + "mlp.c_proj.weight"] = rng.normal(0, s, (4 * h, h))
    return t


def bert(h, blocks, rng, scale):
    s = 0.02 * scale
    t = {}
    for b in range(blocks):
        p = f"bert.encoder.layer.{b}."
        for n in ("query", "key", "value"):
            t[p + f"attention.self.{n}.weight"] = rng.normal(0, s, (h, h))
        t[p + "attention.output.dense.weight"] = rng.normal(0, s, (h, h))
        t[p + "intermediate.dense.weight"] = rng.normal(0, s, (4 * h, h))
        t[p + "output.dense.weight"] = rng.normal(0, s, (h, 4 * h))
    return t


def mlp(h, blocks, rng, scale):
    widths = [h] + [2 * h] * blocks + [h]
    return {f"layers.{i}.weight": rng.normal(0, scale / math.sqrt(widths[i]), (widths[i + 1], widths[i]))
            for i in range(len(widths) - 1)}


FAMILIES = {"neox": neox, "llama": llama, "gpt2": gpt2, "bert": bert, "mlp": mlp}


def build(family, hidden, blocks, seed=0, scale=1.0):
    return FAMILIES[family](hidden, blocks, np.random.default_rng(seed), scale)


def write(path, tensors, dtype):
    stio.save(path, {k: (dtype, v) for k, v in tensors.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("family", choices=sorted(FAMILIES))
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--dtype", default="F32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0)
    a = ap.parse_args()
    write(a.out, build(a.family, a.hidden, a.blocks, a.seed, a.scale), a.dtype)


if __name__ == "__main__":
    main()
