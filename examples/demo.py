"""make demo: the first thing to run. Starts emerged on a fresh directory with two
rules, starts a small real training job that saves a checkpoint every few seconds, and
follows it with `emergectl watch`: E and its standard error appear live next to the
job's accuracy. The model is small, so mode auto measures the full network (no sampling
error). An onset rule reports when E has turned upward beyond its minimum (it does not
stop the job); a plateau rule on smoothed E stops the job only when E has stopped
improving by more than 0.001 for 3 checkpoints, and the job (using the plain-loop helper
of emerge.EmergeStop, python/emerge/stop.py) then stops itself. Ends by itself in about a minute with a
plot, and says where everything is.

    /usr/bin/python3 examples/demo.py [OUT_DIR]     (default: ./demo-output)"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, "bin")
EMERGECTL = os.path.join(ROOT, os.environ.get("EMERGECTL", "bin/emergectl"))
EMERGED = os.path.join(ROOT, os.environ.get("EMERGED", "bin/emerged"))


def say(msg):
    print(f"demo: {msg}", flush=True)


def main():
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "demo-output"))
    shutil.rmtree(out, ignore_errors=True)
    runs = os.path.join(out, "runs")
    os.makedirs(runs)
    pub, api = f"ipc://{out}/pub", f"ipc://{out}/api"
    config = os.path.join(out, "emerged.json")
    rules = [{"name": "onset", "monitor": "emergence", "onset": True, "min_rise": 0.005},
             {"name": "plateau", "monitor": "emergence", "min_delta": 0.001, "min_delta_se": 2, "patience": 3,
              "smoothing": 0.5}]
    with open(config, "w") as f:
        json.dump({"mode": "auto", "alerts": rules}, f)
    log = open(os.path.join(out, "emerged.log"), "w")
    say(f"starting emerged on {runs} with the rules in {config} (log: {out}/emerged.log)")
    say("onset: E has risen 0.005 above its minimum for 2 checkpoints (reported, the job goes on)")
    say("plateau: smoothed E has not improved by more than 0.001 (and 2 SE) for 3 checkpoints (stops the job)")
    daemon = subprocess.Popen([EMERGED, "--watch", runs, "--pub", pub, "--api", api, "--quiet", "1",
                               "--config", config], stdout=log, stderr=log)
    time.sleep(0.5)
    say("dashboard: http://127.0.0.1:5565/ (open it while the job trains; Prometheus: /metrics)")
    say("starting a training job: a 64-256-256-10 MLP, a checkpoint every 100 steps (Hugging Face layout),")
    say("checking for emerged's stop file after each save (--stop-on-alert)")
    run_dir = os.path.join(runs, "mlp")
    job = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), run_dir,
                            "--steps", "1200", "--save-every", "100", "--sleep", "3", "--lr", "0.08",
                            "--stop-on-alert"], stdout=subprocess.PIPE, text=True)
    say("emergectl watch mlp: each line is one checkpoint, as the daemon publishes it\n")
    watch = subprocess.Popen([EMERGECTL, "watch", "mlp", "--wait", "--api", api, "--pub", pub])  # the run appears with its first save
    job_out, _ = job.communicate()
    code = job.returncode
    saved = len([n for n in os.listdir(run_dir) if n.startswith("checkpoint-")])
    deadline = time.time() + 30
    while time.time() < deadline:  # every saved checkpoint's result
        p = subprocess.run([EMERGECTL, "history", "mlp", "--json", "--api", api], capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.count('"kind":"result"') >= saved:
            break
        time.sleep(0.5)
    time.sleep(0.5)
    watch.send_signal(signal.SIGINT)
    watch.wait(timeout=10)
    print()
    stopped = [line for line in job_out.splitlines() if "stopped by emerge" in line]
    if stopped:
        say(f"the training job {stopped[0].split(': ', 1)[1]} of 1200, after this alert:")
    else:
        say("no rule stopped the job this time: it ran all 1200 steps (E kept improving)")
    subprocess.run([EMERGECTL, "alerts", "mlp", "--api", api], check=False)
    svg = os.path.join(out, "emergence.svg")
    print()
    subprocess.run([EMERGECTL, "plot", "mlp", "--svg", svg, "--api", api], check=False)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=10)
    log.close()
    if code != 0 or daemon.returncode != 0:
        sys.exit(f"demo: the training job exited {code}, the daemon {daemon.returncode}")
    say(f"done. Database: {runs}/.emerge/emerge.db   plot: {svg}")
    say(f"try: {os.path.relpath(EMERGECTL)} history mlp --db {os.path.relpath(runs)}")
    say(f"     {os.path.relpath(EMERGECTL)} backtest mlp --db {os.path.relpath(runs)} "
        "--rule '{\"name\":\"p\",\"monitor\":\"emergence\",\"patience\":2}'")


if __name__ == "__main__":
    main()
