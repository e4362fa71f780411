"""The training queue's decisions: who goes first, and why a job still waits. Pure.

Order: higher ``priority`` first, then first come first served (``created_at``, then id).
The scheduler tries queued jobs in that order each time capacity may have changed; a job
that fits starts even when one before it does not (so a 3-node job waiting for a sleeping
laptop does not hold back 1-node jobs), which means a large job can wait long on a busy
hive: give it a higher priority.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpuhive.core.selection import Selection
from gpuhive.train.spec import JobSpec


@dataclass(frozen=True)
class QueueEntry:
    job_id: str
    priority: int
    created_at: float


def queue_order(entries: Iterable[QueueEntry]) -> list[QueueEntry]:
    return sorted(entries, key=lambda e: (-e.priority, e.created_at, e.job_id))


def positions(entries: Iterable[QueueEntry]) -> dict[str, int]:
    """Each queued job's place in the queue, from 1."""
    return {e.job_id: i for i, e in enumerate(queue_order(entries), start=1)}


def need_text(spec: JobSpec, sel: Selection) -> str:
    """``3 nodes with 1 free GPU ≥ 12 GiB`` — what the job waits for."""
    nodes = f"{sel.need} node{'s' if sel.need != 1 else ''}"
    gpus = sel.request.gpus
    if gpus == 0:
        return f"{nodes} free for a CPU job" + (
            f" with {_size(spec.min_vram_mib)} RAM" if spec.min_vram_mib else "")
    per = "" if spec.gpus_per_node is not None else " (auto: at least)"
    vram = f" ≥ {_size(spec.min_vram_mib)}" if spec.min_vram_mib else ""
    return f"{nodes} with {gpus} free GPU{'s' if gpus != 1 else ''}{vram}{per}"


def queue_reason(spec: JobSpec, sel: Selection, limit: int = 3) -> str:
    """Why the job waits: what it needs, how many nodes qualify, what keeps the others."""
    qualify = len(sel.ranking.ranked)
    why = [f"{e.name}: {e.reasons[0].message}" for e in sel.ranking.excluded[:limit]
           if e.reasons]
    more = len(sel.ranking.excluded) - limit
    tail = f"; {'; '.join(why)}" if why else ""
    if more > 0:
        tail += f"; {more} more"
    return f"needs {need_text(spec, sel)}; {qualify} qualif{'ies' if qualify == 1 else 'y'}" \
        + tail


def _size(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib % 1024 == 0 else f"{mib} MiB"


def summarize_gpus(per_node: Sequence[tuple[str, int]], used: int) -> str:
    """The ``auto`` note: how many GPUs each node runs, when some have more free."""
    more = [f"{name} has {free} free" for name, free in per_node if free > used]
    text = f"{len(per_node)} node(s) × {used} GPU(s)"
    if more:
        text += f" ({', '.join(more)}; torchrun runs the same count on every node)"
    return text
