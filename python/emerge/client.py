"""A client of a running emerged (proto/PROTOCOL.md): the API (status, runs, history,
alerts, since) and the live results on PUB, as an iterator or an async iterator that
subscribes first and back-fills with `since`, so it never loses or repeats a message.

    import emerge
    c = emerge.Client()                        # tcp://127.0.0.1:5564; pub from the daemon
    c.runs()                                   # [{"run": ..., "states": ..., "last_emergence": ...}]
    df = c.history_frame("mlp")                # pandas, when installed
    for r in c.results("mlp"):                 # blocks: a script
        print(r["step"], r["emergence"], r["emergence_se"])

In a notebook, the async iterator leaves the kernel free:

    async for r in c.aresults("mlp"):
        print(r["step"], r["emergence"])
"""
import json
import time

import zmq

DEFAULT_API = "tcp://127.0.0.1:5564"


class EmergeError(RuntimeError):
    """The daemon answered {"ok": false, "error": ...}, or did not answer."""


class Client:
    def __init__(self, api=DEFAULT_API, pub=None, timeout=5.0, context=None):
        self.api, self._pub, self.timeout = api, pub, timeout
        self.ctx = context or zmq.Context.instance()

    # ------------------------------------------------------------ the API

    def request(self, req):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        try:
            s.connect(self.api)
            s.send(json.dumps(req).encode())
            if not s.poll(int(self.timeout * 1000)):
                raise EmergeError(f"no answer from emerged at {self.api} within {self.timeout} s")
            reply = json.loads(s.recv())
        finally:
            s.close()
        if not reply.get("ok"):
            raise EmergeError(reply.get("error", "unknown error"))
        return reply

    def status(self):
        return self.request({"cmd": "status"})["status"]

    def runs(self):
        return self.request({"cmd": "runs"})["runs"]

    def history(self, run):
        """The run's results (result objects, in step order)."""
        return self.request({"cmd": "history", "run": run})["results"]

    def alerts(self, run=None):
        return self.request({"cmd": "alerts", **({"run": run} if run else {})})["alerts"]

    def stop(self, run, reason="stopped by hand"):
        """Asks run's training job to stop, as a rule would (an alert of rule "manual": the
        stop file, PUB, on_alert). Returns the alert."""
        return self.request({"cmd": "stop", "run": run, "reason": reason})["alert"]

    def history_frame(self, run):
        """The run's results as a pandas DataFrame: one row per checkpoint, the scalar keys
        as columns and the trainer's metrics as trainer.<name>."""
        import pandas as pd  # optional: only this needs it
        rows = []
        for r in self.history(run):
            row = {k: v for k, v in r.items() if not isinstance(v, (list, dict))}
            row.update({f"trainer.{k}": v for k, v in (r.get("trainer") or {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def since(self, seq):
        """Every stored message after seq, page by page: [(topic, payload)]."""
        out = []
        while True:
            reply = self.request({"cmd": "since", "seq": seq})
            for m in reply["messages"]:
                out.append((m["topic"], m["payload"]))
                seq = max(seq, m["payload"].get("seq", seq))
            if not reply.get("more"):
                return out

    @property
    def pub(self):
        """The PUB endpoint: as given, else the one the daemon recorded for itself."""
        if self._pub is None:
            self._pub = self.request({"cmd": "status"})["status"].get("pub") or "tcp://127.0.0.1:5563"
        return self._pub

    # ------------------------------------------------------------ live

    def _subscribe(self, run, kinds, ctx):
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(self.pub)
        for kind in kinds:
            sub.setsockopt(zmq.SUBSCRIBE, f"{kind}/{run}/".encode() if run else f"{kind}/".encode())
        return sub

    class _Cursor:
        """What a live iterator has handed out: each message once, in seq order."""

        def __init__(self, run, kinds, since):
            self.run, self.kinds, self.last = run, kinds, since

        def stored(self, messages):
            for topic, payload in messages:
                kind, _, rest = topic.partition("/")
                if kind in self.kinds and (self.run is None or rest.startswith(self.run + "/")):
                    yield from self.fresh(payload)

        def fresh(self, payload):
            if payload.get("seq", 0) > self.last:
                self.last = payload["seq"]
                yield payload

    def results(self, run=None, since=0, kinds=("result",), timeout=None):
        """Live messages (results by default; kinds may add "alert", "checkpoint") of run
        (and the runs below it; every run when None), starting after seq since: stored
        ones first, then live, each once, in seq order. Ends after timeout seconds
        without a message (None: never)."""
        sub, cursor = self._subscribe(run, kinds, self.ctx), self._Cursor(run, kinds, since)
        try:
            time.sleep(0.2)  # the subscription must reach the daemon before we ask what we missed
            yield from cursor.stored(self.since(since))
            while sub.poll(None if timeout is None else int(timeout * 1000)):
                yield from cursor.fresh(json.loads(sub.recv_multipart()[1]))
        finally:
            sub.close()

    async def aresults(self, run=None, since=0, kinds=("result",), timeout=None):
        """results() for asyncio (a notebook, a web app): awaits instead of blocking."""
        import asyncio
        import zmq.asyncio
        actx = zmq.asyncio.Context.instance()
        sub, cursor = self._subscribe(run, kinds, actx), self._Cursor(run, kinds, since)
        try:
            await asyncio.sleep(0.2)
            stored = await asyncio.get_running_loop().run_in_executor(None, self.since, since)  # the API blocks
            for payload in cursor.stored(stored):
                yield payload
            while await sub.poll(None if timeout is None else int(timeout * 1000)):
                for payload in cursor.fresh(json.loads((await sub.recv_multipart())[1])):
                    yield payload
        finally:
            sub.close()
