"""`gpuhive status`: the dashboard in the terminal, refreshed in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.text import Text

from gpuhive.cli.live_view import run_live
from gpuhive.cli.render import age, nodes_table, out, plain_table, status_text
from gpuhive.errors import GpuhiveError

WIDE_FROM = 150  # terminal columns from which the nodes panel shows every column


def render(data: dict[str, Any], *, wide: bool = False) -> RenderableType:
    st = data["status"]
    counts = ", ".join(f"{v} {k}" for k, v in sorted(st["nodes"].items())) or "no nodes"
    head = Text.from_markup(
        f"[bold]gpuhive[/bold] controller pid {st['pid']} · endpoint {st['endpoint']} · "
        f"{counts} · {st['connected']} connected · http {st.get('http') or '-'}")
    parts: list[RenderableType] = [head, Panel(nodes_table(data["nodes"], wide=wide),
                                               title="nodes")]
    if data.get("jobs"):
        jobs = plain_table("JOB", "STATE", "NODES", "STARTED", pad_edge=True)
        for j in data["jobs"]:
            jobs.add_row(j.get("name") or j["id"], status_text(j["state"]),
                         ", ".join(j.get("nodes", [])), age(j.get("started_at")))
        parts.append(Panel(jobs, title="jobs"))
    if data.get("replicas"):
        reps = plain_table("MODEL", "NODE", "STATE", "TOKENS/S", "IN FLIGHT", pad_edge=True)
        for r in data["replicas"]:
            rate = r.get("tokens_per_s")
            reps.add_row(r["model"], r["node"], r["state"], "-" if rate is None else f"{rate:.1f}",
                         str(r.get("in_flight", 0)))
        parts.append(Panel(reps, title="serving"))
    events = plain_table("WHEN", "NODE", "EVENT", "DETAIL", pad_edge=True)
    for e in data.get("events", [])[:12]:
        events.add_row(age(e["at"]), e["node"], status_text(e["event"]), e["detail"])
    parts.append(Panel(events, title="recent events"))
    return Group(*parts)


def live(fetch: Callable[[], dict[str, Any]], interval: float) -> None:
    """Refresh in place until `q` or Ctrl-C (the footer says so)."""
    def wide() -> bool:
        return out.width >= WIDE_FROM

    def frame() -> RenderableType:
        try:
            return render(fetch(), wide=wide())
        except GpuhiveError as exc:  # the controller went away: say so, keep trying
            return Text(f"controller unavailable: {exc.message}", style="red")

    run_live(render(fetch(), wide=wide()), frame, interval, console=out)
