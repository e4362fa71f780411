#!/usr/bin/env bash
# Serving on a GPU machine with no network: build llama-cpp-python with CUDA from a carried
# source distribution, then run bench/gateway.py --gpu (engines offload every layer to the
# GPU) while nvidia-smi records which processes hold GPU memory.
# Put the sdist and the wheels the machine lacks in .device-serve/ (docs/benchmarks.md lists
# them). Results go to $OUT: build.txt, gpu.txt, gpu-apps.txt, gateway.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-serve-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
EXTRA=/tmp/gpuhive-serve-extra
"$PY" -m pip install -q --no-index --no-deps --no-compile --target "$EXTRA" .device-serve/*.whl
if ! PYTHONPATH=$EXTRA "$PY" -c "import llama_cpp" 2>/dev/null; then
  start=$(date +%s)
  # flash-attention kernels off: they are most of the CUDA build time and these small
  # models do not need them (llama.cpp falls back to its other attention path)
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_FA=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip install -q --no-index --no-build-isolation --no-deps --target "$EXTRA" \
    .device-serve/llama_cpp_python-*.tar.gz > "$OUT/build.txt" 2>&1 || {
      tail -30 "$OUT/build.txt"; exit 1; }
  echo "llama-cpp-python CUDA build: $(( $(date +%s) - start )) s" | tee -a "$OUT/build.txt"
fi
export PYTHONPATH="$PWD:$EXTRA${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L | tee "$OUT/gpu.txt"
( while sleep 2; do
    nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader \
      >> "$OUT/gpu-apps.txt" 2>&1
  done ) &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
"$PY" bench/gateway.py --gpu "$@" 2>&1 | tee "$OUT/gateway.txt"
