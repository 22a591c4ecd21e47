"""Prints the side-by-side summary of benches/compare/run.sh: medians, peak memory, ratio."""
import json
import statistics
import sys

out, repeats = sys.argv[1], int(sys.argv[2])


def side(name):
    times, rss, reports = [], [], []
    for r in range(1, repeats + 1):
        t, m = open(f"{out}/{name}-{r}.time").read().split()[-2:]
        times.append(float(t))
        rss.append(int(m) / 1024)
        reports.append(json.load(open(f"{out}/{name}-{r}.json")))
    return statistics.median(times), max(rss), reports[-1]


g_t, g_m, g = side("gauntlet")
t_t, t_m, t = side("torch")
print(f"{'':10} {'median wall s':>14} {'peak MiB':>10}  robust accuracy per eps")
ours = {str(r['eps']): r["robust_accuracy"] for r in g["results"]}
print(f"{'gauntlet':10} {g_t:14.2f} {g_m:10.0f}  " + "  ".join(f"{e}: {v:.3f}" for e, v in ours.items()))
print(f"{'torch':10} {t_t:14.2f} {t_m:10.0f}  " + "  ".join(f"{e}: {v:.3f}" for e, v in t["robust"].items()))
print(f"ratio gauntlet/torch: time {g_t / t_t:.2f}x, peak memory {g_m / t_m:.2f}x "
      f"(clean accuracy {g['clean_accuracy']:.3f} vs {t['clean_accuracy']:.3f})")
