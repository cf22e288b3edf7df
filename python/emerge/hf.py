"""Hugging Face Trainer callback: E in the Trainer's logs, the baseline kept, early stop.

    from emerge.hf import EmergeCallback
    trainer = Trainer(model=model, args=args, ...)
    trainer.add_callback(EmergeCallback(trainer))

- Logs: each result emerged commits for the run (read from RUN_DIR/.emerge/results.jsonl,
  no ZeroMQ needed) goes to trainer.log() as emerge/emergence, emerge/emergence_se,
  emerge/alpha0, emerge/width and emerge/step (the checkpoint's step), so report_to's
  TensorBoard, W&B or MLflow integration records it. A logger files it under the step at
  which it arrives, a little after the checkpoint's; emerge/step says which one it is.
- Baseline: at train begin the initial model is saved as output_dir/checkpoint-baseline,
  which emerged and `emergectl analyze` take as step 0 and which save_total_limit's
  rotation (it deletes only checkpoint-<digits>) never removes. Under DeepSpeed ZeRO-3 the
  parameters of one rank are partitions: saving them would give empty tensors, so the
  baseline is not saved and a warning says how to get one.
- Stop: at each save (and every every_n_steps, if given) the run's stop file is checked
  and control.should_training_stop set; rank 0 decides for every rank.

Without the trainer (EmergeCallback() alone) only the stop and the baseline work, and a
warning says so once.
"""
import os
import warnings

try:
    from transformers import TrainerCallback
except ImportError as e:  # say which package is missing, not a bare name error later
    raise ImportError(f"emerge.hf needs the transformers package ({e})") from e

from .results import ResultsFile, log_keys
from .stop import EmergeStop, distributed_should_stop

BASELINE = "checkpoint-baseline"


def _zero3(model):
    """True when the model's parameters are ZeRO-3 partitions (deepspeed tags them)."""
    try:
        params = model.parameters()
    except AttributeError:
        return False
    return any(hasattr(p, "ds_id") or hasattr(p, "ds_numel") for p in params)


class EmergeCallback(TrainerCallback):
    def __init__(self, trainer=None, run_dir=None, pub=None, run=None, every_n_steps=None, save_baseline=True):
        self.trainer = trainer
        self.run_dir, self.pub, self.run = run_dir, pub, run
        self.every_n_steps = every_n_steps
        self.save_baseline = save_baseline
        self.stopper = self.results = None
        self.warned = False

    def _dir(self, args):
        return self.run_dir or args.output_dir

    def _stopper(self, args):
        if self.stopper is None:
            self.stopper = EmergeStop(self._dir(args), pub=self.pub, run=self.run)
        return self.stopper

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not (self.save_baseline and model is not None and state.global_step == 0 and state.is_world_process_zero):
            return
        path = os.path.join(self._dir(args), BASELINE)
        if os.path.exists(path):  # a resumed run keeps its true baseline
            return
        if _zero3(model):
            warnings.warn("emerge: DeepSpeed ZeRO-3 partitions the parameters; save_pretrained on rank 0 would "
                          "write empty tensors, so no baseline is saved. Set stage3_gather_16bit_weights_on_model_"
                          "save and save the initial model with trainer.save_model(output_dir/checkpoint-baseline), "
                          "or analyse checkpoints converted with zero_to_fp32.py.", stacklevel=2)
            return
        model.save_pretrained(path, safe_serialization=True)

    def _log_results(self, args, state):
        if self.results is None:
            self.results = ResultsFile(self._dir(args))
        new = self.results.results()
        if not new:
            return
        if self.trainer is None:
            if not self.warned:
                warnings.warn("emerge: EmergeCallback(trainer) was given no trainer: E is not logged "
                              "(trainer.add_callback(EmergeCallback(trainer)))", stacklevel=2)
                self.warned = True
            return
        if state.is_world_process_zero:
            for r in new:
                self.trainer.log(log_keys(r))

    def _check(self, args, state, control):
        self._log_results(args, state)
        device = getattr(args, "device", None)
        if distributed_should_stop(self._stopper(args), state.global_step, device=device):
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        return self._check(args, state, control)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            return self._check(args, state, control)
        self._log_results(args, state)
        return control
