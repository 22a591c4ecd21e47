#!/usr/bin/env bash
# Builds Gauntlet with `--features cuda` on a machine without a CUDA toolkit or GPU.
#
# The toolkit comes from NVIDIA's CUDA 13.0.x wheels on PyPI (nvcc, headers, runtime; cuBLAS,
# cuRAND and NVRTC for linking), installed into a venv under target/cuda-toolkit/. No wheel ships
# the driver library, so the link uses a stub libcuda.so built here from the driver symbols cudarc
# imports; the binary loads the real libcuda.so.1 of the GPU machine at run time.
#
# usage: scripts/build-cuda.sh [--check]     (default: release builds of target/cuda/release/gauntlet
#                                            and of the onnx_timing example)
#   --check    `cargo check --workspace --all-targets --features cuda` only (no link, no cuBLAS
#              wheels): what CI runs so that the GPU code compiles on every change
#   env: CUDA_COMPUTE_CAP (default 90: H100/H200; 80 for A100, 89 for L4/L40, 120 for Blackwell),
#        CUDA_WHEEL_VENV (default target/cuda-toolkit/venv)
#
# Cost on the 2-core development machine: the wheels (~40 MB for --check, ~700 MB with the link
# libraries) install in under a minute; candle's CUDA kernels compile to PTX in a few minutes; a
# cold release build takes about a quarter of an hour.
#
# Running the binary on a GPU machine needs that machine's driver (libcuda.so.1) and the CUDA 13
# runtime libraries the binary links: libcublas.so.13, libcublasLt.so.13, libcurand.so.10 and
# libnvrtc.so.13. A PyTorch built for CUDA 13 carries them in its nvidia/*/lib folders:
#   export LD_LIBRARY_PATH=$(python -c 'import nvidia, os; p = os.path.dirname(nvidia.__path__[0]); \
#     print(":".join(os.path.join(r, d) for r, ds, _ in os.walk(p) for d in ds if d == "lib"))')
#   ./gauntlet run --device cuda ...
set -euo pipefail
cd "$(dirname "$0")/.."

mode=build
case "${1:-}" in
  --check) mode=check ;;
  "") ;;
  *) echo "usage: scripts/build-cuda.sh [--check]" >&2; exit 2 ;;
esac

root="$PWD/target/cuda-toolkit"
venv="${CUDA_WHEEL_VENV:-$root/venv}"
mkdir -p "$root"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# CUDA 13.0.x: cudarc 0.19 accepts it, and 580-series drivers run its PTX.
wheels=(
  "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88"
  "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-runtime==13.0.96"
)
if [ "$mode" = build ]; then
  wheels+=("nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35" "nvidia-cuda-nvrtc==13.0.88")
fi
"$venv/bin/pip" install -q --disable-pip-version-check "${wheels[@]}" >&2

# The wheels' toolkit tree: site-packages/nvidia/cu13/{bin,include,lib}.
cu13="$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')"
[ -x "$cu13/bin/nvcc" ] || { echo "build-cuda: no nvcc under $cu13/bin" >&2; exit 1; }

# CUDA_HOME: the wheels' include/ and bin/, and a lib/ of unversioned links plus the driver stub.
home="$root/home"
rm -rf "$home"
mkdir -p "$home/lib/stubs"
ln -s "$cu13/include" "$home/include"
ln -s "$cu13/bin" "$home/bin"
for f in "$cu13"/lib/*.so.*; do
  [ -e "$f" ] || continue
  base="$(basename "$f")"
  ln -sf "$f" "$home/lib/$base"
  ln -sf "$f" "$home/lib/${base%%.so.*}.so"
done

if [ "$mode" = build ]; then
  # A stub of the driver library with every cu* symbol that the program imports.
  cargo fetch -q
  sys="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -mindepth 1 -type d -exec \
    sh -c 'ls -d "$1"/cudarc-0.19.* 2>/dev/null' _ {} \; | sort -V | tail -n 1)"
  [ -n "$sys" ] || { echo "build-cuda: cudarc's sources are not in the cargo registry" >&2; exit 1; }
  grep -rhoE 'pub fn cu[A-Za-z0-9_]+' "$sys/src/driver/sys" | awk '{print $3}' | sort -u |
    sed 's/.*/int &(void) { return 999; }/' > "$root/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/stubs/libcuda.so" "$root/libcuda_stub.c"
  ln -sf stubs/libcuda.so "$home/lib/libcuda.so"
fi

export CUDA_HOME="$home" CUDA_PATH="$home" CUDA_ROOT="$home"
export PATH="$home/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export LIBRARY_PATH="$home/lib:$home/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
echo "build-cuda: nvcc $("$home/bin/nvcc" --version | grep -oE 'release [0-9.]+'), compute capability $CUDA_COMPUTE_CAP" >&2

if [ "$mode" = check ]; then
  cargo check --workspace --all-targets --features cuda
else
  # A target folder of its own, so that the CPU build in target/release stays as it is.
  # The timing example too: the Gauntlet side of the GPU comparison with PyTorch.
  cargo build --release --features cuda --bin gauntlet --example onnx_timing --target-dir target/cuda
  echo "build-cuda: target/cuda/release/gauntlet and target/cuda/release/examples/onnx_timing" \
    "(need libcuda.so.1 and the CUDA 13 libraries at run time)" >&2
fi
