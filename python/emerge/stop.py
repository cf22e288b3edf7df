"""Stop a training job when emerged raises an early-stop alert for its run.

emerged writes the alert as JSON to RUN_DIR/.emerge/STOP (atomically) and publishes it
on its PUB socket under alert/<run>/. This module is the training job's side: standard
library only (pyzmq only if you ask for the PUB socket), a stat() per check.

Plain training loop:

    from emerge import EmergeStop
    stop = EmergeStop(output_dir)                 # the directory the daemon watches as the run
    for step in range(1, steps + 1):
        train_step()
        if step % save_every == 0:
            save_checkpoint(step)
            if stop.should_stop(step):            # prints the reason, renames STOP
                break

A job that acts on a stop file renames it to STOP.handled-<step>, so the same job
resumed from a checkpoint does not stop again at once. Framework callbacks, which also
log E into the framework's loggers: emerge.hf (Hugging Face Trainer) and emerge.lightning
(PyTorch Lightning).

Distributed training: every rank must decide the same way at the same step, or the
ranks that go on wait forever for the one that stopped. Check at the same point on
every rank (after each save, or every N steps), and let one rank decide: rank 0 calls
check() and broadcasts the answer (a shared filesystem may show a new file to one node
before another), then only rank 0 acknowledges. distributed_should_stop() does this
with torch.distributed when it is initialised.
"""
import json
import os
import sys


class EmergeStop:
    """Watches one run for emerged's stop request.

    run_dir: the run's directory (where the trainer writes checkpoint-STEP/).
    pub, run: optionally also listen on emerged's PUB endpoint (e.g.
    "tcp://127.0.0.1:5563") for alerts of run (the run's name as emerged reports it,
    its path relative to the watch root); useful when the daemon cannot write into the
    run directory."""

    def __init__(self, run_dir, pub=None, run=None):
        self.dir = os.path.join(run_dir, ".emerge")
        self.path = os.path.join(self.dir, "STOP")
        self.sub = None
        self.pending = None
        if pub:
            if not run:
                raise ValueError("EmergeStop: pub needs run (the run's name in emerged)")
            import zmq
            self.sub = zmq.Context.instance().socket(zmq.SUB)
            self.sub.setsockopt(zmq.LINGER, 0)
            self.sub.connect(pub)
            self.sub.setsockopt(zmq.SUBSCRIBE, f"alert/{run}/".encode())

    def check(self):
        """The alert (a dict: rule, reason, step, value, ...) if emerged asked this run to
        stop, else None. Does not acknowledge it."""
        if self.pending:
            return self.pending
        try:
            with open(self.path) as f:
                self.pending = json.load(f)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as e:  # unreadable or not JSON: still a request to stop
            self.pending = {"rule": "?", "reason": f"unreadable stop file {self.path}: {e}"}
        while self.sub is not None and not self.pending and self.sub.poll(0):
            frames = self.sub.recv_multipart()
            try:
                alert = json.loads(frames[-1])
            except ValueError:
                continue
            if isinstance(alert, dict) and alert.get("kind") == "alert":
                self.pending = alert
        return self.pending

    def acknowledge(self, step):
        """Renames STOP to STOP.handled-<step> (if it is there), so a resumed job goes on."""
        self.pending = None
        try:
            os.rename(self.path, os.path.join(self.dir, f"STOP.handled-{step}"))
        except FileNotFoundError:
            pass
        except OSError as e:  # never break a training job over it; a resumed job would stop again
            print(f"emerge: cannot rename {self.path} ({e}); remove it before resuming", file=sys.stderr)

    def should_stop(self, step, acknowledge=True, log=sys.stderr):
        """check() for plain loops: True when the job should stop now. Says why on log and
        acknowledges the request (pass acknowledge=False on all ranks but one)."""
        alert = self.check()
        if not alert:
            return False
        if log:
            print(f"emerge: stopping at step {step}: rule {alert.get('rule')}: {alert.get('reason')}",
                  file=log, flush=True)
        if acknowledge:
            self.acknowledge(step)
        return True

    def close(self):
        if self.sub is not None:
            self.sub.close()
            self.sub = None


def distributed_should_stop(stopper, step, device=None):
    """should_stop() for torch.distributed jobs: rank 0 decides, every rank gets the same
    answer at the same step, rank 0 acknowledges. Call it on every rank at the same point.
    device: where the broadcast flag lives (the rank's GPU under NCCL; CPU under gloo)."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:  # no torch: one process
        return stopper.should_stop(step)
    if not (dist.is_available() and dist.is_initialized()):
        return stopper.should_stop(step)
    rank0 = dist.get_rank() == 0
    flag = torch.tensor([1 if rank0 and stopper.check() else 0], device=device)
    dist.broadcast(flag, src=0)
    if flag.item() and rank0:
        stopper.should_stop(step)
    return bool(flag.item())
