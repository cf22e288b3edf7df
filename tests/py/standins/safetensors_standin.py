"""safetensors.torch.save_file for the stand-ins (Debian packages no safetensors), through
the tests' own writer."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import stio  # noqa: E402


def save_safetensors(path, state_dict):
    stio.save(path, {k: ("F32", v.detach().cpu().numpy()) for k, v in state_dict.items()})
