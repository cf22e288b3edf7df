"""Checkpoint writing shared by the validation training scripts: the Hugging Face
Trainer's layout, OUT/checkpoint-STEP/{model.safetensors,config.json,trainer_state.json},
staged in OUT/tmp-checkpoint-STEP and renamed into place so a watcher never sees a
half-written checkpoint."""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stio  # noqa: E402


def float32_tensors(state_dict):
    """{name: torch tensor} -> stio's {name: ("F32", ndarray)}."""
    return {name: ("F32", t.detach().float().numpy()) for name, t in state_dict.items()}


def save_checkpoint(out, step, tensors, config, history):
    """Writes checkpoint-STEP atomically; history is the Trainer's log_history so far."""
    final = os.path.join(out, f"checkpoint-{step}")
    tmp = os.path.join(out, f"tmp-checkpoint-{step}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    stio.save(os.path.join(tmp, "model.safetensors"), tensors, atomic=False)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
        json.dump({"global_step": step, "log_history": history}, f, indent=2)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def save_and_report(who, out, step, model, config, history):
    """Saves the torch model as checkpoint-STEP and prints the step's loss and accuracy."""
    save_checkpoint(out, step, float32_tensors(model.state_dict()), config, history)
    entry = history[-1]
    loss = f" loss {entry['loss']:.3f}" if "loss" in entry else ""
    print(f"{who}: step {step}{loss} eval_accuracy {entry['eval_accuracy']:.3f}", flush=True)
