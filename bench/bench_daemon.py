"""make bench (daemon part): emerged's latency, burst throughput, idle CPU and memory with a
backlog, appended with date and machine to bench/RESULTS.md.

- latency: a 70m-shaped checkpoint renamed into place -> its PUB message, minus the
  analysis time the result reports (target: under 200 ms)
- burst: 200 small checkpoints appear at once -> all published
- idle: CPU time the daemon uses while nothing happens (target: under 0.1 s in 60 s)
- backlog: peak RSS while 1,000 queued checkpoints drain
- rules: the same backlog drained with three early-stop rules (target: within 1.05x of
  the drain without), and the daemon's CPU time for each. The backlog is analysed newest
  first, so each result but the second is judged by a replay, of the points kept in memory
- web: publish latency (rename -> PUB) and idle CPU with the HTTP listener off, and on
  with 50 event-stream clients attached (and when the last of them has each event)
- flood: 100,000 empty weight files in one run (docs/SECURITY.md): the slowest status
  answer while they are worked through (target: under 2 s at any moment), how long
  another run's first checkpoint waits for its result, and the time until all are settled
- bigdb: a lab's database of 111,000 results (1,000 runs of 100, one of 1,000, one of
  10,000; each row the JSON a real result is stored as), inserted with Python's sqlite3
  into the schema a real emerged created, then served by a real emerged: `history` of the
  1,000-checkpoint run over the API (target: under 50 ms; the reply is 17 MB); and new
  checkpoints appended in step order to runs of 100, 1,000 and 10,000 results with three
  rules, one at a time: rename -> PUB and the daemon's CPU time per result (target: the
  same at every length: a result in step order is judged from the rules' kept state)
- fanout: 1,000 PUB subscribers and 200 API clients connected at once: rename -> PUB at
  the first and the last subscriber (read by one Python thread, which the last figure
  includes), the 200 clients' status answered at once, and the daemon's RSS

BENCH_ONLY=bigdb,fanout (a comma list of the names above; backlog runs rules too) runs only
those measures, and RESULTS.md gets only their rows. The shell's open-file limit is
raised to its hard limit when it is below what fanout needs (emerged inherits it).

    EMERGED=bin/emerged /usr/bin/python3 bench/bench_daemon.py"""
import datetime
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import selectors
import socket
import sqlite3
import statistics
import tempfile
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(here)
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
import zmq  # noqa: E402

import bench_analyze  # noqa: E402
import gen_pythia  # noqa: E402
import make_ckpt  # noqa: E402
import stio  # noqa: E402

EMERGED = os.path.join(ROOT, os.environ.get("EMERGED", "bin/emerged"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "60"))


class Daemon:
    def __init__(self, tmp, root, *extra, log=None):
        """log: a file the daemon's log goes to, at debug level (else warnings, discarded)."""
        self.pub, self.api = f"ipc://{tmp}/pub", f"ipc://{tmp}/api"
        self.log = log
        # sampled, as recorded so far: the figures stay comparable across the default's change to auto
        self.proc = subprocess.Popen([EMERGED, "--watch", root, "--pub", self.pub, "--api", self.api, "--quiet",
                                      "0.5", "--log-level", "debug" if log else "warning", "--mode", "sampled",
                                      *(["--http", "off"] if "--http" not in extra else []), *extra],
                                     stderr=open(log, "w") if log else subprocess.DEVNULL)
        self.ctx = zmq.Context.instance()
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.connect(self.pub)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"result/")
        deadline = time.time() + 10
        while time.time() < deadline and not self.status():
            time.sleep(0.05)
        time.sleep(0.3)  # the subscription must reach the daemon before anything is sent

    def status(self):
        s = self.ctx.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(self.api)
        s.send_json({"cmd": "status"})
        ok = s.poll(300)
        reply = s.recv_json() if ok else None
        s.close()
        return reply

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_ns(self):
        """CPU time of every thread alive now, in ns (the scheduler's count: /proc/stat's
        clock ticks are 10 ms, too coarse for one result)."""
        total, tasks = 0, f"/proc/{self.proc.pid}/task"
        for t in os.listdir(tasks):
            try:
                with open(f"{tasks}/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:  # a thread that ended meanwhile
                pass
        return total

    def peak_rss_mib(self, field="VmHWM:"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
        return 0.0

    def rss_mib(self):
        return self.peak_rss_mib("VmRSS:")

    def stop(self):
        self.sub.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


def stage_and_rename(src, dst):
    tmp = dst + ".tmp"
    shutil.copy(src, tmp)
    t0 = time.perf_counter()
    os.rename(tmp, dst)
    return t0


def latency(tmp, big):
    root = os.path.join(tmp, "lat")
    os.makedirs(os.path.join(root, "run"))
    d = Daemon(tmp, root)
    rows = []
    for step in range(6):
        t0 = stage_and_rename(big, os.path.join(root, "run", f"model-step{step}.safetensors"))
        if not d.sub.poll(30000):
            raise SystemExit("bench: no result within 30 s")
        r = json.loads(d.sub.recv_multipart()[1])
        rows.append(((time.perf_counter() - t0) * 1e3, r["elapsed_ms"]))
    d.stop()
    rows = rows[1:]  # the first one also pays for opening the store
    return min(w - a for w, a in rows), max(w - a for w, a in rows), min(a for _, a in rows)


def burst(tmp, n=200):
    root = os.path.join(tmp, "burst")
    os.makedirs(os.path.join(root, "run"))
    data = small_checkpoint()
    stage = os.path.join(tmp, "stage")
    os.makedirs(stage)
    for i in range(n):
        with open(os.path.join(stage, f"model-step{i}.safetensors"), "wb") as f:
            f.write(data)
    d = Daemon(tmp, root)
    t0 = time.perf_counter()
    for i in range(n):
        os.rename(os.path.join(stage, f"model-step{i}.safetensors"),
                  os.path.join(root, "run", f"model-step{i}.safetensors"))
    got = 0
    while got < n and d.sub.poll(30000):
        d.sub.recv_multipart()
        got += 1
    secs = time.perf_counter() - t0
    idle0 = d.cpu_seconds()
    time.sleep(IDLE_SECONDS)
    idle = d.cpu_seconds() - idle0
    d.stop()
    if got < n:
        raise SystemExit(f"bench: only {got} of {n} burst results")
    return secs, n / secs, idle


RULES = [{"name": "plateau", "monitor": "emergence", "min_delta": 0.01, "patience": 3},
         {"name": "target", "monitor": "emergence", "stopping_threshold": 5},
         {"name": "collapse", "monitor": "alpha0", "divergence_threshold": 100}]


def backlog(tmp, n=1000, rules=None):
    """(most queued, peak RSS MiB, seconds to drain, daemon CPU s) of n checkpoints present
    at start."""
    root = os.path.join(tmp, "backlog-rules" if rules else "backlog")
    os.makedirs(os.path.join(root, "run"))
    for i in range(n):
        with open(os.path.join(root, "run", f"model-step{i}.safetensors"), "wb") as f:
            f.write(small_checkpoint())
    extra = ["--config", rules_config(tmp, rules)] if rules else []
    t0 = time.perf_counter()
    d = Daemon(tmp, root, *extra)
    most_queued, deadline = 0, time.time() + 300
    while time.time() < deadline:
        s = d.status()
        if s:
            st = s["status"]
            most_queued = max(most_queued, st["queue"])
            if st["last_seq"] >= n:
                break
        time.sleep(0.2)
    secs = time.perf_counter() - t0
    rss, cpu = d.peak_rss_mib(), d.cpu_seconds()
    d.stop()
    return most_queued, rss, secs, cpu


def timed_request(d, req, timeout=10.0):
    """(seconds, reply) of one API request; the reply is None after timeout."""
    s = d.ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.api)
    t0 = time.perf_counter()
    s.send_json(req)
    reply = s.recv_json() if s.poll(int(timeout * 1000)) else None
    s.close()
    return time.perf_counter() - t0, reply


def flood(tmp, n=100000):
    """(slowest status s, other run's first result after s, all settled after s)."""
    root = os.path.join(tmp, "flood")
    run = os.path.join(root, "flood")
    os.makedirs(run)
    for i in range(n):
        open(os.path.join(run, f"model-step{i}.safetensors"), "w").close()
    small = small_checkpoint()
    other = os.path.join(root, "other")
    os.makedirs(other)
    t0 = time.perf_counter()
    d = Daemon(tmp, root, "--quiet", "0.2")
    with open(os.path.join(tmp, "other.tmp"), "wb") as f:
        f.write(small)
    os.rename(os.path.join(tmp, "other.tmp"), os.path.join(other, "model-step0.safetensors"))
    t_other = time.perf_counter()
    worst, first, settled, deadline = 0.0, None, None, time.time() + 1800
    while settled is None and time.time() < deadline:
        secs, st = timed_request(d, {"cmd": "status"})
        worst = max(worst, secs)
        if first is None and d.sub.poll(0):
            first = time.perf_counter() - t_other
        _, runs = timed_request(d, {"cmd": "runs"}, timeout=30)
        done = {r["run"]: sum(r["states"].values()) - r["states"].get("queued", 0) for r in (runs or {}).get("runs", [])}
        if done.get("flood", 0) >= n:
            settled = time.perf_counter() - t0
        time.sleep(0.1)
    d.stop()
    if settled is None:
        raise SystemExit("bench: the flood did not settle in 30 minutes")
    return worst, first, settled


class Streams:
    """n event-stream clients on one thread, noting when each event's id reached each."""
    def __init__(self, port, n):
        self.sel, self.seen, self.stop = selectors.DefaultSelector(), {}, False
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ, i)
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.1):
                data = key.fileobj.recv(1 << 16)
                now = time.perf_counter()
                for line in data.split(b"\n"):
                    if line.startswith(b"id: "):
                        self.seen.setdefault(int(line[4:]), []).append(now)

    def close(self):
        self.stop = True
        self.thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


def web(tmp, streams):
    """Median rename -> PUB over 20 small checkpoints, and idle CPU, with the HTTP listener
    off (streams 0) or on with that many event streams; also rename -> the last stream."""
    root = os.path.join(tmp, f"web{streams}")
    os.makedirs(os.path.join(root, "run"))
    data = small_checkpoint()
    d = Daemon(tmp, root, "--http", "127.0.0.1:0" if streams else "off")
    clients = None
    if streams:
        url = d.status()["status"]["http"]
        clients = Streams(int(url.rsplit(":", 1)[1].strip("/")), streams)
        time.sleep(1)
    pub, last = [], []
    for step in range(20):
        path = os.path.join(root, "run", f"model-step{step}.safetensors")
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        t0 = time.perf_counter()
        os.rename(path + ".tmp", path)
        if not d.sub.poll(30000):
            raise SystemExit("bench: no result within 30 s")
        seq = json.loads(d.sub.recv_multipart()[1])["seq"]
        pub.append((time.perf_counter() - t0) * 1e3)
        deadline = time.time() + 10
        while clients and len(clients.seen.get(seq, [])) < streams and time.time() < deadline:
            time.sleep(0.001)
        if clients:
            last.append((max(clients.seen.get(seq, [t0])) - t0) * 1e3)
        time.sleep(0.2)
    cpu0 = d.cpu_seconds()
    time.sleep(IDLE_SECONDS / 2)
    idle = d.cpu_seconds() - cpu0
    if clients:
        clients.close()
    d.stop()
    return statistics.median(pub[1:]), statistics.median(last[1:]) if last else None, idle


SMALL = None


def small_checkpoint():
    """The small safetensors file the throughput measures use (neox, hidden 64, one layer)."""
    global SMALL
    if SMALL is None:
        SMALL = stio.serialize({k: ("F32", v) for k, v in make_ckpt.build("neox", 64, 1).items()})
    return SMALL


def rules_config(tmp, rules):
    cfg = os.path.join(tmp, "rules.json")
    with open(cfg, "w") as f:
        json.dump({"alerts": rules, "on_alert": {"stop_file": False}}, f)
    return cfg


def wait_seq(d, seq, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = d.status()
        if s and s["status"]["last_seq"] >= seq:
            return
        time.sleep(0.1)
    raise SystemExit(f"bench: seq {seq} not reached in {timeout} s")


def seeded_db(tmp, root):
    """A database a real emerged created: its schema, RULES registered (since seq 0, so
    they judge every row inserted later), and two real results; returns the stored JSON
    of the second, the template of every row the bench inserts."""
    os.makedirs(os.path.join(root, "seed"))
    for i in range(2):
        with open(os.path.join(root, "seed", f"model-step{i}.safetensors"), "wb") as f:
            f.write(small_checkpoint())
    d = Daemon(tmp, root, "--config", rules_config(tmp, RULES))
    wait_seq(d, 2)
    d.stop()
    db = sqlite3.connect(os.path.join(root, ".emerge", "emerge.db"))
    template = json.loads(db.execute("SELECT json FROM results WHERE seq = 2").fetchone()[0])
    db.close()
    return template


BIG_RUNS = [(f"sweep/r{i:04d}", 100) for i in range(1000)] + [("long", 1000), ("long10k", 10000)]


def row_maker(template):
    """A function (run, step, path, seq, ts, e, se, alpha0, width) -> the row's JSON text:
    the template's text with those fields replaced, spliced rather than encoded again."""
    keys = ["run", "step", "path", "seq", "ts", "emergence", "emergence_se", "alpha0", "width"]
    t = dict(template, **{k: f"@{k}@" for k in keys})
    text = json.dumps(t, separators=(",", ":"))
    order = sorted(keys, key=lambda k: text.index(f'"@{k}@"'))
    parts = [text]
    for k in order:
        head, tail = parts.pop().split(f'"@{k}@"', 1)
        parts += [head, tail]

    def make(**v):
        v["run"], v["path"] = json.dumps(v["run"]), json.dumps(v["path"])
        return "".join(p + (repr(v[k]) if isinstance(v[k], float) else str(v[k])) for p, k in zip(parts, order)) + \
            parts[-1]
    return make


def insert_runs(db, root, template, runs):
    """The runs' checkpoints and results, E on a random walk with a slow rise (so plateau
    and onset have something to judge); returns the last seq."""
    make, rng, seq = row_maker(template), random.Random(15), 2
    se, a_se, w_se = template["emergence_se"] or 0.01, template["alpha0_se"], template["width_se"]
    for name, n in runs:
        rid = db.execute("INSERT INTO runs(name, dir) VALUES(?, ?)", (name, os.path.join(root, name))).lastrowid
        e, rows = 0.0, []
        for i in range(n):
            seq += 1
            step, path = i * 100, os.path.join(root, name, f"model-step{i * 100}.safetensors")
            e = 0.0 if i == 0 else e + rng.gauss(0.0005, 0.004)
            a0, w = template["alpha0"] * (1 - e / 10), template["width"] * (1 + e)
            js = make(run=name, step=step, path=path, seq=seq, ts=1.7e9 + seq, emergence=e,
                      emergence_se=0.0 if i == 0 else se, alpha0=a0, width=w)
            rows.append((rid, path, step, seq, a0, w, e, js, 0.0 if i == 0 else se, a_se, w_se))
        cur = db.execute("SELECT COALESCE(MAX(id), 0) FROM checkpoints").fetchone()[0]
        db.executemany("INSERT INTO checkpoints(id, run_id, path, step, version, state, updated) "
                       "VALUES(?, ?, ?, ?, 'synthetic0000000', 'done', 0)",
                       [(cur + 1 + k, r[0], r[1], r[2]) for k, r in enumerate(rows)])
        db.executemany("INSERT INTO results(checkpoint_id, version, seq, alpha0, width, emergence, json, ts, "
                       "emergence_se, mode, alpha0_se, width_se) VALUES(?, 'synthetic0000000', ?, ?, ?, ?, ?, 0, ?, "
                       "'sampled', ?, ?)", [(cur + 1 + k, *r[3:]) for k, r in enumerate(rows)])
    return seq


def build_big(tmp):
    """(root, seconds, bytes, results) of the lab's database (BIG_RUNS)."""
    t0 = time.perf_counter()
    root = os.path.join(tmp, "bigdb")
    template = seeded_db(tmp, root)
    path = os.path.join(root, ".emerge", "emerge.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")  # one transaction of new pages: nothing to journal, nothing to copy
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    last = insert_runs(db, root, template, BIG_RUNS)
    db.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (last,))
    db.execute("COMMIT")  # no ANALYZE: emerged never runs it, so its query plans are those without statistics
    db.close()
    os.sync()  # written back before anything is timed on it
    return root, time.perf_counter() - t0, os.path.getsize(path), last - 2


def timed_history(d, run, reps):
    """(median s, best s, reply bytes, json.loads s) of `history` over the API: request sent
    to the whole reply received; the client's parse of it is timed apart."""
    s = d.ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(d.api)
    times, raw = [], b""
    for _ in range(reps):
        t0 = time.perf_counter()
        s.send_json({"cmd": "history", "run": run})
        if not s.poll(30000):
            raise SystemExit("bench: no history reply in 30 s")
        raw = s.recv()
        times.append(time.perf_counter() - t0)
    s.close()
    t0 = time.perf_counter()
    reply = json.loads(raw)
    parse = time.perf_counter() - t0
    if len(reply.get("results", [])) == 0:
        raise SystemExit(f"bench: history of {run}: {raw[:200]}")
    return statistics.median(times), min(times), len(raw), parse


def append_in_order(d, root, run, first_step, k):
    """k small checkpoints renamed one at a time into run after its stored steps: rename ->
    PUB of each (ms) and the daemon's CPU seconds over each."""
    run_dir = os.path.join(root, run)
    os.makedirs(run_dir, exist_ok=True)
    sub = d.ctx.socket(zmq.SUB)
    sub.connect(d.pub)
    sub.setsockopt(zmq.SUBSCRIBE, f"result/{run}/".encode())
    time.sleep(0.3)
    lat, cpu = [], []
    for i in range(k):
        path = os.path.join(run_dir, f"model-step{first_step + 100 * i}.safetensors")
        with open(path + ".tmp", "wb") as f:
            f.write(small_checkpoint())
        c0 = d.cpu_ns()
        t0 = time.perf_counter()
        os.rename(path + ".tmp", path)
        if not sub.poll(30000):
            raise SystemExit(f"bench: no result of {run} within 30 s")
        sub.recv_multipart()
        lat.append((time.perf_counter() - t0) * 1e3)
        time.sleep(0.05)  # the store's commit and the loop's sends are done with
        cpu.append((d.cpu_ns() - c0) / 1e6)
    sub.close()
    return lat, cpu


def judge_times(log, run):
    """(ms, rules judged from their kept state) of each result of run, from the store's
    debug line: the time judge_results took on the store thread."""
    pat = re.compile(rf"alerts: run {re.escape(run)} result \d+: \d+ rules? judged in ([0-9.]+) ms, (\d+) from")
    with open(log) as f:
        return [(float(m.group(1)), int(m.group(2))) for m in map(pat.search, f) if m]


def bigdb(tmp):
    """The lab's database: build, history over the API, judging appended results."""
    root, build_s, size, nres = build_big(tmp)
    print(f"bigdb: {nres} results ({size / 2**30:.2f} GiB) built in {build_s:.0f} s")
    log = os.path.join(tmp, "emerged.log")
    d = Daemon(tmp, root, "--config", rules_config(tmp, RULES), log=log)
    hist = {run: timed_history(d, run, 15) for run in ("long", "sweep/r0000", "long10k")}
    judged = {}
    for run, n in (("sweep/r0000", 100), ("long", 1000), ("long10k", 10000)):
        lat, cpu = append_in_order(d, root, run, n * 100, 21)
        times = judge_times(log, run)
        if len(times) != len(lat) or any(k != len(RULES) for _, k in times[1:]):
            raise SystemExit(f"bench: {run}: judged {times}, not from the rules' kept states after the first")
        judged[n] = (lat[0], statistics.median(lat[1:]), statistics.median(cpu[1:]), times[0][0],
                     statistics.median(t for t, _ in times[1:]))
    rss = d.peak_rss_mib()
    d.stop()
    return {"results": nres, "size": size, "build": build_s, "history": hist, "judged": judged, "rss": rss}


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard == resource.RLIM_INFINITY else min(hard, need * 2),
                                                    hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def subscribers(ctx, d, n):
    """n SUB sockets subscribed to result/, each seen to receive a first message."""
    subs = []
    for _ in range(n):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(d.pub)
        s.setsockopt(zmq.SUBSCRIBE, b"result/")
        subs.append(s)
    return subs


def receive_all(subs, poller, t0, timeout=30):
    """(first ms, last ms) after t0 at which each subscriber had its message. The sockets
    stay registered (unregistering is O(n) in pyzmq): one that has read its message is
    not ready again."""
    got, deadline = {}, time.time() + timeout
    while len(got) < len(subs) and time.time() < deadline:
        for s, _ in poller.poll(1000):
            s.recv_multipart()
            got[s] = time.perf_counter()
    if len(got) < len(subs):
        raise SystemExit(f"bench: {len(subs) - len(got)} subscribers had nothing after {timeout} s")
    return (min(got.values()) - t0) * 1e3, (max(got.values()) - t0) * 1e3


def api_burst(clients):
    """Seconds until each of the clients' status requests, sent at once, is answered."""
    t0 = time.perf_counter()
    for c in clients:
        c.send_json({"cmd": "status"})
    poller, left = zmq.Poller(), set(clients)
    for c in clients:
        poller.register(c, zmq.POLLIN)
    deadline = time.time() + 30
    while left and time.time() < deadline:
        for c, _ in poller.poll(1000):
            if c.recv_json().get("ok"):
                left.discard(c)
                poller.unregister(c)
    if left:
        raise SystemExit(f"bench: {len(left)} API clients unanswered")
    return time.perf_counter() - t0


OBSERVER = """import sys, time, zmq
s = zmq.Context().socket(zmq.SUB)
s.connect(sys.argv[1])
s.setsockopt(zmq.SUBSCRIBE, b"result/")
print("ready", flush=True)
while True:
    s.recv_multipart()
    print(time.monotonic(), flush=True)
"""


def observer(d):
    """A subscriber in a process of its own, printing when each message reached it
    (CLOCK_MONOTONIC, the clock of time.perf_counter here): one client's view, without the
    bench's own thread reading a thousand sockets."""
    p = subprocess.Popen([sys.executable, "-c", OBSERVER, d.pub], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    return p


def fanout(tmp, nsub=1000, napi=200, publishes=10):
    """Publish latency to nsub subscribers with napi API clients connected, and RSS."""
    limit = raise_fd_limit(4 * (nsub + napi) + 256)  # each zmq socket: a connection and a mailbox, both sides
    root = os.path.join(tmp, "fanout")
    os.makedirs(os.path.join(root, "run"))
    d = Daemon(tmp, root)
    rss0 = d.rss_mib()
    ctx = zmq.Context()
    ctx.set(zmq.MAX_SOCKETS, nsub + napi + 64)
    early = observer(d)  # connected before the crowd, and after it
    subs = subscribers(ctx, d, nsub)
    late = observer(d)
    clients = [ctx.socket(zmq.REQ) for _ in range(napi)]
    for c in clients:
        c.setsockopt(zmq.LINGER, 0)
        c.connect(d.api)
    time.sleep(2)  # every subscription reaches the daemon
    burst_s = api_burst(clients)
    poller, first, last, seen = zmq.Poller(), [], [], {early: [], late: []}
    for s in subs:
        poller.register(s, zmq.POLLIN)
    for step in range(publishes + 1):
        path = os.path.join(root, "run", f"model-step{step}.safetensors")
        with open(path + ".tmp", "wb") as f:
            f.write(small_checkpoint())
        t0 = time.perf_counter()
        os.rename(path + ".tmp", path)
        a, b = receive_all(subs, poller, t0)
        first.append(a)
        last.append(b)
        for p, times in seen.items():
            times.append((float(p.stdout.readline()) - t0) * 1e3)
    rss, peak, fds = d.rss_mib(), d.peak_rss_mib(), len(os.listdir(f"/proc/{d.proc.pid}/fd"))
    for p in seen:
        p.kill()
        p.wait()
    for s in subs + clients:
        s.close()
    ctx.term()
    d.stop()
    return {"limit": limit, "first": statistics.median(first[1:]), "last": statistics.median(last[1:]),
            "early": statistics.median(seen[early][1:]), "late": statistics.median(seen[late][1:]),
            "burst": burst_s, "rss0": rss0, "rss": rss, "peak": peak, "fds": fds}


MEASURES = ("latency", "burst", "backlog", "web", "flood", "bigdb", "fanout")


def rows_latency(tmp):
    lat_min, lat_max, analysis = latency(tmp, bench_analyze.checkpoint("70m", "F16"))
    print(f"latency above analysis: {lat_min:.0f}-{lat_max:.0f} ms (analysis {analysis:.0f} ms)")
    return [("rename into place -> PUB, 70m F16, above the analysis time",
             f"{lat_min:.0f}-{lat_max:.0f} ms (analysis {analysis:.0f} ms)", "< 200 ms")]


def rows_burst(tmp):
    secs, rate, idle = burst(tmp)
    print(f"burst: 200 checkpoints in {secs:.1f} s ({rate:.0f}/s); idle CPU {idle:.3f} s in {IDLE_SECONDS:.0f} s")
    return [("burst of 200 small checkpoints, all published", f"{secs:.1f} s ({rate:.0f}/s)", ""),
            (f"daemon CPU while idle for {IDLE_SECONDS:.0f} s", f"{idle:.3f} s", "< 0.1 s")]


def rows_backlog(tmp):
    queued, rss, plain, plain_cpu = backlog(tmp)
    print(f"backlog: {queued} queued at most, peak RSS {rss:.1f} MiB, drained in {plain:.1f} s")
    _, _, judged, judged_cpu = backlog(tmp, rules=RULES)
    print(f"backlog with 3 rules: drained in {judged:.1f} s ({judged / plain:.2f}x); daemon CPU {plain_cpu:.2f} s / "
          f"{judged_cpu:.2f} s ({judged_cpu / plain_cpu:.2f}x)")
    return [(f"peak RSS while 1,000 queued checkpoints drain ({queued} queued at most)", f"{rss:.1f} MiB", ""),
            ("the same 1,000 drained without rules / with 3 rules (newest first: each replayed, in memory)",
             f"{plain:.1f} s / {judged:.1f} s ({judged / plain:.2f}x)", "< 1.05x"),
            ("... the daemon's CPU time for each", f"{plain_cpu:.2f} s / {judged_cpu:.2f} s "
             f"({judged_cpu / plain_cpu:.2f}x)", "")]


def rows_web(tmp):
    off_pub, _, off_idle = web(tmp, 0)
    on_pub, on_sse, on_idle = web(tmp, 50)
    print(f"web: rename -> PUB median {off_pub:.1f} ms with HTTP off, {on_pub:.1f} ms with HTTP and 50 streams "
          f"(the 50th stream has it after {on_sse:.1f} ms); idle CPU {off_idle:.3f} s / {on_idle:.3f} s "
          f"in {IDLE_SECONDS / 2:.0f} s")
    return [("rename -> PUB, small checkpoint, median of 19: HTTP off / HTTP on with 50 event streams",
             f"{off_pub:.1f} ms / {on_pub:.1f} ms ({on_pub / off_pub:.2f}x)", ""),
            ("... rename -> the 50th event stream has it", f"{on_sse:.1f} ms", ""),
            (f"daemon CPU idle for {IDLE_SECONDS / 2:.0f} s: HTTP off / on with 50 streams",
             f"{off_idle:.3f} s / {on_idle:.3f} s", "< 0.05 s")]


def rows_flood(tmp):
    worst, first, settled = flood(tmp)
    print(f"flood of 100,000 empty files: slowest status {worst:.2f} s, another run's first result after "
          f"{first:.1f} s, all settled in {settled:.0f} s")
    return [("100,000 empty weight files in one run: slowest status answer meanwhile", f"{worst:.2f} s", "< 2 s"),
            ("... another run's first checkpoint, renamed in at start: its result after", f"{first:.1f} s", ""),
            ("... all 100,000 recorded failed after", f"{settled:.0f} s", "")]


def rows_bigdb(tmp):
    b = bigdb(tmp)
    (med, best, size, parse), short, huge = (b["history"][r] for r in ("long", "sweep/r0000", "long10k"))
    print(f"bigdb: history of the 1,000-checkpoint run: median {med * 1e3:.1f} ms, best {best * 1e3:.1f} ms, "
          f"{size / 1e6:.1f} MB (json.loads {parse * 1e3:.0f} ms); 100: {short[0] * 1e3:.1f} ms; "
          f"10,000: {huge[0] * 1e3:.0f} ms")
    j = b["judged"]
    for n, (first, lat, cpu, judge_first, judge) in j.items():
        print(f"bigdb: appended to {n} results, 3 rules: judged in {judge:.3f} ms (median; the first, which replays: "
              f"{judge_first:.1f} ms); rename -> PUB median {lat:.1f} ms, daemon CPU {cpu:.1f} ms per result (the "
              f"first: {first:.1f} ms)")
    lens = " / ".join(f"{n:,}" for n in j)
    return [(f"a database of {b['results']:,} results ({b['size'] / 2**30:.2f} GiB), built with Python's sqlite3 "
             "into a real emerged's schema", f"{b['build']:.0f} s", ""),
            ("`history` of its 1,000-checkpoint run over the API, median of 15 (best; the reply; the client's "
             "json.loads)", f"{med * 1e3:.1f} ms ({best * 1e3:.1f} ms; {size / 1e6:.1f} MB; {parse * 1e3:.0f} ms)",
             "< 50 ms"),
            ("... of a 100-result run / of the 10,000-result run", f"{short[0] * 1e3:.1f} ms / {huge[0] * 1e3:.0f} ms",
             ""),
            (f"a result appended in step order to a history of {lens}: judged by 3 rules (the store thread's "
             "time, from their kept states), median of 20", " / ".join(f"{v[4]:.3f}" for v in j.values()) + " ms",
             "the same"),
            ("... the first result appended (no kept state yet: replays the history)",
             " / ".join(f"{v[3]:.1f}" for v in j.values()) + " ms", ""),
            (f"... rename -> PUB, median of 20, history of {lens}",
             " / ".join(f"{v[1]:.1f}" for v in j.values()) + " ms", "the same"),
            (f"... the daemon's CPU time per result, history of {lens}",
             " / ".join(f"{v[2]:.1f}" for v in j.values()) + " ms", "the same"),
            ("... the daemon's peak RSS serving that database (the 10,000-result history's reply is built whole: "
             f"{huge[2] / 1e6:.0f} MB)", f"{b['rss']:.1f} MiB", "")]


def rows_fanout(tmp):
    f = fanout(tmp)
    print(f"fanout: 1,000 SUB + 200 API clients (fd limit {f['limit']}, the daemon's descriptors {f['fds']}): "
          f"rename -> PUB first {f['first']:.1f} ms, last {f['last']:.1f} ms; observers in their own processes "
          f"{f['early']:.1f} / {f['late']:.1f} ms; 200 status at once answered in {f['burst'] * 1e3:.0f} ms; RSS "
          f"{f['rss0']:.1f} -> {f['rss']:.1f} MiB (peak {f['peak']:.1f})")
    return [("1,000 PUB subscribers and 200 API clients connected: rename -> PUB at the first / the last "
             "subscriber (all read by one thread of the bench), median of 10",
             f"{f['first']:.1f} ms / {f['last']:.1f} ms", ""),
            ("... at a subscriber in a process of its own, connected before / after the 1,000",
             f"{f['early']:.1f} ms / {f['late']:.1f} ms", ""),
            ("... the 200 API clients' status requests, sent at once, all answered after",
             f"{f['burst'] * 1e3:.0f} ms", ""),
            ("... the daemon's RSS before they connected / with them (peak)",
             f"{f['rss0']:.1f} / {f['rss']:.1f} MiB ({f['peak']:.1f} MiB)", "")]


def append_results(rows):
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    with open(bench_analyze.RESULTS, "a") as f:
        f.write(f"\n## emerged, {date} - commit {commit}\n\nMachine: {bench_analyze.machine()}.\n\n"
                "| measure | result | target |\n|---|---|---|\n")
        f.writelines(f"| {m} | {r} | {t} |\n" for m, r, t in rows)
    print(f"bench: results appended to {bench_analyze.RESULTS}")


def main():
    only = [m for m in os.environ.get("BENCH_ONLY", ",".join(MEASURES)).split(",") if m]
    unknown = [m for m in only if m not in MEASURES]
    if unknown:
        raise SystemExit(f"bench: BENCH_ONLY: unknown measure {', '.join(unknown)} (known: {', '.join(MEASURES)})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="emerge-bench-") as tmp:
        for m in MEASURES:
            if m in only:
                os.makedirs(os.path.join(tmp, m))
                rows += globals()[f"rows_{m}"](os.path.join(tmp, m))
    append_results(rows)


if __name__ == "__main__":
    main()
