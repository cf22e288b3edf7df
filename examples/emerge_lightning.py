"""PyTorch Lightning adapter for emerged's early-stop alerts.

    from emerge_lightning import EmergeStopCallback
    trainer = L.Trainer(callbacks=[EmergeStopCallback("runs/exp1")], ...)

emerged reads safetensors, not Lightning's .ckpt (a pickle); with save_weights=True
(the default) the callback also writes run_dir/checkpoint-STEP/model.safetensors at
every Lightning checkpoint, and checkpoint-0 at train start: the baseline E is
measured against. At each checkpoint (and every `every_n_steps` steps, if given) it
checks run_dir/.emerge/STOP and sets trainer.should_stop. Under sharded strategies
(FSDP, DeepSpeed) only global rank 0 writes and its state_dict is a shard: gather the
full weights yourself and pass save_weights=False. The decision goes through
trainer.strategy.reduce_boolean_decision, as Lightning's own EarlyStopping does, so
every rank stops at the same step; only global rank 0 acknowledges the stop file.
"""
import os
import shutil

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the older package name
    from pytorch_lightning.callbacks import Callback

from emerge_stop import EmergeStop


class EmergeStopCallback(Callback):
    def __init__(self, run_dir, pub=None, run=None, every_n_steps=None, save_weights=True):
        self.run_dir = run_dir
        self.stopper = EmergeStop(run_dir, pub=pub, run=run)
        self.every_n_steps = every_n_steps
        self.save_weights = save_weights

    def _save(self, trainer, pl_module):
        if not (self.save_weights and trainer.is_global_zero):
            return
        from safetensors.torch import save_file
        path = os.path.join(self.run_dir, f"checkpoint-{trainer.global_step}")
        tmp = os.path.join(self.run_dir, f"tmp-checkpoint-{trainer.global_step}")
        os.makedirs(tmp, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in pl_module.state_dict().items()}
        save_file(state, os.path.join(tmp, "model.safetensors"))
        if os.path.exists(path):
            shutil.rmtree(path)
        os.rename(tmp, path)  # emerged takes a checkpoint renamed into place as complete

    def _check(self, trainer):
        alert = self.stopper.check() if trainer.is_global_zero else None
        stop = trainer.strategy.reduce_boolean_decision(bool(alert), all=False)
        if stop:
            trainer.should_stop = True
            if trainer.is_global_zero:
                self.stopper.should_stop(trainer.global_step)

    def on_train_start(self, trainer, pl_module):
        if trainer.global_step == 0 and not os.path.exists(os.path.join(self.run_dir, "checkpoint-0")):
            self._save(trainer, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self._save(trainer, pl_module)
        self._check(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._check(trainer)
