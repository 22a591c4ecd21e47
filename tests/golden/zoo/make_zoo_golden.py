"""Golden figures for the shipped model pairs (tests/zoo.rs), computed independently of Gauntlet
with PyTorch + torchattacks on the same weights and the same shipped test images.

For each of mnist-standard, mnist-robust (eps 0.3, alpha 0.01) and fashion-mnist-standard,
fashion-mnist-robust (eps 0.1, alpha 2.5*eps/40): clean accuracy and PGD-40 robust accuracy
(random start, torch seed 0) on the 1,000 shipped images; AutoAttack (standard version) on the
first AA_N of them, with PGD-40 on those too (`*_first`).

usage (from the repository root, with torch, torchattacks, safetensors installed):
    python tests/golden/zoo/make_zoo_golden.py [NAME...]
writes tests/golden/zoo/zoo_torchattacks.json; with names, recomputes only those entries.
versions used: torch 2.15, torchattacks 3.5.1.
"""
import json
import os
import sys

import torch
import torchattacks
from safetensors.torch import load_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "benches", "compare"))
from common import mnist  # noqa: E402
from zoo_torch import ConvNet, accuracy, slope_of  # noqa: E402

AA_N = 200
MODELS = [
    ("mnist-standard", "datasets/data/mnist-test-1k", 0.1307, 0.3081, 0.3),
    ("mnist-robust", "datasets/data/mnist-test-1k", 0.1307, 0.3081, 0.3),
    ("fashion-mnist-standard", "datasets/data/fashion-mnist-test-1k", 0.286, 0.353, 0.1),
    ("fashion-mnist-robust", "datasets/data/fashion-mnist-test-1k", 0.286, 0.353, 0.1),
]


GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo_torchattacks.json")


def main():
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    only = sys.argv[1:]
    out = {"pgd_steps": 40, "autoattack_samples": AA_N, "models": {}}
    if only and os.path.exists(GOLDEN):
        with open(GOLDEN) as f:
            out = json.load(f)
    for name, data, mean, std, eps in MODELS:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        weights = f"models/zoo/{name}.safetensors"
        model = ConvNet(mean, std, slope_of(weights))
        model.load_state_dict(load_file(weights))
        model.eval()
        x, y = mnist(os.path.join(data, "t10k-images-idx3-ubyte.gz"))
        alpha = 0.01 if abs(eps - 0.3) < 1e-9 else 2.5 * eps / 40
        pgd = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=40, random_start=True)
        aa = torchattacks.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0)
        out["models"][name] = {
            "samples": len(y),
            "eps": eps,
            "alpha": alpha,
            "clean": accuracy(model, None, x, y),
            "pgd40": accuracy(model, pgd, x, y),
            "pgd40_first": accuracy(model, pgd, x[:AA_N], y[:AA_N]),
            "autoattack_first": accuracy(model, aa, x[:AA_N], y[:AA_N]),
        }
        print(name, out["models"][name], file=sys.stderr)
    with open(GOLDEN, "w") as f:
        f.write(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
