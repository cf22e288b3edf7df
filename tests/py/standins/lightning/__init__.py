"""Stand-in of lightning for the README test (see lightning/pytorch)."""
from .pytorch import Trainer  # noqa: F401
