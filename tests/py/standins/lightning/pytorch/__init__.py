"""Stand-in of lightning.pytorch.Trainer: on_train_start, then per step
on_train_batch_end and, every 100 steps, a ModelCheckpoint-like epoch=0-step=N.ckpt (a
torch zip with "state_dict", save_top_k=2) and on_save_checkpoint."""
import os
import time
from types import SimpleNamespace

import torch


class Trainer:
    def __init__(self, max_steps=300, default_root_dir=".", callbacks=None, **kwargs):
        self.max_steps, self.default_root_dir, self.callbacks = max_steps, default_root_dir, list(callbacks or [])
        self.global_step, self.is_global_zero, self.should_stop = 0, True, False
        self.checkpoint_callback = SimpleNamespace(dirpath=os.path.join(default_root_dir, "checkpoints"))
        self.strategy = SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision)
        self.callback_metrics = {}

    def save_checkpoint(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save({"global_step": self.global_step,
                    "state_dict": {f"model.{k}": v for k, v in self.module.net.state_dict().items()}}, path)

    def fit(self, module):
        self.module = module
        module.log = lambda name, value, **kw: self.callback_metrics.__setitem__(name, value)
        for cb in self.callbacks:
            getattr(cb, "on_train_start", lambda *a: None)(self, module)
        for step in range(1, self.max_steps + 1):
            self.global_step = step
            module.training_step()
            if step % 100 == 0:
                d = self.checkpoint_callback.dirpath
                self.save_checkpoint(os.path.join(d, f"epoch=0-step={step}.ckpt"))
                mine = sorted((n for n in os.listdir(d) if n.startswith("epoch=")), key=lambda n: int(n[13:-5]))
                for n in mine[:-2]:
                    os.remove(os.path.join(d, n))
                time.sleep(1.5)
                for cb in self.callbacks:
                    getattr(cb, "on_save_checkpoint", lambda *a: None)(self, module, {})
            for cb in self.callbacks:
                getattr(cb, "on_train_batch_end", lambda *a: None)(self, module, None, None, step)
            if self.should_stop:
                break
