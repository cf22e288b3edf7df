"""Writes a LLaMA-7B-shaped checkpoint as Hugging Face shards it: model-0000K-of-0000N.safetensors
and model.safetensors.index.json in one directory, BF16, tensor by tensor (never the whole
model in memory), with LLaMA's init (normal, std 0.02; norms 1), for the benchmarks.

    gen_llama.py OUT_DIR [--hidden 4096 --intermediate 11008 --layers 32 --vocab 32000]"""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_pythia  # noqa: E402

SHARD_BYTES = 5 << 30  # save_pretrained's default max_shard_size ("5GB")
SHAPE_7B = (4096, 11008, 32, 32000)


def layout(h, inter, layers, vocab):
    yield "model.embed_tokens.weight", (vocab, h)
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield p + f"self_attn.{n}.weight", (h, h)
        yield p + "mlp.gate_proj.weight", (inter, h)
        yield p + "mlp.up_proj.weight", (inter, h)
        yield p + "mlp.down_proj.weight", (h, inter)
        yield p + "input_layernorm.weight", (h,)
        yield p + "post_attention_layernorm.weight", (h,)
    yield "model.norm.weight", (h,)
    yield "lm_head.weight", (vocab, h)


def shards(tensors):
    """Tensors in order, cut into shards of at most SHARD_BYTES."""
    out, cur, size = [], [], 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        if cur and size + n > SHARD_BYTES:
            out.append(cur)
            cur, size = [], 0
        cur.append((name, shape))
        size += n
    return out + [cur]


def write_shard(path, tensors, rng):
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, shape in tensors:
            if len(shape) == 1:
                f.write(gen_pythia.encode(np.ones(shape, dtype=np.float32), "BF16"))
                continue
            rows, cols = shape
            step = max(1, (1 << 22) // cols)
            for r in range(0, rows, step):
                k = min(step, rows - r)
                f.write(gen_pythia.encode(rng.standard_normal((k, cols), dtype=np.float32) * np.float32(0.02), "BF16"))
    os.replace(path + ".tmp", path)


def write(out_dir, h, inter, layers, vocab, seed=0):
    """Writes the shards, then the index last (its appearance marks the checkpoint complete)."""
    os.makedirs(out_dir, exist_ok=True)
    parts = shards(layout(h, inter, layers, vocab))
    rng = np.random.default_rng(seed)
    weight_map, total = {}, 0
    for k, part in enumerate(parts):
        name = f"model-{k + 1:05d}-of-{len(parts):05d}.safetensors"
        write_shard(os.path.join(out_dir, name), part, rng)
        for t, shape in part:
            weight_map[t] = name
            total += int(np.prod(shape)) * 2
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(out_dir, "model.safetensors.index.json.tmp"), "w") as f:
        json.dump(index, f, indent=1)
    os.replace(os.path.join(out_dir, "model.safetensors.index.json.tmp"),
               os.path.join(out_dir, "model.safetensors.index.json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--hidden", type=int, default=SHAPE_7B[0])
    ap.add_argument("--intermediate", type=int, default=SHAPE_7B[1])
    ap.add_argument("--layers", type=int, default=SHAPE_7B[2])
    ap.add_argument("--vocab", type=int, default=SHAPE_7B[3])
    a = ap.parse_args()
    write(a.out, a.hidden, a.intermediate, a.layers, a.vocab)


if __name__ == "__main__":
    main()
