"""emerge: the Python side of emerged (see the repository's README and proto/PROTOCOL.md).

- Client: the daemon's API and its live results (iterator and async iterator).
- EmergeStop, distributed_should_stop: stop a plain training loop on an alert.
- ResultsFile: a run's results.jsonl, followed without ZeroMQ.
- plot: E with its band for one or more runs (matplotlib).
- emerge.hf.EmergeCallback, emerge.lightning.EmergeCallback: framework callbacks
  (import them from their modules; they need their framework).
"""
from .results import ResultsFile, log_keys
from .stop import EmergeStop, distributed_should_stop

__version__ = "0.1.0"
__all__ = ["Client", "EmergeError", "EmergeStop", "ResultsFile", "distributed_should_stop", "log_keys", "plot"]


def __getattr__(name):  # pyzmq and matplotlib only when used: a stop helper needs neither
    if name in ("Client", "EmergeError"):
        from . import client
        return getattr(client, name)
    if name == "plot":
        from .plotting import plot
        return plot
    raise AttributeError(f"module 'emerge' has no attribute {name!r}")
