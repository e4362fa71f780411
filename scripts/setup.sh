#!/usr/bin/env bash
# Idempotent set-up: Debian packages the lab and tests use (when root), and a virtualenv
# in .venv with gpuhive and its development tools. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(openssh-client openssh-server iproute2 nftables iputils-ping
                 wireguard-tools wireguard-go prometheus chromium)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: not root, skipping Debian packages ${missing[*]} (the lab falls back to loopback)"
  fi
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.gpuhive-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log=$(mktemp)
  # torch is pinned to the CPU build that lies on these machines' disk (a newer or unpinned
  # torch would pull several GB); the lab's nodes train with it
  if ! { .venv/bin/python -m pip install -q --upgrade pip &&
         .venv/bin/python -m pip install -q -e '.[dev]' &&
         .venv/bin/python -m pip install -q "torch==${GPUHIVE_TORCH:-2.13.0}" numpy; } >"$log" 2>&1; then
    cat "$log"; rm -f "$log"
    echo "setup: pip install failed (output above)" >&2
    exit 1
  fi
  rm -f "$log"
  touch "$stamp"
fi
echo "setup: ready (.venv/bin/gpuhive)"
