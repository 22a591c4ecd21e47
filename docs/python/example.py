"""Gauntlet from Python, top to bottom: train a small PyTorch model, export it, evaluate it under
attack, plot robust accuracy against ε, and gate it.

    pip install target/wheels/gauntlet_robustness-*.whl torch matplotlib
    python docs/python/example.py            # from the repository root; writes example-out/

It trains on 800 of the 1,000 MNIST test images shipped in datasets/data/mnist-test-1k and
evaluates on the other 200 (a demonstration, not a benchmark). About a minute on 2 cores.
"""

import gzip
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import gauntlet
from gauntlet.torch import export

ROOT = Path(__file__).resolve().parents[2]
OUT = Path("example-out")
OUT.mkdir(exist_ok=True)

# 1. Data: the shipped MNIST sample, as numpy arrays.
data = ROOT / "datasets" / "data" / "mnist-test-1k"
with gzip.open(data / "t10k-images-idx3-ubyte.gz") as f:
    images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
with gzip.open(data / "t10k-labels-idx1-ubyte.gz") as f:
    labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
train_x, train_y, test_x, test_y = images[:800], labels[:800], images[800:], labels[800:]

# 2. A small CNN, trained for a few epochs.
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 10),
)
opt = torch.optim.Adam(model.parameters(), lr=2e-3)
x, y = torch.from_numpy(train_x), torch.from_numpy(train_y)
for epoch in range(8):
    for i in torch.randperm(len(x)).split(64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i]), y[i]).backward()
        opt.step()

# 3. Export with the normalization inside, checked against the module.
check = export(model, torch.from_numpy(test_x[:16]), str(OUT / "cnn.onnx"), normalize=((0.0,), (1.0,)))

# 4. Evaluate under attack.
eps = [0.02, 0.05, 0.1, 0.15, 0.2]
report = gauntlet.evaluate(OUT / "cnn.onnx", test_x, test_y, attacks=["fgsm", "pgd:steps=20"], eps=eps)
print(report)
print("clean accuracy", report.clean_accuracy)
for e in eps:
    print(f"eps {e}: FGSM {report.robust_accuracy('fgsm', e):.3f}  PGD {report.robust_accuracy('pgd', e):.3f}")
for c in report.checks:
    print(f"check {c['name']}: {c['status']}")

# 5. Robust accuracy against ε.
plt.figure(figsize=(5, 3.5))
for attack in report.attacks:
    plt.plot(eps, [report.robust_accuracy(attack, e) for e in eps], marker="o", label=attack)
plt.plot(eps, [report.worst_case[e] for e in eps], "k--", label="worst case")
plt.xlabel("ε (L∞, pixels in [0, 1])")
plt.ylabel("robust accuracy")
plt.legend()
plt.tight_layout()
plt.savefig(OUT / "robust_accuracy.png", dpi=120)

# 6. A release gate: clean accuracy at least 90%, PGD at ε = 0.05 at least 50%.
(OUT / "gate.toml").write_text(
    '[[rule]]\nmetric = "clean_accuracy"\nmin = 0.90\n\n'
    '[[rule]]\nmetric = "robust_accuracy"\nattack = "pgd"\neps = 0.05\nmin = 0.50\n'
)
outcome = report.gate(OUT / "gate.toml")
print("gate", "passed" if outcome.passed else "FAILED")
report.save(OUT / "report")
