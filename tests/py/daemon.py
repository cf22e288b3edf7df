"""The real emerged for tests: started on a temporary directory with ipc:// endpoints,
a subscriber, an API client, and the ways a daemon really ends."""
import json
import os
import signal
import sqlite3
import subprocess
import time

import zmq

from helpers import ROOT, explicit_mode

EMERGED = os.path.join(ROOT, os.environ.get("EMERGED", "bin/emerged"))


STARTED = []  # every daemon a test started: run.py stops the ones a failing test left running


def stop_all():
    while STARTED:
        d = STARTED.pop()
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


class Daemon:
    def __init__(self, tmp, root, *extra, name="d", log_level="debug"):
        self.tmp, self.root, self.extra = tmp, root, list(extra)
        self.log_level = log_level
        self.pub = f"ipc://{tmp}/{name}-pub"
        self.api = f"ipc://{tmp}/{name}-api"
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.proc = None
        self.ctx = zmq.Context.instance()

    def start(self, quiet="0.3", wait=True):
        args = [EMERGED, "--watch", self.root, "--pub", self.pub, "--api", self.api, "--quiet", quiet,
                "--samples", "2", *explicit_mode(self.extra), *([] if "--http" in self.extra else ["--http", "127.0.0.1:0"]),
                *(["--log-level", self.log_level] if self.log_level else []), *self.extra]
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        STARTED.append(self)
        if wait:
            deadline = time.time() + 15
            while time.time() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"emerged exited {self.proc.returncode}:\n{self.read_log()}")
                try:
                    self.request({"cmd": "status"}, timeout=0.3)
                    return self
                except TimeoutError:
                    pass
            raise AssertionError("emerged did not answer in 15 s:\n" + self.read_log())
        return self

    def read_log(self):
        with open(self.log_path) as f:
            return f.read()

    def request(self, req, timeout=5.0):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.api)
        try:
            s.send(req if isinstance(req, bytes) else json.dumps(req).encode())
            if not s.poll(int(timeout * 1000)):
                raise TimeoutError(req)
            return json.loads(s.recv())
        finally:
            s.close()

    def http(self):
        """The HTTP listener's base URL, as the daemon reports it ("http://127.0.0.1:PORT/")."""
        return self.request({"cmd": "status"})["status"]["http"]

    def subscribe(self, prefix=b"result/"):
        s = self.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.pub)
        s.setsockopt(zmq.SUBSCRIBE, prefix)
        return s

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=timeout)
        code = self.proc.returncode if self.proc else None
        if self.log:
            self.log.close()
        return code

    def db(self):
        return sqlite3.connect(f"file:{self.root}/.emerge/emerge.db?mode=ro", uri=True)


def collect(sub, until, timeout=30.0):
    """Messages from sub until until(list) is true or the timeout passes."""
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline and not until(got):
        if sub.poll(200):
            topic, payload = sub.recv_multipart()
            got.append((topic.decode(), json.loads(payload)))
    return got


def history(d, run):
    """results and other checkpoints of a run; empty while the run is still unknown."""
    rep = d.request({"cmd": "history", "run": run})
    return rep.get("results", []), rep.get("checkpoints", [])


def wait_for(cond, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
