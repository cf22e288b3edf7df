"""The example training job really learns and writes checkpoints the analysis reads, in
both Hugging Face layouts; make install puts a working emergectl where it says."""
import json
import os
import subprocess
import sys

import importlib
import types
from types import SimpleNamespace

from helpers import EMERGECTL, EXAMPLES, ROOT, analyze_json


def _train(out, mode):
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), out, "--steps", "300",
                    "--save-every", "150", "--mode", mode], check=True, capture_output=True, timeout=300)
    names = sorted(os.listdir(out))
    assert names == ["checkpoint-0", "checkpoint-150", "checkpoint-300"], names   # no tmp-checkpoint left
    return [os.path.join(out, n) for n in names]


def test_training_job_learns_and_is_analysed(tmp):
    for mode in ("rename", "inplace"):
        paths = _train(os.path.join(tmp, mode), mode)
        with open(os.path.join(paths[-1], "trainer_state.json")) as f:
            history = json.load(f)["log_history"]
        assert history[-1]["eval_accuracy"] > history[0]["eval_accuracy"] + 0.3, history
        got = analyze_json(*paths)
        assert [g["step"] for g in got] == [0, 150, 300] and got[0]["emergence"] == 0.0
        assert got[2]["trainer"]["eval_accuracy"] == history[-1]["eval_accuracy"]
        assert all(g["arch"] == "mlp" and g["run"] == mode for g in got)


def test_make_install_and_uninstall(tmp):
    env = dict(os.environ)
    args = ["make", "-s", "-C", ROOT, f"DESTDIR={tmp}", "PREFIX=/opt/emerge"]
    if env.get("SANITIZE"):
        args.append(f"SANITIZE={env['SANITIZE']}")
    subprocess.run(args + ["install"], check=True, capture_output=True, env=env)
    exe = os.path.join(tmp, "opt/emerge/bin/emergectl")
    assert os.access(exe, os.X_OK)
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out == subprocess.run([EMERGECTL, "--version"], capture_output=True, text=True).stdout
    py = os.path.join(tmp, "opt/emerge/share/emerge/python")
    assert sorted(os.listdir(py)) == ["emerge_hf.py", "emerge_lightning.py", "emerge_stop.py"]
    subprocess.run(args + ["uninstall"], check=True, capture_output=True, env=env)
    assert not os.path.exists(exe) and not os.path.exists(py)


def _framework(module, attr, base_name):
    """The real framework module when installed; else a minimal stand-in holding the base
    class the adapter subclasses (Debian 12 packages neither transformers nor lightning)."""
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        setattr(sys.modules[module], attr, type(base_name, (), {}))
        return False


def _stop_file(run_dir, rule):
    os.makedirs(os.path.join(run_dir, ".emerge"), exist_ok=True)
    with open(os.path.join(run_dir, ".emerge", "STOP"), "w") as f:
        json.dump({"kind": "alert", "rule": rule, "reason": "test", "step": 200}, f)


def test_framework_adapters_stop_training_and_save_the_baseline(tmp):
    """The Hugging Face and Lightning adapters, imported for real when the framework is
    installed, otherwise run against stand-ins of the one base class each subclasses:
    their logic (baseline save, stop on the file, acknowledge) runs either way."""
    sys.path.insert(0, EXAMPLES)
    added = set()
    try:
        before = set(sys.modules)
        real_hf = _framework("transformers", "TrainerCallback", "TrainerCallback")
        real_pl = _framework("lightning.pytorch.callbacks", "Callback", "Callback")
        added = set(sys.modules) - before
        print(f"  transformers: {'installed' if real_hf else 'stand-in'}; "
              f"lightning: {'installed' if real_pl else 'stand-in'}")
        import emerge_hf
        import emerge_lightning
        run = os.path.join(tmp, "hf")
        saved = []
        model = SimpleNamespace(save_pretrained=lambda path, safe_serialization: saved.append(
            (path, safe_serialization)))
        cb = emerge_hf.EmergeStopCallback()
        args = SimpleNamespace(output_dir=run, device=None)
        state = SimpleNamespace(global_step=0, is_world_process_zero=True)
        control = SimpleNamespace(should_training_stop=False)
        cb.on_train_begin(args, state, control, model=model)
        assert saved == [(os.path.join(run, "checkpoint-0"), True)]
        state.global_step = 100
        assert cb.on_save(args, state, control).should_training_stop is False
        _stop_file(run, "plateau")
        state.global_step = 200
        assert cb.on_save(args, state, control).should_training_stop is True
        assert os.listdir(os.path.join(run, ".emerge")) == ["STOP.handled-200"]
        assert emerge_hf.EmergeStopCallback(save_initial=False).on_train_begin(args, state, control,
                                                                              model=model) is None
        run = os.path.join(tmp, "pl")
        decisions = []
        strategy = SimpleNamespace(reduce_boolean_decision=lambda d, all: decisions.append(d) or d)
        trainer = SimpleNamespace(is_global_zero=True, global_step=50, should_stop=False, strategy=strategy)
        cb = emerge_lightning.EmergeStopCallback(run, every_n_steps=50, save_weights=False)
        cb.on_train_batch_end(trainer, None, None, None, 0)
        assert trainer.should_stop is False
        _stop_file(run, "target")
        trainer.global_step = 100
        cb.on_train_batch_end(trainer, None, None, None, 0)
        assert trainer.should_stop is True and decisions == [False, True]
        assert os.listdir(os.path.join(run, ".emerge")) == ["STOP.handled-100"]
    finally:
        for name in added | {"emerge_hf", "emerge_lightning"}:
            sys.modules.pop(name, None)
