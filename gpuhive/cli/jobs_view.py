"""How `gpuhive jobs`, `jobs show` and a followed job print a job. Pure: job dicts in, text out.

Job records come from the controller (``JobRecord.to_dict``); ``now`` is passed in. What a
user or a node wrote (names, details, reasons) is escaped, so a ``[rank0]`` in a reason is
printed, not taken for Rich markup.
"""

from __future__ import annotations

import shlex
from typing import Any

from rich.markup import escape

from gpuhive.cli.render import age, status_text
from gpuhive.core import humanize

LIST_COLUMNS = ("JOB", "NAME", "STATE", "NODES", "STARTED", "DURATION", "ENDED / LAST EVENT")
LAST_WIDTH = 90


def event_text(kind: str, detail: str) -> str:
    """``kind: detail``, or the kind alone: never a dangling ``succeeded: ``."""
    return f"{kind}: {detail}" if detail else kind


def name_cell(job: dict[str, Any]) -> str:
    """The name the owner gave, or ``-`` (0.1.0 records repeat the id there)."""
    name = job.get("name") or ""
    return escape(name) if name and name != job["id"] else "-"


def duration_text(job: dict[str, Any], now: float) -> str:
    """How long it ran (so far, while it runs); ``-`` if it never started."""
    if not job.get("started_at"):
        return "-"
    return humanize.duration((job.get("ended_at") or now) - job["started_at"])


def last_cell(job: dict[str, Any], now: float) -> str:
    """When it ended and why; while it runs, what happened last."""
    if job.get("ended_at"):
        reason = job.get("reason") or ""
        return age(job["ended_at"], now) + (f": {reason}" if reason else "")
    if job.get("state") == "queued" and job.get("queue_position"):
        return f"#{job['queue_position']} in the queue: {job.get('reason') or 'waiting'}"
    events = job.get("events") or []
    return event_text(events[-1]["event"], events[-1]["detail"]) if events else "-"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def list_row(job: dict[str, Any], now: float) -> list[str]:
    """One row of `gpuhive jobs` under ``LIST_COLUMNS``."""
    return [job["id"], name_cell(job), status_text(job["state"]),
            escape(", ".join(job.get("nodes") or [])) or "-",
            age(job["started_at"], now) if job.get("started_at") else "-",
            duration_text(job, now), escape(_clip(last_cell(job, now), LAST_WIDTH))]


def _nodes_asked(spec: dict[str, Any]) -> str:
    lo, hi = spec.get("min_nodes", 1), spec.get("max_nodes", 1)
    return str(hi) if lo == hi else f"{lo}:{hi}"


def _times(job: dict[str, Any], now: float) -> str:
    started, ended = job.get("started_at"), job.get("ended_at")
    if started and ended:
        return (f"started {age(started, now)}, ran {humanize.duration(ended - started)}, "
                f"ended {age(ended, now)}")
    if started:
        return f"running for {humanize.duration(now - started)} (started {age(started, now)})"
    if ended:
        return f"submitted {age(job['created_at'], now)}, ended {age(ended, now)} before starting"
    return f"submitted {age(job['created_at'], now)}, not started yet"


def _exits(job: dict[str, Any]) -> str:
    exits, lost = job.get("exits") or {}, job.get("lost") or {}
    ended = bool(job.get("ended_at"))
    parts = []
    for node in job.get("nodes") or []:
        if node in exits:
            parts.append(f"{node} {exits[node]}")
        elif node in lost:
            parts.append(f"{node} lost ({lost[node]})")
        else:  # stopped with the job (cancelled, or another node failed), or still going
            parts.append(f"{node} {'stopped' if ended else 'running'}")
    return ", ".join(parts)


def _holdings(holdings: list[dict[str, Any]], now: float) -> str:
    """``friend1 GPUs 0,1 (released 3m ago: swept)``, per node."""
    parts = []
    for h in holdings:
        what = f"GPUs {','.join(map(str, h['gpus']))}" if h["gpus"] else "CPU"
        state = (f"released {age(h['released_at'], now)}: {h['release_reason']}"
                 if h.get("released_at") else "held")
        parts.append(f"{h['node']} {what} ({state})")
    return "; ".join(parts)


def show_lines(job: dict[str, Any], now: float) -> list[str]:
    """`gpuhive jobs show`: what ran where, how it ended, then the whole timeline."""
    spec = job.get("spec") or {}
    header = f"[bold]{job['id']}[/bold]"
    if name_cell(job) != "-":
        header += f"  {name_cell(job)}"
    rows: list[tuple[str, str]] = [
        ("script", shlex.join([spec.get("script", "?"), *spec.get("args", [])])),
        ("workdir", str(spec.get("workdir", "?"))),
        ("nodes", (", ".join(job.get("nodes") or []) or "none placed")
         + f" (asked for {_nodes_asked(spec)})"),
    ]
    launch = job.get("launch") or {}
    if launch:
        nproc = launch.get("nproc_per_node", "?")
        rows.append(("backend", f"{launch.get('backend', '?')}, {nproc} process(es) per node, "
                                f"rendezvous {launch.get('rendezvous', '?')}"))
    if spec.get("requirements"):
        rows.append(("requirements", str(spec["requirements"])))
    if spec.get("mode", "ddp") != "ddp":
        rows.append(("mode", f"{spec['mode']}, sync every {spec.get('sync_every')} steps"))
    rows.append(("time", _times(job, now)))
    if launch and job.get("nodes"):
        rows.append(("exit codes", _exits(job)))
    if job.get("holdings"):
        rows.append(("holds", _holdings(job["holdings"], now)))
    if job.get("state") == "queued" and job.get("queue_position"):
        rows.append(("queue", f"#{job['queue_position']}, priority "
                              f"{spec.get('priority', 0)}"))
    if job.get("reason"):
        rows.append(("reason", job["reason"]))
    lines = [f"{header}  {status_text(job['state'])}"]
    lines += [f"  {label:<13}{escape(value)}" for label, value in rows]
    lines.append("  timeline")
    lines += [f"    {age(e['at'], now):>9}  {e['event']:<14}{escape(e['detail'])}"
              for e in job.get("events") or []]
    return lines
