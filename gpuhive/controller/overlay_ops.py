"""`gpuhive overlay status|check`: what the hub sees, and pairwise reachability.

The check runs on the nodes themselves over their SSH sessions: for every ordered pair,
``ping`` from one to the other's overlay address, then a TCP bulk transfer
(``python -m gpuhive.overlay.bulk``) into a receiver started on the other.
"""

from __future__ import annotations

import asyncio
import json
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
from gpuhive.transport.node_conn import NodeConnections


class OverlayOps:
    def __init__(self, registry: Registry, nodes: NodeConnections, hub: OverlayHub | None):
        self.registry = registry
        self.nodes = nodes
        self.hub = hub

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
        nodes = [n for n in self.registry.select(target) if n.overlay.get("ip")]
        if not nodes:
            raise NodeNotFound(f"none of {target!r} has an overlay address",
                               hint="see `gpuhive overlay status`")
        report = progress or (lambda _e: None)
        pairs = [(src, dst) for src in nodes for dst in nodes if src.id != dst.id]
        results = []
        for i, (src, dst) in enumerate(pairs, 1):  # one at a time: transfers share the hub
            report({"event": "pair", "phase": "start", "n": i, "total": len(pairs),
                    "src": src.name, "dst": dst.name})
            r = await self._pair(src, dst, nbytes)
            results.append(r)
            report({"event": "pair", "phase": "done", "n": i, "total": len(pairs),
                    "src": src.name, "dst": dst.name, "ping_ok": r.ping_ok,
                    "rtt_ms": r.rtt_ms, "transfer_ok": r.transfer_ok, "mb_per_s": r.mb_per_s,
                    "error": r.error})
        hints = await self._hints()
        matrix = reach.build_matrix([n.name for n in nodes], results, hints=hints,
                                    nbytes=nbytes)
        return {"ok": matrix.ok, "text": reach.render(matrix),
                "cells": [{"src": c.src, "dst": c.dst, "ok": c.ok, "summary": c.summary,
                           "explanation": c.explanation} for c in matrix.cells.values()]}

    async def _run(self, node: NodeRecord, command: str) -> tuple[int | None, str]:
        lines: list[str] = []
        res = await self.nodes.run(node, [command], lambda _n, _s, line: lines.append(line))
        return res.exit_status, "\n".join(lines) or res.error

    async def _pair(self, src: NodeRecord, dst: NodeRecord, nbytes: int) -> reach.PairResult:
        ip = dst.overlay["ip"]
        _, ping_out = await self._run(src, " ".join(shlex.quote(a) for a in reach.ping_argv(ip)))
        sent, received, rtt = reach.parse_ping(ping_out)
        port = random.randrange(40000, 41000)
        recv = asyncio.ensure_future(self._run(
            dst, f"exec {NODE_PYTHON} -m gpuhive.overlay.bulk recv {ip} {port} --timeout 60"))
        await asyncio.sleep(0.5)
        send = f"exec {NODE_PYTHON} -m gpuhive.overlay.bulk send {ip} {port} {nbytes} --timeout 60"
        status, out = await self._run(src, send)
        recv.cancel()
        try:
            data = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        except ValueError:
            data = {"error": out[-200:]}
        ok = status == 0 and data.get("received") == nbytes
        return reach.PairResult(src.name, dst.name, sent, received, rtt, ok,
                                data.get("mb_per_s"), data.get("error", "") if not ok else "")

    async def _hints(self) -> dict[str, reach.NodeHint]:
        if self.hub is None:
            return {}
        try:
            st = await self.hub.status()
        except GpuhiveError:
            return {}
        now = time.time()
        return {p["node"]: reach.NodeHint(None if p["latest_handshake"] is None
                                          else now - p["latest_handshake"], p["endpoint"])
                for p in st["peers"]}
