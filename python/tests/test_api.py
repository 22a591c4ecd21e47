"""The Python API against the command line it wraps, numpy layouts, errors and the gate.

Run from the repository root after installing the wheel: `python -m pytest python/tests`.
"""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gauntlet

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "zoo" / "mnist-cnn.toml"
DATA = ROOT / "datasets" / "data" / "mnist-test-1k"
N = 60
ATTACKS = ["fgsm", "pgd:steps=5"]
EPS = [0.1, 0.2]


def mnist(n=N):
    with gzip.open(DATA / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    with gzip.open(DATA / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:n].astype(np.int64)
    return x, y


def cli_report(tmp_path):
    """The command line (the console script this package installs) on the same inputs."""
    out = tmp_path / "cli.json"
    exe = Path(sys.executable).parent / "gauntlet"
    args = [str(exe), "run", "--model", str(MODEL), "--dataset", str(DATA), "--limit", str(N), "--no-checks", "--quiet",
            "--eps", ",".join(map(str, EPS)), "--format", "json", "--output", str(out)]
    for a in ATTACKS:
        args += ["--attack", a]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def numbers(report):
    keys = ["attack", "eps", "robust_accuracy", "robust", "broken", "attacked", "perturbation", "forward_equivalents"]
    return [{k: r[k] for k in keys} for r in report["results"]], report["clean_accuracy"], report["worst_case"]


def test_api_gives_the_command_lines_numbers(tmp_path):
    x, y = mnist()
    cli = cli_report(tmp_path)
    # uint8 N,H,W,C and float32 N,C,H,W in [0, 1]: the same pixels, the same numbers.
    for images in (x, (x.astype(np.float32) / 255.0).transpose(0, 3, 1, 2)):
        r = gauntlet.evaluate(MODEL, images, y, attacks=ATTACKS, eps=EPS, checks=False)
        assert numbers(r.to_dict()) == numbers(cli)
    assert r.clean_accuracy == cli["clean_accuracy"]
    assert r.robust_accuracy("pgd", 0.2) == [c for c in cli["results"] if c["attack"] == "pgd" and c["eps"] == 0.2][0]["robust_accuracy"]
    assert set(r.worst_case) == set(EPS)
    assert r.robust_accuracy("pgd", 0.2) <= r.robust_accuracy("fgsm", 0.2) + 0.2


def test_certified_accuracy_beside_the_attacks(tmp_path):
    r = gauntlet.evaluate("builtin:mnist-cnn", attacks=["fgsm"], eps=[0.02], limit=20, checks=False, certify=["ibp", "crown"])
    crown, ibp = r.certified_accuracy(0.02, "crown"), r.certified_accuracy(0.02, "ibp")
    assert ibp <= crown == r.certified_accuracy(0.02) <= r.worst_case[0.02]
    assert crown >= 0.5
    rule = {"metric": "certified_accuracy", "method": "crown", "eps": 0.02, "min": 0.5}
    assert r.gate([rule]).passed
    with pytest.raises(KeyError):
        r.certified_accuracy(0.3)


def test_report_files_gate_and_adversarial_examples(tmp_path):
    x, y = mnist(40)
    r = gauntlet.evaluate(MODEL, x, y, attacks=["pgd:steps=5"], eps=[0.3], checks=False, save_adversarial=4)
    r.save(tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["results"] == r.to_dict()["results"]
    assert (tmp_path / "report" / "report.html").exists()
    ex = r.adversarial_examples("pgd")
    assert ex["x_adv"].shape[1:] == (1, 28, 28) and 0 < len(ex["index"]) <= 4
    assert np.abs(ex["x_adv"] - ex["x_clean"]).max() <= 0.3 + 1e-6
    assert (ex["adv_pred"] != ex["label"]).all()
    strict = tmp_path / "strict.toml"
    strict.write_text('[[rule]]\nmetric = "robust_accuracy"\nattack = "pgd"\neps = 0.3\nmin = 0.99\n')
    loose = tmp_path / "loose.toml"
    loose.write_text('[[rule]]\nmetric = "clean_accuracy"\nmin = 0.5\n')
    assert not r.gate(strict).passed
    assert r.gate(loose).passed and len(r.gate(loose).rules) == 1
    # The same rules as TOML text and as dicts.
    assert not r.gate(strict.read_text()).passed
    assert not r.gate([{"metric": "robust_accuracy", "attack": "pgd", "eps": 0.3, "min": 0.99}]).passed
    assert r.gate([{"metric": "clean_accuracy", "min": 0.5}]).passed
    with pytest.raises(ValueError, match="metric"):
        r.gate([{"metric": "no_such_metric", "min": 0.5}])


def test_bad_input_raises_with_the_command_lines_message(tmp_path):
    x, y = mnist(4)
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        gauntlet.evaluate(tmp_path / "nope.onnx", x, y)
    with pytest.raises(ValueError, match="expects"):
        gauntlet.evaluate(MODEL, np.zeros((4, 3, 28, 28), np.float32), y)
    with pytest.raises(ValueError, match="NaN"):
        gauntlet.evaluate(MODEL, np.full((4, 1, 28, 28), np.nan, np.float32), y)
    with pytest.raises(ValueError, match="labels"):
        gauntlet.evaluate(MODEL, x, y[:3])
    with pytest.raises(ValueError, match="nosuchattack"):
        gauntlet.evaluate(MODEL, x, y, attacks=["nosuchattack"])
    with pytest.raises(ValueError):
        gauntlet.evaluate(b"not an onnx file", x, y)
    with pytest.raises(ValueError, match="eps"):
        gauntlet.evaluate(MODEL, x, y, eps=[-1.0])
    with pytest.raises(ValueError, match="images"):
        gauntlet.evaluate(MODEL, np.zeros((4, 28, 28), np.float32), y)


def test_command_line_in_the_wheel():
    exe = Path(sys.executable).parent / "gauntlet"
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True).stdout
    assert gauntlet.__version__ in out
    bad = subprocess.run([str(exe), "run", "--eps", "x"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--eps" in bad.stderr


def test_torch_export_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    from gauntlet.torch import export

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(16, 5),
    )
    net.eval()
    x = torch.rand(6, 3, 16, 16)
    path = str(tmp_path / "net.onnx")
    check = export(net, x, path, normalize=((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)), verbose=False)
    assert check.logits_difference < 1e-4 and check.gradient_difference < 1e-3
    # The exported file evaluates like any other model, with the normalization inside.
    labels = net((x - torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)).argmax(1)
    r = gauntlet.evaluate(path, x.numpy(), labels.numpy(), attacks=["pgd:steps=5"], eps=[0.5], checks=False)
    assert r.clean_accuracy == 1.0 and r.robust_accuracy("pgd", 0.5) < 1.0


def test_ctrl_c_stops_a_long_run():
    # A run far too long to finish: SIGINT stops it after its current batch with KeyboardInterrupt.
    # The child takes Python's own Ctrl-C handler whatever the parent ignores (a CI runner may start
    # its jobs with SIGINT ignored), and says when it is about to start the run.
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import gauntlet\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    gauntlet.evaluate('builtin:mnist-cnn', attacks=['pgd:steps=2000'], eps=[1e-4], batch_size=16, checks=False)\n"
        "except KeyboardInterrupt as e:\n"
        "    print('interrupted:', e)\n"
        "    raise SystemExit(130)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import signal
    import time

    assert p.stdout.readline().strip() == "ready"
    time.sleep(2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out, err)
    assert "interrupted: gauntlet stopped after its current batch" in out
