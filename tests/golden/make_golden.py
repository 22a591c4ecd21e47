"""Golden files for Gauntlet's tests, produced by PyTorch (and torchattacks).

Run from the repository root:  python tests/golden/make_golden.py
Needs: torch, torchattacks, safetensors, numpy (e.g. `pip install torch torchattacks safetensors numpy`).

Writes
  tests/golden/allops.toml, allops.safetensors   a small CNN with every layer type of the spec format
  tests/golden/allops_io.safetensors             inputs, labels, logits, input gradients (CE, margin),
                                                 torchattacks FGSM adversarials at eps 0.03 (f64)
  tests/golden/mnist_torchattacks.json           torchattacks robust accuracies of the shipped model
  tests/golden/mnist_torchattacks_apgd.json      torchattacks APGD-CE / APGD-DLR / APGD-T on the first 300
                                                 images (`python make_golden.py apgd` makes only this one)
                                                 on the shipped 1,000 MNIST test images
  tests/golden/mnist_minimal_norm.json           torchattacks FAB (L∞, L2; 100 steps) per-sample
                                                 minimal perturbation norms and their quartiles on the first 100
                                                 images (`python make_golden.py minimal_norm` makes only this one)
  tests/golden/mnist_torchattacks_apgd_l2.json   torchattacks APGD-CE / APGD-T in L2 on the first 300 images
                                                 (`python make_golden.py apgd_l2` makes only this one)
  tests/golden/mnist_torchattacks_mifgsm.json    torchattacks MI-FGSM on the shipped 1,000 images
                                                 (`python make_golden.py mifgsm` makes only this one)
  tests/golden/mnist_torchattacks_square.json    torchattacks Square (L∞ 0.2, 0.3; L2 3.0; 300 queries; 8 seeds,
                                                 each run and the mean) on the first 300 images
                                                 (`python make_golden.py square` makes only this one)
  tests/golden/mnist_l2_references.json          L2 references on the first 300 images (`python make_golden.py l2`
                                                 makes only this one): FGM (torchattacks `PGDL2`, one step of
                                                 size ε from the clean input) and MI-FGSM in L2 (an independent
                                                 re-implementation of Gauntlet's definition; torchattacks' MIFGSM
                                                 is L∞ only) per sample at ε 1.0, 2.0; PGD (torchattacks `PGDL2`)
                                                 and APGD-DLR (torchattacks `APGD`, L2) robust accuracies over
                                                 several seeds at ε 1.0, 1.5
"""
import gzip
import json
import sys
import os
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
torch.manual_seed(0)


class AllOps(nn.Module):
    """Every layer type of the spec format, with odd settings (stride, groups, kernel != stride, pads)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1))
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.conv3 = nn.Conv2d(8, 6, 3, padding=2, dilation=2, bias=False)
        self.fc1 = nn.Linear(6 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))           # 16x16
        x = F.max_pool2d(x, 2)                        # 8x8
        x = F.leaky_relu(self.conv2(x), 0.1)          # 4x4
        x = F.avg_pool2d(x, 2, stride=1)              # 3x3, kernel != stride
        x = torch.tanh(self.conv3(x))                 # 3x3
        x = F.max_pool2d(x, 3, stride=2, padding=1)   # 2x2, padded
        x = torch.flatten(x, 1)
        x = torch.sigmoid(self.fc1(x))
        x = F.dropout(x, 0.5, training=self.training)
        return self.fc2(x)


ALLOPS_TOML = """# Every layer type, with PyTorch-made weights; see make_golden.py.
weights = "allops.safetensors"
input = [3, 16, 16]
classes = 10
mean = [0.5, 0.4, 0.3]
std = [0.2, 0.25, 0.3]
layers = [
  { op = "conv2d", weight = "conv1", padding = 1 },
  { op = "batchnorm2d", weight = "bn1" },
  { op = "relu" },
  { op = "maxpool2d", kernel = 2 },
  { op = "conv2d", weight = "conv2", stride = 2, padding = 1, groups = 2 },
  { op = "leaky_relu", slope = 0.1 },
  { op = "avgpool2d", kernel = 2, stride = 1 },
  { op = "conv2d", weight = "conv3", padding = 2, dilation = 2 },
  { op = "tanh" },
  { op = "maxpool2d", kernel = 3, stride = 2, padding = 1 },
  { op = "flatten" },
  { op = "linear", weight = "fc1" },
  { op = "sigmoid" },
  { op = "dropout", p = 0.5 },
  { op = "linear", weight = "fc2" },
]
"""


def margin(logits, y):
    z_y = logits.gather(1, y[:, None])[:, 0]
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), -1e9).amax(1)
    return other - z_y


def allops():
    m = AllOps()
    with torch.no_grad():  # non-trivial running statistics
        m.bn1.running_mean.uniform_(-0.5, 0.5)
        m.bn1.running_var.uniform_(0.5, 2.0)
        m.bn1.weight.uniform_(0.5, 1.5)
        m.bn1.bias.uniform_(-0.2, 0.2)
    m.eval()
    sd = {k: v.contiguous() for k, v in m.state_dict().items() if k not in ("mean", "std")}
    save_file(sd, os.path.join(HERE, "allops.safetensors"))
    with open(os.path.join(HERE, "allops.toml"), "w") as f:
        f.write(ALLOPS_TOML)

    m = m.double()
    x = torch.rand(6, 3, 16, 16, dtype=torch.float64)
    y = torch.tensor([0, 3, 7, 9, 1, 5])
    xv = x.clone().requires_grad_(True)
    logits = m(xv)
    F.cross_entropy(logits, y, reduction="sum").backward()
    grad_ce = xv.grad.detach().clone()
    xv.grad = None
    margin(m(xv), y).sum().backward()
    grad_margin = xv.grad.detach().clone()

    atk = torchattacks.FGSM(m, eps=0.03)
    fgsm = atk(x, y)
    save_file(
        {"input": x, "labels": y.to(torch.int64), "logits": logits.detach(), "grad_ce": grad_ce,
         "grad_margin": grad_margin, "fgsm_eps_0.03": fgsm.detach()},
        os.path.join(HERE, "allops_io.safetensors"),
    )


class MnistCnn(nn.Module):
    """The shipped model's architecture (models/zoo/mnist-cnn.toml)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 100)
        self.fc2 = nn.Linear(100, 10)

    def forward(self, x):
        x = (x - 0.1307) / 0.3081
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4 : 4 + 4 * nd])
    return np.frombuffer(data[4 + 4 * nd :], dtype=np.uint8).reshape(dims)


def shipped(n=None):
    """The shipped model, the first n shipped MNIST test images (all by default), their labels and
    which of them the model classifies correctly."""
    m = MnistCnn()
    m.load_state_dict(load_file(os.path.join(ROOT, "models/zoo/mnist-cnn.safetensors")))
    m.eval()
    d = os.path.join(ROOT, "datasets/data/mnist-test-1k")
    x = torch.tensor(read_idx(os.path.join(d, "t10k-images-idx3-ubyte.gz")), dtype=torch.float32)[:n, None] / 255.0
    y = torch.tensor(read_idx(os.path.join(d, "t10k-labels-idx1-ubyte.gz")), dtype=torch.int64)[:n]
    with torch.no_grad():
        correct = m(x).argmax(1) == y
    return m, x, y, correct


def mnist_reference():
    m, x, y, correct = shipped()
    out = {"samples": len(y), "clean_accuracy": correct.float().mean().item(), "fgsm": {}, "pgd": {},
           "pgd_params": {"steps": 40, "alpha": 0.01, "random_start": True, "seed": 0}}
    for eps in [0.05, 0.1, 0.2, 0.3]:
        adv = torchattacks.FGSM(m, eps=eps)(x, y)
        with torch.no_grad():
            out["fgsm"][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
        torch.manual_seed(0)
        adv = torchattacks.PGD(m, eps=eps, alpha=0.01, steps=40, random_start=True)(x, y)
        with torch.no_grad():
            out["pgd"][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
    with open(os.path.join(HERE, "mnist_torchattacks.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def apgd_reference(n=300):
    m, x, y, correct = shipped(n)
    out = {"samples": n, "clean_accuracy": correct.float().mean().item(),
           "params": {"steps": 100, "restarts": 1, "targets": 9, "seed": 0}}
    for name in ["apgd", "apgd-dlr", "apgd-t"]:
        out[name] = {}
        for eps in [0.1, 0.15]:
            if name == "apgd-t":
                atk = torchattacks.APGDT(m, norm="Linf", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0)
            else:
                loss = "ce" if name == "apgd" else "dlr"
                atk = torchattacks.APGD(m, norm="Linf", eps=eps, steps=100, n_restarts=1, loss=loss, seed=0)
            adv = atk(x, y)
            with torch.no_grad():
                out[name][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
    with open(os.path.join(HERE, "mnist_torchattacks_apgd.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def minimal_norm_reference(n=100):
    """Per-sample minimal perturbation norms found by torchattacks' minimal-norm FAB attack (L∞ and
    L2, 100 steps, 1 restart) on the first n images; None where the attack failed or the image is
    misclassified. (torchattacks' DeepFool, 50 steps, overshoot 0.02, fools only 37 of the 99 images
    here: too weak to be a reference.)"""
    m, x, y, correct = shipped(n)

    def radii(adv, norm):
        with torch.no_grad():
            fooled = (m(adv).argmax(1) != y) & correct
        delta = (adv - x).double().flatten(1)
        r = delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)
        return [float(v) if f else None for v, f in zip(r, fooled)]

    def summary(r):
        # Quartiles over the clean-correct samples, a failure counting as an infinite radius.
        v = np.array([np.inf if a is None else a for a, c in zip(r, correct) if c])
        q = np.quantile(v, [0.25, 0.5, 0.75], method="lower")
        q = [float(a) if np.isfinite(a) else None for a in q]
        return {"found": int(np.isfinite(v).sum()), "q1": q[0], "median": q[1], "q3": q[2]}

    out = {"samples": n, "clean_correct": [bool(c) for c in correct],
           "params": {"fab": {"steps": 100, "n_restarts": 1, "seed": 0, "eps": "the full box (1 / 28)"}}}
    for norm, eps in [("Linf", 1.0), ("L2", 28.0)]:
        adv = torchattacks.FAB(m, norm=norm, eps=eps, steps=100, n_restarts=1, seed=0)(x, y)
        r = radii(adv, norm)
        out[f"fab_{norm.lower()}"] = {"radii": r, **summary(r)}
    with open(os.path.join(HERE, "mnist_minimal_norm.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def apgd_l2_reference(n=300):
    """torchattacks APGD-CE and APGD-T in L2 (100 steps, 1 restart) on the first n images."""
    m, x, y, correct = shipped(n)
    out = {"samples": n, "norm": "l2", "params": {"steps": 100, "restarts": 1, "targets": 9, "seed": 0}}
    for name in ["apgd", "apgd-t"]:
        out[name] = {}
        for eps in [1.0, 1.5]:
            if name == "apgd-t":
                atk = torchattacks.APGDT(m, norm="L2", eps=eps, steps=100, n_restarts=1, n_classes=10, seed=0)
            else:
                atk = torchattacks.APGD(m, norm="L2", eps=eps, steps=100, n_restarts=1, loss="ce", seed=0)
            adv = atk(x, y)
            with torch.no_grad():
                out[name][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
    with open(os.path.join(HERE, "mnist_torchattacks_apgd_l2.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def mifgsm_reference():
    """torchattacks MI-FGSM (10 steps, alpha eps/10, decay 1) on the shipped 1,000 images: deterministic."""
    m, x, y, correct = shipped()
    out = {"samples": len(y), "params": {"steps": 10, "alpha": "eps/10", "decay": 1.0}, "mi-fgsm": {}}
    for eps in [0.1, 0.2]:
        adv = torchattacks.MIFGSM(m, eps=eps, alpha=eps / 10, steps=10, decay=1.0)(x, y)
        with torch.no_grad():
            out["mi-fgsm"][str(eps)] = ((m(adv).argmax(1) == y) & correct).float().mean().item()
    with open(os.path.join(HERE, "mnist_torchattacks_mifgsm.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def square_reference(n=300, queries=300, seeds=range(8)):
    """torchattacks Square (margin loss, p_init 0.8, 1 restart, `queries` iterations) on the first n
    images, L∞ at eps 0.2 and 0.3 and L2 at eps 3.0. Square is random: every setting runs with each
    seed; the JSON holds each robust accuracy and their mean."""
    m, x, y, correct = shipped(n)
    out = {"samples": n, "clean_accuracy": correct.float().mean().item(),
           "params": {"n_queries": queries, "p_init": 0.8, "n_restarts": 1, "loss": "margin",
                      "seeds": list(seeds)}}
    for norm, eps_list in [("Linf", [0.2, 0.3]), ("L2", [3.0])]:
        out[norm.lower()] = {}
        for eps in eps_list:
            accs = []
            for seed in seeds:
                atk = torchattacks.Square(m, norm=norm, eps=eps, n_queries=queries, n_restarts=1, p_init=0.8,
                                          loss="margin", seed=seed)
                adv = atk(x, y)
                with torch.no_grad():
                    accs.append(((m(adv).argmax(1) == y) & correct).float().mean().item())
            out[norm.lower()][str(eps)] = {"mean": float(np.mean(accs)), "runs": accs}
    with open(os.path.join(HERE, "mnist_torchattacks_square.json"), "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")


def l2_reference(n=300):
    """L2 references on the first n images.

    Gauntlet's evaluator nests the budgets (a sample broken at a smaller ε counts as broken at every
    larger one) and its iterative attacks keep each sample's first successful iterate; each entry
    therefore also gives the numbers computed the same way ("nested", "any_iterate").

    fgm       torchattacks PGDL2(steps=1, alpha=eps, random_start=False): x + ε·g/(‖g‖₂ + 1e-10), then
              the ball projection (a no-op: the step has length ≤ ε) and the clip to [0, 1], which is
              FGM. Deterministic: the broken samples are listed per ε. torchattacks averages the
              cross-entropy over the batch, which shrinks very small gradients below its 1e-10
              guard; "check_differs" counts the samples where a per-sample-gradient FGM disagrees.
    mi-fgsm   NOT torchattacks (its MIFGSM is L∞ only): an independent re-implementation of
              Gauntlet's documented L2 MI-FGSM (attacks/src/mi_fgsm.rs): g ← μ·g + ∇/‖∇‖₁,
              x ← Π_{B₂(x₀, ε) ∩ [0, 1]}(x + α·g/‖g‖₂), from the clean input, 10 steps, α = ε/10,
              μ = 1, per-sample cross-entropy gradients in f32. Deterministic: broken samples per ε,
              counting any iterate after the first step (first success) and, separately, the last.
    pgd       torchattacks PGDL2(steps=40, alpha=2.5·ε/40, random_start=True) with several seeds:
              robust accuracy of the last iterate (torchattacks' answer) and of any iterate, the
              random start included (Gauntlet's first-success rule), per seed and their mean.
    apgd-dlr  torchattacks APGD(norm="L2", loss="dlr", steps=100, n_restarts=1) with several seeds
              (APGD keeps the first success itself)."""
    m, x, y, correct = shipped(n)
    out = {"samples": n, "norm": "l2", "clean_correct": int(correct.sum())}

    def fooled(adv):
        with torch.no_grad():
            return (m(adv).argmax(1) != y) & correct

    def nested(broken_by_eps):
        acc, seen = [], torch.zeros_like(correct)
        for b in broken_by_eps:
            seen = seen | b
            acc.append((correct & ~seen).float().mean().item())
        return acc

    def indices(b):
        return [int(i) for i in b.nonzero().flatten()]

    def grad_ce(xv):
        """Per-sample cross-entropy gradients (summed loss: no dependence on the batch size)."""
        xv = xv.clone().requires_grad_(True)
        F.cross_entropy(m(xv), y, reduction="sum").backward()
        return xv.grad.detach()

    def rows_norm(t, p):
        return t.flatten(1).norm(p=p, dim=1).view(-1, 1, 1, 1)

    def project(x0, xa, eps):
        d = xa - x0
        factor = torch.clamp(eps / (rows_norm(d, 2) + 1e-12), max=1.0)
        return torch.clamp(x0 + d * factor, 0.0, 1.0)

    det_eps = [1.0, 2.0]
    # FGM.
    out["fgm"] = {"params": {"torchattacks": "PGDL2(steps=1, alpha=eps, random_start=False)"}}
    broken = []
    for eps in det_eps:
        adv = torchattacks.PGDL2(m, eps=eps, alpha=eps, steps=1, random_start=False)(x, y)
        b = fooled(adv)
        g = grad_ce(x)
        check = fooled(project(x, x + eps * g / (rows_norm(g, 2) + 1e-12), eps))
        broken.append(b)
        out["fgm"][str(eps)] = {"robust_accuracy": (correct & ~b).float().mean().item(), "broken": indices(b),
                                "check_differs": int((b != check).sum())}
    for eps, a in zip(det_eps, nested(broken)):
        out["fgm"][str(eps)]["nested"] = a

    # MI-FGSM in L2: independent re-implementation (not torchattacks).
    steps, decay = 10, 1.0
    out["mi-fgsm"] = {"params": {"steps": steps, "alpha": "eps/10", "decay": decay,
                                 "implementation": "independent re-implementation in make_golden.py"}}
    broken = []
    for eps in det_eps:
        alpha = eps / steps
        xa, mom = x.clone(), torch.zeros_like(x)
        any_hit = torch.zeros_like(correct)
        for _ in range(steps):
            g = grad_ce(xa)
            mom = decay * mom + g / (rows_norm(g, 1) + 1e-12)
            xa = project(x, xa + alpha * mom / (rows_norm(mom, 2) + 1e-12), eps)
            any_hit = any_hit | fooled(xa)
        last = fooled(xa)
        broken.append(any_hit)
        out["mi-fgsm"][str(eps)] = {"robust_accuracy": (correct & ~any_hit).float().mean().item(),
                                    "last_iterate": (correct & ~last).float().mean().item(),
                                    "broken": indices(any_hit)}
    for eps, a in zip(det_eps, nested(broken)):
        out["mi-fgsm"][str(eps)]["nested"] = a

    rand_eps = [1.0, 1.5]

    class Recorder(nn.Module):
        """The model, noting which samples any forward pass (each iterate) misclassifies."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.hit = inner, None

        def forward(self, v):
            z = self.inner(v)
            if self.hit is not None and v.shape[0] == n:
                self.hit |= (z.argmax(1) != y) & correct
            return z

    # PGD: torchattacks PGDL2, several seeds.
    seeds = list(range(8))
    rec = Recorder(m).eval()
    out["pgd"] = {"params": {"steps": 40, "alpha": "2.5*eps/40", "random_start": True, "seeds": seeds}}
    last_runs, any_runs = {e: [] for e in rand_eps}, {e: [] for e in rand_eps}
    for seed in seeds:
        last_b, any_b = [], []
        for eps in rand_eps:
            torch.manual_seed(seed)
            rec.hit = torch.zeros_like(correct)
            adv = torchattacks.PGDL2(rec, eps=eps, alpha=2.5 * eps / 40, steps=40, random_start=True)(x, y)
            b = fooled(adv)
            last_b.append(b)
            any_b.append(rec.hit | b)
            rec.hit = None
        for eps, lb, ab, la, aa in zip(rand_eps, last_b, any_b, nested(last_b), nested(any_b)):
            last_runs[eps].append({"independent": (correct & ~lb).float().mean().item(), "nested": la})
            any_runs[eps].append({"independent": (correct & ~ab).float().mean().item(), "nested": aa})
    for eps in rand_eps:
        out["pgd"][str(eps)] = {
            "last_iterate": [r["independent"] for r in last_runs[eps]],
            "last_iterate_mean": float(np.mean([r["independent"] for r in last_runs[eps]])),
            "any_iterate_nested": [r["nested"] for r in any_runs[eps]],
            "any_iterate_nested_mean": float(np.mean([r["nested"] for r in any_runs[eps]])),
        }

    # APGD-DLR: torchattacks APGD, several seeds.
    seeds = list(range(4))
    out["apgd-dlr"] = {"params": {"steps": 100, "restarts": 1, "loss": "dlr", "seeds": seeds}}
    runs = {e: [] for e in rand_eps}
    nested_runs = {e: [] for e in rand_eps}
    for seed in seeds:
        bs = []
        for eps in rand_eps:
            adv = torchattacks.APGD(m, norm="L2", eps=eps, steps=100, n_restarts=1, loss="dlr", seed=seed)(x, y)
            b = fooled(adv)
            bs.append(b)
            runs[eps].append((correct & ~b).float().mean().item())
        for eps, a in zip(rand_eps, nested(bs)):
            nested_runs[eps].append(a)
    for eps in rand_eps:
        out["apgd-dlr"][str(eps)] = {"runs": runs[eps], "mean": float(np.mean(runs[eps])),
                                     "nested": nested_runs[eps], "nested_mean": float(np.mean(nested_runs[eps]))}
    with open(os.path.join(HERE, "mnist_l2_references.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    torch.set_num_threads(2)
    if sys.argv[1:] == ["l2"]:
        l2_reference()
        sys.exit(0)
    if sys.argv[1:] == ["square"]:
        square_reference()
        sys.exit(0)
    if sys.argv[1:] == ["apgd_l2"]:
        apgd_l2_reference()
        sys.exit(0)
    if sys.argv[1:] == ["mifgsm"]:
        mifgsm_reference()
        sys.exit(0)
    if sys.argv[1:] == ["apgd"]:
        apgd_reference()
        sys.exit(0)
    if sys.argv[1:] == ["minimal_norm"]:
        minimal_norm_reference()
        sys.exit(0)
    allops()
    mnist_reference()
    apgd_reference()
    minimal_norm_reference()
    mifgsm_reference()
    apgd_l2_reference()
    square_reference()
    l2_reference()
