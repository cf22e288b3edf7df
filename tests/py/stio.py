"""Minimal safetensors writer/reader in numpy, for tests, benches and examples.

Writes the format exactly as the reference writer does: tensors sorted by descending
dtype alignment then name, header padded with spaces to a multiple of 8."""
import json
import os
import struct

import numpy as np

DTYPES = {"F64": (np.float64, 8), "F32": (np.float32, 4), "F16": (np.float16, 2),
          "BF16": (np.uint16, 2), "I64": (np.int64, 8), "I32": (np.int32, 4),
          "U8": (np.uint8, 1), "F8_E4M3": (np.uint8, 1), "F8_E5M2": (np.uint8, 1)}


def to_bf16_bits(a):
    """float32 -> bfloat16 bit patterns, round to nearest even (as torch does)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32)


def encode(arr, dtype):
    if dtype == "BF16":
        return to_bf16_bits(arr)
    if dtype in ("F8_E4M3", "F8_E5M2"):
        raise ValueError("pass raw uint8 bit patterns for float8")
    return np.ascontiguousarray(arr, dtype=DTYPES[dtype][0])


def serialize(tensors, metadata=None):
    """tensors: {name: (dtype, ndarray)}; returns the file bytes."""
    items = sorted(tensors.items(), key=lambda kv: (-DTYPES[kv[1][0]][1], kv[0]))
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in items:
        raw = arr if arr.dtype == np.uint8 and dtype.startswith("F8") else encode(arr, dtype)
        data = raw.astype(raw.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def save(path, tensors, metadata=None, atomic=True):
    data = serialize(tensors, metadata or {"format": "pt"})
    tmp = path + ".tmp" if atomic else path
    with open(tmp, "wb") as f:
        f.write(data)
    if atomic:
        os.replace(tmp, path)


def load(path):
    """{name: float64 ndarray} for the float dtypes this module writes."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        buf = raw[base + b:base + e]
        dt = info["dtype"]
        if dt == "BF16":
            a = from_bf16_bits(np.frombuffer(buf, dtype="<u2")).astype(np.float64)
        else:
            a = np.frombuffer(buf, dtype=np.dtype(DTYPES[dt][0]).newbyteorder("<")).astype(np.float64)
        out[name] = a.reshape(info["shape"])
    return out
