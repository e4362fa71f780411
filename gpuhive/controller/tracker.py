"""Liveness and reliability bookkeeping, one tick at a time.

Each tick flushes buffered heartbeats, moves nodes between online/degraded/offline
(``core.liveness``) and applies the reliability consequences (``core.reliability``):
a missed heartbeat or going offline costs, steady heartbeats earn (credited every
``CREDIT_EVERY`` seconds so the registry is not rewritten on every tick). An agent that
said goodbye goes offline at once and costs nothing: its friend stopped it, it did not fail.
"""

from __future__ import annotations

import logging

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import LiveRow, Registry
from gpuhive.core import reliability as rel
from gpuhive.core.liveness import plan_transitions
from gpuhive.core.model import NodeKind, NodeStatus

log = logging.getLogger(__name__)
CREDIT_EVERY = 30.0


class Tracker:
    def __init__(self, registry: Registry, hive: Hive, settings: Settings) -> None:
        self.registry = registry
        self.hive = hive
        self.settings = settings
        self.credited: dict[str, float] = {}  # node id → last uptime credit

    def tick(self, now: float) -> None:
        self.hive.flush()
        nodes = self.registry.liveness(NodeKind.AGENT)
        by_id = {n.id: n for n in nodes}
        for t in plan_transitions(
                {n.id: n.status for n in nodes},
                {n.id: self.hive.last_heard.get(n.id, n.last_heartbeat) for n in nodes},
                now, self.settings.heartbeat_interval,
                offline_after=self.settings.offline_after_missed, stopped=self.hive.stopped):
            node = by_id[t.node_id]
            self.registry.set_status(t.node_id, t.new.status, t.new.reason, now)
            log.info("node %s: %s → %s %s", node.name, t.old.value, t.new.status.value,
                     t.new.reason)
            r = self._reliability(t.node_id, now)
            if t.new.status == NodeStatus.DEGRADED and t.old == NodeStatus.ONLINE:
                r = rel.on_missed_heartbeat(r, now, t.new.missed)
            elif t.new.status == NodeStatus.OFFLINE and t.old != NodeStatus.OFFLINE \
                    and not t.new.stopped:
                r = rel.on_offline(r, now)
            if t.new.status == NodeStatus.ONLINE:
                self.credited[t.node_id] = now
            else:
                self.credited.pop(t.node_id, None)
            self.registry.set_facts(t.node_id, reliability=r.to_dict())
        self._credit_uptime(nodes, now)

    def _reliability(self, node_id: str, now: float) -> rel.Reliability:
        stored = self.registry.fact(node_id, "reliability")
        return rel.Reliability.from_dict(stored) if stored else rel.new_node(now)

    def _credit_uptime(self, nodes: list[LiveRow], now: float) -> None:
        rows = []
        for node in nodes:
            if node.status != NodeStatus.ONLINE:
                continue
            since = self.credited.setdefault(node.id, now)
            if now - since >= CREDIT_EVERY:
                r = rel.on_heartbeats(self._reliability(node.id, now), now - since, now)
                rows.append((node.id, {"reliability": r.to_dict()}))
                self.credited[node.id] = now
        if rows:
            self.registry.set_facts_many(rows)
