"""Early-stop alerts against the real daemon: a rule fires once on the right checkpoint
(row, PUB message, stop file, log line), one that must not fire does not, backtest agrees
with the live rule, a NaN the analysis never reads trips check_finite, kill -9 repeats no
row and redoes the deliveries, exec gets its environment and is killed at its timeout, a
training job stops itself, bad rules are named at start and reload."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np

from daemon import Daemon, collect, history, wait_for
from helpers import analyze_json, close, EXAMPLES, ROOT, emergectl, hf_checkpoint

TRAIN = os.path.join(ROOT, "examples", "train_mlp.py")
PLATEAU = {"name": "plateau", "monitor": "emergence", "min_delta": 0.01, "patience": 2}
NEVER = [{"name": "target", "monitor": "emergence", "stopping_threshold": 5.0},
         {"name": "collapse", "monitor": "alpha0", "divergence_threshold": 10.0}]
AT_ONCE = {"name": "first", "monitor": "alpha0", "stopping_threshold": 10.0}  # alpha0 <= 10: the first checkpoint after the baseline


def _config(tmp, alerts, on_alert=None, name="c.json"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump({"alerts": alerts, **({"on_alert": on_alert} if on_alert else {})}, f)
    return path


def _stage(tmp, steps=800, every=100):
    """A real training job's checkpoints, written to a staging directory (no daemon)."""
    stage = os.path.join(tmp, "stage")
    subprocess.run([sys.executable, TRAIN, stage, "--steps", str(steps), "--save-every", str(every)], check=True,
                   stdout=subprocess.DEVNULL)
    return stage


def _feed(d, stage, run_dir, steps):
    """Renames staged checkpoints into the run one at a time, each analysed before the next:
    the order a live job gives, whatever the speed of this build."""
    os.makedirs(run_dir, exist_ok=True)
    run = os.path.relpath(run_dir, d.root)
    for step in steps:
        os.rename(os.path.join(stage, f"checkpoint-{step}"), os.path.join(run_dir, f"checkpoint-{step}"))
        wait_for(lambda: step in [r["step"] for r in history(d, run)[0]], what=f"result of step {step}")


def _plateau_oracle(values, min_delta, patience):
    """Lightning's EarlyStopping (mode max), re-armed by an improvement: firing indices.
    values[0] is the baseline's E (0 by definition): the reference, never a best value."""
    fired, best, wait, armed = [], None, 0, True
    for i, v in enumerate(values):
        if i == 0:
            continue
        if best is None or v - best > min_delta:
            best, wait, armed = v, 0, True
        else:
            wait += 1
            if wait >= patience and armed:
                fired.append(i)
                armed = False
    return fired


def _alert_rows(d, rule=None):
    with d.db() as db:
        q = "SELECT rule, step, json, delivered FROM alerts" + (" WHERE rule = ?" if rule else "") + " ORDER BY seq"
        return db.execute(q, (rule,) if rule else ()).fetchall()


def test_rule_fires_once_with_row_pub_stop_file_and_backtest_agrees(tmp):
    stage = _stage(tmp)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--config", _config(tmp, [PLATEAU, *NEVER])).start(quiet="0.2")
    sub = d.subscribe(b"alert/")
    time.sleep(0.3)
    _feed(d, stage, os.path.join(root, "mlp"), range(0, 801, 100))
    results = history(d, "mlp")[0]
    e = [r["emergence"] for r in results]
    want = _plateau_oracle(e, PLATEAU["min_delta"], PLATEAU["patience"])
    assert len(want) == 1, e  # this job's E plateaus once: a test that can fail either way
    want_step = results[want[0]]["step"]
    rows = _alert_rows(d)
    assert [(r[0], r[1]) for r in rows] == [("plateau", want_step)], rows  # once, right checkpoint, NEVER silent
    msgs = collect(sub, lambda g: len(g) >= 1, timeout=10)
    assert len(msgs) == 1 and msgs[0][0] == "alert/mlp/", msgs
    alert = msgs[0][1]
    for key in ("seq", "kind", "run", "rule", "monitor", "value", "step", "reason", "ts"):
        assert key in alert, key
    assert alert["kind"] == "alert" and alert["rule"] == "plateau" and alert["step"] == want_step
    assert alert["value"] == e[want[0]] and "not improved by more than 0.01 for 2 checkpoints" in alert["reason"]
    assert alert["path"] == results[want[0]]["path"] and alert["run_dir"] == os.path.join(root, "mlp")
    assert json.loads(rows[0][2]) == alert
    with open(os.path.join(root, "mlp", ".emerge", "STOP")) as f:
        assert json.load(f) == alert  # the same JSON, written whole
    assert [n for n in os.listdir(os.path.join(root, "mlp", ".emerge")) if n.startswith("STOP.tmp")] == []
    assert f"alert {alert['seq']}: run mlp rule plateau step {want_step}" in d.read_log()
    wait_for(lambda: _alert_rows(d)[0][3] == 1, what="delivered")
    # backtest replays the stored history with the same rule: it agrees with the live rule
    code, out, _ = emergectl("backtest", "mlp", "--rule", json.dumps(PLATEAU), "--json", "--api", d.api)
    assert code == 0 and [f["step"] for f in json.loads(out)["fires"]] == [want_step], out
    for rule in NEVER:
        out = emergectl("backtest", "mlp", "--rule", json.dumps(rule), "--db", root, check=0)[1]
        assert "would not fire" in out, out
    table = emergectl("alerts", "mlp", "--api", d.api, check=0)[1]
    assert "plateau" in table and str(want_step) in table
    svg = os.path.join(tmp, "plot.svg")
    emergectl("plot", "mlp", "--svg", svg, "--api", d.api, check=0)
    import xml.etree.ElementTree as ET
    marks = [g for g in ET.parse(svg).iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "alert"]
    assert len(marks) == 1 and marks[0].find("{http://www.w3.org/2000/svg}text").text == "plateau"
    assert marks[0].find("{http://www.w3.org/2000/svg}title").text.startswith(f"step {want_step}: emergence has")
    assert emergectl("alerts", "clear", "mlp", "--api", d.api, check=0)[1].startswith("removed ")
    assert not os.path.exists(os.path.join(root, "mlp", ".emerge", "STOP"))
    assert d.stop() == 0


def test_a_rule_that_does_not_stop_alerts_without_a_stop_file_and_backtest_shows_its_series(tmp):
    """"stop": false (an onset's default): the alert is recorded, published and run, but
    the job is not asked to stop. backtest prints the raw and the judged (smoothed) series."""
    stage = _stage(tmp, steps=300)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--config", _config(tmp, [{**AT_ONCE, "stop": False}])).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100, 200, 300])
    rows = wait_for(lambda: _alert_rows(d), what="the alert")
    alert = json.loads(rows[0][2])
    assert alert["stop"] is False and alert["step"] == 100
    wait_for(lambda: _alert_rows(d)[0][3] == 1, what="delivered")
    assert not os.path.exists(os.path.join(root, "mlp", ".emerge", "STOP"))
    smooth = {"name": "s", "monitor": "emergence", "patience": 2, "smoothing": 0.5}
    doc = json.loads(emergectl("backtest", "mlp", "--rule", json.dumps(smooth), "--json", "--api", d.api, check=0)[1])
    series = doc["series"]
    raw = [p["value"] for p in series]
    assert [p["step"] for p in series] == [0, 100, 200, 300] and series[0]["judged"] is None  # the baseline
    m = n = 0.0  # TensorBoard's debiased EMA, computed here
    for p, v in zip(series[1:], raw[1:]):
        m, n = 0.5 * m + 0.5 * v, 0.5 * n + 0.5
        assert close(p["judged"], m / n), (p, m / n)
    text = emergectl("backtest", "mlp", "--rule", json.dumps(smooth), "--api", d.api, check=0)[1]
    assert "JUDGED" in text and "smoothed" in text, text
    assert d.stop() == 0


def _mlp_tensors(rng, nan_in_bias=False):
    t = {}
    for i, (a, b) in enumerate([(64, 128), (128, 128), (128, 10)]):
        t[f"layers.{i}.weight"] = rng.normal(0, 0.1, (b, a)).astype(np.float32)
        t[f"layers.{i}.bias"] = np.zeros(b, np.float32)
    if nan_in_bias:
        t["layers.1.bias"][7] = np.nan  # no sampled neuron's weights: the analysis never reads it
    return t


def test_nan_outside_sampled_neurons_raises_check_finite(tmp):
    rng = np.random.default_rng(1)
    clean, broken = _mlp_tensors(rng), _mlp_tensors(rng, nan_in_bias=True)
    outcome = {}
    for name, rules in (("plain", [PLATEAU]), ("finite", [{"name": "finite", "check_finite": True}])):
        root = os.path.join(tmp, name)
        hf_checkpoint(os.path.join(root, "mlp"), 0, clean)
        hf_checkpoint(os.path.join(root, "mlp"), 100, broken)
        d = Daemon(tmp, root, "--config", _config(tmp, rules, name=f"{name}.json"), name=name).start(quiet="0.2")
        wait_for(lambda: len(history(d, "mlp")[0]) + len(history(d, "mlp")[1]) == 2
                 and not any(c["state"] == "queued" for c in history(d, "mlp")[1]), what="both checkpoints")
        outcome[name] = (history(d, "mlp"), _alert_rows(d))
        assert d.stop() == 0
    (results, others), rows = outcome["plain"]
    assert [r["step"] for r in results] == [0, 100] and rows == []  # only values the analysis reads are checked
    (results, others), rows = outcome["finite"]
    assert [r["step"] for r in results] == [0]
    assert [(c["step"], c["state"]) for c in others] == [(100, "nonfinite")]
    assert "'layers.1.bias'" in others[0]["error"] and "element 7" in others[0]["error"]
    assert len(rows) == 1 and rows[0][0] == "finite" and rows[0][1] == 100
    alert = json.loads(rows[0][2])
    assert alert["condition"] == "check_finite" and alert["value"] is None and "layers.1.bias" in alert["reason"]
    assert os.path.exists(os.path.join(tmp, "finite", "mlp", ".emerge", "STOP"))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie has ended
        return f.read().split(")")[-1].split()[0] != "Z"


def test_kill_9_and_restart_repeats_no_row_and_redoes_deliveries(tmp):
    stage = _stage(tmp, steps=200)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    runs, marker = os.path.join(tmp, "hook-runs"), os.path.join(tmp, "hook-marker")
    hook = f'echo $$ >> {runs}; [ -e {marker} ] || {{ touch {marker}; exec sleep 60; }}'
    cfg = _config(tmp, [AT_ONCE], {"exec": ["/bin/sh", "-c", hook], "exec_timeout": 120})
    d = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100])  # the baseline is not judged; 100 fires
    wait_for(lambda: os.path.exists(runs), what="the command started")
    stop_file = os.path.join(root, "mlp", ".emerge", "STOP")
    assert os.path.exists(stop_file) and [r[3] for r in _alert_rows(d)] == [0]  # committed, not yet delivered
    d.stop(signal.SIGKILL)
    first = int(open(runs).read().split()[0])
    os.kill(first, signal.SIGKILL)  # the command outlived the daemon it belongs to
    os.remove(stop_file)
    d2 = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")
    wait_for(lambda: os.path.exists(stop_file), what="stop file written again")
    wait_for(lambda: len(open(runs).read().split()) == 2, what="command run again")
    wait_for(lambda: [r[3] for r in _alert_rows(d2)] == [1], what="delivered after the redo")
    _feed(d2, stage, os.path.join(root, "mlp"), [200])
    time.sleep(0.5)
    assert len(_alert_rows(d2)) == 1  # no repeated row: once per run, across the crash
    assert d2.stop() == 0
    d3 = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")  # a clean restart redoes nothing
    time.sleep(1.0)
    assert len(open(runs).read().split()) == 2 and len(_alert_rows(d3)) == 1
    assert d3.stop() == 0


def test_exec_gets_the_alert_and_is_killed_at_its_timeout(tmp):
    stage = _stage(tmp, steps=100)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    env_out, pids = os.path.join(tmp, "env.txt"), os.path.join(tmp, "pids")
    hook = f"env > {env_out}; sleep 100 & echo $$ $! > {pids}; wait"
    cfg = _config(tmp, [AT_ONCE], {"stop_file": False, "exec": ["/bin/sh", "-c", hook], "exec_timeout": 1})
    d = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100])
    wait_for(lambda: os.path.exists(pids) and open(pids).read().endswith("\n"), what="the command running")
    t0 = time.time()
    assert d.request({"cmd": "status"}, timeout=1.0)["ok"]  # the loop never waits for the command
    assert time.time() - t0 < 1.0
    wait_for(lambda: "command killed after its 1 s timeout" in d.read_log(), timeout=15, what="timeout kill")
    shell, child = map(int, open(pids).read().split())
    wait_for(lambda: not _pid_alive(shell) and not _pid_alive(child), timeout=5, what="its process group gone")
    env = dict(line.split("=", 1) for line in open(env_out).read().splitlines() if line.startswith("EMERGE_"))
    alert = json.loads(_alert_rows(d)[0][2])
    assert env["EMERGE_RUN"] == "mlp" and env["EMERGE_RULE"] == "first" and env["EMERGE_STEP"] == "100"
    # cJSON prints 15 digits when they compare equal within its epsilon: not always the exact double
    assert abs(float(env["EMERGE_VALUE"]) - alert["value"]) <= 1e-14 * abs(alert["value"]), (env, alert)
    assert env["EMERGE_REASON"] == alert["reason"], (env, alert)
    assert env["EMERGE_CONDITION"] == "stopping_threshold" and int(env["EMERGE_SEQ"]) == alert["seq"]
    assert not os.path.exists(os.path.join(root, "mlp", ".emerge", "STOP"))  # stop_file: false
    wait_for(lambda: [r[3] for r in _alert_rows(d)] == [1], what="delivered")
    assert d.stop() == 0


def test_step_less_names_publish_null_steps_in_arrival_order(tmp):
    """Checkpoints whose names carry no step (best.safetensors, ...) and no trainer_state:
    every object the daemon publishes says "step": null and gives the arrival order as
    "arrival" (PROTOCOL.md "Steps"): results, the baseline reference, alerts, the stop
    file, the command's environment, history's other checkpoints; runs has no last_step;
    the tables show #N."""
    stage = _stage(tmp, steps=100)
    root = os.path.join(tmp, "root")
    run = os.path.join(root, "job")
    os.makedirs(run)
    env_out = os.path.join(tmp, "env.txt")
    cfg = _config(tmp, [AT_ONCE], {"exec": ["/bin/sh", "-c", f"env > {env_out}"]})
    d = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")
    sub = d.subscribe(b"")
    time.sleep(0.3)
    for i, (step, name) in enumerate(((0, "first"), (100, "best"))):
        os.rename(os.path.join(stage, f"checkpoint-{step}", "model.safetensors"),
                  os.path.join(run, f"{name}.safetensors"))
        wait_for(lambda: len(history(d, "job")[0]) == i + 1, what=f"result of {name}")
    with open(os.path.join(run, "broken.safetensors"), "wb") as f:
        f.write(b"\x08" + b"\0" * 7 + b"{}")  # a header that ends before its tensors: failed
    wait_for(lambda: history(d, "job")[1], what="the broken checkpoint recorded")
    results, others = history(d, "job")
    assert [(r["step"], r["arrival"]) for r in results] == [(None, 0), (None, 1)], results
    assert results[1]["baseline_step"] is None and results[1]["baseline_arrival"] == 0, results[1]
    assert "baseline_arrival" not in results[0] or results[0]["baseline_arrival"] == 0, results[0]
    assert [(c["step"], c["arrival"], c["state"]) for c in others] == [(None, 2, "failed")], others
    wait_for(lambda: _alert_rows(d), what="the alert")
    alert = json.loads(_alert_rows(d)[0][2])
    assert alert["step"] is None and alert["arrival"] == 1 and alert["path"].endswith("best.safetensors"), alert
    stop = json.load(open(os.path.join(run, ".emerge", "STOP")))
    assert stop["step"] is None and stop["arrival"] == 1, stop
    wait_for(lambda: os.path.exists(env_out) and "EMERGE_ARRIVAL" in open(env_out).read(), what="the command")
    env = dict(line.split("=", 1) for line in open(env_out).read().splitlines() if line.startswith("EMERGE_"))
    assert env["EMERGE_STEP"] == "" and env["EMERGE_ARRIVAL"] == "1", env
    published = []
    while sub.poll(100):
        topic, payload = sub.recv_multipart()
        if topic.startswith((b"result/", b"alert/")):
            published.append(json.loads(payload))
    assert published and all(p["step"] is None and "arrival" in p for p in published), published
    runs = d.request({"cmd": "runs"})["runs"]
    assert runs[0]["last_step"] is None, runs
    out = emergectl("history", "job", "--api", d.api, check=0)[1]
    assert "\n        #0 " in out and "\n        #1 " in out and "#2    failed" in out, out
    assert "#1" in emergectl("alerts", "job", "--api", d.api, check=0)[1]
    rows = [line.split(",") for line in emergectl("export", "job", "--csv", "--api", d.api, check=0)[1].splitlines()]
    col = rows[0].index("arrival")
    assert [(r[0], r[col], r[col + 1]) for r in rows[1:]] == [("", "0", "0"), ("", "1", "0")], rows
    assert "checkpoint #1 (arrival order)" in d.read_log()
    assert d.stop() == 0


def test_training_job_stops_itself_when_its_stop_file_appears(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--config", _config(tmp, [AT_ONCE])).start(quiet="0.2")
    out = os.path.join(root, "mlp")
    job = subprocess.run([sys.executable, TRAIN, out, "--steps", "100000", "--save-every", "100", "--sleep", "0.2",
                          "--stop-on-alert"], capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    stopped = [line for line in job.stdout.splitlines() if line.startswith("train: stopped by emerge at step")]
    assert stopped, job.stdout[-2000:]
    step = int(stopped[0].split()[-1])
    assert 0 < step < 100000 and "rule first" in job.stderr
    assert sorted(os.listdir(os.path.join(out, ".emerge"))) == [f"STOP.handled-{step}", "results.jsonl"]  # goes on
    assert d.stop() == 0


def test_python_core_follows_pub_alerts(tmp):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from emerge import EmergeStop
    stage = _stage(tmp, steps=100)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--config", _config(tmp, [AT_ONCE], {"stop_file": False})).start(quiet="0.2")
    stop = EmergeStop(os.path.join(root, "mlp"), pub=d.pub, run="mlp")
    time.sleep(0.3)
    assert stop.check() is None
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100])
    alert = wait_for(stop.check, what="the alert over PUB")
    assert alert["rule"] == "first" and alert["run"] == "mlp"
    assert stop.should_stop(0, log=None) and stop.check() is None  # acknowledged
    stop.close()
    assert d.stop() == 0


def test_bad_rules_are_named_at_start_and_reload_and_new_rules_judge_later_results(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    emerged = os.path.join(ROOT, os.environ.get("EMERGED", "bin/emerged"))
    bad = [([{"name": "p", "monitor": "emergence", "patiense": 3}], None, "alerts[0] 'p': unknown key 'patiense'"),
           ([{"name": "t", "monitor": "emergence", "stopping_threshold": 0.1, "divergence_threshold": 0.2}], None,
            "alerts[0] 't': key 'divergence_threshold'"),
           ([PLATEAU, {"name": "x", "monitor": "width", "patience": "3"}], None, "alerts[1] 'x': key 'patience'"),
           ([PLATEAU], {"exec": "/bin/true"}, "on_alert: key 'exec'"),
           ([PLATEAU], {"exec": ["/bin/true"], "timeout": 3}, "on_alert: unknown key 'timeout'")]
    for alerts, on_alert, want in bad:
        p = subprocess.run([emerged, "--watch", root, "--config", _config(tmp, alerts, on_alert), "--api",
                            f"ipc://{tmp}/x-api"], capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and want in p.stderr and "c.json" in p.stderr, (want, p.stderr)
    stage = _stage(tmp, steps=200)
    cfg = _config(tmp, NEVER)
    d = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0])
    _config(tmp, [{"name": "first", "monitor": "alpha0", "stoping_threshold": 10.0}])
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "alerts[0] 'first': unknown key 'stoping_threshold'; keeping the running configuration"
             in d.read_log(), what="rejected reload")
    _config(tmp, [*NEVER, AT_ONCE])
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: alerts: 3 rules" in d.read_log(), what="reload")
    _feed(d, stage, os.path.join(root, "mlp"), [100])
    wait_for(lambda: len(_alert_rows(d)) == 1, what="the new rule firing")
    assert _alert_rows(d)[0][:2] == ("first", 100)  # not step 0, analysed before the rule existed
    assert d.stop() == 0


def test_commands_run_at_most_four_at_once_and_none_is_lost(tmp):
    root = os.path.join(tmp, "root")
    rng = np.random.default_rng(2)
    for i in range(7):  # a sweep: seven runs whose first checkpoint after the baseline each fires the rule
        hf_checkpoint(os.path.join(root, f"sweep/lr{i}"), 0, _mlp_tensors(rng))
        hf_checkpoint(os.path.join(root, f"sweep/lr{i}"), 100, _mlp_tensors(rng))
    spans = os.path.join(tmp, "spans")
    hook = f'echo "$EMERGE_RUN $(date +%s.%N)" >> {spans}.start; sleep 0.5; echo "$(date +%s.%N)" >> {spans}.end'
    cfg = _config(tmp, [AT_ONCE], {"stop_file": False, "exec": ["/bin/sh", "-c", hook]})
    d = Daemon(tmp, root, "--config", cfg).start(quiet="0.2")
    wait_for(lambda: os.path.exists(spans + ".end") and len(open(spans + ".end").read().split()) == 7,
             timeout=60, what="seven commands")
    starts = sorted(float(line.split()[1]) for line in open(spans + ".start").read().splitlines())
    ends = sorted(float(t) for t in open(spans + ".end").read().split())
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends], key=lambda e: (e[0], e[1]))
    running, most = 0, 0
    for _, delta in events:
        running += delta
        most = max(most, running)
    assert most <= 4, most
    runs = sorted(line.split()[0] for line in open(spans + ".start").read().splitlines())
    assert runs == [f"sweep/lr{i}" for i in range(7)]  # each alert's command, once
    wait_for(lambda: [r[3] for r in _alert_rows(d)] == [1] * 7, what="all delivered")
    assert d.stop() == 0


def test_alerts_and_backtest_usage_errors(tmp):
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.2")
    hf_checkpoint(os.path.join(root, "mlp"), 0, _mlp_tensors(np.random.default_rng(3)))
    wait_for(lambda: history(d, "mlp")[0], what="a result")
    api = ("--api", d.api)
    for args, code, want in ((["backtest", "mlp"], 2, "--rule JSON is required"),
                             (["backtest", "mlp", "--rule", "{"], 2, "not valid JSON"),
                             (["backtest", "mlp", "--rule", '{"name":"p"}'], 2, "'p': nothing to judge"),
                             (["backtest", "--rule", json.dumps(PLATEAU)], 2, "which run?"),
                             (["backtest", "mpl", "--rule", json.dumps(PLATEAU)], 1, "did you mean: mlp"),
                             (["alerts", "clear"], 2, "which run?"),
                             (["alerts", "clear", "mpl"], 1, "did you mean: mlp"),
                             (["alerts", "mpl"], 1, "unknown run 'mpl'")):
        got, out, err = emergectl(*args, *api)
        assert got == code and want in err, (args, got, err)
    assert emergectl("alerts", *api, check=0)[1] == "no alerts\n"
    assert json.loads(emergectl("alerts", "mlp", "--json", *api, check=0)[1]) == {"alerts": []}
    assert emergectl("backtest", "--help")[0] == 0 and emergectl("alerts", "--help")[0] == 0
    assert d.stop() == 0


V1_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value);
CREATE TABLE runs(id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, dir TEXT NOT NULL,
  next_arrival INTEGER NOT NULL DEFAULT 0);
CREATE TABLE checkpoints(id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id),
  path TEXT NOT NULL, step INTEGER NOT NULL, version TEXT NOT NULL, state TEXT NOT NULL, error TEXT,
  updated REAL NOT NULL, UNIQUE(run_id, path));
CREATE TABLE results(id INTEGER PRIMARY KEY, checkpoint_id INTEGER NOT NULL
  REFERENCES checkpoints(id), version TEXT NOT NULL, seq INTEGER UNIQUE NOT NULL, alpha0 REAL NOT NULL,
  width REAL NOT NULL, emergence REAL, json TEXT NOT NULL, ts REAL NOT NULL, UNIQUE(checkpoint_id, version));
CREATE TABLE alerts(id INTEGER PRIMARY KEY, seq INTEGER UNIQUE NOT NULL, run_id INTEGER NOT NULL,
  rule TEXT NOT NULL, step INTEGER, json TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX results_seq ON results(seq);
INSERT INTO meta(key, value) VALUES('last_seq', 1), ('schema_version', 1);
PRAGMA user_version=1;
"""


def test_version_1_database_is_migrated(tmp):
    """A database written before alerts existed (schema 1, as the previous emerged left it)
    gains the alert columns and rules table; its rows stay, and are not delivered again."""
    import sqlite3
    root = os.path.join(tmp, "root")
    old_dir = os.path.join(root, "old")
    os.makedirs(os.path.join(root, ".emerge"))
    os.makedirs(old_dir)
    db = sqlite3.connect(os.path.join(root, ".emerge", "emerge.db"))
    db.executescript(V1_SCHEMA)
    old = {"seq": 1, "kind": "alert", "run": "old", "rule": "legacy", "step": 5, "reason": "v1", "run_dir": old_dir}
    db.execute("INSERT INTO runs(id, name, dir) VALUES(1, 'old', ?)", (old_dir,))
    db.execute("INSERT INTO alerts(seq, run_id, rule, step, json, ts) VALUES(1, 1, 'legacy', 5, ?, 0)",
               (json.dumps(old),))
    db.commit()
    db.close()
    stage = _stage(tmp, steps=100)
    d = Daemon(tmp, root, "--config", _config(tmp, [AT_ONCE])).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100])
    wait_for(lambda: len(_alert_rows(d)) == 2, what="the new alert")
    with d.db() as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 6  # through every migration
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == 6
        assert c.execute("SELECT name FROM rules").fetchall() == [("first",)]
    rows = _alert_rows(d)
    assert rows[0][:2] == ("legacy", 5) and rows[0][3] == 1 and json.loads(rows[1][2])["seq"] == 4  # after the results (2, 3): seq goes on
    assert not os.path.exists(os.path.join(old_dir, ".emerge"))  # the old alert was not delivered again
    out = emergectl("alerts", "--api", d.api, check=0)[1]
    assert "legacy" in out and "first" in out
    assert d.stop() == 0


V2_MIGRATION = """
ALTER TABLE alerts ADD COLUMN condition TEXT;
ALTER TABLE alerts ADD COLUMN delivered INTEGER NOT NULL DEFAULT 0;
CREATE INDEX alerts_rule ON alerts(run_id, rule, condition);
CREATE TABLE rules(name TEXT PRIMARY KEY, spec TEXT NOT NULL, since_seq INTEGER NOT NULL,
  keep INTEGER NOT NULL DEFAULT 1);
UPDATE meta SET value = 2 WHERE key = 'schema_version';
PRAGMA user_version=2;
"""


def test_version_2_database_gains_uncertainty_columns(tmp):
    """A database of an earlier emerged (schema 2) gains emergence_se and mode: its old
    results keep their rows, get their mode from their params and an unknown (NULL) SE;
    new results carry both. (Schema 4's `named`: its old checkpoint keeps the step it was
    published with.)"""
    import sqlite3
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, ".emerge"))
    stage = _stage(tmp, steps=100)
    old = analyze_json(os.path.join(stage, "checkpoint-0"))[0]
    old.pop("emergence_se"), old.pop("mode")  # what schema 2 stored
    db = sqlite3.connect(os.path.join(root, ".emerge", "emerge.db"))
    db.executescript(V1_SCHEMA + V2_MIGRATION)
    db.execute("INSERT INTO runs(id, name, dir) VALUES(1, 'old', ?)", (os.path.join(root, "old"),))
    db.execute("INSERT INTO checkpoints VALUES(1, 1, ?, 0, 'v', 'done', NULL, 0)", (os.path.join(root, "old", "c0"),))
    db.execute("INSERT INTO results(checkpoint_id, version, seq, alpha0, width, emergence, json, ts) "
               "VALUES(1, 'v', 1, ?, ?, 0, ?, 0)", (old["alpha0"], old["width"], json.dumps({**old, "seq": 1})))
    db.commit()
    db.close()
    d = Daemon(tmp, root).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100])
    with d.db() as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 6
        assert c.execute("SELECT step, named FROM checkpoints WHERE id = 1").fetchone() == (0, 1)
        rows = c.execute("SELECT seq, mode, emergence_se FROM results ORDER BY seq").fetchall()
    assert rows[0] == (1, "sampled", None), rows
    assert [r[1] for r in rows[1:]] == ["sampled", "sampled"] and rows[1][2] == 0 and rows[2][2] > 0, rows
    assert d.stop() == 0


V3_V5_MIGRATIONS = """
ALTER TABLE results ADD COLUMN emergence_se REAL;
ALTER TABLE results ADD COLUMN mode TEXT;
ALTER TABLE checkpoints ADD COLUMN named INTEGER NOT NULL DEFAULT 1;
ALTER TABLE checkpoints ADD COLUMN seq INTEGER;
ALTER TABLE checkpoints ADD COLUMN event TEXT;
CREATE INDEX checkpoints_seq ON checkpoints(seq);
UPDATE meta SET value = 5 WHERE key = 'schema_version';
PRAGMA user_version=5;
"""


def test_version_5_database_gains_judged_columns_and_rule_state(tmp):
    """A database of the previous emerged (schema 5) gains what incremental judging reads:
    the SEs as columns, filled from each stored result (so a replay reads an index, not the
    rows), the step-order and judged indexes, and rule_state; its rows stay as they were.
    An index dropped by hand is made again at the next start (the judge names one)."""
    import sqlite3
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, ".emerge"))
    stage = _stage(tmp, steps=200)
    old = analyze_json(os.path.join(stage, "checkpoint-0"))[0]
    db = sqlite3.connect(os.path.join(root, ".emerge", "emerge.db"))
    db.executescript(V1_SCHEMA + V2_MIGRATION + V3_V5_MIGRATIONS)
    db.execute("INSERT INTO runs(id, name, dir) VALUES(1, 'old', ?)", (os.path.join(root, "old"),))
    db.execute("INSERT INTO checkpoints(id, run_id, path, step, version, state, updated) VALUES(1, 1, ?, 0, 'v', "
               "'done', 0)", (os.path.join(root, "old", "c0"),))
    db.execute("INSERT INTO results(checkpoint_id, version, seq, alpha0, width, emergence, json, ts, emergence_se, "
               "mode) VALUES(1, 'v', 1, ?, ?, 0, ?, 0, 0, 'sampled')",
               (old["alpha0"], old["width"], json.dumps({**old, "seq": 1})))
    db.commit()
    db.close()
    d = Daemon(tmp, root, "--config", _config(tmp, [AT_ONCE])).start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [0, 100])
    wait_for(lambda: len(_alert_rows(d)) == 1, what="the alert")
    with d.db() as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 6
        se = c.execute("SELECT alpha0_se, width_se FROM results WHERE seq = 1").fetchone()
        assert se == (old["alpha0_se"], old["width_se"]) and se[0] > 0, se  # filled from the stored json
        names = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
        assert {"checkpoints_step", "results_judged", "rule_state", "alerts_recorded"} <= names, names
        assert "alerts_rule" not in names  # alerts_recorded serves what it did
        assert c.execute("SELECT rule FROM rule_state WHERE run_id = 2").fetchall() == [("first",)]
        assert c.execute("SELECT COUNT(*) FROM rule_state WHERE run_id = 1").fetchone()[0] == 0
    assert _alert_rows(d)[0][:2] == ("first", 100)
    assert d.stop() == 0
    with sqlite3.connect(os.path.join(root, ".emerge", "emerge.db")) as db:
        db.execute("DROP INDEX results_judged")
    d = Daemon(tmp, root, "--config", _config(tmp, [AT_ONCE]), name="again").start(quiet="0.2")
    _feed(d, stage, os.path.join(root, "mlp"), [200])
    assert re.search(r"run mlp result \d+: 1 rule judged in", d.read_log())  # stored, and judged
    with d.db() as c:
        assert c.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'results_judged'").fetchone()[0] == 1
    assert d.stop() == 0


RESUMED = [PLATEAU, AT_ONCE, {"name": "turn", "monitor": "emergence", "onset": True, "min_rise": 0.001,
                              "patience": 1}]


def _replays(d):
    return d.read_log().count(": replaying ")


def _fires_match_backtest(d):
    for rule in RESUMED:
        out = emergectl("backtest", "mlp", "--rule", json.dumps(rule), "--json", "--api", d.api, check=0)[1]
        want = [(rule["name"], f["step"]) for f in json.loads(out)["fires"]]
        assert [tuple(r[:2]) for r in _alert_rows(d, rule["name"])] == want, (rule, want)


def test_rules_resume_their_kept_state_across_restarts_and_replay_when_it_cannot_serve(tmp):
    """Results in step order are judged from each rule's kept state (rule_state), also after
    a restart: only the baseline replays. A corrupt row is replayed over, with a warning,
    and rewritten. A checkpoint that leaves the run's history (rewritten into one that
    fails) drops the run's states: the next result replays. The alerts are those of the
    full replay (backtest) throughout."""
    import sqlite3
    stage = _stage(tmp)
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    cfg, run_dir = _config(tmp, RESUMED), os.path.join(root, "mlp")
    d = Daemon(tmp, root, "--config", cfg, name="d1").start(quiet="0.2")
    _feed(d, stage, run_dir, range(0, 401, 100))
    assert _replays(d) == 3  # each rule once, over the baseline alone
    _fires_match_backtest(d)
    assert d.stop() == 0
    d = Daemon(tmp, root, "--config", cfg, name="d2").start(quiet="0.2")
    _feed(d, stage, run_dir, [500])
    assert _replays(d) == 0  # resumed after the restart
    _fires_match_backtest(d)
    assert d.stop() == 0
    with sqlite3.connect(os.path.join(root, ".emerge", "emerge.db")) as db:
        db.execute("UPDATE rule_state SET state = substr(state, 1, 40) WHERE rule = 'plateau'")
    d = Daemon(tmp, root, "--config", cfg, name="d3").start(quiet="0.2")
    _feed(d, stage, run_dir, [600])
    assert "run mlp rule plateau: its kept state does not read" in d.read_log()
    assert _replays(d) == 1  # that rule alone
    _fires_match_backtest(d)
    with open(os.path.join(run_dir, "checkpoint-200", "model.safetensors"), "wb") as f:
        f.write(b"not a safetensors file")
    wait_for(lambda: any(c["step"] == 200 for c in history(d, "mlp")[1]), what="step 200 recorded failed")
    with d.db() as c:
        assert c.execute("SELECT COUNT(*) FROM rule_state").fetchone()[0] == 0  # the history changed under them
    _feed(d, stage, run_dir, [700])
    assert _replays(d) == 1 + 3
    _feed(d, stage, run_dir, [800])
    assert _replays(d) == 1 + 3
    with d.db() as c:
        assert c.execute("SELECT COUNT(*) FROM rule_state").fetchone()[0] == 3
    assert d.stop() == 0


def _trained(run_dir):
    """{step: eval_accuracy} of a finished run, from its last trainer_state.json."""
    last = max((n for n in os.listdir(run_dir) if n.startswith("checkpoint-")), key=lambda n: int(n.split("-")[1]))
    with open(os.path.join(run_dir, last, "trainer_state.json")) as f:
        return {e["step"]: e["eval_accuracy"] for e in json.load(f)["log_history"] if "eval_accuracy" in e}


def test_plateau_with_min_delta_se_does_not_fire_while_accuracy_rises(tmp):
    """The demo's run and a plain PyTorch MLP (nn.Sequential, SGD + momentum, real torch),
    in the mode the daemon chooses for them (auto: full): a plateau rule with min_delta_se 2
    (the example config's, and a bare one) never fires at a checkpoint after which eval
    accuracy still rises by more than 0.01."""
    root = os.path.join(tmp, "root")
    demo, plain = os.path.join(root, "demo"), os.path.join(root, "torch")
    subprocess.run([sys.executable, TRAIN, demo, "--steps", "1200", "--save-every", "100", "--lr", "0.08"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, os.path.join(ROOT, "validate", "train_torch_mlp.py"), plain, "--seed", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    d = Daemon(tmp, root, "--mode", "auto").start()
    want = {"demo": 13, "torch": 11}
    wait_for(lambda: all(len(history(d, r)[0]) == n for r, n in want.items()), timeout=60, what="every result")
    with open(os.path.join(ROOT, "systemd", "emerged.json.example")) as f:
        example = next(r for r in json.load(f)["alerts"] if r["name"] == "plateau")
    assert example.get("min_delta_se") == 2, example
    bare = {"name": "p", "monitor": "emergence", "min_delta_se": 2, "patience": 3}
    for run, run_dir in (("demo", demo), ("torch", plain)):
        assert {r["mode"] for r in history(d, run)[0]} == {"full"}
        acc = _trained(run_dir)
        for rule in (example, bare):
            out = emergectl("backtest", run, "--rule", json.dumps(rule), "--json", "--api", d.api)[1]
            for fire in json.loads(out)["fires"]:
                s = fire["step"]
                later = max((a for t, a in acc.items() if t > s), default=acc[s])
                assert later <= acc[s] + 0.01, (run, rule["name"], s, acc[s], later)
    assert d.stop() == 0
