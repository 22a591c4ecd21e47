"""A robustness gate inside a project's own test suite (pytest): the release fails when the
model's robust accuracy falls below the bar. Copy into your tests and point MODEL, the data
and GATE at your own.

    pytest docs/python/test_model_gate.py      # from the repository root, the wheel installed
"""

import gzip
from pathlib import Path

import numpy as np

import gauntlet

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "zoo" / "mnist-cnn.toml"
DATA = ROOT / "datasets" / "data" / "mnist-test-1k"


def load_test_set(n=200):
    with gzip.open(DATA / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]
    with gzip.open(DATA / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n].astype(np.int64)
    return x, y


def test_model_meets_the_robustness_bar(tmp_path):
    x, y = load_test_set()
    report = gauntlet.evaluate(MODEL, x, y, attacks=["pgd:steps=10"], eps=[0.05, 0.1])
    gate = tmp_path / "gate.toml"
    gate.write_text(
        '[[rule]]\nmetric = "clean_accuracy"\nmin = 0.95\n\n'
        '[[rule]]\nmetric = "robust_accuracy"\nattack = "pgd"\neps = 0.05\nmin = 0.80\n\n'
        '[[rule]]\nmetric = "check"\n'
    )
    outcome = report.gate(gate)
    failed = [r for r in outcome.rules if not r.get("passed", True)]
    assert outcome.passed, f"robustness gate failed: {failed}"
