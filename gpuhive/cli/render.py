"""Rendering helpers shared by the CLI groups: JSON, tables, ages, sizes.

Node facts arrive as JSON from the admin socket; ``software_of``, ``link_of`` and
``spoke_of`` read them into ``core/node_facts`` / ``core/spoke_state`` types before anything
here reasons about them, so a misspelt field is mypy's error, not a silent "-".
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gpuhive.core import fact_codec
from gpuhive.core.node_facts import LinkMeasure, SoftwareFacts
from gpuhive.core.spoke_state import SpokeView

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


def software_of(answer: dict[str, Any]) -> SoftwareFacts | None:
    """The ``software`` of a node or probe answer (None: not probed)."""
    return fact_codec.stored(SoftwareFacts.from_dict, answer.get("software"))


def link_of(answer: dict[str, Any]) -> LinkMeasure | None:
    """The ``link`` of a node answer (None: never benched)."""
    return fact_codec.stored(LinkMeasure.from_dict, answer.get("link"))


def software_cell(hw: dict[str, Any], sw: SoftwareFacts | None) -> str:
    gpus = hw.get("gpus") or []
    g0 = gpus[0] if gpus else {}
    first = " ".join(x for x in (f"cc {g0['compute_capability']}" if g0.get(
        "compute_capability") else "", f"drv {g0['driver_version']}" if g0.get(
        "driver_version") else "", f"cuda {g0['cuda_version']}" if g0.get("cuda_version")
        else "") if x)
    sw = sw or SoftwareFacts()
    second = " ".join(x for x in (f"torch {sw.torch}" if sw.torch else "",
                                  f"nccl {sw.nccl}" if sw.nccl else "") if x)
    llama = "llama-server" if sw.llama_server else (
        "llama-cpp-python" if sw.llama_cpp_python else "")
    return "\n".join(x for x in (first, second, llama) if x) or "-"


def link_cell(link: LinkMeasure | None) -> str:
    if link is None or not link.rtt_ms:
        return "-"
    text = f"{link.rtt_ms:.1f}ms"
    if link.down_mbps:
        text += f" ↓{link.down_mbps:.0f} ↑{link.up_mbps or 0:.0f}Mb/s"
    return text


def plain_table(*columns: str, pad_edge: bool = False) -> Table:
    """A borderless table with these column headers: how every listing here looks."""
    table = Table(box=None, pad_edge=pad_edge)
    for col in columns:
        table.add_column(col)
    return table


REL_LEGEND = ("REL: earned reliability, 0 to 1: a new node starts at 0.30, steady heartbeats "
              "take it up to 0.70, finished tasks higher; failures, missed heartbeats and "
              "going offline lower it")
_OVERLAY_STYLE = {"up": "green", "down": "red", "waiting": "yellow", "unknown": "yellow",
                  "no address": "yellow", "off": "dim"}
# compact labels: one word each, so the cell never wraps
_OVERLAY_SHORT = {"up": "up", "down": "down", "waiting": "wait", "unknown": "?",
                  "no address": "no-ip", "off": "off"}
_VENDOR_WORDS = {"NVIDIA", "GeForce", "AMD", "Radeon", "Instinct", "Apple", "Intel", "Tesla"}


def spoke_of(n: dict[str, Any]) -> SpokeView:
    """The node's spoke as the controller judged it (``overlay_state`` in `nodes --json`);
    unknown when the answer has none."""
    st = n.get("overlay_state")
    return SpokeView.from_dict(st) if isinstance(st, dict) else SpokeView()


def overlay_cell(n: dict[str, Any], *, wide: bool = False) -> str:
    st = spoke_of(n)
    state = st.state or "unknown"
    style = _OVERLAY_STYLE.get(state, "")
    label = state if wide else _OVERLAY_SHORT.get(state, state)
    text = f"[{style}]{label}[/{style}]" if style else label
    if not wide:
        return text
    detail = st.error if state == "down" else st.ip if state == "up" else ""
    if state == "up" and st.direct:
        detail = f"{detail}, {st.direct} direct"
    return text + (f" {escape(str(detail))}" if detail else "")


def gpu_model(name: str) -> str:
    """'NVIDIA GeForce RTX 4090' → 'RTX 4090': the words that tell GPUs apart."""
    words = [w for w in name.split() if w not in _VENDOR_WORDS]
    return " ".join(words) or name


def hardware_summary(hw: dict[str, Any]) -> str:
    """'2×RTX 4090', 'RTX 4090+RTX 3090', or the cores of a CPU node."""
    gpus = hw.get("gpus") or []
    if not gpus:
        cores = (hw.get("cpu") or {}).get("cores")
        return f"cpu {cores or '?'}c"
    counts: dict[str, int] = {}
    for g in gpus:
        model = gpu_model(str(g.get("name") or "?"))
        counts[model] = counts.get(model, 0) + 1
    return "+".join(f"{k}" if v == 1 else f"{v}×{k}" for k, v in counts.items())


def _size(mib: float) -> str:
    gib_ = mib / 1024
    return f"{gib_:.0f}" if gib_ >= 10 else f"{gib_:.1f}"


def free_summary(hw: dict[str, Any]) -> str:
    """Free/total memory work would use: VRAM summed over GPUs, RAM on a CPU node."""
    gpus = hw.get("gpus") or []
    if gpus:
        total = sum(g.get("memory_total_mib") or 0 for g in gpus)
        free = total - sum(g.get("memory_used_mib") or 0 for g in gpus)
    else:
        total = hw.get("memory_total_mib") or 0
        free = hw.get("memory_available_mib") or 0
    return f"{_size(free)}/{_size(total)}G" if total else "-"


def status_cell(n: dict[str, Any]) -> str:
    """The controller's status, or what the agent says when that matters more (paused)."""
    state = n.get("agent_state") or ""
    if n["status"] == "online" and state not in ("", "available", "busy"):
        return f"[yellow]{state}[/yellow]"
    return status_text(n["status"])


def nodes_table(nodes: list[dict[str, Any]], *, wide: bool = False,
                legend: bool = False) -> Table:
    """Compact by default (fits 80 columns); ``wide``: every column `gpuhive nodes` has."""
    if wide:
        return _wide_table(nodes, legend)
    table = plain_table("NAME", "STATUS", "HARDWARE", "FREE", "REL", "OVERLAY", "SEEN")
    for n in nodes:
        hw = n.get("hardware") or {}
        table.add_row(n["name"], status_cell(n), hardware_summary(hw), free_summary(hw),
                      _rel(n), overlay_cell(n), age(n.get("last_heartbeat")))
    if legend:
        table.caption = ("FREE: VRAM free/total (RAM on CPU nodes) · REL: earned reliability "
                         "0-1, new nodes 0.30 · --wide: every column")
        table.caption_justify = "left"
    return table


def _rel(n: dict[str, Any]) -> str:
    score = n.get("reliability_score")
    return f"{score:.2f}" if score is not None else "-"


def _wide_table(nodes: list[dict[str, Any]], legend: bool) -> Table:
    table = plain_table("NAME", "STATUS", "GPUS (free/total util temp power)", "SOFTWARE",
                        "CPU/RAM", "LINK", "REL", "OVERLAY", "SEEN", "REASON / FROM")
    for n in nodes:
        hw = n.get("hardware") or {}
        cores = (hw.get("cpu") or {}).get("cores")
        status = status_text(n["status"])
        if n.get("agent_state") and n["agent_state"] not in ("available", ""):
            status += f" ({n['agent_state']})"
        table.add_row(
            n["name"], status, gpu_cell(hw), software_cell(hw, software_of(n)),
            f"{cores or '?'}c/{gib(hw.get('memory_total_mib'))}",
            link_cell(link_of(n)), _rel(n), overlay_cell(n, wide=True),
            age(n.get("last_heartbeat")),
            n.get("reason") or n.get("public_addr") or n.get("address") or "")
    if legend:
        table.caption = REL_LEGEND
        table.caption_justify = "left"
    return table
