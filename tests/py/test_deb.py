"""The Debian packages: dpkg-buildpackage -us -uc -b builds them from a copy of the tree,
they hold exactly what make install puts down (with Debian's paths, compressed docs and
its copyright files), they install with dpkg, both programs, the library and the Python
package work from them without systemctl, and purge leaves nothing. Once, in the plain
build (it installs system-wide)."""
import glob
import os
import re
import shutil
import signal
import subprocess
import time

from helpers import ROOT, plain_build_only

DEB_VARS = ["PREFIX=/usr", "UNITDIR=/lib/systemd/system", "USERUNITDIR=/usr/lib/systemd/user",
            "PYDIR=/usr/lib/python3/dist-packages", "DOCDIR=/usr/share/doc/emerge"]
PACKAGES = ["emerge", "libemerge0", "libemerge-dev", "python3-emerge"]


def _root(cmd):
    """cmd as root: directly, or through sudo without a password; a test that cannot is a failure."""
    if os.geteuid() == 0:
        return cmd
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n", *cmd]
    raise AssertionError("installing the .deb needs root or passwordless sudo")


def _copy_tree(dest):
    files = subprocess.run(["git", "-C", ROOT, "ls-files", "-co", "--exclude-standard"], capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        if f.startswith("tests/web/node_modules/") or not os.path.exists(os.path.join(ROOT, f)):
            continue
        os.makedirs(os.path.dirname(os.path.join(dest, f)) or dest, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, f), os.path.join(dest, f), follow_symlinks=False)


def _normal(path):
    """A path as make install names it: Debian compresses docs and man pages and calls the
    upstream changelog changelog."""
    path = re.sub(r"\.gz$", "", path.lstrip("./").lstrip("/"))
    return re.sub(r"usr/share/doc/emerge/changelog$", "usr/share/doc/emerge/CHANGELOG.md", path)


def _contents(deb):
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    return {_normal(line.split()[5]) for line in out.splitlines() if not line.startswith("d")}


def test_debian_packages_build_install_run_and_purge(tmp):
    plain_build_only("the .deb build and install")
    src = os.path.join(tmp, "emerge")
    _copy_tree(src)
    b = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, capture_output=True, text=True)
    assert b.returncode == 0, b.stdout[-3000:] + b.stderr[-3000:]
    assert "dh_missing: warning" not in b.stdout + b.stderr
    arch = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True, text=True,
                          check=True).stdout.strip()
    manifest = subprocess.run(["make", "-s", "install-manifest", *DEB_VARS, f"LIBDIR=/usr/lib/{arch}"], cwd=src,
                              capture_output=True, text=True, check=True).stdout.split()
    debs = {p: glob.glob(os.path.join(tmp, f"{p}_*.deb"))[0] for p in PACKAGES}
    shipped = set().union(*(_contents(d) for d in debs.values()))
    want = {_normal(p) for p in manifest}
    debian_own = {p for p in shipped - want if re.fullmatch(r"usr/share/doc/[^/]+/(copyright|changelog(\.Debian)?)", p)}
    assert shipped - debian_own == want, (sorted(want - shipped), sorted(shipped - want - debian_own))
    installed = False
    try:
        i = subprocess.run(_root(["dpkg", "-i", *debs.values()]), capture_output=True, text=True)
        assert i.returncode == 0, i.stdout + i.stderr
        installed = True
        listed = set()
        for p in PACKAGES:
            out = subprocess.run(["dpkg", "-L", p], capture_output=True, text=True, check=True).stdout.split()
            listed |= {_normal(x) for x in out if not os.path.isdir(x)}
        assert listed == shipped, sorted(listed ^ shipped)  # dpkg -L is what the install test lists
        _smoke(tmp)
    finally:
        if installed:
            subprocess.run(_root(["dpkg", "--purge", *PACKAGES]), capture_output=True)
    assert not os.path.exists("/usr/bin/emergectl") and not os.path.exists("/usr/lib/python3/dist-packages/emerge")


def _smoke(tmp):
    """Both programs, the library and the Python package, as a user of the packages has them."""
    version = subprocess.run(["/usr/bin/emergectl", "--version"], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    assert subprocess.run(["/usr/bin/emerged", "--version"], capture_output=True, text=True).stdout.split()[-1] == version
    import make_ckpt
    root = os.path.join(tmp, "root")
    os.makedirs(os.path.join(root, "run"))
    make_ckpt.write(os.path.join(root, "run", "model-step0.safetensors"), make_ckpt.build("neox", 64, 1), "F32")
    a = subprocess.run(["/usr/bin/emergectl", "analyze", "--samples", "2",
                        os.path.join(root, "run", "model-step0.safetensors")],
                       capture_output=True, text=True)
    assert a.returncode == 0 and "model-step0" in a.stdout, a.stdout + a.stderr
    d = subprocess.Popen(["/usr/bin/emerged", "--watch", root, "--pub", f"ipc://{tmp}/p", "--api", f"ipc://{tmp}/a",
                          "--http", "off", "--quiet", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            r = subprocess.run(["/usr/bin/emergectl", "runs", "--api", f"ipc://{tmp}/a", "--timeout", "0.5"],
                               capture_output=True, text=True)
            if r.returncode == 0 and "run" in r.stdout and " 1 " in r.stdout:
                break
            time.sleep(0.2)
        assert r.returncode == 0 and r.stdout.split("\n")[1].startswith("run"), r.stdout + r.stderr
    finally:
        d.send_signal(signal.SIGTERM)
        assert d.wait(timeout=10) == 0
    py = subprocess.run(["/usr/bin/python3", "-c", "import emerge; print(emerge.__file__, emerge.__version__)"],
                        capture_output=True, text=True, cwd="/", check=True).stdout
    assert py.startswith("/usr/lib/python3/dist-packages/emerge/") and version in py, py
    assert subprocess.run(["pkg-config", "--modversion", "emerge"], capture_output=True, text=True,
                          check=True).stdout.strip() == version
    prog = os.path.join(tmp, "prog")
    with open(prog + ".c", "w") as f:
        f.write('#include <emerge.h>\n#include <stdio.h>\nint main(void) { puts(EM_VERSION); '
                'return em_mode_name(EM_MODE_FULL) == NULL; }\n')
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "emerge"], capture_output=True, text=True,
                           check=True).stdout.split()
    subprocess.run(["cc", "-o", prog, prog + ".c", *flags], check=True, capture_output=True)
    assert subprocess.run([prog], capture_output=True, text=True, check=True).stdout.strip() == version
