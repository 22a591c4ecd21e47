#!/usr/bin/env bash
# Side by side: Gauntlet against PyTorch + torchattacks on the same machine, in one run.
#
# The same LeNet weights (trained here by PyTorch, written as safetensors for both sides), the same
# 1,000 MNIST test images (the ones Gauntlet ships), PGD-40 with alpha 0.01 and random start at
# eps 0.1, 0.2, 0.3, the same thread count. The two sides run alternately, REPEATS times; the
# summary gives each side's median wall time and peak memory (max RSS) and the ratio.
#
# usage: benches/compare/run.sh [MNIST_TRAIN_IMAGES]
#   env: THREADS (2), REPEATS (3), VENV (target/compare/venv), EPS (0.1,0.2,0.3), STEPS (40)
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
EPS=${EPS:-0.1,0.2,0.3}
STEPS=${STEPS:-40}
OUT=target/compare
VENV=${VENV:-$OUT/venv}
IMAGES=datasets/data/mnist-test-1k/t10k-images-idx3-ubyte.gz
TRAIN=${1:-$IMAGES}
export THREADS RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch torchattacks safetensors numpy
fi
PY="$(realpath "$VENV")/bin/python"
cargo build --release -q --bin gauntlet --example pass_timing
[ -f "$OUT/lenet.safetensors" ] || (cd benches/compare && "$PY" prepare.py "../../$OUT" "$(cd ../.. && realpath "$TRAIN")")

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $THREADS; $(date -u +%F)"
echo "== single passes, batch 256 (median of 10); thread scaling 1 -> 2 (alternating in one process)"
(cd benches/compare && "$PY" torch_side.py "../../$OUT/lenet.safetensors" "../../$IMAGES" "$EPS" "$STEPS" 0.01 256 --passes --scaling)
target/release/examples/pass_timing "$OUT/lenet.toml" 256 --scaling

echo "== PGD-$STEPS sweep over eps $EPS on 1,000 images, $REPEATS alternating runs"
for r in $(seq "$REPEATS"); do
  /usr/bin/time -f "%e %M" -o "$OUT/gauntlet-$r.time" target/release/gauntlet run --model "$OUT/lenet.toml" \
    --dataset "$IMAGES" --attack "pgd:steps=$STEPS,step=0.01" --eps "$EPS" --threads "$THREADS" \
    --format json --output "$OUT/gauntlet-$r.json" -q > /dev/null
  (cd benches/compare && /usr/bin/time -f "%e %M" -o "../../$OUT/torch-$r.time" "$PY" torch_side.py \
    "../../$OUT/lenet.safetensors" "../../$IMAGES" "$EPS" "$STEPS" 0.01 256 > "../../$OUT/torch-$r.json")
done
python3 benches/compare/summarize.py "$OUT" "$REPEATS"
