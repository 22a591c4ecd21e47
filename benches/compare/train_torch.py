"""One epoch of training in PyTorch, as `gauntlet train` runs it: the shipped MNIST architecture
(models/zoo/mnist-convnet.arch.toml: conv32/s2-conv64/s2-fc128-fc10, its activation read from that
file, normalization inside),
Adam at a constant learning rate, batch 100, standard or PGD adversarial training with
torchattacks' PGD (10 steps of 2.5*eps/10, random start) as the inner attack.

usage: train_torch.py TRAIN_IMAGES N standard|pgd EPS
prints one JSON line: seconds of the epoch, images per second, final loss.
"""
import json
import sys
import time
import tomllib

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchattacks

from common import mnist

ARCH = "../../models/zoo/mnist-convnet.arch.toml"


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 4, stride=2, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        with open(ARCH, "rb") as f:
            acts = [layer for layer in tomllib.load(f)["layers"] if layer["op"] in ("relu", "leaky_relu")]
        self.slope = acts[0].get("slope", 0.01) if acts[0]["op"] == "leaky_relu" else 0.0

    def forward(self, x):
        x = (x - 0.1307) / 0.3081
        act = lambda t: F.leaky_relu(t, self.slope)  # noqa: E731 (slope 0 is ReLU)
        x = act(self.conv2(act(self.conv1(x))))
        return self.fc2(act(self.fc1(torch.flatten(x, 1))))


def main():
    path, n, method, eps = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    torch.manual_seed(0)
    x, y = mnist(path)
    x, y = x[:n], y[:n]
    model = ConvNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    attack = torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / 10, steps=10, random_start=True)
    order = torch.randperm(n)
    start = time.perf_counter()
    for i in range(0, n, 100):
        idx = order[i : i + 100]
        xb, yb = x[idx], y[idx]
        if method == "pgd":
            xb = attack(xb, yb)
        model.train()
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    print(json.dumps({"side": "torch", "method": method, "seconds": seconds, "images_per_s": n / seconds, "loss": loss.item()}))


if __name__ == "__main__":
    main()
