"""Pure parsers for NVIDIA GPU reports → ``list[GpuInfo]``. No I/O, no clock reads.

Three NVIDIA sources, in the order the probe chain tries them:

* an NVML dict (what ``gpuhive.probe.nvml.collect`` builds from nvidia-ml-py calls),
* ``nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY_FIELDS> --format=csv,noheader,nounits``,
* ``nvidia-smi -q -x`` (XML; used when the CSV query is refused by an old driver).

AMD (rocm-smi) and Apple (system_profiler) live in ``parse_rocm`` / ``parse_apple``.

Every parser returns ``[]`` for empty input and raises ``GpuParseError`` (a
``GpuhiveError``) for anything it cannot make sense of, never a bare ``ValueError``.

Clock-event ("throttle") reasons are returned by separate functions as
``{gpu index: [reason, ...]}`` because ``GpuInfo`` has no field for them yet.
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from gpuhive.core.model import GpuInfo
from gpuhive.errors import GpuhiveError


class GpuParseError(GpuhiveError):
    """A GPU tool's output could not be parsed. ``data['source']`` names the tool."""

    code = "gpu_parse"


# The one field list for `nvidia-smi --query-gpu`: the probe builds its argv from it and
# the parser maps columns by it. Order matters (it is the CSV column order).
NVIDIA_SMI_QUERY_FIELDS: tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "memory.total",
    "memory.used",
    "memory.free",
    "utilization.gpu",
    "temperature.gpu",
    "power.draw",
    "power.limit",
    "driver_version",
    "compute_cap",  # not known to drivers older than ~510: the probe retries without it
    "pci.bus_id",
    "clocks_throttle_reasons.active",
)

# NVML clock event reason bits (nvml.h, nvmlClocksEventReason*; formerly "throttle reasons").
CLOCK_EVENT_BITS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clocks_setting"),
)
THERMAL_REASONS: frozenset[str] = frozenset({"sw_thermal_slowdown", "hw_thermal_slowdown"})

_NA = {"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown", "[unknown error]",
       "requested functionality has been deprecated", "none"}
_NUM = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")


def decode_clock_event_reasons(mask: int) -> list[str]:
    """Names of the reasons set in an NVML clock-event bitmask (unknown bits are dropped)."""
    return [name for bit, name in CLOCK_EVENT_BITS if mask & bit]


def is_thermal(reasons: Sequence[str]) -> bool:
    return any(r in THERMAL_REASONS for r in reasons)


def number(value: Any) -> float | None:
    """'37 C' → 37.0, '81559 MiB' → 81559.0, '[N/A]' → None, 12 → 12.0. Never raises."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value else None  # NaN → None
    if not isinstance(value, str) or value.strip().lower() in _NA:
        return None
    m = _NUM.match(value)
    return float(m.group(1)) if m else None


def _int(value: Any) -> int | None:
    f = number(value)
    return int(f) if f is not None and abs(f) < 2**62 else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return None if s.lower() in _NA else s


# ---------------------------------------------------------------- nvidia-smi CSV


def parse_nvidia_smi_csv(
    text: str, fields: Sequence[str] = NVIDIA_SMI_QUERY_FIELDS
) -> list[GpuInfo]:
    """Parse ``--format=csv,noheader,nounits`` output whose columns are ``fields``."""
    return [gpu for gpu, _ in _csv_rows(text, fields)]


def nvidia_smi_csv_clock_events(
    text: str, fields: Sequence[str] = NVIDIA_SMI_QUERY_FIELDS
) -> dict[int, list[str]]:
    """``{index: active clock-event reasons}`` from the same CSV (needs the reasons column)."""
    return {gpu.index: reasons for gpu, reasons in _csv_rows(text, fields)}


def _csv_rows(text: str, fields: Sequence[str]) -> list[tuple[GpuInfo, list[str]]]:
    if not isinstance(text, str):
        raise GpuParseError("nvidia-smi output is not text", source="nvidia-smi")
    out: list[tuple[GpuInfo, list[str]]] = []
    try:
        rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    except csv.Error as exc:
        raise GpuParseError(f"nvidia-smi CSV is malformed: {exc}", source="nvidia-smi") from exc
    for lineno, row in enumerate(rows, 1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(fields):
            raise GpuParseError(
                f"nvidia-smi CSV line {lineno} has {len(row)} columns, expected {len(fields)}",
                hint="the query field list and the parser's field list must be the same",
                source="nvidia-smi", line=lineno,
            )
        v = {f: c.strip() for f, c in zip(fields, row, strict=True)}
        index = _int(v.get("index"))
        if index is None or index < 0 or str(v.get("index", "")).strip() != str(index):
            raise GpuParseError(f"nvidia-smi CSV line {lineno}: bad GPU index {v.get('index')!r}",
                                source="nvidia-smi", line=lineno)
        total = _int(v.get("memory.total")) or 0
        used = _int(v.get("memory.used"))
        if used is None:
            free = _int(v.get("memory.free"))
            used = total - free if free is not None else 0
        reasons: list[str] = []
        mask_text = _text(v.get("clocks_throttle_reasons.active")
                          or v.get("clocks_event_reasons.active"))
        if mask_text:
            try:
                reasons = decode_clock_event_reasons(int(mask_text, 16))
            except ValueError:
                reasons = []
        gpu = GpuInfo(
            index=index,
            name=_text(v.get("name")) or f"GPU {index}",
            memory_total_mib=max(0, total),
            memory_used_mib=max(0, used),
            utilization_pct=number(v.get("utilization.gpu")),
            temperature_c=number(v.get("temperature.gpu")),
            power_w=number(v.get("power.draw")),
            power_limit_w=number(v.get("power.limit")),
            uuid=_text(v.get("uuid")) or "",
            vendor="nvidia",
            compute_capability=_cc_text(v.get("compute_cap")),
            driver_version=_text(v.get("driver_version")),
        )
        out.append((gpu, reasons))
    return out


def _cc_text(value: Any) -> str | None:
    s = _text(value)
    if s is None:
        return None
    return s if re.fullmatch(r"\d{1,2}\.\d{1,2}", s) else None


# ---------------------------------------------------------------- nvidia-smi -q -x


def parse_nvidia_smi_xml(text: str) -> list[GpuInfo]:
    """Parse ``nvidia-smi -q -x``. Compute capability is not in the XML (left None)."""
    return [gpu for gpu, _ in _xml_gpus(text)]


def nvidia_smi_xml_clock_events(text: str) -> dict[int, list[str]]:
    return {gpu.index: reasons for gpu, reasons in _xml_gpus(text)}


def _xml_gpus(text: str) -> list[tuple[GpuInfo, list[str]]]:
    if not isinstance(text, str):
        raise GpuParseError("nvidia-smi XML is not text", source="nvidia-smi -q -x")
    if not text.strip():
        return []
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise GpuParseError(f"nvidia-smi XML is malformed: {exc}",
                            source="nvidia-smi -q -x") from exc
    if root.tag != "nvidia_smi_log":
        raise GpuParseError(f"unexpected XML root <{root.tag}>, expected <nvidia_smi_log>",
                            source="nvidia-smi -q -x")
    driver = _text(root.findtext("driver_version"))
    cuda = _text(root.findtext("cuda_version"))
    out: list[tuple[GpuInfo, list[str]]] = []
    for index, g in enumerate(root.findall("gpu")):
        power = _first_number(g, "gpu_power_readings/average_power_draw",
                              "gpu_power_readings/power_draw", "power_readings/power_draw",
                              "gpu_power_readings/instant_power_draw")
        limit = _first_number(g, "gpu_power_readings/current_power_limit",
                              "gpu_power_readings/power_limit", "power_readings/power_limit",
                              "power_readings/enforced_power_limit")
        reasons: list[str] = []
        for section, prefix in (("clocks_event_reasons", "clocks_event_reason_"),
                                ("clocks_throttle_reasons", "clocks_throttle_reason_")):
            node = g.find(section)
            if node is None:
                continue
            for child in node:
                if (child.text or "").strip().lower() == "active":
                    reasons.append(child.tag.removeprefix(prefix))
        gpu = GpuInfo(
            index=index,
            name=_text(g.findtext("product_name")) or f"GPU {index}",
            memory_total_mib=_int(g.findtext("fb_memory_usage/total")) or 0,
            memory_used_mib=_int(g.findtext("fb_memory_usage/used")) or 0,
            utilization_pct=number(g.findtext("utilization/gpu_util")),
            temperature_c=number(g.findtext("temperature/gpu_temp")),
            power_w=power,
            power_limit_w=limit,
            uuid=_text(g.findtext("uuid")) or "",
            vendor="nvidia",
            compute_capability=None,
            driver_version=driver,
            cuda_version=cuda,
        )
        out.append((gpu, reasons))
    return out


def _first_number(node: ET.Element, *paths: str) -> float | None:
    for p in paths:
        v = number(node.findtext(p))
        if v is not None:
            return v
    return None


# ---------------------------------------------------------------- NVML dict


def parse_nvml(data: Mapping[str, Any]) -> list[GpuInfo]:
    """Parse the NVML dict.

    Two shapes are accepted:

    * ``{"driver": str, "cuda": int, "gpus": [gpu, ...]}`` (what the probe builds), and
    * one flat ``gpu`` dict with ``count``, ``driver`` and ``cuda`` at the top (the
      shape of the captured fixture ``nvml.json``).

    A ``gpu`` dict has: index, name, uuid, mem {total, used, free} in bytes, cc
    [major, minor], temp (C), util ({gpu, memory}, or pynvml's repr string), power and
    power_limit (mW), throttle (clock-event bitmask). Any may be missing.
    """
    return [gpu for gpu, _ in _nvml_gpus(data)]


def nvml_clock_events(data: Mapping[str, Any]) -> dict[int, list[str]]:
    return {gpu.index: reasons for gpu, reasons in _nvml_gpus(data)}


def _nvml_gpus(data: Mapping[str, Any]) -> list[tuple[GpuInfo, list[str]]]:
    if not isinstance(data, Mapping):
        raise GpuParseError("NVML data is not a JSON object", source="nvml")
    if not data:
        return []
    driver = _text(data.get("driver"))
    cuda = _cuda_version(data.get("cuda"))
    if "gpus" in data:
        entries = data["gpus"]
        if not isinstance(entries, list):
            raise GpuParseError("NVML 'gpus' is not a list", source="nvml")
    else:
        count = data.get("count", 1 if "name" in data else 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise GpuParseError(f"NVML 'count' is not a count: {count!r}", source="nvml")
        entries = [data] if count else []
    out: list[tuple[GpuInfo, list[str]]] = []
    for pos, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise GpuParseError(f"NVML GPU entry {pos} is not an object", source="nvml")
        index = e.get("index", pos)
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise GpuParseError(f"NVML GPU entry {pos}: bad index {index!r}", source="nvml")
        mem = e.get("mem") or {}
        if not isinstance(mem, Mapping):
            raise GpuParseError(f"NVML GPU {index}: 'mem' is not an object", source="nvml")
        total_b = _int(mem.get("total"))
        used_b = _int(mem.get("used"))
        power_mw = number(e.get("power"))
        limit_mw = number(e.get("power_limit"))
        mask = e.get("throttle")
        reasons = (decode_clock_event_reasons(mask)
                   if isinstance(mask, int) and not isinstance(mask, bool) and mask >= 0 else [])
        gpu = GpuInfo(
            index=index,
            name=_decode(e.get("name")) or f"GPU {index}",
            memory_total_mib=max(0, (total_b or 0) // (1024 * 1024)),
            memory_used_mib=max(0, (used_b or 0) // (1024 * 1024)),
            utilization_pct=_nvml_util(e.get("util")),
            temperature_c=number(e.get("temp")),
            power_w=round(power_mw / 1000.0, 3) if power_mw is not None else None,
            power_limit_w=round(limit_mw / 1000.0, 3) if limit_mw is not None else None,
            uuid=_decode(e.get("uuid")) or "",
            vendor="nvidia",
            compute_capability=_nvml_cc(e.get("cc")),
            driver_version=_decode(e.get("driver")) or driver,
            cuda_version=cuda,
        )
        out.append((gpu, reasons))
    return out


def _decode(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return _text(value) if isinstance(value, str) else None


def _cuda_version(value: Any) -> str | None:
    """NVML's nvmlSystemGetCudaDriverVersion int: 13000 → '13.0', 12040 → '12.4'."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value // 1000}.{(value % 1000) // 10}"
    return _cc_text(value) if isinstance(value, str) else None


def _nvml_cc(value: Any) -> str | None:
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 100
                    for x in value)):
        return f"{value[0]}.{value[1]}"
    return _cc_text(value) if isinstance(value, str) else None


_UTIL_REPR = re.compile(r"gpu:\s*(\d+(?:\.\d+)?)")


def _nvml_util(value: Any) -> float | None:
    if isinstance(value, Mapping):
        return number(value.get("gpu"))
    if isinstance(value, str):
        m = _UTIL_REPR.search(value)
        return float(m.group(1)) if m else number(value)
    return number(value)
