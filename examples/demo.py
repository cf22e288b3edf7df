"""make demo: train a small network for real, then measure its degree of emergence at
every checkpoint with `emergectl analyze`, next to the accuracy it reached.

    /usr/bin/python3 examples/demo.py [OUT_DIR]     (default: ./demo-output)"""
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
EMERGECTL = os.path.join(ROOT, os.environ.get("EMERGECTL", "bin/emergectl"))


def bar(value, lo, hi, width=30):
    n = 0 if hi <= lo else round((value - lo) / (hi - lo) * width)
    return "#" * max(0, min(width, n))


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "demo-output"))
    run = os.path.join(out, "mlp-run")
    shutil.rmtree(run, ignore_errors=True)
    print(f"demo: training a 64-256-256-10 MLP for 1200 steps, a checkpoint every 100 steps, into {run}")
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), run, "--steps", "1200",
                    "--save-every", "100", "--lr", "0.08"], check=True)
    ckpts = sorted((d for d in os.listdir(run) if d.startswith("checkpoint-")), key=lambda d: int(d.split("-")[1]))
    print(f"\ndemo: emergectl analyze --json on {len(ckpts)} checkpoints (baseline: step 0)")
    p = subprocess.run([EMERGECTL, "analyze", "--json", *[os.path.join(run, c) for c in ckpts]],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"demo: emergectl failed:\n{p.stderr}")
    results = [json.loads(line) for line in p.stdout.splitlines()]
    es = [r["emergence"] for r in results]
    print(f"\n{'step':>6} {'accuracy':>9} {'E':>8} {'alpha0':>7} {'width':>7}  E")
    for r in results:
        acc = (r["trainer"] or {}).get("eval_accuracy", float("nan"))
        print(f"{r['step']:>6} {acc:>9.3f} {r['emergence']:>+8.4f} {r['alpha0']:>7.4f} {r['width']:>7.4f}  "
              f"{bar(r['emergence'], min(es), max(es))}")
    first, last = results[0], results[-1]
    print(f"\ndemo: accuracy {first['trainer']['eval_accuracy']:.2f} -> {last['trainer']['eval_accuracy']:.2f}; "
          f"alpha0 {first['alpha0']:.4f} -> {last['alpha0']:.4f} (the spectrum moved "
          f"{'left' if last['alpha0'] < first['alpha0'] else 'right'}); E {last['emergence']:+.4f} at the end.")
    with open(os.path.join(out, "results.jsonl"), "w") as f:
        f.write(p.stdout)
    print(f"demo: checkpoints in {run}, result objects in {os.path.join(out, 'results.jsonl')}")


if __name__ == "__main__":
    main()
