"""Node liveness judged from heartbeats. Pure: times are passed in.

A heartbeat is expected every ``interval`` seconds. Half an interval of slack absorbs
scheduling jitter; past that, each whole interval counts as one missed heartbeat.
One missed → degraded, ``offline_after`` missed → offline, heard again → online.
An agent that said goodbye (a clean stop) is offline at once, with no missed heartbeats.

The stored reason is a fixed phrase (``MISSED``, ``STOPPED``, ``NEVER``); ``explain`` adds
the age when the reason is shown, so a reason never says "4s ago" forty seconds later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpuhive.core.model import NodeStatus

MISSED = "missed heartbeats"
STOPPED = "agent stopped"
NEVER = "never heard from"


@dataclass(frozen=True)
class Liveness:
    status: NodeStatus
    missed: int
    reason: str

    @property
    def stopped(self) -> bool:
        """A clean stop: no reliability penalty, unlike missed heartbeats."""
        return self.reason == STOPPED


def missed_heartbeats(last_heard: float, now: float, interval: float) -> int:
    age = now - last_heard
    if age <= 1.5 * interval:
        return 0
    return max(1, math.floor(age / interval - 0.5))


def judge(last_heard: float | None, now: float, interval: float, *,
          offline_after: int = 3, stopped_at: float | None = None) -> Liveness:
    """``stopped_at``: when the agent said goodbye, if nothing was heard from it since."""
    if stopped_at is not None and (last_heard is None or stopped_at >= last_heard):
        return Liveness(NodeStatus.OFFLINE, 0, STOPPED)
    if last_heard is None:
        return Liveness(NodeStatus.OFFLINE, 0, NEVER)
    missed = missed_heartbeats(last_heard, now, interval)
    if missed == 0:
        return Liveness(NodeStatus.ONLINE, 0, "")
    status = NodeStatus.DEGRADED if missed < offline_after else NodeStatus.OFFLINE
    return Liveness(status, missed, MISSED)


def explain(reason: str, last_heard: float | None, now: float) -> str:
    """A stored reason as shown now, with ages computed from ``now``."""
    if reason == STOPPED:
        return f"agent stopped {ago(last_heard, now)}" if last_heard else STOPPED
    if reason == MISSED or reason.startswith("missed "):  # 0.1.0 stored "missed 3 …, 4s ago"
        return f"{MISSED}, last heard {ago(last_heard, now)}" if last_heard else MISSED
    return reason


def ago(then: float | None, now: float) -> str:
    if then is None:
        return "never"
    s = max(0.0, now - then)
    if s < 60:
        return f"{s:.0f}s ago"
    if s < 3600:
        return f"{s / 60:.0f}m ago"
    if s < 86400:
        return f"{s / 3600:.1f}h ago"
    return f"{s / 86400:.1f}d ago"


@dataclass(frozen=True)
class Transition:
    node_id: str
    old: NodeStatus
    new: Liveness


def plan_transitions(current: dict[str, NodeStatus], last_heard: dict[str, float | None],
                     now: float, interval: float, *, offline_after: int = 3,
                     stopped: dict[str, float] | None = None) -> list[Transition]:
    """Which nodes change status now. ``current`` maps node id → stored status;
    ``stopped`` node id → when its agent said goodbye."""
    stopped = stopped or {}
    out = []
    for node_id, old in current.items():
        new = judge(last_heard.get(node_id), now, interval, offline_after=offline_after,
                    stopped_at=stopped.get(node_id))
        if new.status != old:
            out.append(Transition(node_id, old, new))
    return out
