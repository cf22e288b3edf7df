"""PyTorch Lightning callback: E logged through Lightning, the baseline kept, early stop.

    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping
    from emerge.lightning import EmergeCallback
    trainer = L.Trainer(callbacks=[EmergeCallback(),
                                   EarlyStopping(monitor="emerge/emergence", mode="max", strict=False)])

emerged reads Lightning's .ckpt files directly (a torch zip with a "state_dict"), so the
callback copies no weights: the checkpoints ModelCheckpoint writes and rotates are what is
analysed. What it adds:

- Baseline: at train start trainer.save_checkpoint() writes DIR/checkpoint-baseline.ckpt,
  step 0 to emerged, beside ModelCheckpoint's files (DIR: its dirpath, or run_dir); save_top_k
  never deletes it, as it is not one of ModelCheckpoint's.
- Logs: each new result of the run (read from DIR/.emerge/results.jsonl, no ZeroMQ) is
  logged with pl_module.log("emerge/emergence", ...) from on_train_batch_end, where logging
  is allowed, so every logger records it and Lightning's own EarlyStopping can monitor it
  (strict=False: until the first result arrives there is nothing to monitor).
- Stop: at each checkpoint (and every every_n_steps, if given) the stop file is checked;
  the decision goes through trainer.strategy.reduce_boolean_decision, as EarlyStopping's
  does, so every rank stops at the same step; only global rank 0 acknowledges it.
"""
import os

try:
    from lightning.pytorch.callbacks import Callback
except ImportError as first:
    try:  # the package's older name
        from pytorch_lightning.callbacks import Callback
    except ImportError as second:
        raise ImportError(f"emerge.lightning needs lightning ({first}) or pytorch_lightning ({second})") from first

from .results import ResultsFile, log_keys
from .stop import EmergeStop

BASELINE = "checkpoint-baseline.ckpt"


class EmergeCallback(Callback):
    def __init__(self, run_dir=None, pub=None, run=None, every_n_steps=None, save_baseline=True):
        self.run_dir, self.pub, self.run = run_dir, pub, run
        self.every_n_steps = every_n_steps
        self.save_baseline = save_baseline
        self.stopper = self.results = None

    def _dir(self, trainer):
        if self.run_dir is None:
            ckpt = getattr(trainer, "checkpoint_callback", None)
            self.run_dir = getattr(ckpt, "dirpath", None) or os.path.join(trainer.default_root_dir, "checkpoints")
        return self.run_dir

    def _stopper(self, trainer):
        if self.stopper is None:
            self.stopper = EmergeStop(self._dir(trainer), pub=self.pub, run=self.run)
        return self.stopper

    def on_train_start(self, trainer, pl_module):
        path = os.path.join(self._dir(trainer), BASELINE)
        if self.save_baseline and trainer.global_step == 0 and not os.path.exists(path):
            os.makedirs(self._dir(trainer), exist_ok=True)
            trainer.save_checkpoint(path)  # every rank calls it; the strategy writes once

    def _check(self, trainer):
        alert = self._stopper(trainer).check() if trainer.is_global_zero else None
        stop = trainer.strategy.reduce_boolean_decision(bool(alert), all=False)
        if stop:
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.stopper.should_stop(trainer.global_step)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._check(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.results is None:
            self.results = ResultsFile(self._dir(trainer))
        for r in self.results.results():
            for key, value in log_keys(r).items():
                pl_module.log(key, value, on_step=True, on_epoch=False, rank_zero_only=True)
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._check(trainer)
