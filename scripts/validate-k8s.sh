#!/usr/bin/env bash
# Validates every Kubernetes manifest under docs/k8s/ against the Kubernetes JSON schema (strict:
# unknown fields are errors) with kubernetes-validate from PyPI, which bundles the schemas.
#
#   scripts/validate-k8s.sh [KUBERNETES_VERSION, default 1.33.0]
#
# The tool is installed once into a virtual environment under target/ (about 10 s); later runs
# take a few seconds. Exits non-zero when any resource does not validate.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-1.33.0}
venv=target/k8s-validate-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
fi
echo "validating docs/k8s/*.yaml against Kubernetes $version (strict)"
"$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" docs/k8s/*.yaml
