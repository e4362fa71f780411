"""Knowing the nodes: ranking, re-probing, and measuring links and GPUs.

``rank`` is a pure function call over what the registry holds; ``probe`` and ``bench``
run small commands on the nodes over their existing sessions and store the results.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.registry import Registry
from gpuhive.core import linkplan, nodeview, remote_probe
from gpuhive.core import reliability as rel
from gpuhive.core.model import Hardware, NodeKind, NodeRecord
from gpuhive.core.ranking import Purpose, Request, rank_nodes
from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.data import load_driver_blacklist, load_gpu_throughput
from gpuhive.errors import ConfigError, GpuhiveError
from gpuhive.transport import node_conn
from gpuhive.transport.node_conn import NodeConnections


class NodeOps:
    def __init__(self, registry: Registry, nodes: NodeConnections, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.nodes = nodes
        self.settings = settings
        self.clock = clock
        self.throughput = load_gpu_throughput(settings.gpu_throughput_file or None)
        self.blacklist = load_driver_blacklist(settings.driver_blacklist_file or None)

    def rank(self, gpus: int = 1, min_vram_mib: int = 0, purpose: str = "serve",
             precision: str = "fp16") -> dict[str, Any]:
        try:
            request = Request(need_vram_mib=min_vram_mib, gpus=gpus, purpose=Purpose(purpose),
                              precision=precision)
        except ValueError as exc:
            raise ConfigError(f"--for must be train or serve, not {purpose!r}",
                              key="for") from exc
        now = self.clock()
        views = [nodeview.view(n, now) for n in self.registry.list_nodes()]
        ranking = rank_nodes(views, request, now, throughput=self.throughput,
                             blacklist=self.blacklist)
        return {"request": {"gpus": gpus, "min_vram_mib": min_vram_mib, "purpose": purpose,
                            "precision": precision}, **ranking.to_dict()}

    def record_task(self, name: str, ok: bool) -> None:
        """A task finished on a node: its history and earned reliability move."""
        node = self.registry.get_node(name)
        now = self.clock()
        tasks = nodeview.tasks_of(node).added(now, ok)
        r = rel.on_task(nodeview.reliability_of(node), ok, now)
        self.registry.set_facts(node.id, tasks=nodeview.tasks_to_dict(tasks),
                                reliability=r.to_dict())

    async def probe(self, target: str = "all") -> list[dict[str, Any]]:
        """Re-probe hardware and software on nodes now."""
        async def one(node: NodeRecord) -> dict[str, Any]:
            try:
                if node.kind == NodeKind.AGENT:
                    data = json.loads(await self.nodes.output(
                        node, f"{NODE_PYTHON} -m gpuhive agent probe --json"))
                    hw, software = Hardware.from_dict(data["hardware"]), data["software"]
                else:
                    hw, software = remote_probe.parse_probe(
                        await self.nodes.output(node, remote_probe.PROBE_COMMAND)), {}
            except (GpuhiveError, ValueError, KeyError, TypeError) as exc:
                return {"node": node.name, "ok": False, "error": str(exc)}
            self.registry.save_heartbeats([(node.id, node.last_heartbeat or self.clock(),
                                            node.agent_state, hw, None)])
            if software:
                self.registry.set_facts(node.id, software=software)
            return {"node": node.name, "ok": True, "gpus": len(hw.gpus),
                    "source": hw.probe_source}
        return list(await asyncio.gather(*(one(n) for n in self.registry.select(target))))

    async def bench(self, target: str = "all", gpu: bool = True) -> list[dict[str, Any]]:
        """Measure RTT and throughput through each node's tunnel, and its GPU if any."""
        results = []
        # one node at a time: parallel transfers would share (and misreport) the uplink
        for node in self.registry.select(target):
            results.append(await self._bench_one(node, gpu))
        return results

    async def _bench_one(self, node: NodeRecord, gpu: bool) -> dict[str, Any]:
        try:
            conn = await self.nodes.get(node)
            rtt = await node_conn.measure_rtt(conn)
            quick = await node_conn.measure_download(conn, linkplan.PROBE_BYTES)
            down = await node_conn.measure_download(conn, linkplan.transfer_size(quick))
            up = await node_conn.measure_upload(conn, linkplan.transfer_size(down))
            link: dict[str, Any] = {"rtt_ms": round(rtt, 2), "down_mbps": round(down, 1),
                                    "up_mbps": round(up, 1), "measured_at": self.clock()}
            if gpu and node.hardware and node.hardware.gpus and node.kind == NodeKind.AGENT:
                link["gpu"] = json.loads(await self.nodes.output(
                    node, f"{NODE_PYTHON} -m gpuhive.probe.gpubench"))
        except (GpuhiveError, OSError, ValueError) as exc:
            return {"node": node.name, "ok": False, "error": str(exc)}
        except Exception as exc:  # asyncssh errors mid-transfer: the node is the problem
            return {"node": node.name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.registry.set_facts(node.id, link=link)
        return {"node": node.name, "ok": True, **link}
