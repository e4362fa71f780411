"""Rendering helpers shared by the CLI groups: JSON, tables, ages, sizes."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
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


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    for col in ("NAME", "STATUS", "KIND", "CPU", "RAM", "GPUS", "LAST SEEN", "FROM / REASON"):
        table.add_column(col)
    for n in nodes:
        hw = n.get("hardware") or {}
        gpus = hw.get("gpus") or []
        gpu_text = ", ".join(f"{g['name']} {gib(g.get('memory_total_mib'))}" for g in gpus) \
            or "-"
        cores = (hw.get("cpu") or {}).get("cores")
        table.add_row(n["name"], status_text(n["status"]), n["kind"],
                      f"{cores} cores" if cores else "-", gib(hw.get("memory_total_mib")),
                      gpu_text, age(n.get("last_heartbeat")),
                      n.get("status_reason") or n.get("public_addr") or n.get("address") or "")
    return table
