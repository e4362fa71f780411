"""Node liveness judged from heartbeats. Pure: times are passed in.

A heartbeat is expected every ``interval`` seconds. Half an interval of slack absorbs
scheduling jitter; past that, each whole interval counts as one missed heartbeat.
One missed → degraded, ``offline_after`` missed → offline, heard again → online.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpuhive.core.model import NodeStatus


@dataclass(frozen=True)
class Liveness:
    status: NodeStatus
    missed: int
    reason: str


def missed_heartbeats(last_heard: float, now: float, interval: float) -> int:
    age = now - last_heard
    if age <= 1.5 * interval:
        return 0
    return max(1, math.floor(age / interval - 0.5))


def judge(last_heard: float | None, now: float, interval: float, *,
          offline_after: int = 3) -> Liveness:
    if last_heard is None:
        return Liveness(NodeStatus.OFFLINE, 0, "never heard from")
    missed = missed_heartbeats(last_heard, now, interval)
    age = now - last_heard
    if missed == 0:
        return Liveness(NodeStatus.ONLINE, 0, "")
    if missed < offline_after:
        return Liveness(NodeStatus.DEGRADED, missed,
                        f"missed {missed} heartbeat(s), last heard {age:.0f}s ago")
    return Liveness(NodeStatus.OFFLINE, missed,
                    f"missed {missed} heartbeats, last heard {age:.0f}s ago")


@dataclass(frozen=True)
class Transition:
    node_id: str
    old: NodeStatus
    new: Liveness


def plan_transitions(current: dict[str, NodeStatus], last_heard: dict[str, float | None],
                     now: float, interval: float, *, offline_after: int = 3) -> list[Transition]:
    """Which nodes change status now. ``current`` maps node id → stored status."""
    out = []
    for node_id, old in current.items():
        new = judge(last_heard.get(node_id), now, interval, offline_after=offline_after)
        if new.status != old:
            out.append(Transition(node_id, old, new))
    return out
