#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU and its own torch (no network needed):
# a loopback hive with one agent on this machine, then probe, rank and bench it.
# Wheels the machine lacks can be put in .device-wheels/ (asyncssh, cryptography…).
# Results (JSON) go to ${OUT:-/tmp/gpu-check}.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
# use the machine's own python (it holds torch); add only what it lacks, from local wheels
if ! "$PY" -c "import asyncssh" 2>/dev/null && [ -d .device-wheels ]; then
  "$PY" -m pip install -q --no-index --find-links .device-wheels --target /tmp/gpuhive-extra \
    asyncssh
fi
export PYTHONPATH="$PWD:/tmp/gpuhive-extra${PYTHONPATH:+:$PYTHONPATH}"
gpuhive() { "$PY" -m gpuhive "$@"; }
nvidia-smi -L | tee "$OUT/nvidia-smi-L.txt"
export GPUHIVE_LAB_DIR=/tmp/gpuhive-gpu-lab
trap 'gpuhive lab down >/dev/null 2>&1 || true' EXIT
gpuhive lab up --nodes 1 --loopback
export GPUHIVE_HOME=$GPUHIVE_LAB_DIR/controller
gpuhive nodes probe
sleep 2
gpuhive nodes --json > "$OUT/nodes.json"
gpuhive nodes
gpuhive nodes rank --gpus 1 --min-vram 40G --for train | tee "$OUT/rank.txt"
gpuhive nodes bench --json > "$OUT/bench.json"
cat "$OUT/bench.json"
