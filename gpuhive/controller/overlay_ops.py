"""`gpuhive overlay status|check`: what the hub sees, and pairwise reachability.

The check runs on the nodes themselves over their sessions: ``overlay.check_io``'s
procedure (the lab runs the same one in namespaces), with a runner that turns each argv
into a shell line for ``NodeSessions.run``.
"""

from __future__ import annotations

import dataclasses
import random
import shlex
import time
from collections.abc import Callable
from typing import Any

from gpuhive.controller.overlay_hub import OverlayHub
from gpuhive.controller.registry import Registry
from gpuhive.core.model import NodeRecord
from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.errors import GpuhiveError, NodeNotFound
from gpuhive.overlay import check as reach
from gpuhive.overlay import check_io
from gpuhive.overlay.check_io import CheckOptions, Outcome, PairProgress, Target
from gpuhive.transport.api import NodeSessions

# On a node: the bulk tool's own timeout 60 s, its receiver given half a second to listen.
NODE_CHECK = CheckOptions(timeout_s=60.0, settle_s=0.5, python=NODE_PYTHON)
PORTS = (40000, 41000)  # receivers' ports, one drawn per pair: a stale one may still listen


def shell_line(argv: list[str]) -> str:
    """``exec`` + argv quoted, except the node's Python, which is shell text to expand."""
    return "exec " + " ".join(a if a == NODE_PYTHON else shlex.quote(a) for a in argv)


class SessionRunner:
    """``check_io.Runner`` over the controller's node sessions."""

    def __init__(self, nodes: NodeSessions) -> None:
        self.nodes = nodes

    async def run(self, node: NodeRecord, argv: list[str]) -> Outcome:
        lines: list[str] = []
        res = await self.nodes.run(node, [shell_line(argv)],
                                   lambda _n, _s, line: lines.append(line))
        if res.error:
            lines.append(res.error)
        return res.exit_status, "\n".join(lines)


class OverlayOps:
    def __init__(self, registry: Registry, nodes: NodeSessions, hub: OverlayHub | None, *,
                 check_options: CheckOptions = NODE_CHECK, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.nodes = nodes
        self.hub = hub
        self.check_options = check_options
        self.rng = rng or random.Random()
        self.clock = clock

    async def status(self) -> dict[str, Any]:
        if self.hub is None:
            return {"up": False, "iface": None, "peers": [],
                    "hint": "start the controller with `gpuhive up --overlay`"}
        return await self.hub.status()

    async def check(self, target: str = "all", nbytes: int = 50_000_000,
                    progress: Callable[[dict[str, Any]], None] | None = None) \
            -> dict[str, Any]:
        """``progress`` gets a ``pair`` event before and after each pair is measured (the
        whole check takes a few seconds per pair)."""
        addressed = [(n, n.overlay.ip) for n in self.registry.select(target)
                     if n.overlay is not None and n.overlay.ip]
        nodes = [n for n, _ip in addressed]
        if not nodes:
            raise NodeNotFound(f"none of {target!r} has an overlay address",
                               hint="see `gpuhive overlay status`")
        report = progress or (lambda _e: None)
        results = await check_io.check_pairs(
            SessionRunner(self.nodes), [Target(n.name, ip, n) for n, ip in addressed],
            opts=dataclasses.replace(self.check_options, nbytes=nbytes),
            pick_port=lambda: self.rng.randrange(*PORTS),
            progress=lambda p: report(pair_event(p)))
        hints = await self._hints()
        matrix = reach.build_matrix([n.name for n in nodes], results, hints=hints,
                                    nbytes=nbytes)
        return {"ok": matrix.ok, "text": reach.render(matrix),
                "cells": [{"src": c.src, "dst": c.dst, "ok": c.ok, "summary": c.summary,
                           "explanation": c.explanation} for c in matrix.cells.values()]}

    async def _hints(self) -> dict[str, reach.NodeHint]:
        if self.hub is None:
            return {}
        try:
            st = await self.hub.status()
        except GpuhiveError:
            return {}
        return hints_from_status(st, self.clock())


def hints_from_status(status: dict[str, Any], now: float) -> dict[str, reach.NodeHint]:
    """Node name → its handshake age and endpoint, from the hub's ``status()``."""
    return {p["node"]: reach.NodeHint(None if p["latest_handshake"] is None
                                      else now - p["latest_handshake"], p["endpoint"])
            for p in status.get("peers", [])}


def pair_event(p: PairProgress) -> dict[str, Any]:
    """The ``pair`` event the CLI prints its progress lines from."""
    event: dict[str, Any] = {"event": "pair", "phase": "start" if p.result is None else "done",
                             "n": p.n, "total": p.total, "src": p.src, "dst": p.dst}
    if p.result is not None:
        r = p.result
        event.update(ping_ok=r.ping_ok, rtt_ms=r.rtt_ms, transfer_ok=r.transfer_ok,
                     mb_per_s=r.mb_per_s, error=r.error)
    return event
