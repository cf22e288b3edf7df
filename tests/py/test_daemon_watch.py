"""emerged's watching, ordering and operating surface: what is found at start-up and in
what order, checkpoints that vanish, polling, nested runs and their topics, a locked
database, and the systemd notify protocol."""
import json
import os
import socket
import sqlite3
import time

import make_ckpt
from daemon import Daemon, collect, history, wait_for


def _write(root, run, step, seed=0, h=64, blocks=1, dtype="F32"):
    d = os.path.join(root, run)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"model-step{step}.safetensors")
    make_ckpt.write(path, make_ckpt.build("neox", h, blocks, seed=seed), dtype)
    return path


def answers(d):
    try:
        return d.request({"cmd": "status"}, timeout=0.3)["ok"]
    except TimeoutError:
        return False


def test_startup_baseline_first_then_newest(tmp):
    root = os.path.join(tmp, "root")
    for step in (3, 0, 5, 1, 4, 2):
        _write(root, "run", step, seed=step, h=256, blocks=2, dtype="F16")
    d = Daemon(tmp, root, "--full").start(quiet="0.2")
    sub = d.subscribe()
    results = wait_for(lambda: len(history(d, "run")[0]) == 6 and history(d, "run")[0], what="6 results")
    order = [r["step"] for r in sorted(results, key=lambda r: r["seq"])]
    assert order == [0, 5, 4, 3, 2, 1], order
    sub.close()
    assert d.stop() == 0


def test_deleted_before_read_is_vanished(tmp):
    root = os.path.join(tmp, "root")
    paths = [_write(root, "run", step, seed=step, h=512, blocks=3, dtype="F16") for step in range(8)]
    # ~0.2 s per analysis (100 sampled networks), so step 1 waits queued for ~1.4 s whatever
    # the test's start-up costs: full mode (40 ms each) let all eight finish before a look.
    d = Daemon(tmp, root, "--mode", "sampled", "--samples", "100").start(quiet="0")
    # One worker takes baseline 0 first, then 7, 6, ...: step 1 waits queued the longest.
    wait_for(lambda: any(c["step"] == 1 and c["state"] == "queued" for c in history(d, "run")[1]), what="queued")
    os.remove(paths[1])
    wait_for(lambda: any(c["state"] == "vanished" for c in history(d, "run")[1]), timeout=120, what="vanished")
    wait_for(lambda: len(history(d, "run")[0]) == 7, timeout=300, what="the others")  # TSan: ~10x slower
    results, others = history(d, "run")
    assert sorted(r["step"] for r in results) == [0, 2, 3, 4, 5, 6, 7]
    assert [(c["step"], c["state"]) for c in others] == [(1, "vanished")]
    assert d.stop() == 0


def test_poll_mode_finds_checkpoints(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--poll", "0.3").start(quiet="0.2")
    assert d.request({"cmd": "status"})["status"]["mode"] == "poll"
    _write(root, "run", 7)
    wait_for(lambda: history(d, "run")[0], timeout=10, what="a result by polling")
    assert d.stop() == 0


def test_nested_runs_and_topic_prefixes(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.2")
    sweep, run1 = d.subscribe(b"result/sweep/"), d.subscribe(b"result/run1/")
    time.sleep(0.3)
    for run in ("sweep/lr1", "sweep/lr2", "run1", "run10"):
        _write(root, run, 1)
    got_sweep = collect(sweep, lambda g: len(g) >= 2, timeout=15)
    wait_for(lambda: all(history(d, run)[0] for run in ("sweep/lr1", "sweep/lr2", "run1", "run10")),
             what="all four results")  # then run10's must not have reached run1's subscriber
    got_run1 = collect(run1, lambda g: False, timeout=1)
    assert sorted(t for t, _ in got_sweep) == ["result/sweep/lr1/", "result/sweep/lr2/"]
    assert [t for t, _ in got_run1] == ["result/run1/"]  # the trailing / keeps run10 out
    runs = {r["run"] for r in d.request({"cmd": "runs"})["runs"]}
    assert runs == {"sweep/lr1", "sweep/lr2", "run1", "run10"}
    assert d.stop() == 0


def test_locked_database_is_retried_and_nothing_lost(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.2")
    db = sqlite3.connect(os.path.join(root, ".emerge", "emerge.db"), timeout=10, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")  # longer than the daemon's 5 s busy_timeout
    _write(root, "run", 1)
    wait_for(lambda: "retrying" in d.read_log(), timeout=20, what="a retry")
    assert d.request({"cmd": "status"})["ok"]  # the daemon stays up
    db.execute("ROLLBACK")
    db.close()
    wait_for(lambda: history(d, "run")[0], timeout=20, what="the result after the lock")
    assert d.stop() == 0


def test_systemd_notify_protocol(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    path = os.path.join(tmp, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    os.environ.update(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    try:
        d = Daemon(tmp, root).start(quiet="0.2")
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    _write(root, "run", 3)
    seen = []
    deadline = time.time() + 15
    while time.time() < deadline and not (any(m.startswith("STATUS=") for m in seen) and "WATCHDOG=1" in seen):
        try:
            seen.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
    assert d.stop() == 0
    while True:
        try:
            seen.append(sock.recv(4096).decode())
        except socket.timeout:
            break
    assert "READY=1" in seen and "WATCHDOG=1" in seen and "STOPPING=1" in seen, (seen, d.read_log())
    assert any(m.startswith("STATUS=") and "run step 3" in m for m in seen), seen


def test_disk_full_is_retried_and_nothing_lost(tmp):
    """The database on a full filesystem (a tmpfs in a private mount namespace): writes
    fail with SQLITE_FULL, the daemon logs, retries and stays up; once space returns
    every checkpoint gets exactly one result."""
    import shutil
    import subprocess
    from daemon import EMERGED
    root, dbdir = os.path.join(tmp, "root"), os.path.join(tmp, "db")
    os.makedirs(root)
    os.makedirs(dbdir)
    d = Daemon(tmp, root)
    log = open(d.log_path, "w")
    script = (f"mount -t tmpfs -o size=8m tmpfs {dbdir} && "
              f"dd if=/dev/zero of={dbdir}/filler bs=1k count=7990 2>/dev/null; "
              f"exec {EMERGED} --watch {root} --db {dbdir}/emerge.db --pub {d.pub} --api {d.api} --quiet 0.2 "
              f"--samples 2 --http 127.0.0.1:0")
    d.proc = subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=log, stderr=subprocess.STDOUT)
    d.log = log
    wait_for(lambda: answers(d), what="the daemon")
    for step in range(30):
        _write(root, "run", step, seed=step)
    wait_for(lambda: "database or disk is full" in d.read_log(), timeout=30, what="SQLITE_FULL")
    assert d.request({"cmd": "status"})["ok"]
    os.remove(f"/proc/{d.proc.pid}/root{dbdir}/filler")  # space returns
    wait_for(lambda: len(history(d, "run")[0]) == 30, timeout=60, what="all 30 after the disk full")
    copy = os.path.join(tmp, "copy")  # SQLite resolves /proc/PID/root back to our namespace: copy out
    os.makedirs(copy)
    for suffix in ("", "-wal"):
        shutil.copy(f"/proc/{d.proc.pid}/root{dbdir}/emerge.db{suffix}", os.path.join(copy, "emerge.db" + suffix))
    db = sqlite3.connect(os.path.join(copy, "emerge.db"))
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT checkpoint_id) FROM results").fetchone() == (30, 30)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert d.stop() == 0


def test_inotify_overflow_triggers_a_rescan(tmp):
    """The instance's queue is capped (the limit is read when inotify_init runs), the
    daemon is stopped while 100 checkpoints appear, and only the overflow rescan can find
    what the lost events named: the periodic rescan is an hour away."""
    import signal
    knob = "/proc/sys/fs/inotify/max_queued_events"
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "run"))
    old = open(knob).read().strip()
    try:
        open(knob, "w").write("8")
        d = Daemon(tmp, root, "--rescan", "3600").start(quiet="0.2")
    finally:
        open(knob, "w").write(old)
    d.proc.send_signal(signal.SIGSTOP)
    for step in range(100):
        _write(root, "run", step, seed=step)
    d.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: len(history(d, "run")[0]) == 100, timeout=60, what="all 100 after the overflow")
    assert "overflowed; rescanning" in d.read_log()
    assert d.stop() == 0


def test_workers_are_gentle_and_shards_are_one_checkpoint(tmp):
    import subprocess
    from helpers import shard
    root = os.path.join(tmp, "root")
    ck = os.path.join(root, "run", "checkpoint-9")
    os.makedirs(ck)
    shard(ck, make_ckpt.build("neox", 64, 2), "F16", 3)
    d = Daemon(tmp, root, "--workers", "2").start(quiet="0.2")
    results = wait_for(lambda: history(d, "run")[0], what="the sharded checkpoint")
    assert [(r["step"], r["path"]) for r in results] == [(9, ck)]  # one checkpoint, not three
    workers = []
    for tid in os.listdir(f"/proc/{d.proc.pid}/task"):
        if open(f"/proc/{d.proc.pid}/task/{tid}/comm").read().strip() == "em-worker":
            nice = int(open(f"/proc/{d.proc.pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()[16])
            io = subprocess.run(["ionice", "-p", tid], capture_output=True, text=True).stdout
            workers.append((nice, io.strip()))
    assert workers == [(10, "idle"), (10, "idle")], workers
    assert d.stop() == 0


def test_truncated_in_place_during_analysis_gives_no_wrong_row(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "run"))
    path = os.path.join(root, "run", "model-step5.safetensors")
    import stio
    versions = [stio.serialize({k: ("F16", v) for k, v in make_ckpt.build("neox", 256, 3, seed=i).items()})
                for i in range(5)]
    with open(path, "wb") as f:
        f.write(versions[0])
    d = Daemon(tmp, root, "--full").start(quiet="0.1")
    for data in versions[1:]:  # truncate in place under the reader, then write the next version
        with open(path, "r+b") as f:
            f.truncate(len(data) // 3)
        time.sleep(0.05)
        with open(path, "wb") as f:
            f.write(data)
        time.sleep(0.15)
    from helpers import analyze_json
    final = analyze_json("--full", path)[0]
    wait_for(lambda: [r for r in history(d, "run")[0] if r["tau"] == final["tau"]], what="the final version")
    allowed = set()
    for i, data in enumerate(versions):
        p = os.path.join(tmp, f"v{i}.safetensors")
        open(p, "wb").write(data)
        allowed.add(tuple(analyze_json("--full", p)[0]["tau"]))
    with d.db() as db:
        rows = [json.loads(j)["tau"] for (j,) in db.execute("SELECT json FROM results")]
    assert rows and all(tuple(t) in allowed for t in rows), "a row holds values no complete version had"
    assert d.stop() == 0
