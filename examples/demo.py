"""make demo: the first thing to run. Starts emerged on a fresh directory, starts a small
real training job that saves a checkpoint every few seconds, and follows it with
`emergectl watch`: E appears live next to the job's accuracy. Ends by itself in about
a minute and a half with a plot, and says where everything is.

    /usr/bin/python3 examples/demo.py [OUT_DIR]     (default: ./demo-output)"""
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
    log = open(os.path.join(out, "emerged.log"), "w")
    say(f"starting emerged on {runs} (log: {out}/emerged.log)")
    daemon = subprocess.Popen([EMERGED, "--watch", runs, "--pub", pub, "--api", api, "--quiet", "1"],
                              stdout=log, stderr=log)
    time.sleep(0.5)
    say("starting a training job: a 64-256-256-10 MLP, a checkpoint every 100 steps (Hugging Face layout)")
    job = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), os.path.join(runs, "mlp"),
                            "--steps", "1200", "--save-every", "100", "--sleep", "3", "--lr", "0.08"],
                           stdout=subprocess.DEVNULL)
    say("emergectl watch mlp: each line is one checkpoint, as the daemon publishes it\n")
    watch = subprocess.Popen([EMERGECTL, "watch", "mlp", "--api", api, "--pub", pub])
    code = job.wait()
    deadline = time.time() + 30
    while time.time() < deadline:  # the last checkpoint's result
        p = subprocess.run([EMERGECTL, "history", "mlp", "--json", "--api", api], capture_output=True, text=True)
        if p.returncode == 0 and p.stdout.count('"kind":"result"') >= 13:
            break
        time.sleep(0.5)
    time.sleep(0.5)
    watch.send_signal(signal.SIGINT)
    watch.wait(timeout=10)
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


if __name__ == "__main__":
    main()
