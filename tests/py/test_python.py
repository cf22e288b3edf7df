"""The Python package (python/emerge): installed into a fresh venv offline, its client
against the real daemon, the live iterators, results.jsonl, the Hugging Face and
Lightning callbacks against stand-ins of the framework classes (Debian packages
neither), emerge.plot, and the README's Python examples, run as written."""
import asyncio
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import types
from types import SimpleNamespace

import numpy as np

from daemon import Daemon, wait_for
from helpers import ROOT, hf_checkpoint

PKG = os.path.join(ROOT, "python")
sys.path.insert(0, PKG)
import emerge  # noqa: E402


def _tensors(seed):
    rng = np.random.default_rng(seed)
    return {"layers.0.weight": rng.standard_normal((48, 24)).astype(np.float32),
            "layers.1.weight": rng.standard_normal((48, 48)).astype(np.float32),
            "layers.2.weight": rng.standard_normal((12, 48)).astype(np.float32)}


def _ckpt(run_dir, step, name=None):
    d = hf_checkpoint(run_dir, step, _tensors(step), metrics={"loss": 1.0 / (step + 1), "eval_accuracy": step / 1e3})
    if name:
        os.rename(d, os.path.join(run_dir, name))


def _stored(d, run):
    with d.db() as c:
        return [json.loads(j) for (j,) in c.execute(
            "SELECT x.json FROM results x JOIN checkpoints k ON k.id = x.checkpoint_id AND k.version = x.version "
            "JOIN runs r ON r.id = k.run_id WHERE r.name = ? ORDER BY k.step", (run,))]


def test_the_package_installs_into_a_fresh_venv_offline_and_imports(tmp):
    venv = os.path.join(tmp, "venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    src = os.path.join(tmp, "src")  # a copy: pip must not leave a build/ in the checkout
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    p = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation", src],
                       capture_output=True, text=True, env={**os.environ, "PIP_NO_CACHE_DIR": "1"})
    assert p.returncode == 0, p.stdout + p.stderr
    out = subprocess.run([py, "-c", "import emerge, emerge.client, emerge.results, emerge.plotting; "
                          "print(emerge.__file__, emerge.__version__, emerge.Client)"], capture_output=True,
                         text=True, cwd=tmp, check=True).stdout
    assert out.startswith(os.path.join(venv, "lib")) and "0.1.0" in out, out


def test_client_history_equals_the_database_and_frames_and_plots(tmp):
    root = os.path.join(tmp, "root")
    for step in (0, 100, 200):
        _ckpt(os.path.join(root, "mlp"), step)
    d = Daemon(tmp, root).start()
    try:
        wait_for(lambda: len(_stored(d, "mlp")) == 3, what="3 results")
        c = emerge.Client(api=d.api)
        assert c.history("mlp") == _stored(d, "mlp")
        assert c.status()["pub"] == d.pub and c.pub == d.pub  # found through the API
        assert [r["run"] for r in c.runs()] == ["mlp"]
        df = c.history_frame("mlp")
        assert list(df["step"]) == [0, 100, 200] and list(df["trainer.eval_accuracy"]) == [0, 0.1, 0.2]
        try:
            c.history("nope")
            raise AssertionError("an unknown run must raise")
        except emerge.EmergeError as e:
            assert "unknown run 'nope'" in str(e)
        import matplotlib
        matplotlib.use("Agg")
        ax = emerge.plot(["mlp"], client=c)
        assert len(ax.lines) == 1 and list(ax.lines[0].get_xdata()) == [0, 100, 200] and len(ax.collections) == 1
        ax = emerge.plot(["mlp"], x="eval_accuracy", client=c)
        assert ax.get_xlabel() == "eval_accuracy"
        ax.figure.savefig(os.path.join(tmp, "plot.png"))
    finally:
        d.stop()


def test_live_iterators_started_mid_run_miss_and_repeat_nothing(tmp):
    root = os.path.join(tmp, "root")
    run = os.path.join(root, "mlp")
    _ckpt(run, 0)
    _ckpt(run, 100)
    d = Daemon(tmp, root).start()
    try:
        wait_for(lambda: len(_stored(d, "mlp")) == 2, what="2 results")
        c = emerge.Client(api=d.api)

        def writer():
            for step in range(200, 1000, 100):
                _ckpt(run, step)
                time.sleep(0.15)
        t = threading.Thread(target=writer)
        t.start()
        got = []
        for r in c.results("mlp", timeout=10):
            got.append(r)
            if len(got) == 10:
                break
        t.join()
        assert [r["step"] for r in got] == list(range(0, 1000, 100)), [r["step"] for r in got]

        async def follow():
            out = []
            async for r in c.aresults("mlp", since=got[4]["seq"], timeout=5):
                out.append(r)
                if len(out) == 5:
                    break
            return out
        later = asyncio.run(follow())
        assert [r["seq"] for r in later] == [r["seq"] for r in got[5:]]
    finally:
        d.stop()


def test_results_jsonl_holds_every_committed_message_of_the_run_in_order(tmp):
    root = os.path.join(tmp, "root")
    run = os.path.join(root, "mlp")
    for step in (0, 100):
        _ckpt(run, step)
    cfg = os.path.join(tmp, "c.json")
    with open(cfg, "w") as f:
        json.dump({"alerts": [{"name": "any", "monitor": "emergence", "stopping_threshold": -1e9, "stop": False}]}, f)
    d = Daemon(tmp, root, "--config", cfg).start()
    try:
        os.makedirs(os.path.join(run, "checkpoint-200"))
        open(os.path.join(run, "checkpoint-200", "model.safetensors"), "wb").write(b"\x00" * 4)
        wait_for(lambda: len(d.request({"cmd": "since", "seq": 0})["messages"]) >= 4, what="results, alert, event")
        time.sleep(0.5)  # nothing else is coming
        want = [m["payload"] for m in d.request({"cmd": "since", "seq": 0})["messages"]]
        path = os.path.join(run, ".emerge", "results.jsonl")
        wait_for(lambda: os.path.exists(path) and open(path).read().count("\n") == len(want),
                 what="the journal's lines (appended after each commit)")
        log = emerge.ResultsFile(run)
        got = log.new()
        assert got == want and {m["kind"] for m in got} == {"result", "alert", "checkpoint"}, got
        assert log.new() == []
        path = os.path.join(run, ".emerge", "results.jsonl")
        assert oct(os.stat(path).st_mode & 0o777) == "0o644"
        with open(path, "ab") as f:
            f.write(b'{"seq": 99, "kind": "res')  # a line still being written is not read
        assert log.new() == []
    finally:
        d.stop()


def _framework(module, attr, base_name):
    """The real framework module when installed; else a minimal stand-in holding the base
    class the callback subclasses (Debian 12 packages neither transformers nor lightning)."""
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        setattr(sys.modules[module], attr, type(base_name, (), {}))
        return False


def _forget(*prefixes):
    """Drops the stand-in framework modules and the callbacks imported over them (never a
    real extension module such as torch, which cannot be imported twice)."""
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            sys.modules.pop(name, None)


def _journaled(run_dir):
    """Result lines in the run's results.jsonl so far."""
    try:
        with open(os.path.join(run_dir, ".emerge", "results.jsonl")) as f:
            return sum(json.loads(line).get("kind") == "result" for line in f if line.endswith("\n"))
    except FileNotFoundError:
        return 0


def _rotate(output_dir, limit):
    """The Hugging Face Trainer's _rotate_checkpoints: checkpoint-<digits> sorted by step,
    the oldest beyond save_total_limit deleted; other names are not its checkpoints."""
    found = []
    for name in os.listdir(output_dir):
        m = re.match(r".*checkpoint-([0-9]+)", name)
        if m and os.path.isdir(os.path.join(output_dir, name)):
            found.append((int(m.group(1)), name))
    for _, name in sorted(found)[:max(0, len(found) - limit)]:
        shutil.rmtree(os.path.join(output_dir, name))


def test_hf_callback_logs_e_keeps_the_baseline_through_rotation_and_stops(tmp):
    real = _framework("transformers", "TrainerCallback", "TrainerCallback")
    try:
        import emerge.hf
        root = os.path.join(tmp, "root")
        out = os.path.join(root, "hf")
        os.makedirs(out)
        d = Daemon(tmp, root).start()
        logged = []
        trainer = SimpleNamespace(log=lambda logs: logged.append(dict(logs)))
        cb = emerge.hf.EmergeCallback(trainer)
        model = SimpleNamespace(save_pretrained=lambda path, safe_serialization: hf_checkpoint(
            os.path.dirname(path), 0, _tensors(0)) and os.rename(os.path.join(os.path.dirname(path), "checkpoint-0"), path),
            parameters=lambda: iter([]))
        args = SimpleNamespace(output_dir=out, device=None)
        state = SimpleNamespace(global_step=0, is_world_process_zero=True)
        control = SimpleNamespace(should_training_stop=False)
        cb.on_train_begin(args, state, control, model=model)
        assert os.path.isdir(os.path.join(out, "checkpoint-baseline"))
        for step in (100, 200, 300):  # save_total_limit=1
            state.global_step = step
            _ckpt(out, step)
            _rotate(out, 1)
            wait_for(lambda: len(_stored(d, "hf")) == step // 100 + 1, what=f"result of step {step}")
            # the callback reads results.jsonl, which the journal thread appends after the
            # commit: under ASan in CI the save came before the line (step 300 not logged)
            wait_for(lambda: _journaled(out) == step // 100 + 1, what=f"results.jsonl line of step {step}")
            cb.on_save(args, state, control)
        assert sorted(n for n in os.listdir(out) if n.startswith("checkpoint")) == ["checkpoint-300",
                                                                                     "checkpoint-baseline"]
        stored = _stored(d, "hf")
        assert stored[0]["path"].endswith("checkpoint-baseline") and stored[0]["step"] == 0
        assert all(r["baseline_step"] == 0 for r in stored)
        assert [x["emerge/step"] for x in logged] == [0, 100, 200, 300], logged
        assert [x["emerge/emergence"] for x in logged] == [r["emergence"] for r in stored]
        assert all("emerge/emergence_se" in x and "emerge/alpha0" in x for x in logged)
        with open(os.path.join(out, ".emerge", "STOP"), "w") as f:
            json.dump({"kind": "alert", "rule": "plateau", "reason": "test", "step": 300}, f)
        state.global_step = 400
        assert cb.on_save(args, state, control).should_training_stop is True
        zero3 = SimpleNamespace(parameters=lambda: iter([SimpleNamespace(ds_id=1)]), save_pretrained=None)
        shutil.rmtree(os.path.join(out, "checkpoint-baseline"))
        state.global_step = 0
        import warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            emerge.hf.EmergeCallback(trainer).on_train_begin(args, state, control, model=zero3)
        assert any("ZeRO-3" in str(x.message) for x in w) and not os.path.exists(os.path.join(out, "checkpoint-baseline"))
        print(f"    transformers: {'installed' if real else 'stand-in'}")
        d.stop()
    finally:
        _forget("transformers", "emerge.hf")


def test_lightning_callback_logs_e_through_the_module_and_writes_no_copies(tmp):
    import torch
    real = _framework("lightning.pytorch.callbacks", "Callback", "Callback")
    try:
        import emerge.lightning
        root = os.path.join(tmp, "root")
        ckdir = os.path.join(root, "lightning_logs", "version_0", "checkpoints")
        os.makedirs(root)
        d = Daemon(tmp, root).start()
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(24, 48), torch.nn.ReLU(), torch.nn.Linear(48, 48), torch.nn.ReLU(),
                                  torch.nn.Linear(48, 12))
        logged = []
        module = SimpleNamespace(log=lambda k, v, **kw: logged.append((k, v, kw)))

        def save(path):
            torch.save({"epoch": 0, "global_step": trainer.global_step,
                        "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}}, path)
        trainer = SimpleNamespace(global_step=0, is_global_zero=True, should_stop=False, save_checkpoint=save,
                                  checkpoint_callback=SimpleNamespace(dirpath=ckdir), default_root_dir=root,
                                  strategy=SimpleNamespace(reduce_boolean_decision=lambda dec, all: dec))
        cb = emerge.lightning.EmergeCallback()
        cb.on_train_start(trainer, module)
        for step in (50, 100, 150):  # ModelCheckpoint(save_top_k=2, every_n_train_steps=50), latest kept
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.05 * torch.randn_like(p))
            trainer.global_step = step
            save(os.path.join(ckdir, f"epoch=0-step={step}.ckpt"))
            kept = sorted((n for n in os.listdir(ckdir) if n.startswith("epoch=")), key=lambda n: int(n[13:-5]))
            for n in kept[:-2]:
                os.remove(os.path.join(ckdir, n))
            cb.on_save_checkpoint(trainer, module, {})
            wait_for(lambda: len(_stored(d, "lightning_logs/version_0/checkpoints")) == step // 50 + 1,
                     what=f"result of step {step}")
            wait_for(lambda: _journaled(ckdir) == step // 50 + 1, what=f"results.jsonl line of step {step}")
            cb.on_train_batch_end(trainer, module, None, None, 0)
        assert sorted(os.listdir(ckdir)) == [".emerge", "checkpoint-baseline.ckpt", "epoch=0-step=100.ckpt",
                                             "epoch=0-step=150.ckpt"]  # no copies of ours beside ModelCheckpoint's
        stored = _stored(d, "lightning_logs/version_0/checkpoints")
        assert [r["step"] for r in stored] == [0, 50, 100, 150] and stored[0]["path"].endswith("baseline.ckpt")
        es = [(v, kw) for k, v, kw in logged if k == "emerge/emergence"]
        assert [v for v, _ in es] == [r["emergence"] for r in stored], logged
        assert all(kw["on_step"] and not kw["on_epoch"] for _, kw in es)
        print(f"    lightning: {'installed' if real else 'stand-in'}")
        d.stop()
    finally:
        _forget("lightning", "pytorch_lightning", "emerge.lightning")


def _readme_python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_python_examples_run_as_written(tmp):
    """Each ```python block of the README runs against a real daemon (the notebook one
    with its event loop, the callbacks with stand-ins of their frameworks)."""
    blocks = _readme_python_blocks()
    assert len(blocks) >= 3, blocks
    root = os.path.join(tmp, "out")  # the README's examples write out/run1 and out/lit
    for step in (0, 100):
        _ckpt(os.path.join(root, "mlp"), step)
    d = Daemon(tmp, root, "--quiet", "0.2")
    d.pub, d.api = "tcp://127.0.0.1:5563", "tcp://127.0.0.1:5564"  # the defaults the examples use
    d.start()
    try:
        wait_for(lambda: len(_stored(d, "mlp")) == 2, what="2 results")
        for i, block in enumerate(blocks):
            path = os.path.join(tmp, f"readme_{i}.py")
            with open(path, "w") as f:
                f.write(("from readme_standins import model, module, train_data\n" if "EmergeCallback" in block
                         else "") + block)
            env = {**os.environ, "PYTHONPATH": PKG + ":" + os.path.join(ROOT, "tests", "py", "standins"),
                   "EMERGE_README_TEST": "1"}
            p = subprocess.run([sys.executable, path], capture_output=True, text=True, timeout=60, cwd=tmp, env=env)
            assert p.returncode == 0, f"README python block {i}:\n{block}\n{p.stdout}\n{p.stderr}"
            assert p.stdout.strip() or "EmergeStop" in block, f"block {i} printed nothing"
            if "EmergeCallback" in block:
                assert "emerge/emergence" in p.stdout, f"block {i}: no E reached the framework:\n{p.stdout}"
    finally:
        d.stop()


def test_tensorboard_event_files_hold_the_database_values_and_a_torn_record_is_cut(tmp):
    import tfevents
    root, tb = os.path.join(tmp, "root"), os.path.join(tmp, "tb")
    os.makedirs(tb)
    for step in (0, 100, 200):
        _ckpt(os.path.join(root, "sweep", "mlp"), step)
    d = Daemon(tmp, root, "--tensorboard", tb).start()
    wait_for(lambda: len(_stored(d, "sweep/mlp")) == 3, what="3 results")
    d.stop()
    path = os.path.join(tb, "sweep", "mlp", "events.out.tfevents.0.emerged")
    evs = tfevents.events(path)  # raises on any bad CRC or torn record
    assert evs[0].file_version == "brain.Event:2"
    layout = tfevents.layout(evs[1])
    margin = layout.category[0].chart[0].margin.series[0]
    assert (margin.value, margin.lower, margin.upper) == ("emerge/emergence", "emerge/emergence_lo",
                                                          "emerge/emergence_hi")
    assert evs[1].summary.value[0].metadata.plugin_data.plugin_name == "custom_scalars"
    got = tfevents.scalars(path)
    f32 = lambda x: float(np.float32(x))  # noqa: E731 - TensorBoard scalars are float32
    for r in _stored(d, "sweep/mlp"):
        s = got[r["step"]]
        assert s["emerge/emergence"] == f32(r["emergence"]) and s["emerge/alpha0"] == f32(r["alpha0"])
        assert s["emerge/width"] == f32(r["width"])
        assert s["emerge/emergence_lo"] == f32(r["emergence"] - 2 * r["emergence_se"])
        assert s["emerge/emergence_hi"] == f32(r["emergence"] + 2 * r["emergence_se"])
    with open(path, "rb") as f:
        whole = f.read()
    last = tfevents.records(whole)[-1]
    with open(path, "ab") as f:  # a crash mid-write: half of a record at the end
        f.write(whole[len(whole) - len(last) - 16:][:20])
    try:
        tfevents.records(open(path, "rb").read())
        raise AssertionError("the torn record should not read")
    except ValueError:
        pass
    d = Daemon(tmp, root, "--tensorboard", tb, name="d2").start()
    _ckpt(os.path.join(root, "sweep", "mlp"), 300)
    wait_for(lambda: len(_stored(d, "sweep/mlp")) == 4, what="the 4th result")
    d.stop()
    assert "a torn record" in d.read_log()
    got = tfevents.scalars(path)  # whole again: every record reads
    assert sorted(got) == [0, 100, 200, 300] and len(tfevents.events(path)) == 6
