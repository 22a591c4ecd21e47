#!/usr/bin/env bash
# Certified bounds side by side: Gauntlet's IBP and CROWN against the independent float64 numpy
# implementation (tests/golden/bounds/make_bounds.py) on the shipped MNIST CNN, the same images,
# the same eps, the same thread count, in one run. Prints each side's seconds, certified count
# and the ratio (numpy time / Gauntlet time).
#
# usage: benches/certify/run.sh
#   env: N (100 images), EPS (0.02), THREADS (2), VENV (target/bounds-venv: numpy is installed
#   into it when missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100}
EPS=${EPS:-0.02}
THREADS=${THREADS:-2}
VENV=${VENV:-target/bounds-venv}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q numpy onnx
fi
cargo build --release -q --bin gauntlet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $THREADS; $(date -u +%F)"
echo "== MNIST CNN (builtin), $N images, L-inf eps $EPS"
target/release/gauntlet run --limit "$N" --eps "$EPS" --attack fgsm --certify ibp,crown --no-checks --quiet \
  --threads "$THREADS" --output "$out/report.json" >/dev/null
"$VENV/bin/python" tests/golden/bounds/make_bounds.py --bench --n "$N" --eps "$EPS" | tee "$out/numpy.txt"
"$VENV/bin/python" - "$out/report.json" "$out/numpy.txt" <<'PY'
import json, re, sys
rows = {r["method"]: r for r in json.load(open(sys.argv[1]))["certified"]}
numpy = {}
for line in open(sys.argv[2]):
    m = re.match(r"(ibp|crown)\s+([\d.]+) s\s+certified (\d+)", line.strip())
    if m:
        numpy[m.group(1)] = (float(m.group(2)), int(m.group(3)))
print("%-6s %12s %12s %10s %10s %8s" % ("method", "gauntlet s", "numpy s", "certified", "(numpy)", "ratio"))
for m in ("ibp", "crown"):
    g = rows[m]
    t, c = numpy[m]
    print("%-6s %12.2f %12.2f %10d %10d %7.1fx" % (m, g["time_s"], t, g["certified"], c, t / max(g["time_s"], 1e-9)))
PY
