#!/usr/bin/env bash
# Fuzzes every parser for a while: the datasets (IDX, NPY, NPZ, safetensors, CIFAR, CSV, images),
# ONNX files and model specs, gate files, and reports and checkpoints read back.
#
#   fuzz/run.sh [SECONDS per target, default 15]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo fuzz passes unstable -Z flags to rustc;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. A crash stops the run with its input in
# fuzz/artifacts/TARGET/; make it a regression test (tests/bad_inputs.rs) once fixed.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-15}
export RUSTC_BOOTSTRAP=1

# Seeds from the repository's own files (the first byte of a datasets or onnx seed picks the parser).
mkdir -p corpus/datasets corpus/onnx corpus/gate corpus/report
cp ../docs/gate.example.toml corpus/gate/
seed() { { printf "\\$(printf '%03o' "$2")"; cat "$3"; } > "corpus/$1/$(basename "$3").$2"; }
for f in ../tests/golden/onnx/*.onnx; do seed onnx 0 "$f"; done
seed onnx 1 ../models/zoo/mnist-cnn.toml
seed datasets 2 ../tests/golden/npz/mnist8.npz
seed datasets 2 ../tests/golden/npz/mnist8_compressed.npz
seed datasets 3 ../tests/golden/allops_io.safetensors
seed datasets 0 ../datasets/data/mnist-test-1k/t10k-labels-idx1-ubyte.gz
if [ -x ../target/debug/gauntlet ] && [ ! -f corpus/report/report.json ]; then
  ../target/debug/gauntlet run --limit 20 --attack fgsm --attack pgd:steps=2 --no-checks --quiet \
    --output corpus/report/report.json >/dev/null
  # A shard keeps its checkpoint: a manifest and a batch file, read back by --resume and merge.
  shard="$(mktemp -d)"
  ../target/debug/gauntlet run --limit 20 --batch-size 8 --attack fgsm --attack fmn:steps=3 --no-checks --quiet \
    --shard 0/1 --report-dir "$shard/s" >/dev/null
  cp "$shard/s/checkpoint/manifest.json" corpus/report/manifest.json
  cp "$shard/s/checkpoint/part-000000.json" corpus/report/part.json
  rm -rf "$shard"
fi

cargo fuzz build -O
for t in datasets onnx gate report; do
  echo "== fuzz $t for ${secs}s"
  cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=4096 -max_len=1048576 \
    -print_final_stats=1 2>&1 | grep -E "stat::number_of_executed_units|stat::peak_rss_mb|ERROR|panicked|Done" || true
  if ls "artifacts/$t"/crash-* "artifacts/$t"/oom-* "artifacts/$t"/timeout-* >/dev/null 2>&1; then
    echo "fuzz: $t found a failing input in fuzz/artifacts/$t" >&2
    exit 1
  fi
done
