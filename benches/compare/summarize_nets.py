"""Summarizes nets.sh's JSON lines: medians per side and network, as Markdown tables."""
import json
import statistics
import sys
from collections import defaultdict


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
    pgd = defaultdict(list)
    peak = defaultdict(list)
    passes = {}
    before = {}
    nets = []
    for r in rows:
        net = r.get("net")
        if net and net not in nets:
            nets.append(net)
        key = (net, r["side"])
        if r["what"] == "pgd":
            if r.get("executor") == "node-by-node":
                before[net] = r["s"]
            else:
                pgd[key].append(r["s"])
        elif r["what"] == "peak":
            peak[key].append(r["kb"] / 1024)
        elif r["what"] == "forward+grad":
            passes[(net, r["side"], r["batch"])] = r["images_per_s"]
    print("| network | PGD-10, 128 images: Gauntlet | PyTorch + torchattacks | ratio | peak memory: Gauntlet | PyTorch | ratio |")
    print("|---|---|---|---|---|---|---|")
    for n in nets:
        g, t = statistics.median(pgd[(n, "gauntlet")]), statistics.median(pgd[(n, "torch")])
        mg, mt = max(peak[(n, "gauntlet")]), max(peak[(n, "torch")])
        print(f"| {n} | {g:.2f} s | {t:.2f} s | **{g / t:.2f}×** | {mg:.0f} MiB | {mt:.0f} MiB | {mg / mt:.2f}× |")
    print()
    print("| network | batch | forward + input gradient: Gauntlet | PyTorch | time ratio |")
    print("|---|---|---|---|---|")
    for n in nets:
        for b in sorted({k[2] for k in passes if k[0] == n}):
            g, t = passes.get((n, "gauntlet", b)), passes.get((n, "torch", b))
            if g and t:
                print(f"| {n} | {b} | {g:.0f} images/s | {t:.0f} images/s | {t / g:.2f}× |")
    if before:
        print()
        print("| network | PGD-10 node by node (before) | compiled | speed-up |")
        print("|---|---|---|---|")
        for n, s in before.items():
            g = statistics.median(pgd[(n, "gauntlet")])
            print(f"| {n} | {s:.2f} s | {g:.2f} s | {s / g:.1f}× |")


if __name__ == "__main__":
    main()
