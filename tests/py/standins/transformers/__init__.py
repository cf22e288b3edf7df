"""Stand-in of transformers' Trainer for the README test: on_train_begin, then per step
on_step_end and, every save_steps, a checkpoint-STEP/ with model.safetensors, on_save
and the rotation of save_total_limit (as Trainer._rotate_checkpoints does)."""
import os
import re
import shutil
import time
from types import SimpleNamespace


class TrainerCallback:
    pass


class TrainingArguments:
    def __init__(self, output_dir, save_steps=100, save_total_limit=None, max_steps=300, **kwargs):
        self.output_dir, self.save_steps, self.save_total_limit, self.max_steps = output_dir, save_steps, \
            save_total_limit, max_steps
        self.device = None


class Trainer:
    def __init__(self, model=None, args=None, callbacks=None, **kwargs):
        self.model, self.args, self.callbacks = model, args, list(callbacks or [])
        self.state = SimpleNamespace(global_step=0, is_world_process_zero=True, log_history=[])

    def add_callback(self, cb):
        self.callbacks.append(cb)

    def log(self, logs):
        self.state.log_history.append({**logs, "step": self.state.global_step})

    def _rotate(self):
        found = sorted((int(m.group(1)), n) for n in os.listdir(self.args.output_dir)
                       if (m := re.match(r".*checkpoint-([0-9]+)", n)))
        for _, n in found[:max(0, len(found) - (self.args.save_total_limit or len(found)))]:
            shutil.rmtree(os.path.join(self.args.output_dir, n))

    def train(self):
        control = SimpleNamespace(should_training_stop=False)
        for cb in self.callbacks:
            cb.on_train_begin(self.args, self.state, control, model=self.model)
        for step in range(1, self.args.max_steps + 1):
            self.state.global_step = step
            self.model.step()
            if step % self.args.save_steps == 0:
                self.model.save_pretrained(os.path.join(self.args.output_dir, f"checkpoint-{step}"))
                self._rotate()
                time.sleep(1.5)  # training goes on meanwhile; here we let the daemon catch up
                for cb in self.callbacks:
                    cb.on_save(self.args, self.state, control)
            for cb in self.callbacks:
                cb.on_step_end(self.args, self.state, control)
            if control.should_training_stop:
                break
        return self.state
