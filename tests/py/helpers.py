"""Shared by the end-to-end tests: run emergectl, lay out checkpoints like trainers do."""
import json
import os
import select
import subprocess
import time

import make_ckpt
import stio

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EMERGECTL = os.path.join(ROOT, os.environ.get("EMERGECTL", "bin/emergectl"))
EXAMPLES = os.path.join(ROOT, "examples")


class Skip(Exception):
    """Raised by a heavy test (a browser, a Prometheus server) in a sanitizer build: those
    run once, in the plain build (as CI does), and run.py prints every skip with its reason."""


def plain_build_only(what):
    if os.environ.get("SANITIZE"):
        raise Skip(f"{what} runs once, in the plain build, not under SANITIZE={os.environ['SANITIZE']}")


def emergectl(*args, check=None):
    """(exit code, stdout, stderr); check=N asserts the exit code."""
    p = subprocess.run([EMERGECTL, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check is not None:
        assert p.returncode == check, f"exit {p.returncode} != {check}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p.returncode, p.stdout, p.stderr


def read_lines(proc, until, timeout=30.0):
    """Lines proc has written to its stdout pipe, read until until(lines) holds or the
    timeout passes: a slow (sanitized) build gets the time it needs, a fast one no wait."""
    fd, lines, partial = proc.stdout.fileno(), [], b""
    deadline = time.time() + timeout
    while (partial or not until(lines)) and time.time() < deadline:  # never stop mid-line
        if select.select([fd], [], [], 0.2)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *done, partial = (partial + chunk).split(b"\n")
            lines += [line.decode() for line in done]
    return lines


def explicit_mode(args):
    """The authors' sampled method unless the test names a mode: the tests compare against
    their reference; the default, auto, is tested on its own."""
    given = any(str(a) in ("--full", "--mode") or str(a).startswith("--mode=") for a in args)
    return [] if given else ["--mode", "sampled"]


def analyze_json(*args):
    _, out, _ = emergectl("analyze", "--json", *explicit_mode(args), *args, check=0)
    return [json.loads(line) for line in out.splitlines()]


def hf_checkpoint(run_dir, step, tensors, dtype="F32", metrics=None):
    """run_dir/checkpoint-STEP/ with model.safetensors and trainer_state.json."""
    d = os.path.join(run_dir, f"checkpoint-{step}")
    os.makedirs(d, exist_ok=True)
    make_ckpt.write(os.path.join(d, "model.safetensors"), tensors, dtype)
    history = [{"step": step, **(metrics or {})}] if metrics else []
    with open(os.path.join(d, "trainer_state.json"), "w") as f:
        json.dump({"global_step": step, "log_history": history}, f)
    return d


def shard(path_dir, tensors, dtype, nshards):
    """Sharded HF layout: model-0000k-of-0000n.safetensors + model.safetensors.index.json."""
    names = sorted(tensors)
    weight_map = {}
    for k in range(nshards):
        part = names[k::nshards]
        fname = f"model-{k + 1:05d}-of-{nshards:05d}.safetensors"
        stio.save(os.path.join(path_dir, fname), {n: (dtype, tensors[n]) for n in part})
        weight_map.update({n: fname for n in part})
    with open(os.path.join(path_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
