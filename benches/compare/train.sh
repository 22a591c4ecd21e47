#!/usr/bin/env bash
# Side by side: one epoch of training in Gauntlet (`gauntlet train`) and in PyTorch (+ torchattacks
# for the inner attack), same architecture (models/zoo/mnist-convnet.arch.toml), same images,
# batch 100, Adam at a constant rate, the same thread count; standard and PGD-10 adversarial
# training at eps 0.3. The two sides run alternately, REPEATS times; the summary gives each
# side's median epoch time and the ratio.
#
# usage: benches/compare/train.sh MNIST_TRAIN_IMAGES
#   env: THREADS (2), REPEATS (3), N (10000 training images), VENV (target/compare/venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
TRAIN=$(realpath "${1:?usage: benches/compare/train.sh MNIST_TRAIN_IMAGES (train-images-idx3-ubyte.gz)}")
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
N=${N:-10000}
OUT=target/compare/train
VENV=${VENV:-target/compare/venv}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch torchattacks safetensors numpy
fi
PY="$(realpath "$VENV")/bin/python"
cargo build --release -q --bin gauntlet
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $THREADS; $(date -u +%F); $N images"
for method in standard pgd; do
  adv=()
  [ "$method" = pgd ] && adv=(--adversarial pgd --eps 0.3 --steps 10)
  for r in $(seq "$REPEATS"); do
    start=$(date +%s.%N)
    # --holdout 1 and --val-steps 0: the epoch itself, with no validation to speak of.
    target/release/gauntlet train --spec models/zoo/mnist-convnet.arch.toml --dataset "$TRAIN" --limit $((N + 1)) \
      --holdout 1 --val-steps 0 --epochs 1 --batch-size 100 --lr 0.001 "${adv[@]}" --threads "$THREADS" \
      --out "$OUT/m.toml" --quiet 2> "$OUT/gauntlet.log"
    end=$(date +%s.%N)
    echo "{\"side\": \"gauntlet\", \"method\": \"$method\", \"seconds\": $(echo "$end - $start" | bc)}"
    (cd benches/compare && "$PY" train_torch.py "$TRAIN" "$N" "$method" 0.3)
  done
done | tee "$OUT/results.jsonl"
python3 - "$OUT/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for method in ("standard", "pgd"):
    med = {s: statistics.median(r["seconds"] for r in rows if r["side"] == s and r["method"] == method) for s in ("gauntlet", "torch")}
    print(f"{method}: gauntlet {med['gauntlet']:.2f} s, torch {med['torch']:.2f} s per epoch; torch/gauntlet = {med['torch'] / med['gauntlet']:.2f}")
PY
