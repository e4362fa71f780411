#!/usr/bin/env bash
# Install what the tests need, then lint, type-check and run every test.
# Integration tests use the network-namespace lab when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"
# leftovers of a killed earlier run must not collide with this one
gpuhive lab down --all >/dev/null 2>&1 || true
python -m pytest -q -p no:cacheprovider "$@"
