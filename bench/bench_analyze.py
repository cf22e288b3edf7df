"""make bench: times `emergectl analyze` on Pythia-shaped checkpoints and appends the
figures, with date and machine, to bench/RESULTS.md.

Checkpoints are generated once into bench/cache/ (the 1b shape, 2 GB, only when the disk
has room). Every figure is the best of several runs with a warm page cache, next to a
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


def block_bytes(shape, dtype):
    h, blocks = gen_pythia.SHAPES[shape]
    return 12 * h * h * blocks * (4 if dtype == "F32" else 2)


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


def best(args):
    results = [run(args) for _ in range(RUNS)]
    return min(r[0] for r in results), min(r[1] for r in results), max(r[2] for r in results)


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}"


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
        size = os.path.getsize(path)
        sequential_read(path)  # warm the page cache
        seq = min(sequential_read(path) for _ in range(3))
        f_ms, f_wall, f_rss = best(["--mode", "sampled", path])  # faithful: the authors' method, whatever the default
        full_ms, _, full_rss = best(["--full", path])
        full_rate = block_bytes(shape, dtype) / (full_ms / 1e3) / 1e9
        _, fin_wall, fin_rss = best(["--mode", "sampled", "--check-finite", path])  # every weight scanned, then the faithful analysis
        fin_rate = size / max(fin_wall - f_wall, 1e-6) / 1e9
        rows.append(f"| {shape} {dtype} | {size / 1e9:.2f} GB | {size / seq / 1e9:.2f} GB/s | {f_ms:.0f} ms "
                    f"({f_wall * 1e3:.0f} ms wall) | {f_rss:.1f} MiB | {full_ms:.0f} ms | {full_rate:.2f} GB/s "
                    f"({full_rate / (size / seq / 1e9) * 100:.0f}% of read) | {full_rss:.1f} MiB | "
                    f"{fin_wall * 1e3:.0f} ms wall, scan {fin_rate:.2f} GB/s | {fin_rss:.1f} MiB |")
        print(rows[-1])
        pt = torch_twin(path) if dtype != "BF16" else None  # one torch row per shape
        if pt:
            sequential_read(pt)
            t_ms, t_wall, t_rss = best(["--mode", "sampled", pt])
            tfull_ms, _, tfull_rss = best(["--full", pt])
            rows.append(f"| {shape} {dtype} torch zip | {os.path.getsize(pt) / 1e9:.2f} GB | | {t_ms:.0f} ms "
                        f"({t_wall * 1e3:.0f} ms wall; {t_wall / f_wall:.2f}x the safetensors wall) | {t_rss:.1f} MiB "
                        f"| {tfull_ms:.0f} ms ({tfull_ms / full_ms:.2f}x) | | {tfull_rss:.1f} MiB | | |")
            print(rows[-1])
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    section = [f"\n## {date} - commit {commit}\n", f"Machine: {machine()}. Best of {RUNS} runs, warm page cache.\n",
               "| checkpoint | size | sequential read | faithful S=10 L=32 | RSS | full | full rate (block weights) "
               "| RSS | --check-finite + faithful | RSS |", "|---|---|---|---|---|---|---|---|---|---|", *rows, ""]
    new = not os.path.exists(RESULTS)
    with open(RESULTS, "a") as f:
        if new:
            f.write("# `emergectl analyze` benchmark results\n\nAppended by `make bench` "
                    "(bench/bench_analyze.py); never edited by hand. Targets (issue 2): faithful mode on the 1b "
                    "shape under 0.3 s; full mode reading weights at 1 GB/s or more per thread.\n")
        f.write("\n".join(section))
    print(f"bench: results appended to {RESULTS}")


if __name__ == "__main__":
    main()
