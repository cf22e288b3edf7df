"""Hugging Face Trainer adapter for emerged's early-stop alerts.

    from emerge_hf import EmergeStopCallback
    trainer = Trainer(model=model, args=args, ..., callbacks=[EmergeStopCallback()])

At each save (and every `every_n_steps` steps, if given) it checks the run's stop file
(args.output_dir/.emerge/STOP, or run_dir) and sets control.should_training_stop. At
train begin it saves the initial model as output_dir/checkpoint-0 (save_initial=False
turns that off): the degree of emergence is measured against the first checkpoint, and
the Trainer's own first save comes only after save_steps of learning.

Every rank runs the same callbacks at the same steps; rank 0 decides and the answer is
broadcast when torch.distributed is initialised, so all ranks stop at the same step.
"""
import os

from transformers import TrainerCallback

from emerge_stop import EmergeStop, distributed_should_stop


class EmergeStopCallback(TrainerCallback):
    def __init__(self, run_dir=None, pub=None, run=None, every_n_steps=None, save_initial=True):
        self.run_dir, self.pub, self.run = run_dir, pub, run
        self.every_n_steps = every_n_steps
        self.save_initial = save_initial
        self.stopper = None

    def _stopper(self, args):
        if self.stopper is None:
            self.stopper = EmergeStop(self.run_dir or args.output_dir, pub=self.pub, run=self.run)
        return self.stopper

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not (self.save_initial and model is not None and state.global_step == 0 and state.is_world_process_zero):
            return
        path = os.path.join(args.output_dir, "checkpoint-0")
        if not os.path.exists(path):  # a resumed run keeps its true baseline
            model.save_pretrained(path, safe_serialization=True)

    def _check(self, args, state, control):
        device = getattr(args, "device", None)
        if distributed_should_stop(self._stopper(args), state.global_step, device=device):
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        return self._check(args, state, control)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every_n_steps and state.global_step % self.every_n_steps == 0:
            return self._check(args, state, control)
        return control
