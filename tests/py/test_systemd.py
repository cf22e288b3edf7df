"""The installed systemd unit: systemd-analyze verify is clean and the hardening keeps
the exposure score at 2.0 or lower (systemd-analyze security --offline)."""
import os
import re
import subprocess

from helpers import ROOT


def _staged(tmp, unit):
    """The installed unit with ExecStart pointing at the installed binary (verify needs it)."""
    with open(unit) as f:
        text = f.read()
    assert "ExecStart=/usr/bin/emerged " in text and "@BINDIR@" not in text
    staged = os.path.join(tmp, os.path.basename(unit))
    with open(staged, "w") as f:
        f.write(text.replace("/usr/bin/emerged", os.path.join(tmp, "usr/bin/emerged")))
    return staged


def test_installed_units_verify_and_are_hardened(tmp):
    """The system unit, the per-instance template (checked as emerged@test) and the user unit."""
    args = ["make", "-s", "-C", ROOT, f"DESTDIR={tmp}", "PREFIX=/usr"]
    if os.environ.get("SANITIZE"):
        args.append(f"SANITIZE={os.environ['SANITIZE']}")
    subprocess.run(args + ["install"], check=True, capture_output=True)
    found = {os.path.relpath(os.path.join(dp, f), tmp) for dp, _, fs in os.walk(tmp) for f in fs if ".service" in f}
    assert found == {"lib/systemd/system/emerged.service", "lib/systemd/system/emerged@.service",
                     "usr/lib/systemd/user/emerged.service"}, found
    system = _staged(tmp, os.path.join(tmp, "lib/systemd/system/emerged.service"))
    template = _staged(tmp, os.path.join(tmp, "lib/systemd/system/emerged@.service"))
    instance = os.path.join(tmp, "emerged@test.service")
    os.rename(template, instance)
    for unit in (system, instance):
        v = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
        assert v.returncode == 0 and v.stderr.strip() == "", (unit, v.stderr)
        s = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", unit],
                           capture_output=True, text=True)
        score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", s.stdout).group(1))
        assert s.returncode == 0 and score <= 2.0, s.stdout[-400:]
    user = _staged(tmp, os.path.join(tmp, "usr/lib/systemd/user/emerged.service"))
    # --user needs a user session, which a CI box has not: the system manager parses it the same way
    v = subprocess.run(["systemd-analyze", "verify", user], capture_output=True, text=True)
    assert v.returncode == 0 and v.stderr.strip() == "", v.stderr


def test_example_config_is_accepted(tmp):
    """The shipped emerged.json.example (rules and on_alert included) loads as it is."""
    from daemon import Daemon
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root, "--config", os.path.join(ROOT, "systemd", "emerged.json.example")).start()
    assert d.request({"cmd": "status"})["ok"] is True
    assert d.stop() == 0
    assert "rule 'plateau' judges results" in d.read_log() and "rule 'finite'" in d.read_log()
