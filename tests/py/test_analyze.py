"""emergectl analyze on real checkpoint files, compared number for number with the port
of the authors' pipeline (neuromfa_ref.py)."""
import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np

import make_ckpt
import neuromfa_ref as ref
import stio
from helpers import ROOT, analyze_json, close, emergectl, hf_checkpoint, shard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

H, B, S = 128, 2, 3


def _compare_to_reference(tmp, dtype):
    path = os.path.join(tmp, f"pythia-{dtype}.safetensors")
    make_ckpt.write(path, make_ckpt.build("neox", H, B, seed=11), dtype)
    want = ref.analyze(stio.load(path), B, H, samples=S)
    got = analyze_json("--samples", S, path)[0]
    assert got["arch"] == "gpt-neox"
    for k in range(S):
        s = got["samples"][k]
        assert s["seed"] == k and s["nodes"] == want[k]["nodes"]
        err = np.max(np.abs(np.array(s["tau"]) - want[k]["tau"]))
        assert err < 1e-9, f"sample {k}: tau differs by {err}"
        assert close(s["alpha0"], want[k]["alpha0"]) and close(s["width"], want[k]["width"])
    assert close(got["alpha0"], np.mean([w["alpha0"] for w in want]))
    assert close(got["width"], np.mean([w["width"] for w in want]))
    # The reference rule picks alpha at q = -0.1 on the f(-0.1) = f(0) tie.
    ref_mode = analyze_json("--samples", S, "--alpha0", "reference", path)[0]
    tau = want[0]["tau"]
    assert close(ref_mode["samples"][0]["alpha0"], (tau[30] - tau[29]) / 0.1)


def test_matches_reference_pipeline_f16(tmp):
    _compare_to_reference(tmp, "F16")


def test_matches_reference_pipeline_bf16(tmp):
    _compare_to_reference(tmp, "BF16")


def test_matches_reference_pipeline_f32(tmp):
    _compare_to_reference(tmp, "F32")


def test_emergence_against_lowest_step(tmp):
    run = os.path.join(tmp, "pythia-run")
    early = make_ckpt.build("neox", H, B, seed=3)
    late = {k: v * 1.6 if v.ndim == 2 else v for k, v in early.items()}   # weights grow
    hf_checkpoint(run, 0, early, "F16", {"loss": 5.0})
    last = hf_checkpoint(run, 500, late, "F16", {"loss": 2.5, "eval_accuracy": 0.61, "epoch": 1.0})
    got = analyze_json("--samples", S, last, os.path.join(run, "checkpoint-0"))   # baseline given second
    assert [g["step"] for g in got] == [0, 500]  # printed in step order, whatever the order given
    assert all(g["baseline_step"] == 0 and g["run"] == "pythia-run" for g in got)
    got.reverse()
    assert got[1]["emergence"] == 0.0
    assert got[0]["trainer"] == {"loss": 2.5, "eval_accuracy": 0.61, "epoch": 1.0}
    assert got[1]["trainer"] == {"loss": 5.0}
    r0 = ref.analyze(stio.load(os.path.join(run, "checkpoint-0", "model.safetensors")), B, H, samples=S)
    r1 = ref.analyze(stio.load(os.path.join(last, "model.safetensors")), B, H, samples=S)
    mean = lambda r, k: np.mean([x[k] for x in r])  # noqa: E731
    e = ref.emergence(mean(r1, "alpha0"), mean(r1, "width"), mean(r0, "alpha0"), mean(r0, "width"))
    assert close(got[0]["emergence"], e), (got[0]["emergence"], e)
    # --baseline overrides the lowest step: E of step 0 against step 500 has the other sign.
    other = analyze_json("--samples", S, "--baseline", last, os.path.join(run, "checkpoint-0"))[0]
    assert other["baseline_step"] == 500 and other["emergence"] * got[0]["emergence"] < 0
    # A file inside checkpoint-N/ belongs to that checkpoint.
    inner = analyze_json("--samples", S, os.path.join(last, "model.safetensors"))[0]
    assert inner["step"] == 500 and inner["path"] == last


def test_result_object_fields(tmp):
    path = os.path.join(tmp, "model-step42.safetensors")
    make_ckpt.write(path, make_ckpt.build("neox", 64, 1), "F32")
    r = analyze_json("--samples", 2, "--neurons", 16, path)[0]
    for key in ("run", "step", "path", "arch", "alpha0", "width", "emergence", "baseline_step", "q", "tau",
                "alpha", "f", "samples", "nodes", "elapsed_ms", "params", "trainer"):
        assert key in r, key
    assert r["step"] == 42 and r["trainer"] is None and len(r["q"]) == 61 and len(r["alpha"]) == 60
    assert r["params"] == {"samples": 2, "neurons": 16, "seed": 0, "threshold": 150, "q_min": -3, "q_max": 3,
                           "q_step": 0.1, "alpha0": "central", "mode": "sampled", "full": False,
                           "arch": "auto"}
    assert set(r["samples"][0]) >= {"seed", "alpha0", "width", "tau"}


def test_same_weights_same_spectrum_across_layouts(tmp):
    """GPT-2 (Conv1D, stored [in, out]) and BERT (separate q, k, v) holding the NeoX
    weights must map onto the same network and give the same numbers."""
    neox = make_ckpt.build("neox", H, B, seed=5)
    gpt2, bert = {}, {}
    for b in range(B):
        p = f"gpt_neox.layers.{b}."
        qkv, dense = neox[p + "attention.query_key_value.weight"], neox[p + "attention.dense.weight"]
        up, down = neox[p + "mlp.dense_h_to_4h.weight"], neox[p + "mlp.dense_4h_to_h.weight"]
        g = f"transformer.h.{b}."
        gpt2.update({g + "attn.c_attn.weight": qkv.T, g + "attn.c_proj.weight": dense.T,
                     g + "mlp.c_fc.weight": up.T, g + "mlp.c_proj.weight": down.T})
        e = f"bert.encoder.layer.{b}."
        bert.update({e + "attention.self.query.weight": qkv[:H], e + "attention.self.key.weight": qkv[H:2 * H],
                     e + "attention.self.value.weight": qkv[2 * H:], e + "attention.output.dense.weight": dense,
                     e + "intermediate.dense.weight": up, e + "output.dense.weight": down})
    paths = {}
    for name, t in (("neox", neox), ("gpt2", gpt2), ("bert", bert)):
        paths[name] = os.path.join(tmp, name + ".safetensors")
        make_ckpt.write(paths[name], t, "F32")
    got = {n: analyze_json("--samples", S, p)[0] for n, p in paths.items()}
    assert got["gpt2"]["arch"] == "gpt2" and got["bert"]["arch"] == "bert"
    for n in ("gpt2", "bert"):
        assert np.max(np.abs(np.array(got[n]["tau"]) - np.array(got["neox"]["tau"]))) < 1e-12, n
        assert got[n]["nodes"] == got["neox"]["nodes"]


def test_llama_grouped_kv(tmp):
    path = os.path.join(tmp, "llama.safetensors")
    make_ckpt.write(path, make_ckpt.build("llama", 128, 2, scale=1.0), "BF16")
    r = analyze_json("--samples", 2, "--arch", "llama", path)[0]
    assert r["arch"] == "llama" and r["alpha0"] > 0
    # per block: nums1, T, nums4 (32 each) and round(2*32*I/4h) = 43 of I = 341 MLP neurons
    assert r["samples"][0]["nodes"] <= 2 * (3 * 32 + 43)


def test_mlp_numeric_name_order(tmp):
    """layers.10 must follow layers.9: the widths chain only in numeric order."""
    rng = np.random.default_rng(0)
    widths = [40 + 3 * i for i in range(13)]
    t = {f"layers.{i}.weight": rng.normal(0, 0.05, (widths[i + 1], widths[i])) for i in range(12)}
    path = os.path.join(tmp, "mlp.safetensors")
    make_ckpt.write(path, t, "F32")
    r = analyze_json("--samples", 1, path)[0]
    assert r["arch"] == "mlp" and r["nodes"] == 12 * 32


def test_sharded_equals_single_file(tmp):
    t = make_ckpt.build("neox", H, B, seed=9)
    single = os.path.join(tmp, "single.safetensors")
    make_ckpt.write(single, t, "F16")
    sharded = os.path.join(tmp, "checkpoint-7")
    os.makedirs(sharded)
    shard(sharded, t, "F16", 3)
    a = analyze_json("--samples", S, single)[0]
    b = analyze_json("--samples", S, sharded)[0]
    c = analyze_json("--samples", S, os.path.join(sharded, "model.safetensors.index.json"))[0]
    assert a["tau"] == b["tau"] == c["tau"] and b["step"] == 7
    os.remove(os.path.join(sharded, "model-00002-of-00003.safetensors"))
    code, _, err = emergectl("analyze", sharded)
    assert code == 1 and "model-00002-of-00003.safetensors" in err and "missing" in err, err


def test_full_mode_every_neuron(tmp):
    path = os.path.join(tmp, "m.safetensors")
    make_ckpt.write(path, make_ckpt.build("neox", 64, 1, seed=2), "F16")
    r = analyze_json("--full", path)[0]
    assert r["params"]["full"] is True and len(r["samples"]) == 1
    assert r["params"]["mode"] == r["mode"] == "full" and analyze_json("--mode", "full", path)[0]["tau"] == r["tau"]
    assert r["nodes"] <= 64 + 64 + 64 + 256 and r["nodes"] > 200   # sources of the four maps
    # Full mode is what sampling estimates: the sampled mean lies near it.
    s = analyze_json("--samples", 10, "--neurons", 16, path)[0]
    assert abs(s["alpha0"] - r["alpha0"]) < 0.2


def test_table_output_and_order(tmp):
    run = os.path.join(tmp, "run")
    t = make_ckpt.build("neox", 64, 1)
    for step in (30, 10, 20):
        hf_checkpoint(run, step, t)
    paths = [os.path.join(run, f"checkpoint-{s}") for s in (30, 10, 20)]
    _, out, _ = emergectl("analyze", "--samples", 2, *paths, check=0)
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["STEP", "E", "±SE", "ALPHA0", "WIDTH"]
    assert [ln.split()[0] for ln in lines[1:]] == ["10", "20", "30"]   # step order, not the order given
    assert lines[1].split()[1] == "+0.0000"                            # step 10 is the baseline


def test_bad_input_is_named_and_others_still_printed(tmp):
    good = os.path.join(tmp, "good.safetensors")
    make_ckpt.write(good, make_ckpt.build("neox", 64, 1), "F32")
    trunc = os.path.join(tmp, "trunc.safetensors")
    with open(good, "rb") as f:
        data = f.read()
    with open(trunc, "wb") as f:
        f.write(data[:-100])
    torch_dir = os.path.join(tmp, "torchckpt")
    os.makedirs(torch_dir)
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "torch", "legacy.pt"), os.path.join(torch_dir, "pytorch_model.bin"))
    code, out, err = emergectl("analyze", "--json", "--samples", 2, good, trunc, torch_dir, "/nonexistent")
    assert code == 1
    assert len(out.splitlines()) == 1 and json.loads(out)["path"] == good
    assert "trunc.safetensors" in err and "incomplete" in err, err
    assert "pytorch_model.bin: the legacy torch format" in err and "unsupported" in err, err
    assert "/nonexistent" in err


def test_nan_weight_is_named(tmp):
    t = make_ckpt.build("neox", 64, 1)
    t["gpt_neox.layers.0.attention.dense.weight"][:, :] = np.nan
    path = os.path.join(tmp, "nan.safetensors")
    make_ckpt.write(path, t, "F16")
    code, out, err = emergectl("analyze", path)
    assert code == 1 and out == ""
    assert "gpt_neox.layers.0.attention.dense.weight" in err and "NaN" in err, err


def test_check_finite_reads_what_the_analysis_does_not(tmp):
    t = make_ckpt.build("neox", 64, 1)
    name = [n for n in t if n.endswith("layernorm.weight") or n.endswith("bias")][0]
    t[name].flat[3] = np.inf  # no sampled neuron's weight: the analysis never reads it
    path = os.path.join(tmp, "inf.safetensors")
    make_ckpt.write(path, t, "BF16")
    assert emergectl("analyze", path)[0] == 0
    code, out, err = emergectl("analyze", "--check-finite", path)
    assert code == 1 and out == "" and f"'{name}' holds NaN or Inf at element 3" in err, err


def test_usage_errors_exit_2(tmp):
    cases = [("--samples", "0", "x"), ("--alpha0", "mean", "x"), ("--bogus", "x"), (), ("--q-step", "0.07", "x"),
             ("--arch", "resnet", "x")]
    for args in cases:
        code, out, err = emergectl("analyze", *args)
        assert code == 2 and out == "" and err.startswith("emergectl: analyze:"), (args, code, err)
    assert emergectl("frobnicate")[0] == 2
    assert emergectl("analyze", "--help")[0] == 0
    assert emergectl("--version")[1].startswith("emergectl ")


def test_bad_index_is_named(tmp):
    t = make_ckpt.build("neox", 64, 1)
    d = os.path.join(tmp, "ck")
    os.makedirs(d)
    shard(d, t, "F32", 2)
    index = os.path.join(d, "model.safetensors.index.json")
    with open(index) as f:
        good = json.load(f)
    cases = [
        ({"weight_map": {**good["weight_map"], "x": "../../etc/passwd"}}, "not a plain shard file name"),
        ({"weight_map": {k: "model-00001-of-00002.safetensors" for k in good["weight_map"]}}, "does not hold it"),
        ({"metadata": {}}, "no weight_map"),
        ("{not json", "not valid JSON"),
    ]
    for body, msg in cases:
        with open(index, "w") as f:
            f.write(body if isinstance(body, str) else json.dumps(body))
        code, out, err = emergectl("analyze", d)
        assert code == 1 and out == "" and msg in err and "model.safetensors.index.json" in err, (msg, err)


def test_emergence_se_agrees_with_a_paired_bootstrap_on_a_real_run(tmp):
    """emergence_se (the paired jackknife) against an independent paired bootstrap over
    the same per-sample values, on checkpoints of a real training job: within 1.5x."""
    out = os.path.join(tmp, "mlp")
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), out, "--steps", "300",
                    "--save-every", "100"], check=True, capture_output=True)
    results = analyze_json(*sorted(glob.glob(os.path.join(out, "checkpoint-*"))))
    base = next(r for r in results if r["step"] == 0)
    assert base["emergence_se"] == 0 and base["mode"] == "sampled"
    rng = np.random.default_rng(0)
    ba0 = np.array([s["alpha0"] for s in base["samples"]])
    bw = np.array([s["width"] for s in base["samples"]])
    for r in (r for r in results if r["step"] != 0):
        assert [s["seed"] for s in r["samples"]] == [s["seed"] for s in base["samples"]]  # paired by seed
        a0 = np.array([s["alpha0"] for s in r["samples"]])
        w = np.array([s["width"] for s in r["samples"]])
        idx = rng.integers(0, len(a0), size=(4000, len(a0)))
        boot = (w[idx].mean(1) / bw[idx].mean(1)) * np.log(ba0[idx].mean(1) / a0[idx].mean(1))
        ratio = r["emergence_se"] / boot.std()
        assert 1 / 1.5 < ratio < 1.5, (r["step"], r["emergence_se"], boot.std())
        assert r["alpha0_se"] > 0 and r["width_se"] > 0
    full = analyze_json("--full", *sorted(glob.glob(os.path.join(out, "checkpoint-*"))))
    assert all(r["emergence_se"] == 0 and r["alpha0_se"] == 0 and r["mode"] == "full" for r in full)


def test_mode_auto_chooses_once_at_the_baseline_by_its_size(tmp):
    """auto, the default, is full for a checkpoint that maps at most 50M weights (these
    do), chosen at the baseline and used for every PATH; a bad mode is a usage error."""
    out = os.path.join(tmp, "mlp")
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), out, "--steps", "200",
                    "--save-every", "100"], check=True, capture_output=True)
    paths = sorted(glob.glob(os.path.join(out, "checkpoint-*")))
    auto = analyze_json("--mode", "auto", *paths)
    full = analyze_json("--mode", "full", *paths)
    assert [r["mode"] for r in auto] == ["full"] * 3 and [r["params"]["mode"] for r in auto] == ["full"] * 3
    assert [r["emergence"] for r in auto] == [r["emergence"] for r in full]
    _, out, _ = emergectl("analyze", "--json", *paths, check=0)  # no mode given: the default is auto
    assert [json.loads(line)["mode"] for line in out.splitlines()] == ["full"] * 3
    code, _, err = emergectl("analyze", "--mode", "fast", paths[0])
    assert code == 2 and "mode: 'fast' is not sampled, full or auto" in err, err


def test_threads_give_bit_identical_results(tmp):
    """--threads N splits full mode by map and sampled mode by network, and merges in one
    fixed order: every number of every result is the same for every N (F16 and BF16 go
    through the 16-bit kernels, F32 the general path)."""
    paths = []
    for dtype in ("F16", "BF16", "F32"):
        paths.append(os.path.join(tmp, f"m-{dtype}.safetensors"))
        make_ckpt.write(paths[-1], make_ckpt.build("neox", 96, 5, seed=3, scale=4.0), dtype)
    for mode in ("full", "sampled"):
        runs = []
        for n in (1, 2, 3, 7):
            rs = analyze_json("--mode", mode, "--threads", n, "--samples", 6, *paths)
            for r in rs:
                r.pop("elapsed_ms")
            runs.append(rs)
        assert all(rs == runs[0] for rs in runs[1:]), mode
        assert all(r["nodes"] > 0 for r in runs[0])
    code, _, err = emergectl("analyze", "--threads", "0", paths[0])
    assert code == 2 and "threads" in err, err
    # a failure is the same failure on every thread count: the first bad map's
    t = make_ckpt.build("neox", 96, 5, seed=3)
    t["gpt_neox.layers.1.mlp.dense_4h_to_h.weight"][5, 7] = np.nan
    t["gpt_neox.layers.4.attention.dense.weight"][:, :] = np.inf
    bad = os.path.join(tmp, "bad.safetensors")
    make_ckpt.write(bad, t, "F16")
    errs = [emergectl("analyze", "--mode", "full", "--threads", n, bad) for n in (1, 2, 5)]
    assert all(e[0] == 1 for e in errs) and len({e[2] for e in errs}) == 1, errs
    assert "layers.1.mlp.dense_4h_to_h.weight" in errs[0][2] and "[5, 7]" in errs[0][2], errs[0][2]
