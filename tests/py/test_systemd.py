"""The installed systemd unit: systemd-analyze verify is clean and the hardening keeps
the exposure score at 2.0 or lower (systemd-analyze security --offline)."""
import os
import re
import subprocess

from helpers import ROOT


def test_installed_unit_verifies_and_is_hardened(tmp):
    args = ["make", "-s", "-C", ROOT, f"DESTDIR={tmp}", "PREFIX=/usr"]
    if os.environ.get("SANITIZE"):
        args.append(f"SANITIZE={os.environ['SANITIZE']}")
    subprocess.run(args + ["install"], check=True, capture_output=True)
    units = [os.path.join(dp, f) for dp, _, fs in os.walk(tmp) for f in fs if f == "emerged.service"]
    assert len(units) == 1, units
    with open(units[0]) as f:
        text = f.read()
    assert "ExecStart=/usr/bin/emerged " in text and "@BINDIR@" not in text
    staged = os.path.join(tmp, "emerged.service")  # verify needs the binary where ExecStart says
    with open(staged, "w") as f:
        f.write(text.replace("/usr/bin/emerged", os.path.join(tmp, "usr/bin/emerged")))
    v = subprocess.run(["systemd-analyze", "verify", staged], capture_output=True, text=True)
    assert v.returncode == 0 and v.stderr.strip() == "", v.stderr
    s = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", staged],
                       capture_output=True, text=True)
    score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", s.stdout).group(1))
    assert s.returncode == 0 and score <= 2.0, s.stdout[-400:]


def test_example_config_is_accepted(tmp):
    """The shipped emerged.json.example (rules and on_alert included) loads as it is."""
    from daemon import Daemon
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--config", os.path.join(ROOT, "systemd", "emerged.json.example")).start()
    assert d.request({"cmd": "status"})["ok"] is True
    assert d.stop() == 0
    assert "rule 'plateau' judges results" in d.read_log() and "rule 'finite'" in d.read_log()
