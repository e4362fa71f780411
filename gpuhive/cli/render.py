"""Rendering helpers shared by the CLI groups: JSON, tables, ages, sizes."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

# piped output is read by people in wide terminals or by tools: never wrap tables at 80
out = Console(highlight=False, soft_wrap=True,
              width=None if sys.stdout.isatty() else 220)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def age(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    s = max(0.0, (now or time.time()) - ts)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    if s < 86400:
        return f"{s / 3600:.1f}h ago"
    return f"{s / 86400:.1f}d ago"


def gib(mib: int | float | None) -> str:
    return "-" if not mib else f"{mib / 1024:.1f}G"


_STATUS_STYLE = {"online": "green", "degraded": "yellow", "offline": "red", "removed": "dim",
                 "valid": "green", "expired": "yellow", "used": "dim", "revoked": "red"}


def status_text(status: str) -> str:
    style = _STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/{style}]" if style else status


def gpu_cell(hw: dict[str, Any]) -> str:
    """One line per GPU: name, VRAM free/total, utilization, temperature, power."""
    lines = []
    for g in hw.get("gpus") or []:
        total = g.get("memory_total_mib") or 0
        free = total - (g.get("memory_used_mib") or 0)
        parts = [f"{g['name']}", f"{gib(free)}/{gib(total)}"]
        if g.get("utilization_pct") is not None:
            parts.append(f"{g['utilization_pct']:.0f}%")
        if g.get("temperature_c") is not None:
            parts.append(f"{g['temperature_c']:.0f}°C")
        if g.get("power_w") is not None:
            parts.append(f"{g['power_w']:.0f}W")
        lines.append(" ".join(parts))
    return "\n".join(lines) or "-"


def software_cell(hw: dict[str, Any], sw: dict[str, Any]) -> str:
    gpus = hw.get("gpus") or []
    g0 = gpus[0] if gpus else {}
    first = " ".join(x for x in (f"cc {g0['compute_capability']}" if g0.get(
        "compute_capability") else "", f"drv {g0['driver_version']}" if g0.get(
        "driver_version") else "", f"cuda {g0['cuda_version']}" if g0.get("cuda_version")
        else "") if x)
    second = " ".join(x for x in (f"torch {sw['torch']}" if sw.get("torch") else "",
                                  f"nccl {sw['nccl']}" if sw.get("nccl") else "") if x)
    llama = "llama-server" if sw.get("llama_server") else (
        "llama-cpp-python" if sw.get("llama_cpp_python") else "")
    return "\n".join(x for x in (first, second, llama) if x) or "-"


def link_cell(link: dict[str, Any]) -> str:
    if not link.get("rtt_ms"):
        return "-"
    text = f"{link['rtt_ms']:.1f}ms"
    if link.get("down_mbps"):
        text += f" ↓{link['down_mbps']:.0f} ↑{link.get('up_mbps', 0):.0f}Mb/s"
    return text


def plain_table(*columns: str, pad_edge: bool = False) -> Table:
    """A borderless table with these column headers: how every listing here looks."""
    table = Table(box=None, pad_edge=pad_edge)
    for col in columns:
        table.add_column(col)
    return table


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = plain_table("NAME", "STATUS", "GPUS (free/total util temp power)", "SOFTWARE",
                        "CPU/RAM", "LINK", "REL", "SEEN", "REASON / FROM")
    for n in nodes:
        hw = n.get("hardware") or {}
        cores = (hw.get("cpu") or {}).get("cores")
        status = status_text(n["status"])
        if n.get("agent_state") and n["agent_state"] not in ("available", ""):
            status += f" ({n['agent_state']})"
        table.add_row(
            n["name"], status, gpu_cell(hw), software_cell(hw, n.get("software") or {}),
            f"{cores or '?'}c/{gib(hw.get('memory_total_mib'))}",
            link_cell(n.get("link") or {}),
            f"{n['reliability_score']:.2f}" if n.get("reliability_score") is not None else "-",
            age(n.get("last_heartbeat")),
            n.get("reason") or n.get("public_addr") or n.get("address") or "")
    return table
