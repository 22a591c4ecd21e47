#!/usr/bin/env bash
# Validates every Kubernetes manifest under docs/k8s/ against the Kubernetes JSON schema (strict:
# unknown fields are errors) with kubernetes-validate from PyPI, which bundles the schemas.
#
#   scripts/validate-k8s.sh [KUBERNETES_VERSION, default 1.33.0]
#
# The tool is installed once into a virtual environment under target/ (about 10 s); later runs
# take a few seconds. Exits non-zero when any resource does not validate or draws a warning.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-1.33.0}
venv=target/k8s-validate-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
echo "validating docs/k8s/*.yaml against Kubernetes $version (strict)"
out=$("$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" docs/k8s/*.yaml 2>&1) || {
  echo "$out"
  exit 1
}
echo "$out"
# The validator only warns about some mistakes (an unknown kind, say): those fail here too.
if grep -q '^WARN' <<< "$out"; then
  echo "validate-k8s: warnings above" >&2
  exit 1
fi
