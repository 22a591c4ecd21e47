"""PyTorch + torchattacks side of nets.sh: the same figures as Gauntlet's onnx_timing example.

usage: python torch_nets.py DIR NAME [--what passes|pgd|all] [--batches 1,32,128] [--eps E]
       [--steps S] [--repeats R] [--device cpu|cuda]
DIR/NAME holds model.pt and data.npz written by nets.py. Prints one JSON object per figure.
"""
import argparse
import json
import os
import time

import sys

import numpy as np
import torch
import torchattacks

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nets  # noqa: E402  (beside this script)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("name")
    p.add_argument("--what", default="all")
    p.add_argument("--batches", default="1,32,128")
    p.add_argument("--eps", type=float, default=1e-4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    dev = torch.device(a.device)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()
    threads = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(threads)
    d = os.path.join(a.dir, a.name)
    model = nets.build(a.name)
    model.load_state_dict(torch.load(os.path.join(d, "model.pt")))
    model.eval().to(dev)
    data = np.load(os.path.join(d, "data.npz"))
    x_all = torch.tensor(data["images"]).to(dev)
    y_all = torch.tensor(data["labels"]).to(dev)
    n = len(y_all)
    print(json.dumps({"side": "torch", "what": "setup", "torch": torch.__version__, "threads": threads, "device": a.device}))
    if a.what in ("passes", "all"):
        for b in [int(v) for v in a.batches.split(",")]:
            idx = torch.arange(b) % n
            x, y = x_all[idx], y_all[idx]

            def step():
                xi = x.clone().requires_grad_(True)
                loss = torch.nn.functional.cross_entropy(model(xi), y)
                torch.autograd.grad(loss, [xi])

            step()
            sync()
            times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                step()
                sync()
                times.append(time.perf_counter() - t)
            s = float(np.median(times))
            print(json.dumps({"side": "torch", "what": "forward+grad", "batch": b, "ms": round(s * 1e3, 3),
                              "images_per_s": round(b / s, 1)}))
    if a.what in ("pgd", "all"):
        attack = torchattacks.PGD(model, eps=a.eps, alpha=a.eps / 4, steps=a.steps, random_start=True)
        times, broken = [], 0
        for _ in range(a.repeats):
            t = time.perf_counter()
            adv = attack(x_all, y_all)
            sync()
            times.append(time.perf_counter() - t)
            with torch.no_grad():
                broken = int((model(adv).argmax(1) != y_all).sum())
        print(json.dumps({"side": "torch", "what": "pgd", "images": n, "steps": a.steps, "eps": a.eps,
                          "s": round(float(np.median(times)), 3), "broken": broken}))
    if dev.type == "cuda":
        print(json.dumps({"side": "torch", "what": "gpu_memory", "peak_mib": torch.cuda.max_memory_allocated() / 2**20}))


if __name__ == "__main__":
    main()
