"""The example training job really learns and writes checkpoints the analysis reads, in
both Hugging Face layouts; make install puts a working emergectl where it says."""
import json
import os
import subprocess
import sys

from helpers import EMERGECTL, ROOT, analyze_json


def _train(out, mode):
    subprocess.run([sys.executable, os.path.join(ROOT, "examples", "train_mlp.py"), out, "--steps", "300",
                    "--save-every", "150", "--mode", mode], check=True, capture_output=True, timeout=300)
    names = sorted(os.listdir(out))
    assert names == ["checkpoint-0", "checkpoint-150", "checkpoint-300"], names   # no tmp-checkpoint left
    return [os.path.join(out, n) for n in names]


def test_training_job_learns_and_is_analysed(tmp):
    for mode in ("rename", "inplace"):
        paths = _train(os.path.join(tmp, mode), mode)
        with open(os.path.join(paths[-1], "trainer_state.json")) as f:
            history = json.load(f)["log_history"]
        assert history[-1]["eval_accuracy"] > history[0]["eval_accuracy"] + 0.3, history
        got = analyze_json(*paths)
        assert [g["step"] for g in got] == [0, 150, 300] and got[0]["emergence"] == 0.0
        assert got[2]["trainer"]["eval_accuracy"] == history[-1]["eval_accuracy"]
        assert all(g["arch"] == "mlp" and g["run"] == mode for g in got)


PROGRAM = r"""
#include <emerge.h>
#include <stdio.h>
int main(int argc, char **argv)
{
  em_params_t p;
  em_params_default(&p);
  p.samples = 2;
  em_err_t err;
  em_ckpt_t *ck = NULL;
  em_result_t r;
  if (argc < 2 || em_ckpt_open(argv[1], &ck, &err) != 0 || em_analyze(ck, &p, &r, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  printf("%.17g %s\n", r.alpha0, EM_VERSION);
  em_result_free(&r);
  em_ckpt_destroy(&ck);
  return 0;
}
"""


def _install(tmp, target):
    env = dict(os.environ)
    args = ["make", "-s", "-C", ROOT, f"DESTDIR={tmp}", "PREFIX=/opt/emerge"]
    if env.get("SANITIZE"):
        args.append(f"SANITIZE={env['SANITIZE']}")
    p = subprocess.run(args + [target], check=True, capture_output=True, text=True, env=env)
    return args, p.stdout


def _tree(tmp):
    return sorted(os.path.relpath(os.path.join(dp, f), tmp) for dp, _, fs in os.walk(tmp) for f in fs)


def test_make_install_puts_down_every_file_it_lists_and_they_work(tmp):
    dest = os.path.join(tmp, "dest")
    _, manifest = _install(dest, "install-manifest")
    _install(dest, "install")
    listed = sorted(line.lstrip("/") for line in manifest.split())
    assert _tree(dest) == listed, set(_tree(dest)) ^ set(listed)
    prefix = os.path.join(dest, "opt/emerge")
    exe = os.path.join(prefix, "bin/emergectl")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    assert out == subprocess.run([EMERGECTL, "--version"], capture_output=True, text=True).stdout
    version = out.split()[1]
    for page in ("man1/emergectl.1", "man8/emerged.8", "man5/emerged.json.5"):  # man renders each
        m = subprocess.run(["man", "-l", os.path.join(prefix, "share/man", page)], capture_output=True, text=True,
                           env={**os.environ, "MANWIDTH": "80", "MAN_KEEP_STDERR": "1"})
        assert m.returncode == 0 and "NAME" in m.stdout and m.stderr == "", (page, m.stderr)
    comp = os.path.join(prefix, "share/bash-completion/completions/emergectl")
    b = subprocess.run(["bash", "-c", f"source {comp} && complete -p emergectl && COMP_WORDS=(emergectl wat) "
                        "COMP_CWORD=1 && _emergectl && echo ${COMPREPLY[@]}"], capture_output=True, text=True)
    assert b.returncode == 0 and b.stderr == "" and b.stdout.split()[-1] == "watch", b.stdout + b.stderr
    # a program built against the installed library with pkg-config, run on a real checkpoint
    src, prog = os.path.join(tmp, "prog.c"), os.path.join(tmp, "prog")
    with open(src, "w") as f:
        f.write(PROGRAM)
    pc_env = {**os.environ, "PKG_CONFIG_PATH": os.path.join(prefix, "lib/pkgconfig")}
    with open(os.path.join(prefix, "lib/pkgconfig/emerge.pc")) as f:
        assert f.readline() == "prefix=/opt/emerge\n"
    flags = subprocess.run(["pkg-config", f"--define-variable=prefix={prefix}", "--cflags", "--libs", "emerge"],
                           capture_output=True, text=True, env=pc_env, check=True).stdout.split()
    assert subprocess.run(["pkg-config", "--modversion", "emerge"], capture_output=True, text=True, env=pc_env,
                          check=True).stdout.strip() == version
    san = [f"-fsanitize={os.environ['SANITIZE']}"] if os.environ.get("SANITIZE") else []
    subprocess.run(["cc", *san, "-o", prog, src, *flags], check=True, capture_output=True)
    ckpt = os.path.join(tmp, "m.safetensors")
    import make_ckpt
    make_ckpt.write(ckpt, make_ckpt.build("neox", 64, 1), "F32")
    ran = subprocess.run([prog, ckpt], capture_output=True, text=True,
                         env={**os.environ, "LD_LIBRARY_PATH": os.path.join(prefix, "lib")})
    assert ran.returncode == 0, ran.stderr
    want = analyze_json("--samples", 2, "--mode", "auto", ckpt)[0]["alpha0"]  # the library's defaults
    assert float(ran.stdout.split()[0]) == want and ran.stdout.split()[1] == version
    args, _ = _install(dest, "uninstall")
    assert _tree(dest) == [], _tree(dest)


def test_every_part_agrees_on_the_version(tmp):
    out = subprocess.run([EMERGECTL, "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    emerged = os.path.join(ROOT, os.environ.get("EMERGED", "bin/emerged"))
    assert subprocess.run([emerged, "--version"], capture_output=True, text=True).stdout.split()[-1] == out
    with open(os.path.join(ROOT, "python", "pyproject.toml")) as f:
        assert f'version = "{out}"' in f.read()
    with open(os.path.join(ROOT, "python", "emerge", "__init__.py")) as f:
        assert f'__version__ = "{out}"' in f.read()
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        assert f"## {out} " in f.read()
    debian = os.path.join(ROOT, "debian", "changelog")
    if os.path.exists(debian):
        with open(debian) as f:
            assert f.readline().startswith(f"emerge ({out})"), "debian/changelog names another version"
