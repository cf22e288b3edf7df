"""Checkpoint writing shared by the validation training scripts: the Hugging Face
Trainer's layout, OUT/checkpoint-STEP/{model.safetensors,config.json,trainer_state.json}
(or pytorch_model.bin written by torch.save, as save_safetensors=False does), staged in
OUT/tmp-checkpoint-STEP and renamed into place so a watcher never sees a half-written
checkpoint."""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "py"))
import stio  # noqa: E402


def float32_tensors(state_dict):
    """{name: torch tensor} -> stio's {name: ("F32", ndarray)}."""
    return {name: ("F32", t.detach().float().numpy()) for name, t in state_dict.items()}


def save_checkpoint(out, step, write_weights, config, history):
    """Writes checkpoint-STEP atomically; write_weights(dir) writes the weight file;
    history is the Trainer's log_history so far."""
    final = os.path.join(out, f"checkpoint-{step}")
    tmp = os.path.join(out, f"tmp-checkpoint-{step}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write_weights(tmp)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(tmp, "trainer_state.json"), "w") as f:
        json.dump({"global_step": step, "log_history": history}, f, indent=2)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


def save_and_report(who, out, step, model, config, history, torch_format=False):
    """Saves the torch model as checkpoint-STEP (safetensors, or torch.save's zip with
    torch_format) and prints the step's loss and accuracy."""
    if torch_format:
        import torch

        def write(d):
            torch.save(model.state_dict(), os.path.join(d, "pytorch_model.bin"))
    else:
        def write(d):
            stio.save(os.path.join(d, "model.safetensors"), float32_tensors(model.state_dict()), atomic=False)
    save_checkpoint(out, step, write, config, history)
    entry = history[-1]
    loss = f" loss {entry['loss']:.3f}" if "loss" in entry else ""
    print(f"{who}: step {step}{loss} eval_accuracy {entry['eval_accuracy']:.3f}", flush=True)


def accuracy(model, x, y):
    import torch
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train_sgd(who, out, model, opt, next_batch, eval_xy, steps, save_every, config, torch_format=False):
    """The training loop of the torch validation runs: step 0 saved, then every
    save_every steps (and the last) a checkpoint with the mean loss since the one
    before and the eval accuracy; next_batch() gives (x, y)."""
    import torch.nn.functional as F
    os.makedirs(out, exist_ok=True)
    history = [{"step": 0, "eval_accuracy": round(accuracy(model, *eval_xy), 6)}]
    save_and_report(who, out, 0, model, config, history, torch_format)
    losses = []
    for step in range(1, steps + 1):
        x, y = next_batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if step % save_every == 0 or step == steps:
            history.append({"step": step, "loss": round(sum(losses) / len(losses), 6),
                            "eval_accuracy": round(accuracy(model, *eval_xy), 6)})
            save_and_report(who, out, step, model, config, history, torch_format)
            losses = []
