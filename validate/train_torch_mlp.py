"""A plain PyTorch MLP 64-256-256-10 (ReLU) trained with SGD + momentum 0.9 on the
teacher task of examples/train_mlp.py (Gaussian inputs labelled by a random tanh
teacher network; same data for the same seed), checkpointed like the HF Trainer.

    /usr/bin/python3 validate/train_torch_mlp.py OUT --seed S [--steps 1000] [--save-every 100]

The model is an nn.Sequential, saved under its own tensor names (0.weight, 2.weight,
4.weight and biases, [out, in]): emergectl finds no transformer block in them and maps
the chain of 2-D weights as the "mlp" architecture. Checkpoints (step 0 included) go to
OUT/checkpoint-STEP (see hfckpt.py); eval_accuracy is on 2,000 held-out examples."""
import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
from hfckpt import train_sgd  # noqa: E402
from train_mlp import make_task  # noqa: E402

SIZES, BATCH, LR, MOMENTUM = [64, 256, 256, 10], 64, 0.05, 0.9
CONFIG = {"model_type": "mlp", "sizes": SIZES, "activation": "relu", "torch_dtype": "float32"}


def make_model():
    layers = []
    for a, b in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def load_data(seed):
    """(train x, train y, eval x, eval y) as torch tensors: 10,000 / 2,000 examples."""
    x, y = make_task(np.random.default_rng(seed), 12000)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    return x[:10000], y[:10000], x[10000:], y[10000:]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--save-every", type=int, default=100)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    xt, yt, xe, ye = load_data(a.seed)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)

    def batch():
        idx = torch.randint(0, len(xt), (BATCH,), generator=gen)
        return xt[idx], yt[idx]
    train_sgd("train_torch_mlp", a.out, model, opt, batch, (xe, ye), a.steps, a.save_every, CONFIG)

if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"train_torch_mlp: done in {time.time() - t0:.1f} s", flush=True)
