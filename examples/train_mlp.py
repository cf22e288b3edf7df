"""A small real training job: a numpy MLP learning a synthetic classification task,
saving checkpoints the way the Hugging Face Trainer does (OUT/checkpoint-STEP/ with
model.safetensors, config.json and trainer_state.json holding loss and eval_accuracy).

    /usr/bin/python3 examples/train_mlp.py OUT [--steps 600] [--save-every 50]
        [--mode rename|inplace] [--sleep 0] [--hidden 256] [--seed 0] [--stop-on-alert]

--mode rename stages each checkpoint in OUT/tmp-checkpoint-STEP and renames it into
place (transformers 4.36-4.38); inplace writes straight into OUT/checkpoint-STEP
(later versions). Step 0, the initialisation, is saved too: it is the baseline the
degree of emergence is measured against. With --stop-on-alert the job checks after each
save whether emerged asked it to stop (emerge.EmergeStop, the plain-loop helper) and ends
there."""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stio  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from emerge import EmergeStop  # noqa: E402


def make_task(rng, n, dim=64, classes=10):
    """A teacher network labels Gaussian inputs: learnable, but not linearly separable."""
    teacher = [rng.normal(0, 1 / np.sqrt(dim), (dim, 128)), rng.normal(0, 1 / np.sqrt(128), (128, classes))]
    x = rng.normal(0, 1, (n, dim))
    y = np.argmax(np.tanh(x @ teacher[0]) @ teacher[1], axis=1)
    return x, y


class MLP:
    def __init__(self, rng, sizes):
        self.w = [rng.normal(0, np.sqrt(2 / a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(b) for b in sizes[1:]]

    def forward(self, x):
        acts = [x]
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            x = x @ w + b
            if i < len(self.w) - 1:
                x = np.maximum(x, 0)
            acts.append(x)
        return acts

    def step(self, x, y, lr):
        acts = self.forward(x)
        logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(p[np.arange(len(y)), y] + 1e-12))
        g = p
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        for i in reversed(range(len(self.w))):
            gw, gb = acts[i].T @ g, g.sum(axis=0)
            if i > 0:
                g = (g @ self.w[i].T) * (acts[i] > 0)
            self.w[i] -= lr * gw
            self.b[i] -= lr * gb
        return loss

    def accuracy(self, x, y):
        return float(np.mean(np.argmax(self.forward(x)[-1], axis=1) == y))

    def state_dict(self):
        """torch nn.Linear layout: weight [out, in]."""
        out = {}
        for i, (w, b) in enumerate(zip(self.w, self.b)):
            out[f"layers.{i}.weight"] = ("F32", w.T.copy())
            out[f"layers.{i}.bias"] = ("F32", b)
        return out


def save(out, step, model, history, mode):
    final = os.path.join(out, f"checkpoint-{step}")
    where = os.path.join(out, f"tmp-checkpoint-{step}") if mode == "rename" else final
    os.makedirs(where, exist_ok=True)
    stio.save(os.path.join(where, "model.safetensors"), model.state_dict(), atomic=False)
    with open(os.path.join(where, "config.json"), "w") as f:
        json.dump({"model_type": "mlp", "sizes": [w.shape[0] for w in model.w] + [model.w[-1].shape[1]]}, f)
    with open(os.path.join(where, "trainer_state.json"), "w") as f:
        json.dump({"global_step": step, "log_history": history}, f)
    if mode == "rename":
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(where, final)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--save-every", type=int, default=50)
    ap.add_argument("--mode", choices=["rename", "inplace"], default="rename")
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds to pause after each save")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stop-on-alert", action="store_true", help="stop when emerged writes OUT/.emerge/STOP")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    x, y = make_task(rng, 12000)
    xt, yt, xe, ye = x[:10000], y[:10000], x[10000:], y[10000:]
    model = MLP(rng, [64, a.hidden, a.hidden, 10])
    os.makedirs(a.out, exist_ok=True)
    history = [{"step": 0, "eval_accuracy": model.accuracy(xe, ye)}]
    save(a.out, 0, model, history, a.mode)
    stop = EmergeStop(a.out) if a.stop_on_alert else None
    for step in range(1, a.steps + 1):
        idx = rng.integers(0, len(xt), 64)
        loss = model.step(xt[idx], yt[idx], a.lr)
        if step % a.save_every == 0 or step == a.steps:
            history.append({"step": step, "loss": round(float(loss), 6), "eval_accuracy": model.accuracy(xe, ye)})
            save(a.out, step, model, history, a.mode)
            print(f"train: step {step} loss {loss:.3f} eval_accuracy {history[-1]['eval_accuracy']:.3f}",
                  flush=True)
            if stop and stop.should_stop(step):
                print(f"train: stopped by emerge at step {step}", flush=True)
                return
            time.sleep(a.sleep)


if __name__ == "__main__":
    main()
