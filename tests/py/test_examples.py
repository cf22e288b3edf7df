"""The example training job really learns and writes checkpoints the analysis reads, in
both Hugging Face layouts; make install puts a working emergectl where it says."""
import json
import os
import subprocess
import sys

from helpers import EMERGECTL, ROOT, analyze_json


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
    version = "%d.%d" % sys.version_info[:2]
    py = os.path.join(tmp, f"opt/emerge/lib/python{version}/dist-packages/emerge")
    want = sorted(n for n in os.listdir(os.path.join(ROOT, "python", "emerge")) if n.endswith(".py"))
    assert sorted(os.listdir(py)) == want, os.listdir(py)
    got = subprocess.run([sys.executable, "-c", "import emerge, sys; print(emerge.__file__)"], capture_output=True,
                         text=True, env={**env, "PYTHONPATH": os.path.dirname(py)}, check=True).stdout
    assert got.startswith(py), got
    subprocess.run(args + ["uninstall"], check=True, capture_output=True, env=env)
    assert not os.path.exists(exe) and not os.path.exists(py)
