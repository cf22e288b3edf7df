"""What the README's callback examples take as given: a model, a dataset, a
LightningModule. Small torch networks that change a little at every step."""
import os

import torch
from safetensors_standin import save_safetensors

torch.manual_seed(0)


class _Model:
    def __init__(self):
        self.net = torch.nn.Sequential(torch.nn.Linear(24, 48), torch.nn.ReLU(), torch.nn.Linear(48, 48),
                                       torch.nn.ReLU(), torch.nn.Linear(48, 12))

    def step(self):
        with torch.no_grad():
            for p in self.net.parameters():
                p.add_(0.002 * torch.randn_like(p))

    training_step = step

    def parameters(self):
        return self.net.parameters()

    def save_pretrained(self, path, safe_serialization=True):
        os.makedirs(path, exist_ok=True)
        save_safetensors(os.path.join(path, "model.safetensors"), self.net.state_dict())


model = _Model()
module = _Model()
train_data = None
