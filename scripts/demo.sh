#!/usr/bin/env bash
# The main job on a local hive: a controller and three NAT'd friends (network namespaces
# when run as root, local processes otherwise), the nodes table, a command on every node,
# then everything torn down — also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

LAB_DIR=${GPUHIVE_LAB_DIR:-/tmp/gpuhive-demo}
export GPUHIVE_LAB_DIR=$LAB_DIR
trap 'gpuhive lab down --dir "$LAB_DIR" >/dev/null 2>&1 || true' EXIT
gpuhive lab down --dir "$LAB_DIR" >/dev/null 2>&1 || true

OVERLAY=""
[ "$(id -u)" = 0 ] && OVERLAY="--overlay"   # NAT'd friends need the WireGuard overlay
echo "== gpuhive lab up --nodes 3 $OVERLAY"
gpuhive lab up --nodes 3 $OVERLAY --dir "$LAB_DIR"
export GPUHIVE_HOME=$LAB_DIR/controller

echo; echo "== gpuhive nodes"
gpuhive nodes
echo; echo "== gpuhive nodes exec all -- sh -c 'hostname -I'"
gpuhive nodes exec all -- sh -c 'echo "addresses: $(hostname -I)"'
if [ -n "$OVERLAY" ]; then
  echo; echo "== gpuhive overlay status"
  gpuhive overlay status
fi
echo; echo "== gpuhive train examples/llm.py --nodes 3 -- --steps 60 --eval-every 10"
gpuhive train examples/llm.py --nodes 3 -- --steps 60 --eval-every 10
echo; echo "== gpuhive jobs"
gpuhive jobs
echo; echo "== gpuhive lab down"
gpuhive lab down --dir "$LAB_DIR"
trap - EXIT
