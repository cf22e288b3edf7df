"""What emerged appends for a run: RUN_DIR/.emerge/results.jsonl, one committed result,
alert or checkpoint event per line, in seq order (proto/PROTOCOL.md "results.jsonl").
Reading it needs no ZeroMQ, so the training job's callbacks see E with the standard
library alone.

    from emerge import ResultsFile
    log = ResultsFile("out/run1")
    for msg in log.new():          # what arrived since the last call
        if msg["kind"] == "result":
            print(msg["step"], msg["emergence"], msg["emergence_se"])
"""
import json
import os


class ResultsFile:
    """Follows one run's results.jsonl: new() returns the complete lines added since the
    last call, decoded, each message once (by seq, so a rewritten file repeats nothing)."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, ".emerge", "results.jsonl")
        self.offset = 0
        self.last_seq = 0

    def new(self):
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < self.offset:  # replaced by a shorter file: read it again, seq drops repeats
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.offset += end
        out = []
        for line in data[:end].splitlines():
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            seq = msg.get("seq") if isinstance(msg, dict) else None
            if isinstance(seq, int) and seq > self.last_seq:
                self.last_seq = seq
                out.append(msg)
        return out

    def results(self):
        """The new results only (no alerts or checkpoint events)."""
        return [m for m in self.new() if m.get("kind") == "result"]


def log_keys(result, prefix="emerge/"):
    """The numbers of a result as flat logger keys: emerge/emergence, emerge/emergence_se,
    emerge/alpha0, emerge/width, emerge/step (the checkpoint's own step: a logger records
    the value at the step it is logged, which is later than the checkpoint's)."""
    keys = {}
    for k in ("emergence", "emergence_se", "alpha0", "width"):
        v = result.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            keys[prefix + k] = float(v)
    if isinstance(result.get("step"), int):
        keys[prefix + "step"] = float(result["step"])
    return keys
