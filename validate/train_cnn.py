"""A small PyTorch CNN (Conv2d 1->16, Conv2d 16->32, each with 2x2 max-pooling, then
Linear 2048->128->10) trained with SGD + momentum on a synthetic image task, saved with
torch.save as the HF Trainer does with save_safetensors=False.

    /usr/bin/python3 validate/train_cnn.py OUT --seed S [--steps 800] [--save-every 50]

The task: 10 classes, each a random smooth 32x32 pattern; an example is its class's
pattern shifted circularly by up to 8 pixels in each direction, under Gaussian noise of
six times the pattern's spread, so the net must learn shift-tolerant filters (accuracy
rises from 0.1 to about 0.8 over 800 steps rather than at once). Tensor names are nn.Sequential's (0.weight,
3.weight, 7.weight, 9.weight): emergectl maps them as the "cnn" architecture, channels as
neurons (docs/ARCHITECTURES.md "Convolutions"). Checkpoints (step 0 included) go to
OUT/checkpoint-STEP/pytorch_model.bin; eval_accuracy is on 2,000 held-out examples."""
import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hfckpt import train_sgd  # noqa: E402

SIZE, CLASSES, SHIFT, NOISE, BATCH, LR, MOMENTUM = 32, 10, 8, 6.0, 64, 0.005, 0.9
CONFIG = {"model_type": "cnn", "layers": "conv16-pool-conv32-pool-fc128-fc10", "torch_dtype": "float32"}


def make_model():
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(32 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, CLASSES))


def patterns(gen):
    """CLASSES smooth patterns of unit spread: noise blurred by a 7x7 box, twice."""
    p = torch.randn(CLASSES, 1, SIZE, SIZE, generator=gen)
    box = torch.ones(1, 1, 7, 7) / 49
    for _ in range(2):
        p = F.conv2d(F.pad(p, (3, 3, 3, 3), mode="circular"), box)
    return (p - p.mean(dim=(2, 3), keepdim=True)) / p.std(dim=(2, 3), keepdim=True)


def examples(pats, n, gen):
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    dx = torch.randint(-SHIFT, SHIFT + 1, (n,), generator=gen).tolist()
    dy = torch.randint(-SHIFT, SHIFT + 1, (n,), generator=gen).tolist()
    x = torch.stack([torch.roll(pats[c], (a, b), dims=(1, 2)) for c, a, b in zip(y.tolist(), dx, dy)])
    return x + NOISE * torch.randn(x.shape, generator=gen), y


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--save-every", type=int, default=50)
    a = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    pats = patterns(gen)
    xe, ye = examples(pats, 2000, gen)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    train_sgd("train_cnn", a.out, model, opt, lambda: examples(pats, BATCH, gen), (xe, ye), a.steps, a.save_every,
              CONFIG, torch_format=True)

if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"train_cnn: done in {time.time() - t0:.1f} s", flush=True)
