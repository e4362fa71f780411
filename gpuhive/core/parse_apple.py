"""Pure parser for macOS ``system_profiler SPDisplaysDataType -json`` (+ ``sysctl hw.memsize``).

Apple silicon has no VRAM of its own: the GPU shares the machine's unified memory and
Metal lets it wire only part of it. ``metal_budget_mib`` approximates that part
(Metal's ``recommendedMaxWorkingSetSize``: about 2/3 of RAM up to 36 GiB, about 3/4
above, as llama.cpp reports it on real Macs). It is an estimate, not an Apple figure;
a measured value from the agent should replace it when there is one.

Discrete GPUs in Intel Macs report ``spdisplays_vram`` ("8 GB"); integrated Intel GPUs
report ``spdisplays_vram_shared``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from gpuhive.core.model import GpuInfo
from gpuhive.core.parse_gpu import GpuParseError

_MEM = re.compile(r"(\d+(?:\.\d+)?)\s*(TB|GB|MB|KB)?", re.IGNORECASE)
_UNIT_MIB = {"TB": 1024 * 1024, "GB": 1024, "MB": 1, "KB": 1 / 1024}


def metal_budget_mib(memsize_bytes: int) -> int:
    """Approximate share of unified memory the GPU may use (see module docstring)."""
    if memsize_bytes <= 0:
        return 0
    mib = memsize_bytes // (1024 * 1024)
    return int(mib * (3 / 4 if mib > 36 * 1024 else 2 / 3))


def parse_memsize(text: str) -> int:
    """``sysctl -n hw.memsize`` output (or ``hw.memsize: N``) → bytes."""
    s = text.strip().rsplit(":", 1)[-1].strip() if isinstance(text, str) else ""
    if not s.isdigit():
        raise GpuParseError(f"sysctl hw.memsize gave {text!r}, expected a byte count",
                            source="sysctl")
    return int(s)


def parse_system_profiler_json(text: str, memsize_bytes: int = 0) -> list[GpuInfo]:
    if not isinstance(text, str):
        raise GpuParseError("system_profiler output is not text", source="system_profiler")
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise GpuParseError(f"system_profiler JSON is malformed: {exc}",
                            source="system_profiler") from exc
    return parse_system_profiler_data(data, memsize_bytes)


def parse_system_profiler_data(data: Any, memsize_bytes: int = 0) -> list[GpuInfo]:
    if not isinstance(data, Mapping):
        raise GpuParseError("system_profiler JSON is not an object", source="system_profiler")
    items = data.get("SPDisplaysDataType", [])
    if not isinstance(items, list):
        raise GpuParseError("SPDisplaysDataType is not a list", source="system_profiler")
    out: list[GpuInfo] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("sppci_device_type")
        if kind is not None and kind != "spdisplays_gpu":
            continue
        name = _str(item.get("sppci_model")) or _str(item.get("_name"))
        if not name:
            continue
        vendor = _vendor(_str(item.get("spdisplays_vendor")) or "", name)
        dedicated = _mem_mib(item.get("spdisplays_vram"))
        shared = _mem_mib(item.get("spdisplays_vram_shared"))
        if vendor == "apple" and dedicated is None:
            total = metal_budget_mib(memsize_bytes)
        else:
            total = dedicated if dedicated is not None else (shared or 0)
        out.append(GpuInfo(
            index=len(out),
            name=name,
            memory_total_mib=total,
            vendor=vendor,
        ))
    return out


def _str(v: Any) -> str | None:
    return v.strip() or None if isinstance(v, str) else None


def _vendor(vendor: str, name: str) -> str:
    v = f"{vendor} {name}".lower()
    for key, out in (("apple", "apple"), ("amd", "amd"), ("ati", "amd"), ("radeon", "amd"),
                     ("nvidia", "nvidia"), ("intel", "intel")):
        if key in v:
            return out
    return "unknown"


def _mem_mib(v: Any) -> int | None:
    if not isinstance(v, str):
        return None
    m = _MEM.search(v)
    if not m:
        return None
    unit = (m.group(2) or "MB").upper()
    val = float(m.group(1)) * _UNIT_MIB[unit]
    return int(val) if val < 2**50 else None
