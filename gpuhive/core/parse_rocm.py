"""Pure parser for ``rocm-smi --showproductname --showmeminfo vram --showuse --showtemp --json``.

rocm-smi prints one JSON object keyed by card (``card0``, ``card1`` …) plus, with some
flags, a ``system`` key. Every value is a string. Key names changed across ROCm
releases, so each field is looked up under its known spellings (see
tests/data/amd/README.md for the shapes and where they come from).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from gpuhive.core.model import GpuInfo
from gpuhive.core.parse_gpu import GpuParseError, number

ROCM_SMI_ARGS: tuple[str, ...] = (
    "--showproductname", "--showmeminfo", "vram", "--showuse", "--showtemp", "--json",
)

_CARD = re.compile(r"^card(\d+)$")
_NAME_KEYS = ("Card series", "Device Name", "Card Series", "Card model", "Card Model")
_TEMP_KEYS = (
    "Temperature (Sensor edge) (C)",
    "Temperature (Sensor junction) (C)",
    "Temperature (Sensor memory) (C)",
)
_POWER_KEYS = (
    "Average Graphics Package Power (W)",
    "Current Socket Graphics Package Power (W)",
)


def parse_rocm_smi_json(text: str) -> list[GpuInfo]:
    """GPUs in card order. ``[]`` for empty input or ``{}``; GpuParseError for garbage."""
    if not isinstance(text, str):
        raise GpuParseError("rocm-smi output is not text", source="rocm-smi")
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise GpuParseError(f"rocm-smi JSON is malformed: {exc}", source="rocm-smi",
                            hint="run `rocm-smi --json` by hand; old rocm-smi prints "
                                 "warnings before the JSON") from exc
    return parse_rocm_smi_data(data)


def parse_rocm_smi_data(data: Any) -> list[GpuInfo]:
    if not isinstance(data, Mapping):
        raise GpuParseError("rocm-smi JSON is not an object", source="rocm-smi")
    system = data.get("system")
    driver = None
    if isinstance(system, Mapping):
        driver = _s(system.get("Driver version"))
    cards: list[tuple[int, Mapping[str, Any]]] = []
    for key, value in data.items():
        m = _CARD.match(str(key))
        if not m:
            continue
        if not isinstance(value, Mapping):
            raise GpuParseError(f"rocm-smi entry {key!r} is not an object", source="rocm-smi")
        cards.append((int(m.group(1)), value))
    out: list[GpuInfo] = []
    for index, card in sorted(cards, key=lambda c: c[0]):
        total_b = number(card.get("VRAM Total Memory (B)"))
        used_b = number(card.get("VRAM Total Used Memory (B)"))
        out.append(GpuInfo(
            index=index,
            name=_first_str(card, _NAME_KEYS) or f"AMD GPU {index}",
            memory_total_mib=_mib(total_b),
            memory_used_mib=_mib(used_b),
            utilization_pct=number(card.get("GPU use (%)")),
            temperature_c=_first_num(card, _TEMP_KEYS),
            power_w=_first_num(card, _POWER_KEYS),
            uuid=_s(card.get("Unique ID")) or "",
            vendor="amd",
            compute_capability=None,  # gfx targets (gfx90a…) are not CUDA capabilities
            driver_version=driver,
        ))
    return out


def _mib(b: float | None) -> int:
    if b is None or b < 0 or b > 2**62:
        return 0
    return int(b) // (1024 * 1024)


def _s(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    v = v.strip()
    return v if v and v.lower() not in ("n/a", "unknown") else None


def _first_str(card: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for k in keys:
        v = _s(card.get(k))
        if v:
            return v
    return None


def _first_num(card: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for k in keys:
        v = number(card.get(k))
        if v is not None:
            return v
    return None
