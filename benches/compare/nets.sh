#!/usr/bin/env bash
# Side by side on the networks people evaluate: Gauntlet (the ONNX file, compiled executor)
# against PyTorch + torchattacks (the module the file was exported from), same weights, same 128
# CIFAR-shaped images, same thread count, in one run.
#
# Per network: PGD-10 on the 128 images with every sample attacked for all 10 steps (the labels
# are the network's own predictions and eps is 1e-4, so no sample is broken and neither side
# exits early), REPEATS runs alternating the two sides, each in its own process under
# /usr/bin/time (median wall time of the attack inside the process, peak resident memory of the
# process); then forward + input-gradient passes at batch 1, 32 and 128 (median of 5 each); with
# BEFORE=1 also Gauntlet's node-by-node executor once, for comparison.
#
# usage: benches/compare/nets.sh [NAME...]     (resnet18 wrn16_4 vit mobilenetv2; default all)
#   env: THREADS (2), REPEATS (3), VENV (target/compare/venv), BEFORE (0)
set -euo pipefail
cd "$(dirname "$0")/../.."
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
BEFORE=${BEFORE:-0}
OUT=target/compare
NETS="$OUT/nets"
VENV=${VENV:-$OUT/venv}
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(resnet18 wrn16_4 vit mobilenetv2)
export THREADS RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$NETS"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch torchvision torchattacks onnx numpy
fi
PY="$(realpath "$VENV")/bin/python"
cargo build --release -q --example onnx_timing
for n in "${NAMES[@]}"; do
  [ -f "$NETS/$n/model.onnx" ] || (cd benches/compare && "$PY" nets.py "../../$NETS" "$n" 2>/dev/null)
done

LOG="$OUT/nets.jsonl"
: > "$LOG"
# run NET SIDE CMD...: the command's JSON lines and its peak memory, tagged with the network.
run() {
  local net=$1 side=$2
  shift 2
  /usr/bin/time -f "{\"side\":\"$side\",\"what\":\"peak\",\"kb\":%M}" -o "$OUT/time.json" "$@" \
    | sed "s/^{/{\"net\":\"$net\",/" >> "$LOG"
  sed "s/^{/{\"net\":\"$net\",/" "$OUT/time.json" >> "$LOG"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads $THREADS; $(date -u +%F)"
for n in "${NAMES[@]}"; do
  echo "== $n"
  for r in $(seq "$REPEATS"); do
    run "$n" gauntlet target/release/examples/onnx_timing "$NETS/$n/model.onnx" "$NETS/$n/data.npz" --what pgd --repeats 1
    run "$n" torch "$PY" benches/compare/torch_nets.py "$NETS" "$n" --what pgd --repeats 1
  done
  run "$n" gauntlet target/release/examples/onnx_timing "$NETS/$n/model.onnx" "$NETS/$n/data.npz" --what passes --repeats 5
  run "$n" torch "$PY" benches/compare/torch_nets.py "$NETS" "$n" --what passes --repeats 5
  if [ "$BEFORE" = 1 ]; then
    target/release/examples/onnx_timing "$NETS/$n/model.onnx" "$NETS/$n/data.npz" --what pgd --repeats 1 \
      --node-by-node | sed "s/^{/{\"net\":\"$n\",\"executor\":\"node-by-node\",/" >> "$LOG"
  fi
done
python3 benches/compare/summarize_nets.py "$LOG"
