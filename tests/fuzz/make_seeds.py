"""Writes the seed corpora for fuzz_safetensors (valid files of each dtype and layout, and
one file per validation rule broken: tests/check_safetensors.c lists the rules), and for
fuzz_torch and fuzz_pickle (the torch fixtures of tests/fixtures/torch, their data.pkl
streams, and archives cut short). Needs no torch."""
import hashlib
import io
import os
import struct
import sys
import zipfile

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "py"))
import numpy as np  # noqa: E402
import stio  # noqa: E402


def raw(header, data=b""):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h)) + h + data


def seeds():
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 100
    for dt in ("F64", "F32", "F16", "BF16"):
        yield stio.serialize({"w": (dt, a), "b": (dt, a[0])})
    yield stio.serialize({"w8": ("F8_E4M3", np.arange(16, dtype=np.uint8))})
    yield raw("{}")
    yield raw('  {"__metadata__":{"format":"pt"}}   ')
    yield raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
              '"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}', bytes(6))
    yield raw('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},'
              '"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}', bytes(8))
    yield raw('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,1e3]}}', bytes(8))
    yield raw('{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,1]}}', bytes(1))
    yield raw('{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}}')
    yield raw('{"a":{"b":{"c":[[1]]}}}')
    yield raw(b'{"\xff":1}')
    yield raw("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,3000000000]}}", bytes(1))
    yield struct.pack("<Q", 100000001) + b"{}"
    yield b"\x02\x00\x00"


def torch_files():
    fixtures = os.path.join(here, "..", "fixtures", "torch")
    for top, _, files in sorted(os.walk(fixtures)):
        for name in sorted(files):
            if name.endswith((".pt", ".bin", ".ckpt")):
                with open(os.path.join(top, name), "rb") as f:
                    yield f.read()


def torch_seeds():
    for data in torch_files():
        yield data
        yield data[:len(data) // 2]  # cut short: no end-of-central-directory record
        yield data[:len(data) - 30]


def pickle_seeds():
    for data in torch_files():
        if data[:4] == b"PK\x03\x04":
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                yield from (z.read(n) for n in z.namelist() if n.endswith("data.pkl"))
    yield b"\x80\x02]q\x00h\x00a."            # a list holding itself
    yield b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01X\x01\x00\x00\x00aK\x01s."
    yield b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x85R."  # never called
    yield b"\x80\x02" + b"(" * 1000 + b"t" * 1000 + b"."


def write(target, datas):
    out = os.path.join(here, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for data in datas:
        name = hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


def main():
    write("safetensors", seeds())
    write("torch", torch_seeds())
    write("pickle", pickle_seeds())


if __name__ == "__main__":
    main()
