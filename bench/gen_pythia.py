"""Writes a Pythia-shaped GPT-NeoX checkpoint tensor by tensor (never the whole model in
memory), with Pythia's init scales, for the benchmarks.

    gen_pythia.py OUT.safetensors --hidden 2048 --blocks 16 --dtype F16"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stio  # noqa: E402

SHAPES = {"70m": (512, 6), "160m": (768, 12), "410m": (1024, 24), "1b": (2048, 16), "1.4b": (2048, 24)}


def layout(h, blocks, vocab=50304):
    s_in, s_out = math.sqrt(2 / (5 * h)), 2 / (blocks * math.sqrt(h))
    yield "gpt_neox.embed_in.weight", (vocab, h), s_in
    for b in range(blocks):
        p = f"gpt_neox.layers.{b}."
        yield p + "attention.query_key_value.weight", (3 * h, h), s_in
        yield p + "attention.dense.weight", (h, h), s_out
        yield p + "mlp.dense_h_to_4h.weight", (4 * h, h), s_in
        yield p + "mlp.dense_4h_to_h.weight", (h, 4 * h), s_out
    yield "embed_out.weight", (vocab, h), s_in


def encode(chunk, dtype):
    if dtype == "BF16":
        return stio.to_bf16_bits(chunk).tobytes()
    return chunk.astype("<f2" if dtype == "F16" else "<f4").tobytes()


def write(path, h, blocks, dtype="F16", seed=0):
    es = {"F16": 2, "BF16": 2, "F32": 4}[dtype]
    tensors = sorted(layout(h, blocks), key=lambda t: t[0])
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in tensors:
        n = shape[0] * shape[1] * es
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, (rows, cols), std in tensors:
            step = max(1, (1 << 22) // cols)
            for r in range(0, rows, step):
                k = min(step, rows - r)
                f.write(encode(rng.standard_normal((k, cols), dtype=np.float32) * np.float32(std), dtype))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--shape", choices=sorted(SHAPES))
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--dtype", default="F16", choices=["F16", "BF16", "F32"])
    a = ap.parse_args()
    h, b = SHAPES[a.shape] if a.shape else (a.hidden, a.blocks)
    write(a.out, h, b, a.dtype)


if __name__ == "__main__":
    main()
