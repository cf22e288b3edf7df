"""emergectl's one grammar, command by command: --help, a bad flag, --flag=value, a global
flag before the command, the EMERGE_* environment, errors as JSON under --json, each
with its exit code and the stream every line goes to (data on stdout, messages on
stderr), against a real daemon."""
import json
import os
import re
import subprocess

import sys

import numpy as np

from daemon import Daemon, wait_for
from helpers import EMERGECTL, ROOT, hf_checkpoint

sys.path.insert(0, os.path.join(ROOT, "python"))

COMMANDS = ["analyze", "runs", "history", "status", "watch", "plot", "export", "alerts", "backtest", "stop",
            "compare"]
RULE = '{"name":"p","monitor":"emergence","patience":2}'


def run(*args, env=None, timeout=30):
    p = subprocess.run([EMERGECTL, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr


def _daemon(tmp):
    root = os.path.join(tmp, "root")
    rng = np.random.default_rng(0)
    for step in (0, 100):
        hf_checkpoint(os.path.join(root, "mlp"), step, {
            "layers.0.weight": rng.standard_normal((48, 24)).astype(np.float32),
            "layers.1.weight": rng.standard_normal((12, 48)).astype(np.float32)})
    d = Daemon(tmp, root).start()
    wait_for(lambda: len(d.request({"cmd": "history", "run": "mlp"}).get("results", [])) == 2, what="2 results")
    return d, root


def test_every_command_has_help_with_examples_and_exit_codes_and_refuses_bad_flags(tmp):
    for cmd in COMMANDS:
        code, out, err = run(cmd, "--help")
        assert code == 0 and err == "", (cmd, code, err)
        assert f"usage: emergectl {cmd}" in out and "examples:" in out and "exit:" in out, (cmd, out)
        code, out, err = run(cmd, "--bogus")
        assert code == 2 and out == "" and "unknown option '--bogus'" in err and err.count("\n") == 1, (cmd, err)
        code, out, err = run(cmd, "--jsn")
        assert code == 2 and "did you mean --json?" in err, (cmd, err)
        code, out, err = run(cmd, "-V")
        assert code == 0 and out.startswith("emergectl ") and err == "", (cmd, out, err)
    code, out, err = run()
    assert code == 2 and out == "" and "usage: emergectl" in err
    code, out, err = run("--help")
    assert code == 0 and out.startswith("emergectl:") and "examples:" in out and "global options" in out
    code, out, err = run("histroy")
    assert code == 2 and "unknown command 'histroy'; did you mean history?" in err and out == ""
    code, out, err = run("--version")
    assert code == 0 and out == run("runs", "--version")[1]
    code, out, err = run("analyze", "--seed")
    assert code == 2 and "--seed needs a value" in err
    code, out, err = run("runs", "--timeout")
    assert code == 2 and "--timeout needs a value" in err


def test_one_grammar_flag_forms_globals_environment_and_json_errors(tmp):
    d, root = _daemon(tmp)
    try:
        api = d.api
        base = run("history", "mlp", "--api", api, "--json")
        assert base[0] == 0 and json.loads(base[1])["run"] == "mlp"
        forms = [("history", "mlp", f"--api={api}", "--json"),          # --flag=value
                 ("history", "--json", "mlp", f"--ap={api}"),           # an abbreviation, options after RUN
                 (f"--api={api}", "--json", "history", "mlp"),          # global options first
                 ("--json", "history", "--api", api, "--", "mlp")]      # -- ends the options
        for args in forms:
            assert run(*args)[:2] == base[:2], args
        assert run("history", "mlp", "--json", env={"EMERGE_API": api})[:2] == base[:2]
        assert run("history", "mlp", "--json", f"--api={api}", env={"EMERGE_API": "ipc:///nowhere"})[:2] == base[:2]
        assert run("history", "mlp", "--json", env={"EMERGE_DB": root, "EMERGE_API": "ipc:///nowhere"})[0] == 0
        code, out, err = run("--json", "history", "nope", f"--api={api}")
        assert code == 1 and out == "", (code, out, err)
        e = json.loads(err)  # one JSON object on stderr
        assert e["command"] == "history" and e["error"].startswith("unknown run 'nope'"), e
        code, out, err = run("--json", "runs", "--api", "ipc:///nowhere", "--timeout", "0.3")
        assert code == 69 and json.loads(err)["error"].startswith("no answer from emerged"), err
        code, out, err = run("--json", "plot", "mlp")
        assert code == 2 and "--svg FILE is required" in json.loads(err)["error"]
        for cmd, extra in (("runs", []), ("status", []), ("alerts", []), ("export", ["mlp", "--csv"]),
                           ("plot", ["mlp", "--svg", "-"]), ("backtest", ["mlp", f"--rule={RULE}"])):
            code, out, err = run("--api", api, cmd, *extra)
            assert code == 0 and out, (cmd, code, err)
    finally:
        d.stop()


def test_watch_asks_the_daemon_for_its_pub_and_names_an_unknown_run(tmp):
    d, root = _daemon(tmp)
    try:
        w = subprocess.Popen([EMERGECTL, "watch", "mlp", "--json", "--api", d.api], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # no --pub: the daemon names its own
        first = w.stdout.readline()
        hf_checkpoint(os.path.join(root, "mlp"), 200, {
            "layers.0.weight": np.ones((48, 24), np.float32), "layers.1.weight": np.ones((12, 48), np.float32)})
        lines = [json.loads(first)] + [json.loads(w.stdout.readline()) for _ in range(2)]
        w.terminate()
        w.wait()
        assert [x["step"] for x in lines] == [0, 100, 200], lines  # the third came live, over the daemon's PUB
        code, out, err = run("watch", "mlq", "--api", d.api, timeout=10)
        assert code == 1 and "no run 'mlq' yet; did you mean: mlp" in err, err
        code, out, err = run("watch", "zzzz", "--api", d.api, timeout=10)
        assert code == 1 and "no run 'zzzz' yet; known: mlp" in err, err
        w = subprocess.Popen([EMERGECTL, "watch", "later", "--json", "--wait", "--api", d.api],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        hf_checkpoint(os.path.join(root, "later"), 0, {
            "layers.0.weight": np.ones((48, 24), np.float32), "layers.1.weight": np.ones((12, 48), np.float32)})
        got = json.loads(w.stdout.readline())
        w.terminate()
        _, err = w.communicate()
        assert got["run"] == "later" and "waiting for it (--wait)" in err
    finally:
        d.stop()


def test_stop_by_hand_is_an_alert_delivered_as_a_rules_is(tmp):
    d, root = _daemon(tmp)
    try:
        sub = d.subscribe(b"alert/mlp/")
        import time
        time.sleep(0.3)
        code, out, err = run("stop", "mlp", "--reason", "E has plateaued; eval loss is flat", "--api", d.api)
        assert code == 0 and out.startswith("stopping mlp at step 100: alert seq 3 (rule manual)"), (out, err)
        stop = os.path.join(root, "mlp", ".emerge", "STOP")
        wait_for(lambda: os.path.exists(stop), what="the stop file")
        with open(stop) as f:
            alert = json.load(f)
        assert alert["rule"] == "manual" and alert["condition"] == "manual" and alert["stop"] is True
        assert alert["reason"] == "E has plateaued; eval loss is flat" and alert["step"] == 100
        topic, payload = sub.recv_multipart()
        assert topic == b"alert/mlp/" and json.loads(payload)["seq"] == alert["seq"]
        listed = json.loads(run("alerts", "mlp", "--json", "--api", d.api)[1])["alerts"]
        assert [a["rule"] for a in listed] == ["manual"]
        code, out, err = run("--json", "stop", "mpl", "--api", d.api)
        assert code == 1 and "unknown run 'mpl'; did you mean: mlp" in json.loads(err)["error"], err
        code, out, err = run("stop", "mlp", "--db", root)  # the database names the running daemon: it is asked
        assert code == 0 and "rule manual" in out, err
        import emerge
        got = emerge.Client(api=d.api).stop("mlp", reason="from a notebook")
        assert got["rule"] == "manual" and got["reason"] == "from a notebook"
        bad = d.request({"cmd": "stop"})
        assert bad["ok"] is False and "stop needs \"run\"" in bad["error"]
        for reason in (7, "x" * 1025, None):
            bad = d.request({"cmd": "stop", "run": "mlp", "reason": reason})
            assert bad["ok"] is False and "\"reason\" must be a string of at most 1024 bytes" in bad["error"], bad
        assert len(json.loads(run("alerts", "mlp", "--json", "--api", d.api)[1])["alerts"]) == 3  # the three stops only
        # a configured rule may not take the name
        cfg = os.path.join(tmp, "c.json")
        with open(cfg, "w") as f:
            json.dump({"alerts": [{"name": "manual", "monitor": "emergence", "patience": 2}]}, f)
        p = subprocess.run([os.path.join(os.path.dirname(EMERGECTL), "emerged"), "--watch", root, "--config", cfg],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and "'manual' is the name of stops asked by hand" in p.stderr, p.stderr
    finally:
        d.stop()


def test_compare_puts_runs_side_by_side_by_step(tmp):
    d, root = _daemon(tmp)
    try:
        rng = np.random.default_rng(5)
        for step in (0, 100, 200):  # a second run with one more checkpoint
            hf_checkpoint(os.path.join(root, "other"), step, {
                "layers.0.weight": rng.standard_normal((48, 24)).astype(np.float32),
                "layers.1.weight": rng.standard_normal((12, 48)).astype(np.float32)})
        wait_for(lambda: len(d.request({"cmd": "history", "run": "other"}).get("results", [])) == 3, what="other")
        code, out, err = run("compare", "mlp", "other", "--api", d.api)
        assert code == 0 and err == "", err
        lines = out.splitlines()
        assert lines[0].split() == ["STEP", "mlp", "other"] and [ln.split()[0] for ln in lines[2:]] == ["0", "100", "200"]
        assert lines[-1].split()[1] == "-"  # mlp has no step 200
        hist = {r["step"]: r for r in d.request({"cmd": "history", "run": "other"})["results"]}
        assert lines[3].split()[4] == f"{hist[100]['emergence']:+.4f}", lines[3]  # STEP, E, ±, SE, E
        doc = json.loads(run("compare", "mlp", "other", "--json", "--api", d.api)[1])
        assert [r["place"] for r in doc["rows"]] == [0, 100, 200] and doc["rows"][2]["runs"]["mlp"] is None
        assert doc["rows"][1]["runs"]["other"]["emergence"] == hist[100]["emergence"]
        code, out, err = run("compare", "mlp", "nope", "--api", d.api)
        assert code == 1 and "unknown run 'nope'" in err
    finally:
        d.stop()


def test_a_long_analysis_says_how_far_it_is(tmp):
    """A progress line on stderr (on a terminal after 2 s; EMERGE_PROGRESS_AFTER sets when,
    one line per update): bytes read of the weight data, never on stdout."""
    import make_ckpt
    path = os.path.join(tmp, "big.safetensors")
    make_ckpt.write(path, make_ckpt.build("neox", 512, 4), "F32")
    code, out, err = run("analyze", "--full", path, env={"EMERGE_PROGRESS_AFTER": "0"})
    assert code == 0 and "read" not in out, out
    lines = [ln for ln in err.splitlines() if "of" in ln and "read" in ln]
    assert lines and lines[0].startswith(f"emergectl: analyze: {path}: ") and " MB read, " in lines[0], err
    code, out, err = run("analyze", "--full", path)  # not a terminal, not asked: quiet
    assert code == 0 and err == "", err


def test_the_table_every_command_each_form(tmp):
    """Every daemon-facing command in each form: --api=value, the global option before the
    command, the environment; data only on stdout, nothing on stderr; and under --json an
    unreachable daemon is a JSON error object on stderr with exit 69."""
    d, root = _daemon(tmp)
    try:
        table = {"runs": [], "history": ["mlp"], "status": [], "alerts": [], "export": ["mlp", "--csv"],
                 "plot": ["mlp", "--svg", "-"], "backtest": ["mlp", f"--rule={RULE}"], "compare": ["mlp", "mlp"],
                 "watch": ["mlp", "--json"]}
        for cmd, extra in table.items():
            forms = {"--api=": [cmd, *extra, f"--api={d.api}"], "global": [f"--api={d.api}", cmd, *extra],
                     "env": [cmd, *extra]}
            outs = {}
            for form, args in forms.items():
                env = {"EMERGE_API": d.api} if form == "env" else {}
                if cmd == "watch":  # it follows until stopped: its first lines are the stored results
                    p = subprocess.Popen([EMERGECTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                         env={**os.environ, **env})
                    first = [p.stdout.readline(), p.stdout.readline()]
                    p.terminate()
                    _, err = p.communicate(timeout=10)
                    code, out = 0, "".join(first)
                else:
                    code, out, err = run(*args, env=env)
                said = err.startswith("emergectl: plot: ") and err.count("\n") == 1  # plot says where it wrote
                assert code == 0 and out and (err == "" or said), (cmd, form, code, err)
                outs[form] = out
            if cmd not in ("status", "watch"):  # status has its uptime
                assert len(set(outs.values())) == 1, (cmd, outs)
            code, out, err = run("--json", cmd, *[x for x in extra if x not in ("--json", "--csv")], "--api", "ipc:///nowhere",
                                 "--timeout", "0.3", timeout=20)
            if cmd == "watch":
                assert code == 69 and out == "" and "error" in json.loads(err.splitlines()[-1]), (cmd, code, err)
                continue
            assert code == 69 and out == "" and json.loads(err)["error"].startswith("no answer from emerged"), (cmd, err)
        code, out, err = run("analyze", "--samples=2", "--mode=sampled", os.path.join(root, "mlp", "checkpoint-0"))
        assert code == 0 and err == "" and out.splitlines()[1].split()[0] == "0"
        code, out, err = run("--json", "analyze", os.path.join(tmp, "nothing"))
        assert code == 1 and out == "" and "nothing" in json.loads(err.splitlines()[0])["error"], err
    finally:
        d.stop()


def test_status_reads_as_people_read(tmp):
    d, root = _daemon(tmp)
    try:
        code, out, err = run("status", "--api", d.api)
        assert code == 0 and err == "", err
        lines = dict(line.split(None, 1) for line in out.splitlines())
        assert re.fullmatch(r"running \(pid \d+\), up \d+ min \d+ s", lines["daemon"]), lines
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", lines["time"]) and "e+" not in out
        assert lines["queue"] == "0 waiting, 0 running, 1 worker" and d.pub in lines["endpoints"]
    finally:
        d.stop()
    code, out, err = run("status", "--db", root)
    assert code == 0 and out.startswith("daemon     not answering"), out


def test_what_a_new_users_walk_through_found_stays_fixed(tmp):
    d, root = _daemon(tmp)
    try:
        rng = np.random.default_rng(9)
        hf_checkpoint(os.path.join(root, "sweep", "lr1"), 0, {
            "layers.0.weight": rng.standard_normal((48, 24)).astype(np.float32),
            "layers.1.weight": rng.standard_normal((12, 48)).astype(np.float32)})
        wait_for(lambda: d.request({"cmd": "history", "run": "sweep/lr1"}).get("results"), what="sweep/lr1")
        w = subprocess.Popen([EMERGECTL, "watch", "sweep", "--json", "--api", d.api], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # a folder of runs, as the help's example
        got = json.loads(w.stdout.readline())
        w.terminate()
        _, err = w.communicate(timeout=10)
        assert got["run"] == "sweep/lr1" and "no run" not in err, err
        code, out, err = run("analyze", "--s", "3", os.path.join(root, "mlp", "checkpoint-0"))
        assert code == 2 and "'--s' is ambiguous: --samples, --seed" in err, err
        code, out, err = run("plot", *[f"r{i}" for i in range(9)], "--svg", "-", "--api", d.api)
        assert code == 2 and "at most 8 runs at once" in err, err
    finally:
        d.stop()
    dbdir = os.path.join(tmp, "dbdir")
    os.makedirs(dbdir)  # --db DIR: a directory for the database
    p = subprocess.Popen([os.path.join(os.path.dirname(EMERGECTL), "emerged"), "--watch", root, "--db", dbdir,
                          "--pub", f"ipc://{tmp}/p2", "--api", f"ipc://{tmp}/a2", "--http", "off"],
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: run("status", "--api", f"ipc://{tmp}/a2", "--timeout", "0.5")[0] == 0, what="the daemon")
        assert os.path.exists(os.path.join(dbdir, "emerge.db"))
        assert run("runs", "--db", dbdir)[0] == 0
    finally:
        p.terminate()
        p.wait(timeout=10)
