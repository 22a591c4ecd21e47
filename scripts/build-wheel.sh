#!/usr/bin/env bash
# Builds the Python wheel (python/): the extension module and the `gauntlet` command line in one
# abi3 wheel for CPython >= 3.9, into target/wheels/. maturin comes from PyPI into a venv under
# target/ the first time.
#
# usage: scripts/build-wheel.sh [--dev]     (--dev: the dev profile, for tests; default release)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/wheel-venv
if [ ! -x "$venv/bin/maturin" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "maturin>=1.7,<2"
fi
profile=(--release)
[ "${1:-}" = "--dev" ] && profile=(--profile dev)
# The workspace's target folder: the library's dependencies are built once for both.
(cd python && "../$venv/bin/maturin" build "${profile[@]}" --target-dir ../target -o ../target/wheels --quiet)
ls -1 target/wheels/gauntlet_robustness-*.whl | tail -n 1
