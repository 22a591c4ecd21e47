"""Re-evaluates a shipped model (models/zoo/<name>.safetensors, the conv32/s2-conv64/s2-fc128-fc10
architecture; its activation, ReLU or leaky ReLU, is read from the spec beside the weights) with
PyTorch + torchattacks, independently of Gauntlet: clean accuracy, PGD-40
(alpha 0.01 for eps 0.3, otherwise 2.5*eps/40; random start) and, on the first AA_N images,
AutoAttack's standard version.

usage: zoo_torch.py WEIGHTS.safetensors TEST_IMAGES MEAN STD EPS [AA_N]
prints one JSON line.
"""
import json
import os
import sys
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks
from safetensors.torch import load_file

from common import mnist


def slope_of(weights):
    """The negative slope of the spec's activations (0 for ReLU), from NAME.toml beside NAME.safetensors."""
    with open(os.path.splitext(weights)[0] + ".toml", "rb") as f:
        acts = [layer for layer in tomllib.load(f)["layers"] if layer["op"] in ("relu", "leaky_relu")]
    slopes = {layer.get("slope", 0.01) if layer["op"] == "leaky_relu" else 0.0 for layer in acts}
    if len(slopes) != 1:
        raise SystemExit(f"{weights}: expected one activation kind, found slopes {sorted(slopes)}")
    return slopes.pop()


class ConvNet(nn.Module):
    def __init__(self, mean, std, slope=0.0):
        super().__init__()
        self.mean, self.std, self.slope = mean, std, slope
        self.conv1 = nn.Conv2d(1, 32, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std
        act = lambda t: F.leaky_relu(t, self.slope)  # noqa: E731 (slope 0 is ReLU)
        x = act(self.conv2(act(self.conv1(x))))
        return self.fc2(act(self.fc1(torch.flatten(x, 1))))


def accuracy(model, attack, x, y, batch=500):
    right = 0
    for i in range(0, len(y), batch):
        xb, yb = x[i : i + batch], y[i : i + batch]
        xa = attack(xb, yb) if attack else xb
        with torch.no_grad():
            right += (model(xa).argmax(1) == yb).sum().item()
    return right / len(y)


def main():
    weights, images, mean, std, eps = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
    aa_n = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    torch.manual_seed(0)
    model = ConvNet(mean, std, slope_of(weights))
    model.load_state_dict(load_file(weights))
    model.eval()
    x, y = mnist(images)
    alpha = 0.01 if abs(eps - 0.3) < 1e-9 else 2.5 * eps / 40
    out = {"weights": weights, "samples": len(y), "eps": eps, "clean": accuracy(model, None, x, y)}
    out["pgd40"] = accuracy(model, torchattacks.PGD(model, eps=eps, alpha=alpha, steps=40, random_start=True), x, y)
    if aa_n:
        aa = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        out["autoattack_samples"] = aa_n
        out["autoattack"] = accuracy(model, aa, x[:aa_n], y[:aa_n])
        out["pgd40_on_autoattack_samples"] = accuracy(
            model, torchattacks.PGD(model, eps=eps, alpha=alpha, steps=40, random_start=True), x[:aa_n], y[:aa_n]
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
