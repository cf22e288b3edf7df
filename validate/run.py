"""make validate: does E track capability? Trains real models with torch, lets emerged
analyse every checkpoint in both modes with the example config's rules, and records
what it measured in docs/VALIDATION.md (between the generated markers) and the plot
docs/validation.png.

    /usr/bin/python3 validate/run.py [--work DIR] [--retrain] [--quick]

Runs (each into WORK/runs/NAME, kept between invocations unless --retrain):
  copy-s0, copy-s1  a 4-layer GPT-NeoX learning in-context copying (train_copy.py)
  control           the same model on sequences with nothing to copy (--control)
  demo-mlp          the demo's MLP (examples/train_mlp.py, as `make demo` runs it)
  torch-mlp         a plain PyTorch MLP with SGD + momentum (train_torch_mlp.py)
  torch-cnn         a small PyTorch CNN saved by torch.save (train_cnn.py; the cnn mapping)
Per run and mode (full, sampled): Spearman(E, eval accuracy) over its checkpoints, the
step of E's minimum, the first step with accuracy >= 0.5, and the steps where the rules
fired, with the accuracy there and the best accuracy after it. --quick trains shorter
runs (for trying the pipeline; the recorded figures come from a full run)."""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EMERGECTL = os.path.join(ROOT, "bin", "emergectl")
EMERGED = os.path.join(ROOT, "bin", "emerged")
DOC = os.path.join(ROOT, "docs", "VALIDATION.md")
PLOT = os.path.join(ROOT, "docs", "validation.png")
BEGIN, END = "<!-- validate:begin -->", "<!-- validate:end -->"
MODES = ("full", "sampled")


def runs(quick):
    """(name, argv) of the training runs; {out} is the run directory."""
    py = sys.executable
    copy = ["--steps", "400", "--save-every", "50"] if quick else []
    mlp = ["--steps", "400"] if quick else []
    return [
        ("copy-s0", [py, os.path.join(HERE, "train_copy.py"), "{out}", "--seed", "0"] + copy),
        ("copy-s1", [py, os.path.join(HERE, "train_copy.py"), "{out}", "--seed", "1"] + copy),
        ("control", [py, os.path.join(HERE, "train_copy.py"), "{out}", "--seed", "0", "--control"] + copy),
        ("demo-mlp", [py, os.path.join(ROOT, "examples", "train_mlp.py"), "{out}", "--steps", "1200",
                      "--save-every", "100", "--lr", "0.08"] + mlp),
        ("torch-mlp", [py, os.path.join(HERE, "train_torch_mlp.py"), "{out}", "--seed", "0"] + mlp),
        ("torch-cnn", [py, os.path.join(HERE, "train_cnn.py"), "{out}", "--seed", "0"] + mlp),
    ]


def say(msg):
    print(f"validate: {msg}", flush=True)


def train(work, retrain, quick):
    for name, argv in runs(quick):
        out = os.path.join(work, "runs", name)
        done = os.path.join(work, "trained", name)
        if os.path.exists(done) and not retrain:
            say(f"{name}: trained already ({out}; --retrain to train again)")
            continue
        shutil.rmtree(out, ignore_errors=True)
        say(f"{name}: training ({' '.join(os.path.basename(a) for a in argv[1:3])} ...)")
        t0 = time.time()
        subprocess.run([a.replace("{out}", out) for a in argv], check=True, stdout=subprocess.DEVNULL)
        os.makedirs(os.path.dirname(done), exist_ok=True)
        open(done, "w").close()
        say(f"{name}: {time.time() - t0:.0f} s")


def ctl(*args):
    out = subprocess.run([EMERGECTL, *args, "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def checkpoint_count(run_dir):
    return len([n for n in os.listdir(run_dir) if n.startswith("checkpoint-")])


def analyse(work, mode):
    """Runs emerged over WORK/runs in one mode until every checkpoint is settled; returns
    the database path. Rules are judged afterwards by backtest, over each run's whole
    history in step order: on a backlog the daemon works newest first, and a rule judged
    live during that catch-up sees only part of the history."""
    db = os.path.join(work, f"{mode}.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    config = os.path.join(work, f"{mode}.json")
    with open(config, "w") as f:
        json.dump({"mode": mode}, f)
    api = f"ipc://{work}/api-{mode}"
    log = open(os.path.join(work, f"emerged-{mode}.log"), "w")
    daemon = subprocess.Popen([EMERGED, "--watch", os.path.join(work, "runs"), "--db", db, "--config", config,
                               "--api", api, "--pub", f"ipc://{work}/pub-{mode}", "--quiet", "0", "--http", "127.0.0.1:0"],
                              stdout=log, stderr=log)
    try:
        want = {n: checkpoint_count(os.path.join(work, "runs", n)) for n in os.listdir(os.path.join(work, "runs"))}
        t0 = time.time()
        while True:
            time.sleep(1)
            got = {r["run"]: r for r in ctl("runs", "--api", api)["runs"]}
            settled = all(n in got and got[n]["checkpoints"] == k and set(got[n]["states"]) <= {"done", "failed"}
                          for n, k in want.items())
            if settled:
                break
            if time.time() - t0 > 1800:
                raise SystemExit(f"validate: emerged ({mode}) did not settle in 30 min; see {log.name}")
        say(f"{mode}: {sum(want.values())} checkpoints analysed in {time.time() - t0:.0f} s")
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    return db


def accuracies(run_dir):
    """{step: eval_accuracy} from the last checkpoint's trainer_state.json."""
    last = max((n for n in os.listdir(run_dir) if n.startswith("checkpoint-")), key=lambda n: int(n.split("-")[1]))
    with open(os.path.join(run_dir, last, "trainer_state.json")) as f:
        return {e["step"]: e["eval_accuracy"] for e in json.load(f)["log_history"] if "eval_accuracy" in e}


def ranks(x):
    """Average ranks (ties share their mean rank), as Spearman's rho needs."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        tie = x == v
        r[tie] = r[tie].mean()
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def fires(db, name, rule):
    """Steps where rule fires when backtested on the run's stored history."""
    return [f["step"] for f in ctl("backtest", name, "--db", db, "--rule", json.dumps(rule))["fires"]]


def measure(db, name, acc, rules):
    """One run in one mode: its series and the figures the table shows."""
    hist = ctl("history", name, "--db", db)["results"]
    steps = [r["step"] for r in hist]
    e = [r["emergence"] for r in hist]
    se = [r.get("emergence_se", 0.0) for r in hist]
    a = [acc.get(s, float("nan")) for s in steps]
    cross = next((s for s in steps if acc.get(s, 0) >= 0.5), None)
    fired = {}
    for rule in rules:
        for s in fires(db, name, rule)[:1]:
            later = [acc[t] for t in acc if t > s]
            fired[rule["name"]] = (s, acc.get(s), max(later) if later else None)
    rise = np.diff(e)
    e_at_cross = e[steps.index(cross)] if cross is not None else None
    return {"steps": steps, "e": e, "se": se, "acc": a, "rho": spearman(e, a),
            "e_min_step": steps[1 + int(np.argmin(e[1:]))] if len(e) > 1 else steps[0],
            "steep_step": steps[1 + int(np.argmax(rise))] if len(rise) else None, "cross": cross,
            "share_at_cross": e_at_cross / e[-1] if e_at_cross is not None and e[-1] else None,
            "fired": fired, "max_se": max(se), "e_last": e[-1]}


def fmt_fire(f):
    if f is None:
        return "—"
    step, at, later = f
    text = f"{step} (acc {at:.2f}"
    if later is not None:
        text += f", later best {later:.2f}"
    return text + ")"


def table(results, rule_names):
    head = ["run", "mode", "ckpts", "Spearman(E, acc)", "E min at (after baseline)", "steepest rise of E at",
            "acc ≥ 0.5 at", "E there / E last", "E last", "max SE"]
    head += [f"`{r}` fired at" for r in rule_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (name, mode), m in results.items():
        share = f"{m['share_at_cross']:.2f}" if m["share_at_cross"] is not None else "—"
        row = [name, mode, str(len(m["steps"])), f"{m['rho']:+.2f}", str(m["e_min_step"]), str(m["steep_step"]),
               str(m["cross"]) if m["cross"] is not None else "never", share, f"{m['e_last']:+.4f}",
               f"{m['max_se']:.4f}"]
        row += [fmt_fire(m["fired"].get(r)) for r in rule_names]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results, names):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = 3
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(flat, names):
        for mode, colour in zip(MODES, ("tab:blue", "tab:orange")):
            m = results[(name, mode)]
            s, e, se = np.array(m["steps"]), np.array(m["e"]), np.array(m["se"])
            ax.fill_between(s, e - 2 * se, e + 2 * se, color=colour, alpha=0.25, linewidth=0)
            ax.plot(s, e, color=colour, label=f"E {mode} (±2 SE)")
            for rule, (step, _, _) in m["fired"].items():
                ax.axvline(step, color=colour, linestyle=":" if rule == "onset" else "--", linewidth=1)
        acc_ax = ax.twinx()
        m = results[(name, "full")]
        acc_ax.plot(m["steps"], m["acc"], color="black", linewidth=1, label="eval accuracy")
        acc_ax.set_ylim(0, 1)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("E")
        acc_ax.set_ylabel("eval accuracy")
    flat[0].legend(loc="lower right", fontsize=7)
    fig.suptitle("E (bands ±2 SE) and eval accuracy (black); dotted: onset fired, dashed: plateau fired",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)


def record(results, rule_names, rules, quick):
    machine = subprocess.run(["uname", "-srm"], capture_output=True, text=True).stdout.strip()
    body = [BEGIN, "", f"Recorded by `make validate` on {time.strftime('%Y-%m-%d')} ({machine}, "
            f"{os.cpu_count()} cores){' with --quick' if quick else ''}. Rules (the example config's, "
            "judged by `emergectl backtest` on each run's whole history):", "",
            "```json", json.dumps(rules, indent=1), "```", "", table(results, rule_names), "",
            "![E and accuracy per run](validation.png)", "", END]
    text = open(DOC).read() if os.path.exists(DOC) else f"# Validation\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        raise SystemExit(f"validate: {DOC} lacks the markers {BEGIN} ... {END}")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(DOC, "w") as f:
        f.write(head + "\n".join(body) + tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "validate"))
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    work = os.path.abspath(a.work)
    os.makedirs(os.path.join(work, "runs"), exist_ok=True)
    with open(os.path.join(ROOT, "systemd", "emerged.json.example")) as f:
        rules = json.load(f)["alerts"]
    train(work, a.retrain, a.quick)
    names = [n for n, _ in runs(a.quick)]
    acc = {n: accuracies(os.path.join(work, "runs", n)) for n in names}
    results = {}
    rules = [r for r in rules if "monitor" in r]  # check_finite has nothing to say about finite runs
    for mode in MODES:
        db = analyse(work, mode)
        for n in names:
            results[(n, mode)] = measure(db, n, acc[n], rules)
    results = {(n, m): results[(n, m)] for n in names for m in MODES}
    rule_names = [r["name"] for r in rules]
    print(table(results, rule_names))
    plot(results, names)
    record(results, rule_names, rules, a.quick)
    say(f"recorded in {os.path.relpath(DOC, ROOT)} and {os.path.relpath(PLOT, ROOT)}")


if __name__ == "__main__":
    main()
