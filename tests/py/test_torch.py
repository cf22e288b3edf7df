"""Torch checkpoints end to end: the committed fixtures against what today's torch
writes, the same weights as torch zip and as safetensors giving identical results,
hostile archives refused with a reason (never executed), and the daemon watching a real
PyTorch loop that calls torch.save."""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zipfile

import numpy as np

from daemon import Daemon, history, wait_for
from helpers import ROOT, analyze_json, emergectl

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "torch")
MARKER = "/tmp/emerge-pickle-executed"
sys.path.insert(0, FIXTURES)


def _torch():
    import torch  # Debian's python3-torch: `make deps` installs it
    return torch


def _summary(rows):
    return [(r.get("alpha0"), r.get("width"), r.get("emergence"), r.get("emergence_se")) for r in rows]


def test_fixtures_read_as_todays_torch_writes_them(tmp):
    """The generator run again with the torch here: every file it writes reads, and gives
    the results the committed files give."""
    import make_fixtures
    make_fixtures.write_all(tmp)
    for name in ("plain.pt", "half.pt", "bf16.pt", "params.pt", "lightning.ckpt", "deepspeed/global_step100",
                 "megatron/iter_0000100", "hf-sharded"):
        fresh = analyze_json("--mode", "full", os.path.join(tmp, name))
        committed = analyze_json("--mode", "full", os.path.join(FIXTURES, name))
        assert fresh and _summary(fresh) == _summary(committed), (name, _summary(fresh), _summary(committed))
    assert not os.path.exists(MARKER)


def test_torch_zip_and_safetensors_of_the_same_weights_agree(tmp):
    """Two checkpoints of an MLP saved by torch.save and, from the same arrays, as
    safetensors: alpha0, width, E and its SE are identical, sampled and full."""
    torch = _torch()
    import make_fixtures
    pt, st = [], []
    for step, seed in ((0, 1), (100, 2)):
        sd = make_fixtures.mlp_state_dict(seed, width=64)
        pt.append(os.path.join(tmp, f"ckpt_{step}.pt"))
        st.append(os.path.join(tmp, f"ckpt_{step}.safetensors"))
        torch.save(sd, pt[-1])
        make_fixtures.twin(st[-1], sd)
    code, _, err = emergectl("analyze", *pt)
    assert code == 0 and "warning" not in err, err  # a loose file has no trainer_state.json to miss
    for mode in ("sampled", "full"):
        a, b = analyze_json("--mode", mode, *pt), analyze_json("--mode", mode, *st)
        assert len(a) == 2 and _summary(a) == _summary(b), (mode, _summary(a), _summary(b))
        assert a[1]["emergence"] is not None and a[1]["step"] == 100


def _zip(path, entries, method=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", method) as z:
        for name, data in entries.items():
            z.writestr(name, data)


def _patch_central(path, entry, offset, value):
    """Overwrites a 4-byte field of entry's central-directory record."""
    data = bytearray(open(path, "rb").read())
    at = data.index(b"PK\x01\x02")
    while data[at + 46:at + 46 + struct.unpack_from("<H", data, at + 28)[0]] != entry.encode():
        at = data.index(b"PK\x01\x02", at + 4)
    struct.pack_into("<I", data, at + offset, value)
    open(path, "wb").write(bytes(data))


def test_hostile_archives_are_refused_never_executed(tmp):
    """A pickle calling os.system, a zip bomb, entries outside the file, a memo index of
    2^31, a state dict holding itself: each refused at once with its reason."""
    import pickle

    import make_fixtures
    cases = {}
    p = os.path.join(tmp, "system.pt")
    _zip(p, {"archive/data.pkl": pickle.dumps({"w": make_fixtures.Evil()}, protocol=2)})
    cases[p] = "by calling posix.system"
    p = os.path.join(tmp, "bomb.pt")
    _zip(p, {"archive/data.pkl": b"\x80\x02}." + bytes(200 << 20)}, zipfile.ZIP_DEFLATED)
    cases[p] = "at most 67108864 are read"
    p = os.path.join(tmp, "outside.pt")
    with open(os.path.join(FIXTURES, "plain.pt"), "rb") as f:
        good = f.read()
    open(p, "wb").write(good)
    _patch_central(p, zipfile.ZipFile(io.BytesIO(good)).namelist()[-1], 20, 0x7FFFFFF0)  # compressed size
    cases[p] = "lies outside the file"
    p = os.path.join(tmp, "header.pt")
    open(p, "wb").write(good)
    _patch_central(p, zipfile.ZipFile(io.BytesIO(good)).namelist()[0], 42, 0x7FFFFFF0)  # local header offset
    cases[p] = "bad local header"
    p = os.path.join(tmp, "memo.pt")
    _zip(p, {"archive/data.pkl": b"\x80\x02}r\xff\xff\xff\x7f."})
    cases[p] = "memo index beyond"
    p = os.path.join(tmp, "self.pt")
    _zip(p, {"archive/data.pkl": b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s."})  # {"a": <itself>}
    cases[p] = "no floating-point tensor"
    for path, why in cases.items():
        t0 = time.time()
        code, _, err = emergectl("analyze", path, check=1)
        assert code != 0 and why in err and time.time() - t0 < 10, (path, err)
    assert not os.path.exists(MARKER)


def _s(x):
    b = x.encode() if isinstance(x, str) else x
    return b"X" + struct.pack("<I", len(b)) + b


def _tensor(key, numel, shape, storage="FloatStorage"):
    """The pickle of one tensor as torch.save writes it (protocol 2 opcodes)."""
    def tup(*xs):
        return b"(" + b"".join(xs) + b"t"
    ints = [b"J" + struct.pack("<i", n) for n in shape]
    stride = [b"J" + struct.pack("<i", int(np.prod(shape[i + 1:]))) for i in range(len(shape))]
    pid = tup(_s("storage"), b"ctorch\n" + storage.encode() + b"\n", _s(key), _s("cpu"),
              b"J" + struct.pack("<i", numel)) + b"Q"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n" + tup(pid, b"J\0\0\0\0", tup(*ints), tup(*stride), b"\x89",
                                                          b"ccollections\nOrderedDict\n)R") + b"R")


def _archive(path, body, storages):
    _zip(path, {"archive/data.pkl": b"\x80\x02" + body + b".", "archive/version": b"3\n",
                **{f"archive/data/{k}": v for k, v in storages.items()}})


def test_what_an_adversarial_review_found_stays_fixed(tmp):
    """Protocol 4 pickles (MEMOIZE), archive names of 256+ bytes, a storage read as two
    dtypes, a 4-byte-per-tensor name bomb, keys with NUL bytes, encrypted and bzip2
    entries: read right or refused with the reason, quickly."""
    torch = _torch()
    import make_fixtures
    sd = make_fixtures.mlp_state_dict()
    p4, long_name = os.path.join(tmp, "p4.pt"), os.path.join(tmp, "m" * 250 + ".pt")
    torch.save(sd, p4, pickle_protocol=4)
    torch.save(sd, long_name)
    plain = _summary(analyze_json("--mode", "full", os.path.join(FIXTURES, "plain.pt")))
    for path in (p4, long_name):
        assert _summary(analyze_json("--mode", "full", path)) == plain, path
    a = np.arange(64, dtype=np.float32).tobytes()
    cases = {}
    p = os.path.join(tmp, "dtype2.pt")
    _archive(p, b"}(" + _s("a") + _tensor("0", 16, (4, 4)) + _s("b") + _tensor("0", 32, (4, 8), "HalfStorage") + b"u",
             {"0": a})
    cases[p] = "reads storage '0' as F16"
    p = os.path.join(tmp, "bomb.pt")  # one tensor memoized, then its key and value again 300,000 times
    inner = b"}(" + _s("k") + b"q\x02" + _tensor("0", 16, (4, 4)) + b"q\x01u"
    _archive(p, b"}(" + _s("x" * 1000) + inner + b"(" + b"h\x02h\x01" * 300000 + b"uu", {"0": a})
    cases[p] = "appears twice"
    p = os.path.join(tmp, "names.pt")  # distinct keys under a 1000-byte prefix: 70 MB of names
    body = b"}(" + _s("k0") + _tensor("0", 16, (4, 4)) + b"q\x01" + b"".join(_s(f"k{i}") + b"h\x01" for i in range(1, 70000))
    _archive(p, b"}(" + _s("x" * 1000) + body + b"uu", {"0": a})
    cases[p] = "MiB of names"
    p = os.path.join(tmp, "nul.pt")
    _archive(p, b"}(" + _s("w\0x") + _tensor("0", 16, (4, 4)) + b"u", {"0": a})
    cases[p] = "holds a NUL byte"
    with open(os.path.join(FIXTURES, "plain.pt"), "rb") as f:
        good = f.read()
    first = zipfile.ZipFile(io.BytesIO(good)).namelist()[0]
    for name, flags_method, says in (("enc.pt", 1, "is encrypted"), ("bz2.pt", 12 << 16, "compressed with method 12")):
        p = os.path.join(tmp, name)
        open(p, "wb").write(good)
        _patch_central(p, first, 8, flags_method)
        cases[p] = says
    for path, why in cases.items():
        t0 = time.time()
        code, _, err = emergectl("analyze", path, check=1)
        assert code != 0 and why in err and time.time() - t0 < 20 and len(err) < 2000, (path, err[:500])


def test_formats_that_cannot_be_read_say_what_to_do(tmp):
    """A big-endian archive, a TorchScript archive, an FSDP directory, a DeepSpeed output
    root: each refused with its remedy; optimizer.pt beside the weights is never chosen."""
    with open(os.path.join(FIXTURES, "plain.pt"), "rb") as f:
        good = zipfile.ZipFile(io.BytesIO(f.read()))
    entries = {n: good.read(n) for n in good.namelist()}
    prefix = good.namelist()[0].split("/")[0]
    big = os.path.join(tmp, "big.pt")
    _zip(big, {**entries, f"{prefix}/byteorder": b"big"})
    script = os.path.join(tmp, "script.pt")
    _zip(script, {**entries, f"{prefix}/constants.pkl": b"\x80\x02)."})
    fsdp = os.path.join(tmp, "pytorch_model_fsdp_0")
    os.makedirs(fsdp)
    for name in (".metadata", "__0_0.distcp"):
        open(os.path.join(fsdp, name), "wb").close()
    ds_root = os.path.join(FIXTURES, "deepspeed")
    for path, says in ((big, "big-endian"), (script, "TorchScript"), (fsdp, "FULL_STATE_DICT"),
                       (ds_root, "global_stepN")):
        code, _, err = emergectl("analyze", path, check=1)
        assert code != 0 and says in err, (path, err)
    hf = os.path.join(tmp, "checkpoint-5")
    os.makedirs(hf)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        os.symlink(os.path.join(FIXTURES, "evil.pt"), os.path.join(hf, name))  # would fail if chosen
    os.symlink(os.path.join(FIXTURES, "plain.pt"), os.path.join(hf, "pytorch_model.bin"))
    rows = analyze_json(hf)
    assert len(rows) == 1 and rows[0]["step"] == 5 and rows[0]["alpha0"] > 0, rows


def test_what_was_measured_is_listed_and_low_coverage_is_told(tmp):
    """A CNN saved by torch maps as `cnn` (channels as neurons), every weight read. Under
    --arch mlp its convolutions, most of its weights, are skipped: the result lists the
    linear layers it read and the kernels it skipped, with coverage their share; analyze
    and the daemon's log say E describes only that share. A LoRA adapter is refused."""
    torch = _torch()
    torch.manual_seed(0)
    cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3),
                              torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    root = os.path.join(tmp, "root")
    run = os.path.join(root, "cnn")
    os.makedirs(run)
    path = os.path.join(tmp, "cnn.pt")
    torch.save(cnn.state_dict(), path)
    r = analyze_json(path)[0]
    assert r["arch"] == "cnn" and r["coverage"] == 1 and r["skipped"] == [], r
    assert sorted(r["tensors"]) == ["0.weight", "2.weight", "6.weight", "8.weight"], r["tensors"]
    assert analyze_json("--arch", "cnn", path)[0]["alpha0"] == r["alpha0"]  # the flag names the same mapping
    code, out, err = emergectl("analyze", "--json", "--arch", "mlp", path)
    r = json.loads(out)
    assert r["tensors"] == ["6.weight", "8.weight"], r["tensors"]
    assert [(s["name"], "convolution" in s["why"]) for s in r["skipped"]] == [("0.weight", True), ("2.weight", True)]
    conv, lin = 3 * 64 * 9 + 64 * 64 * 9, 64 * 32 + 32 * 10
    assert abs(r["coverage"] - lin / (lin + conv)) < 1e-12, r["coverage"]
    assert "warning" in err and "E describes only 6% of the weights" in err and "0.weight" in err, err
    d = Daemon(tmp, root, "--arch", "mlp").start()
    torch.save(cnn.state_dict(), os.path.join(run, "ckpt_0.pt"))
    wait_for(lambda: history(d, "cnn")[0], what="the CNN's result")
    assert "E describes only 6% of the weights" in d.read_log()
    assert d.stop() == 0
    torch.manual_seed(0)  # PyTorch's own transformer naming is a family of its own
    enc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(64, 4, 256), num_layers=2)
    torch.save(enc.state_dict(), os.path.join(tmp, "enc.pt"))
    r = analyze_json(os.path.join(tmp, "enc.pt"))[0]
    assert r["arch"] == "torch-transformer" and r["coverage"] == 1 and len(r["tensors"]) == 8, r["tensors"]
    lora = os.path.join(tmp, "adapter.pt")
    torch.save({"base_model.model.layers.0.q_proj.lora_A.weight": torch.randn(8, 64),
                "base_model.model.layers.0.q_proj.lora_B.weight": torch.zeros(64, 8)}, lora)
    code, _, err = emergectl("analyze", lora, check=1)
    assert code != 0 and "LoRA/PEFT adapter" in err and "merge_and_unload" in err, err


def test_cnn_channels_are_neurons_as_torch_computes_the_kernel_norms(tmp):
    """The cnn mapping of docs/ARCHITECTURES.md, checked against torch itself: a CNN with
    2 Conv2d and Linear 2048->128->10 (the flatten of 32 channels x 8 x 8) gives the
    spectrum of the mlp whose matrices are the l2 norms torch computes of each channel
    pair's kernel (and of each channel's 64 positions in the first linear layer)."""
    torch = _torch()
    torch.manual_seed(1)
    nn = torch.nn
    cnn = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2048, 128), nn.ReLU(),
                        nn.Linear(128, 10))
    sd = cnn.state_dict()
    norms = {"l.0.weight": sd["0.weight"].double().flatten(2).norm(dim=2),
             "l.1.weight": sd["3.weight"].double().flatten(2).norm(dim=2),
             "l.2.weight": sd["7.weight"].double().view(128, 32, 64).norm(dim=2),
             "l.3.weight": sd["9.weight"].double()}
    torch.save(sd, os.path.join(tmp, "cnn.pt"))
    torch.save(norms, os.path.join(tmp, "norms.pt"))
    for mode in ("full", "sampled"):
        c, m = (analyze_json("--mode", mode, os.path.join(tmp, f))[0] for f in ("cnn.pt", "norms.pt"))
        assert c["arch"] == "cnn" and m["arch"] == "mlp" and c["coverage"] == 1, (c, m)
        assert c["nodes"] == m["nodes"] and c["nodes"] >= 3 + 16 + 32, (c["nodes"], m["nodes"])
        for key in ("alpha0", "width"):
            assert abs(c[key] - m[key]) < 1e-9, (mode, key, c[key], m[key])


def test_daemon_reads_deepspeed_and_megatron_directories(tmp):
    """global_step100/ (DeepSpeed, beside its `latest`), iter_0000100/mp_rank_00/
    (Megatron, the weights one level down) and Lightning's epoch=2-step=100.ckpt are each
    one checkpoint at step 100; the epoch a name carries is reported as `epoch`."""
    root = os.path.join(tmp, "root")
    os.makedirs(root)
    d = Daemon(tmp, root).start(quiet="0.5")
    shutil.copytree(os.path.join(FIXTURES, "deepspeed"), os.path.join(root, "ds"))
    shutil.copytree(os.path.join(FIXTURES, "megatron"), os.path.join(root, "mg"))
    os.makedirs(os.path.join(root, "lt"))
    shutil.copy(os.path.join(FIXTURES, "lightning.ckpt"), os.path.join(root, "lt", "epoch=2-step=100.ckpt"))
    for run in ("ds", "mg", "lt"):
        wait_for(lambda: [r["step"] for r in history(d, run)[0]] == [100], timeout=60, what=f"{run}'s result")
        assert history(d, run)[1] == []
    assert [r["epoch"] for r in history(d, "lt")[0]] == [2] and history(d, "ds")[0][0]["epoch"] is None
    assert d.stop() == 0
    epoch_only = os.path.join(tmp, "epoch_3.pt")  # an epoch is reported as one, never as a step
    shutil.copy(os.path.join(FIXTURES, "plain.pt"), epoch_only)
    r = analyze_json(epoch_only)[0]
    assert r["epoch"] == 3 and r["step"] is None, (r["epoch"], r["step"])


TRAIN = r'''
import os, sys, time, torch
run, steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(),
                            torch.nn.Linear(64, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
x = torch.randn(512, 32)
y = (x[:, :4].argmax(1))
class Slow:  # a network filesystem: the file grows in small writes with pauses
    def __init__(self, f): self.f = f
    def write(self, b):
        for i in range(0, len(b), 4096):
            self.f.write(b[i:i + 4096]); self.f.flush(); time.sleep(0.02)
        return len(b)
    def flush(self): self.f.flush()
for step in range(steps + 1):
    if step % every == 0:
        path = os.path.join(run, f"ckpt_{step}.pt")
        if step == every:  # written in place, slowly
            with open(path, "wb") as f:
                torch.save(model.state_dict(), Slow(f))
        else:
            torch.save(model.state_dict(), path + ".tmp")
            os.rename(path + ".tmp", path)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
'''


def test_daemon_analyses_a_real_torch_save_loop(tmp):
    """A PyTorch loop saving ckpt_N.pt every 20 steps, one of them slowly in place:
    each checkpoint analysed once, at its step, none while half-written."""
    root = os.path.join(tmp, "root")
    run = os.path.join(root, "mlp")
    os.makedirs(run)
    d = Daemon(tmp, root).start(quiet="1")
    script = os.path.join(tmp, "train.py")
    with open(script, "w") as f:
        f.write(TRAIN)
    subprocess.run([sys.executable, script, run, "100", "20"], check=True, timeout=300)
    steps = [0, 20, 40, 60, 80, 100]
    wait_for(lambda: sorted(r["step"] for r in history(d, "mlp")[0]) == steps, timeout=120,
             what="a result for every checkpoint")
    results, others = history(d, "mlp")
    assert others == [], others  # nothing failed or was read half-written
    assert len(results) == len(steps) and results[0]["emergence"] == 0.0
    assert all(r["emergence"] is not None for r in results), results
    rows = d.db().execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert rows == len(steps), rows  # analysed once each
    log = d.read_log()
    assert d.stop() == 0
    assert "fail" not in json.dumps(results).lower() and "unsupported" not in log, log[-2000:]
