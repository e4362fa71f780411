#!/usr/bin/env bash
# Serving on a GPU machine with no network: build llama-cpp-python with CUDA from a carried
# source distribution, then run bench/gateway.py (engines offload every layer to the GPU).
# Put the sdist and the wheels the machine lacks in .device-serve/. Results go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-serve-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
EXTRA=/tmp/gpuhive-serve-extra
"$PY" -m pip install -q --no-index --no-deps --find-links .device-serve --target "$EXTRA" \
  uvicorn fastapi starlette pydantic pydantic-core annotated-types typing-inspection \
  python-dotenv 2>/dev/null || true
if ! PYTHONPATH=$EXTRA "$PY" -c "import llama_cpp" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --find-links .device-serve --target "$EXTRA" \
    gguf openai distro jiter sse-starlette starlette-context diskcache pydantic-settings \
    uvicorn fastapi starlette
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF \
-DLLAMA_BUILD_EXAMPLES=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PY" -m pip install -q --no-index --no-build-isolation --no-deps --target "$EXTRA" \
    .device-serve/llama_cpp_python-*.tar.gz 2>&1 | tail -5
fi
export PYTHONPATH="$PWD:$EXTRA${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L | tee "$OUT/gpu.txt"
"$PY" bench/gateway.py "$@" 2>&1 | tee "$OUT/gateway.txt"
