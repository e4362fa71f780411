"""CPU, memory and load probes (Linux first; degrade to what ``os`` knows elsewhere).

Static facts (CPU model, flags) are read once and cached: ``probe_hardware`` runs
every heartbeat (5 s) and must stay cheap. Memory and load are read every call.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import socket
from pathlib import Path

from gpuhive.core.model import CpuInfo

# The flags ranking cares about (llama.cpp CPU speed, bf16 paths). Keep the list short:
# it rides in every heartbeat.
RANKED_CPU_FLAGS: tuple[str, ...] = (
    "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8", "neon", "asimd",
)

CPUINFO = Path("/proc/cpuinfo")
MEMINFO = Path("/proc/meminfo")


def parse_cpuinfo(text: str) -> tuple[str, list[str]]:
    """Return (model name, ranked flags present) from /proc/cpuinfo text. Pure."""
    model = ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if not model and key in ("model name", "hardware", "cpu model", "processor name"):
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, [f for f in RANKED_CPU_FLAGS if f in flags]


def parse_meminfo(text: str) -> tuple[int, int]:
    """Return (MemTotal, MemAvailable) in MiB from /proc/meminfo text. Pure.

    Old kernels lack MemAvailable; then MemFree + Buffers + Cached is used.
    """
    kib: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        parts = value.split()
        if sep and parts and parts[0].isdigit():
            kib[key.strip()] = int(parts[0])
    total = kib.get("MemTotal", 0)
    avail = kib.get("MemAvailable")
    if avail is None:
        avail = kib.get("MemFree", 0) + kib.get("Buffers", 0) + kib.get("Cached", 0)
    return total // 1024, avail // 1024


@functools.lru_cache(maxsize=1)
def cpu_static() -> CpuInfo:
    """Cores, model and flags; cached for the life of the process."""
    cores = os.cpu_count() or 1
    model: str = ""
    flags: list[str] = []
    with contextlib.suppress(OSError):
        model, flags = parse_cpuinfo(CPUINFO.read_text(errors="replace"))
    if not model:
        model = platform.processor() or platform.machine()
    return CpuInfo(cores=cores, model=model, flags=flags)


def memory_mib() -> tuple[int, int]:
    """(total, available) MiB. Raises OSError where /proc/meminfo is missing."""
    return parse_meminfo(MEMINFO.read_text(errors="replace"))


def load_1m() -> float:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return 0.0


@functools.lru_cache(maxsize=1)
def os_string() -> str:
    """e.g. 'Linux 6.8.0-45-generic x86_64 (Ubuntu 24.04.1 LTS)'."""
    base = f"{platform.system()} {platform.release()} {platform.machine()}".strip()
    pretty = ""
    try:
        for line in Path("/etc/os-release").read_text(errors="replace").splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip().strip('"')
                break
    except OSError:
        pass
    if not pretty and platform.system() == "Darwin":
        pretty = f"macOS {platform.mac_ver()[0]}".strip()
    return f"{base} ({pretty})" if pretty else base


def hostname() -> str:
    return socket.gethostname()
