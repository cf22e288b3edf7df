"""make bench: times `emergectl analyze` on Pythia-shaped checkpoints and appends the
figures, with date and machine, to bench/RESULTS.md.

Checkpoints are generated once into bench/cache/ (the 1b shape, 2 GB, and a LLaMA-7B-shaped
sharded BF16 checkpoint, 13 GB, only when the disk has room). Faithful and full mode run on
one and on two analysis threads (--threads) in the same run, so the speed-up is a ratio of
one moment. Every figure is the best of several runs with a warm page cache, next to a
plain sequential read of the same file measured in the same run, because this machine is
shared and its absolute speed drifts."""
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import gen_llama  # noqa: E402
import gen_pythia  # noqa: E402

ROOT = os.path.dirname(here)
EMERGECTL = os.path.join(ROOT, os.environ.get("EMERGECTL", "bin/emergectl"))
CACHE = os.path.join(here, "cache")
RESULTS = os.path.join(here, "RESULTS.md")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))


def checkpoint(shape, dtype):
    path = os.path.join(CACHE, f"pythia-{shape}-{dtype}.safetensors")
    if not os.path.exists(path):
        print(f"bench: generating {path}", file=sys.stderr)
        os.makedirs(CACHE, exist_ok=True)  # a fresh clone has no cache yet
        gen_pythia.write(path, *gen_pythia.SHAPES[shape], dtype)
    return path


def torch_twin(path):
    """The same weights as torch.save writes them (real torch), beside the safetensors file;
    None when torch is not installed."""
    out = path[:-len(".safetensors")] + ".pt"
    if os.path.exists(out):
        return out
    try:
        import collections
        import mmap
        import struct

        import numpy as np
        import torch
    except ImportError:
        print("bench: no torch, skipping the torch zip rows", file=sys.stderr)
        return None
    print(f"bench: generating {out}", file=sys.stderr)
    kinds = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        n = struct.unpack("<Q", m[:8])[0]
        header = json.loads(m[8:8 + n])
        sd = collections.OrderedDict()
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            raw = np.frombuffer(m, dtype=np.uint8, count=e - b, offset=8 + n + b).copy()
            sd[name] = torch.from_numpy(raw).view(kinds[info["dtype"]]).reshape(info["shape"])
        torch.save(sd, out + ".tmp")
        del sd, raw
    os.rename(out + ".tmp", out)
    return out


def sequential_read(path):
    """Seconds for one plain read of the whole file into a reused 8 MiB buffer."""
    buf = bytearray(8 << 20)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass
    return time.perf_counter() - t0


def run(args):
    """(analysis ms from the result, process wall s, peak RSS MiB) of one emergectl run.
    GNU time measures the RSS: a child's own rusage would include the Python that forked it."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", EMERGECTL, "analyze", "--json", *args], capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"bench: emergectl {' '.join(args)} failed: {p.stderr}")
    rss_kib = int(p.stderr.strip().splitlines()[-1])
    return json.loads(p.stdout.splitlines()[0])["elapsed_ms"], wall, rss_kib / 1024


def best(args, runs=RUNS):
    results = [run(args) for _ in range(runs)]
    return min(r[0] for r in results), min(r[1] for r in results), max(r[2] for r in results)


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}"


def llama_checkpoint():
    """The LLaMA-7B-shaped sharded BF16 checkpoint (13 GB), generated once when the disk has room; None otherwise."""
    path = os.path.join(CACHE, "llama-7b-BF16")
    if os.path.exists(os.path.join(path, "model.safetensors.index.json")):
        return path
    if shutil.disk_usage(CACHE).free < 24 << 30:
        print("bench: less than 24 GiB free, skipping the 7B shape", file=sys.stderr)
        return None
    print(f"bench: generating {path}", file=sys.stderr)
    gen_llama.write(path, *gen_llama.SHAPE_7B)
    return path


def mapped_bytes(shape, dtype):
    """Bytes of the weights the full mode reads (the mapped blocks)."""
    if shape == "7b":
        h, inter, layers, _ = gen_llama.SHAPE_7B
        return layers * (4 * h * h + 3 * h * inter) * 2
    h, blocks = gen_pythia.SHAPES[shape]
    return 12 * h * h * blocks * (4 if dtype == "F32" else 2)


def files_of(path):
    return [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".safetensors")] \
        if os.path.isdir(path) else [path]


def measure(shape, dtype, path, runs):
    """One table row: sequential read, faithful and full on 1 and 2 threads, --check-finite."""
    files = files_of(path)
    size = sum(os.path.getsize(f) for f in files)
    for f in files:
        sequential_read(f)  # warm the page cache
    seq = min(sum(sequential_read(f) for f in files) for _ in range(3))
    read_rate = size / seq / 1e9
    f1, f1_wall, f_rss = best(["--mode", "sampled", "--threads", "1", path], runs)  # faithful: the authors' method
    f2, _, f2_rss = best(["--mode", "sampled", "--threads", "2", path], runs)
    full1, _, full1_rss = best(["--full", "--threads", "1", path], runs)
    full2, _, full2_rss = best(["--full", "--threads", "2", path], runs)
    rate1, rate2 = (mapped_bytes(shape, dtype) / (ms / 1e3) / 1e9 for ms in (full1, full2))
    row = (f"| {shape} {dtype} | {size / 1e9:.2f} GB | {read_rate:.2f} GB/s | {f1:.0f} ms ({f1_wall * 1e3:.0f} ms wall) "
           f"| {f2:.0f} ms | {max(f_rss, f2_rss):.1f} MiB | {full1:.0f} ms, {rate1:.2f} GB/s ({rate1 / read_rate * 100:.0f}% "
           f"of read) | {full2:.0f} ms, {rate2:.2f} GB/s ({full1 / full2:.2f}x) | {full1_rss:.1f} / {full2_rss:.1f} MiB |")
    if shape == "7b":
        return row + " | |", (f1_wall, full1)
    _, fin_wall, fin_rss = best(["--mode", "sampled", "--threads", "1", "--check-finite", path], runs)
    fin_rate = size / max(fin_wall - f1_wall, 1e-6) / 1e9  # every weight scanned, then the faithful analysis
    return row + f" {fin_wall * 1e3:.0f} ms wall, scan {fin_rate:.2f} GB/s | {fin_rss:.1f} MiB |", (f1_wall, full1)


def torch_row(shape, dtype, path, base, runs):
    """The same weights as torch.save writes them, against the safetensors row (base: its walls)."""
    pt = torch_twin(path)
    if not pt:
        return None
    sequential_read(pt)
    t_ms, t_wall, t_rss = best(["--mode", "sampled", "--threads", "1", pt], runs)
    tfull_ms, _, tfull_rss = best(["--full", "--threads", "1", pt], runs)
    return (f"| {shape} {dtype} torch zip | {os.path.getsize(pt) / 1e9:.2f} GB | | {t_ms:.0f} ms ({t_wall * 1e3:.0f} ms "
            f"wall; {t_wall / base[0]:.2f}x the safetensors wall) | | {t_rss:.1f} MiB | {tfull_ms:.0f} ms "
            f"({tfull_ms / base[1]:.2f}x) | | {tfull_rss:.1f} MiB | | |")


def main():
    os.makedirs(CACHE, exist_ok=True)
    shapes = [("70m", "F16"), ("70m", "BF16")]
    if shutil.disk_usage(CACHE).free > 8 << 30 or os.path.exists(os.path.join(CACHE, "pythia-1b-F16.safetensors")):
        shapes.append(("1b", "F16"))
    else:
        print("bench: less than 8 GiB free, skipping the 1b shape", file=sys.stderr)
    rows = []
    for shape, dtype in shapes:
        path = checkpoint(shape, dtype)
        row, base = measure(shape, dtype, path, RUNS)
        rows.append(row)
        print(row)
        if dtype != "BF16" and (trow := torch_row(shape, dtype, path, base, RUNS)):  # one torch row per shape
            rows.append(trow)
            print(trow)
    llama = llama_checkpoint()
    if llama:
        rows.append(measure("7b", "BF16", llama, 3)[0])
        print(rows[-1])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    section = [f"\n## {date} - commit {commit}\n",
               f"Machine: {machine()}. Best of {RUNS} runs (3 for 7b), warm page cache. 7b is LLaMA-7B-shaped, "
               "BF16, three shards and an index (bench/gen_llama.py). Full rate = bytes of the mapped weights / time.\n",
               "| checkpoint | size | sequential read | faithful S=10 L=32, 1 thread | 2 threads | RSS | full, 1 thread "
               "| full, 2 threads (speed-up) | RSS 1 / 2 threads | --check-finite + faithful | RSS |",
               "|---|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    new = not os.path.exists(RESULTS)
    with open(RESULTS, "a") as f:
        if new:
            f.write("# `emergectl analyze` benchmark results\n\nAppended by `make bench` "
                    "(bench/bench_analyze.py); never edited by hand.\n")
        f.write("\n".join(section))
    print(f"bench: results appended to {RESULTS}")


if __name__ == "__main__":
    main()
