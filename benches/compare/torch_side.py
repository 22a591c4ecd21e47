"""The PyTorch + torchattacks side: PGD re-run for every eps on all samples (torchattacks has no
sweep), robust accuracy over all samples, and optional timing of single passes.

usage: torch_side.py WEIGHTS IMAGES EPS_CSV STEPS ALPHA BATCH [--passes [--scaling]]
"""
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchattacks
from safetensors.torch import load_file

from common import LeNet, mnist

weights, images, eps_csv, steps, alpha, batch = sys.argv[1:7]
steps, alpha, batch = int(steps), float(alpha), int(batch)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
model = LeNet()
model.load_state_dict(load_file(weights))
model.eval()
x, y = mnist(images)

if "--passes" in sys.argv:
    xb, yb = x[:256].clone(), y[:256]
    res = {}
    for name in ["forward", "forward+grad"]:
        times = []
        for _ in range(12):
            t = time.perf_counter()
            if name == "forward":
                with torch.no_grad():
                    model(xb)
            else:
                xv = xb.clone().requires_grad_(True)
                F.cross_entropy(model(xv), yb, reduction="sum").backward()
                xv.grad
            times.append(time.perf_counter() - t)
        res[name] = statistics.median(times[2:]) * 1000
    print(json.dumps({"side": "torch", "batch": 256, "ms": res}))
    if "--scaling" in sys.argv:
        # forward + input gradient alternately on 1 and 2 threads, 15 each (first dropped), medians.
        times = {1: [], 2: []}
        for _ in range(16):
            for n in (1, 2):
                torch.set_num_threads(n)
                t = time.perf_counter()
                xv = xb.clone().requires_grad_(True)
                F.cross_entropy(model(xv), yb, reduction="sum").backward()
                times[n].append(time.perf_counter() - t)
        one, two = (statistics.median(times[n][1:]) * 1000 for n in (1, 2))
        print(json.dumps({"side": "torch", "batch": 256, "scaling": {
            "1 thread ms": round(one, 3), "2 threads ms": round(two, 3), "speed-up": round(one / two, 2)}}))
    sys.exit(0)

start = time.perf_counter()
with torch.no_grad():
    correct = torch.cat([model(x[i : i + batch]).argmax(1) for i in range(0, len(y), batch)]) == y
robust = {}
for eps in [float(e) for e in eps_csv.split(",")]:
    torch.manual_seed(0)
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    ok = []
    for i in range(0, len(y), batch):
        adv = atk(x[i : i + batch], y[i : i + batch])
        with torch.no_grad():
            ok.append(model(adv).argmax(1) == y[i : i + batch])
    robust[str(eps)] = (torch.cat(ok) & correct).float().mean().item()
print(json.dumps({"side": "torch", "time_s": time.perf_counter() - start,
                  "clean_accuracy": correct.float().mean().item(), "robust": robust}))
