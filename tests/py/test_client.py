"""emergectl against the real daemon and its database: every command in both modes, JSON
compared with what is stored, a late watch, an unreachable daemon, the SVG."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from daemon import Daemon, history, wait_for
from helpers import EMERGECTL, ROOT, emergectl, read_lines


def _daemon_with_results(tmp, steps=300, every=100):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.2")
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), os.path.join(root, "mlp"),
                    "--steps", str(steps), "--save-every", str(every)], check=True, stdout=subprocess.DEVNULL)
    n = steps // every + 1
    wait_for(lambda: len(history(d, "mlp")[0]) == n, what="results")
    return d, root


def _stored(d):
    with d.db() as db:
        return {json.loads(j)["step"]: json.loads(j) for (j,) in db.execute("SELECT json FROM results")}


def test_every_command_in_both_modes(tmp):
    d, root = _daemon_with_results(tmp)
    stored = _stored(d)
    for mode in (["--api", d.api], ["--db", root], ["--db", os.path.join(root, ".emerge", "emerge.db")]):
        runs = json.loads(emergectl("runs", "--json", *mode, check=0)[1])["runs"]
        assert [(r["run"], r["checkpoints"], r["last_step"]) for r in runs] == [("mlp", 4, 300)], (mode, runs)
        hist = json.loads(emergectl("history", "mlp", "--json", *mode, check=0)[1])
        assert {r["step"]: r for r in hist["results"]} == stored, mode  # exactly what is stored
        exp = json.loads(emergectl("export", "mlp", "--json", *mode, check=0)[1])
        assert exp["results"] == hist["results"]
        _, csv, _ = emergectl("export", "mlp", "--csv", *mode, check=0)
        rows = [line.split(",") for line in csv.splitlines()]
        assert len(rows) == 5 and rows[0][:3] == ["step", "path", "seq"] and "tau[-3]" in rows[0]
        assert [float(r[0]) for r in rows[1:]] == [0, 100, 200, 300]
        se = rows[0].index("emergence_se")
        assert [float(r[se]) for r in rows[1:]] == [stored[s]["emergence_se"] for s in (0, 100, 200, 300)]
        assert rows[1][rows[0].index("mode")] == '"sampled"'
        table = emergectl("history", "mlp", *mode, check=0)[1].splitlines()
        assert table[0].split()[:4] == ["STEP", "E", "±SE", "ALPHA0"] and len(table) == 5
        assert float(table[2].split()[2]) == round(stored[100]["emergence_se"], 4) > 0
        assert "mlp" in emergectl("runs", *mode, check=0)[1]
        status = json.loads(emergectl("status", "--json", *mode, check=0)[1])
        assert status["kind"] == "status" and status["last_seq"] == 4  # --db ROOT finds the live daemon
    code, _, err = emergectl("history", "mpl", "--api", d.api)
    assert code == 1 and "unknown run 'mpl'" in err and "did you mean: mlp" in err
    assert d.stop() == 0
    down = json.loads(emergectl("status", "--json", "--db", root, check=0)[1])  # works while the daemon is down
    assert down["running"] is False
    assert json.loads(emergectl("history", "mlp", "--json", "--db", root, check=0)[1])["results"]


def test_unreachable_daemon_exits_69(tmp):
    for cmd in (["status"], ["runs"], ["history", "x"], ["watch"]):
        code, out, err = emergectl(*cmd, "--api", f"ipc://{tmp}/nobody", "--pub", f"ipc://{tmp}/nopub",
                                   "--timeout", "0.5") if cmd == ["watch"] else \
            emergectl(*cmd, "--api", f"ipc://{tmp}/nobody", "--timeout", "0.5")
        assert code == 69 and f"ipc://{tmp}/nobody" in err and "--db" in err, (cmd, code, err)
    assert emergectl("history")[0] == 2 and emergectl("export", "mlp")[0] == 2
    assert emergectl("runs", "--timeout", "x")[0] == 2 and emergectl("plot", "mlp")[0] == 2


def test_watch_started_late_gets_history_then_live(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.2")
    job = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), os.path.join(root, "mlp"),
                            "--steps", "800", "--save-every", "100", "--sleep", "0.3"], stdout=subprocess.DEVNULL)
    wait_for(lambda: len(history(d, "mlp")[0]) >= 3, what="3 results")
    w = subprocess.Popen([EMERGECTL, "watch", "mlp", "--json", "--api", d.api, "--pub", d.pub],
                         stdout=subprocess.PIPE, text=True)
    job.wait()
    lines = read_lines(w, lambda got: len(got) >= 9)
    time.sleep(0.5)  # anything after the ninth would be a repeat
    w.send_signal(signal.SIGINT)
    out, _ = w.communicate(timeout=10)
    assert w.returncode == 0
    got = [json.loads(line) for line in lines + out.splitlines()]
    assert [m["step"] for m in got] == list(range(0, 801, 100)), [m["step"] for m in got]  # no gap, no repeat
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(set(seqs))
    # With --db and no daemon, watch follows the database.
    assert d.stop() == 0
    w = subprocess.Popen([EMERGECTL, "watch", "--json", "--db", root], stdout=subprocess.PIPE, text=True)
    lines = read_lines(w, lambda got: len(got) >= 9)
    w.send_signal(signal.SIGINT)
    out, _ = w.communicate(timeout=10)
    assert len(lines + out.splitlines()) == 9


def test_plot_is_well_formed_svg_with_a_point_per_result(tmp):
    d, root = _daemon_with_results(tmp, steps=500, every=100)
    svg = os.path.join(tmp, "plot.svg")
    emergectl("plot", "mlp", "--svg", svg, "--api", d.api, check=0)
    tree = ET.parse(svg)  # well-formed XML
    ns = "{http://www.w3.org/2000/svg}"
    points = [c for c in tree.iter(ns + "circle") if c.get("class") == "point"]
    assert len(points) == 6
    texts = " ".join(t.text or "" for t in tree.iter(ns + "text"))
    assert "training step" in texts and "eval_accuracy" in texts and "baseline, step 0" in texts
    # the band of E +- 2 SE: a vertex above and below each point, wider than nothing after the baseline
    band = [p for p in tree.iter(ns + "polygon") if p.get("class") == "band"]
    assert len(band) == 1, band
    ys = [float(xy.split(",")[1]) for xy in band[0].get("points").split()]
    assert len(ys) == 12 and ys[0] == ys[-1] and any(abs(a - b) > 1 for a, b in zip(ys[1:6], reversed(ys[6:11])))
    assert "(SE)" in " ".join(t.text or "" for t in tree.iter(ns + "title"))
    assert d.stop() == 0
    emergectl("plot", "mlp", "--svg", svg, "--db", root, check=0)  # from the database too
    assert len([c for c in ET.parse(svg).iter(ns + "circle") if c.get("class") == "point"]) == 6


def test_plot_overlays_several_runs_and_writes_to_stdout(tmp):
    d, root = _daemon_with_results(tmp, steps=300, every=100)
    job = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), os.path.join(root, "mlp2"),
                          "--steps", "200", "--save-every", "100", "--seed", "3"], stdout=subprocess.DEVNULL)
    assert job.returncode == 0
    wait_for(lambda: len(history(d, "mlp2")[0]) == 3, what="mlp2's results")
    code, out, err = emergectl("plot", "mlp", "mlp2", "--svg", "-", "--api", d.api, check=0)
    assert not os.path.exists("-") and not os.path.exists(os.path.join(tmp, "-"))
    assert "7 results of 2 runs written to standard output" in err, err
    tree = ET.fromstring(out)
    ns = "{http://www.w3.org/2000/svg}"
    fills = {c.get("fill") for c in tree.iter(ns + "circle") if c.get("class") == "point"}
    assert len([c for c in tree.iter(ns + "circle") if c.get("class") == "point"]) == 7 and len(fills) == 2
    assert len([p for p in tree.iter(ns + "polygon") if p.get("class") == "band"]) == 2
    texts = " ".join(t.text or "" for t in tree.iter(ns + "text"))
    assert "mlp: E ± 2 SE" in texts and "mlp2: E ± 2 SE" in texts and "mlp2, latest, step 200" in texts
    assert emergectl("plot", "mlp", "nope", "--svg", "-", "--api", d.api)[0] == 1  # an unknown run fails it
    d.stop()


def test_watch_on_a_terminal_shows_compact_lines_and_a_sparkline(tmp):
    d, root = _daemon_with_results(tmp)
    assert d.stop() == 0
    p = subprocess.run(["timeout", "-s", "INT", "2", "script", "-qec", f"{EMERGECTL} watch mlp --db {root}",
                        "/dev/null"], capture_output=True, text=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("mlp")]
    assert len(lines) == 4, p.stdout
    assert "step      300" in lines[-1] and "eval_accuracy=" in lines[-1] and "alpha0" in lines[-1]
    assert "±0.0000" in lines[0] and re.search(r"E [+-]\d\.\d{4} ±0\.\d{4}", lines[-1]), lines  # E with its SE
    assert any(ch in lines[-1] for ch in "▁▂▃▄▅▆▇█")  # the sparkline of E


def test_watch_survives_malformed_pub_messages(tmp):
    """PUB payloads are wire input: a publisher sending junk must not crash watch."""
    import zmq
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.2")
    fake = zmq.Context.instance().socket(zmq.PUB)
    fake.bind(f"ipc://{tmp}/fake-pub")
    w = subprocess.Popen([EMERGECTL, "watch", "--api", d.api, "--pub", f"ipc://{tmp}/fake-pub"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    junk = [b"not json", b"[]", b'{"seq":99}', b'{"seq":100,"run":5,"alpha0":"x"}',
            b'{"seq":101,"run":"r","step":1,"emergence":0.1,"alpha0":0.5,"width":0.4,"q":[],"tau":[],'
            b'"alpha":[],"f":[],"trainer":[1,2]}', b"\xff"]
    good = b'{"run":"%s","step":%d,"emergence":0.1,"alpha0":0.5,"width":0.4,"q":[],"tau":[],"alpha":[],"f":[],"seq":%d}'
    lines = []
    for _ in range(60):  # a probe until the subscription has arrived (PUB drops before that)
        fake.send_multipart([b"result/r/", good % (b"probe", 0, 1)])
        lines += read_lines(w, lambda got: got, timeout=0.5)
        if lines:
            break
    for payload in junk:  # now in order, all of it
        fake.send_multipart([b"result/r/", payload])
    fake.send_multipart([b"alert/r/", b'{"seq":102,"reason":7}'])
    fake.send_multipart([b"result/r/", good % (b"r", 2, 103)])
    fake.send_multipart([b"alert/r/", b'{"seq":104,"run":"r","rule":"p","step":2,"reason":"flat"}'])
    lines += read_lines(w, lambda got: any(line.startswith("ALERT") for line in got), timeout=30)
    assert w.poll() is None, w.communicate()  # still running (an array trainer once crashed it)
    w.send_signal(signal.SIGINT)
    out, err = w.communicate(timeout=10)
    assert w.returncode == 0, err
    out = "\n".join(lines + [out])
    # junk is named on stderr and skipped, never shown as zeros; what is valid still shows
    assert "step        2" in out and "ALERT r step 2 rule p: flat" in out, out
    assert "step        1" not in out and "ALERT ?" not in out, out
    assert "skipping a malformed result: result object: \"trainer\"" in err, err
    assert "skipping a malformed alert" in err, err
    fake.close()
    assert d.stop() == 0
