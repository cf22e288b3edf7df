"""make bench (daemon part): emerged's latency, burst throughput, idle CPU and memory with a
backlog, appended with date and machine to bench/RESULTS.md.

- latency: a 70m-shaped checkpoint renamed into place -> its PUB message, minus the
  analysis time the result reports (target: under 200 ms)
- burst: 200 small checkpoints appear at once -> all published
- idle: CPU time the daemon uses while nothing happens (target: under 0.1 s in 60 s)
- backlog: peak RSS while 1,000 queued checkpoints drain
- rules: the same backlog drained with three early-stop rules, which replay the run's
  history after every result (O(n) each): drain time against the run without rules
- web: publish latency (rename -> PUB) and idle CPU with the HTTP listener off, and on
  with 50 event-stream clients attached (and when the last of them has each event)
- flood: 100,000 empty weight files in one run (docs/SECURITY.md): the slowest status
  answer while they are worked through (target: under 2 s at any moment), how long
  another run's first checkpoint waits for its result, and the time until all are settled"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import selectors
import socket
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
    def __init__(self, tmp, root, *extra):
        self.pub, self.api = f"ipc://{tmp}/pub", f"ipc://{tmp}/api"
        # sampled, as recorded so far: the figures stay comparable across the default's change to auto
        self.proc = subprocess.Popen([EMERGED, "--watch", root, "--pub", self.pub, "--api", self.api, "--quiet",
                                      "0.5", "--log-level", "warning", "--mode", "sampled", *(["--http", "off"] if "--http" not in extra else []),
                                      *extra],
                                     stderr=subprocess.DEVNULL)
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

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

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
    data = stio.serialize({k: ("F32", v) for k, v in make_ckpt.build("neox", 64, 1).items()})
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
    """(most queued, peak RSS MiB, seconds to drain) of n checkpoints present at start."""
    root = os.path.join(tmp, "backlog-rules" if rules else "backlog")
    os.makedirs(os.path.join(root, "run"))
    data = stio.serialize({k: ("F32", v) for k, v in make_ckpt.build("neox", 64, 1).items()})
    for i in range(n):
        with open(os.path.join(root, "run", f"model-step{i}.safetensors"), "wb") as f:
            f.write(data)
    extra = []
    if rules:
        cfg = os.path.join(tmp, "rules.json")
        with open(cfg, "w") as f:
            json.dump({"alerts": rules, "on_alert": {"stop_file": False}}, f)
        extra = ["--config", cfg]
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
    rss = d.peak_rss_mib()
    d.stop()
    return most_queued, rss, secs


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
    small = stio.serialize({k: ("F32", v) for k, v in make_ckpt.build("neox", 64, 1).items()})
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
    data = stio.serialize({k: ("F32", v) for k, v in make_ckpt.build("neox", 64, 1).items()})
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


def main():
    big = bench_analyze.checkpoint("70m", "F16")
    with tempfile.TemporaryDirectory(prefix="emerge-bench-") as tmp:
        lat_min, lat_max, analysis = latency(tmp, big)
        print(f"latency above analysis: {lat_min:.0f}-{lat_max:.0f} ms (analysis {analysis:.0f} ms)")
        secs, rate, idle = burst(tmp)
        print(f"burst: 200 checkpoints in {secs:.1f} s ({rate:.0f}/s); idle CPU {idle:.3f} s in {IDLE_SECONDS:.0f} s")
        queued, rss, plain = backlog(tmp)
        print(f"backlog: {queued} queued at most, peak RSS {rss:.1f} MiB, drained in {plain:.1f} s")
        _, _, judged = backlog(tmp, rules=RULES)
        print(f"backlog with 3 rules: drained in {judged:.1f} s ({judged / plain:.2f}x)")
        off_pub, _, off_idle = web(tmp, 0)
        on_pub, on_sse, on_idle = web(tmp, 50)
        print(f"web: rename -> PUB median {off_pub:.1f} ms with HTTP off, {on_pub:.1f} ms with HTTP and 50 streams "
              f"(the 50th stream has it after {on_sse:.1f} ms); idle CPU {off_idle:.3f} s / {on_idle:.3f} s "
              f"in {IDLE_SECONDS / 2:.0f} s")
        worst, first, settled = flood(tmp)
        print(f"flood of 100,000 empty files: slowest status {worst:.2f} s, another run's first result after "
              f"{first:.1f} s, all settled in {settled:.0f} s")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    with open(bench_analyze.RESULTS, "a") as f:
        f.write(f"\n## emerged, {date} - commit {commit}\n\nMachine: {bench_analyze.machine()}.\n\n"
                "| measure | result | target |\n|---|---|---|\n"
                f"| rename into place -> PUB, 70m F16, above the analysis time | {lat_min:.0f}-{lat_max:.0f} ms "
                f"(analysis {analysis:.0f} ms) | < 200 ms |\n"
                f"| burst of 200 small checkpoints, all published | {secs:.1f} s ({rate:.0f}/s) | |\n"
                f"| daemon CPU while idle for {IDLE_SECONDS:.0f} s | {idle:.3f} s | < 0.1 s |\n"
                f"| peak RSS while 1,000 queued checkpoints drain ({queued} queued at most) | {rss:.1f} MiB | |\n"
                f"| the same 1,000 drained without rules / with 3 rules (replayed after each result) | "
                f"{plain:.1f} s / {judged:.1f} s ({judged / plain:.2f}x) | |\n"
                f"| rename -> PUB, small checkpoint, median of 19: HTTP off / HTTP on with 50 event streams | "
                f"{off_pub:.1f} ms / {on_pub:.1f} ms ({on_pub / off_pub:.2f}x) | |\n"
                f"| ... rename -> the 50th event stream has it | {on_sse:.1f} ms | |\n"
                f"| daemon CPU idle for {IDLE_SECONDS / 2:.0f} s: HTTP off / on with 50 streams | "
                f"{off_idle:.3f} s / {on_idle:.3f} s | < 0.05 s |\n"
                f"| 100,000 empty weight files in one run: slowest status answer meanwhile | {worst:.2f} s | < 2 s |\n"
                f"| ... another run's first checkpoint, renamed in at start: its result after | {first:.1f} s | |\n"
                f"| ... all 100,000 recorded failed after | {settled:.0f} s | |\n")
    print(f"bench: results appended to {bench_analyze.RESULTS}")


if __name__ == "__main__":
    main()
