"""Knowing the nodes: ranking, re-probing, and measuring links and GPUs.

``rank`` and the ``select_for_*`` methods are pure calls (``core/selection``) over what
the registry holds; the scheduler (``jobs``, ``serving``) and `gpuhive nodes rank` go
through them, so they agree. ``probe`` and ``bench`` run small commands on the nodes over
their existing sessions (``transport.api.NodeSessions``) and store the results.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gpuhive.config import Settings
from gpuhive.controller.holding_store import HoldingStore
from gpuhive.controller.registry import Registry
from gpuhive.core import fact_codec, linkplan, nodeview, remote_probe
from gpuhive.core import reliability as rel
from gpuhive.core.holdings import NOTHING_HELD
from gpuhive.core.model import Hardware, NodeKind, NodeRecord
from gpuhive.core.node_facts import GpuBench, LinkMeasure, SoftwareFacts
from gpuhive.core.ranking import NodeView, Purpose
from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.core.selection import (
    Selection,
    TrainNeed,
    select_for_serving,
    select_for_training,
)
from gpuhive.core.spoke_state import Spoke
from gpuhive.data import load_driver_blacklist, load_gpu_throughput
from gpuhive.errors import ConfigError, GpuhiveError, ProtocolError
from gpuhive.train.spec import BACKENDS, parse_nodes
from gpuhive.transport.api import NodeSessions

PRECISIONS = ("fp16", "bf16", "fp32")


class NodeOps:
    def __init__(self, registry: Registry, nodes: NodeSessions, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.nodes = nodes
        self.settings = settings
        self.clock = clock
        self.throughput = load_gpu_throughput(settings.gpu_throughput_file or None)
        self.blacklist = load_driver_blacklist(settings.driver_blacklist_file or None)
        self.holdings = HoldingStore(registry.connection)

    def views(self, now: float) -> list[NodeView]:
        """Every node as ranking sees it, with what jobs and replicas hold there now."""
        held = self.holdings.held_by_node()
        return [replace(nodeview.view(n, now), spoke=Spoke.of(n.overlay),
                        held=held.get(n.id, NOTHING_HELD))
                for n in self.registry.list_nodes()]

    def with_holdings(self, views: list[NodeView]) -> list[NodeView]:
        """``views`` with the holdings re-read (after a placement took some)."""
        held = self.holdings.held_by_node()
        return [replace(v, held=held.get(v.node_id, NOTHING_HELD)) for v in views]

    def select_for_training(self, need: TrainNeed, views: list[NodeView] | None = None, *,
                            cpu_fallback: bool | None = None) -> Selection:
        now = self.clock()
        return select_for_training(self.views(now) if views is None else views, need, now,
                                   throughput=self.throughput, blacklist=self.blacklist,
                                   cpu_fallback=cpu_fallback)

    def select_for_serving(self, need_mib: int, replicas: int,
                           gpus: int | None = None) -> Selection:
        now = self.clock()
        return select_for_serving(self.views(now), need_mib, replicas, now, gpus=gpus,
                                  throughput=self.throughput, blacklist=self.blacklist)

    def rank(self, gpus: int | str | None = None, min_vram_mib: int = 0,
             purpose: str = "train", precision: str = "fp16", nodes: str | int = 1,
             backend: str = "auto") -> dict[str, Any]:
        """`gpuhive nodes rank`: the ranking the scheduler would use for this request.

        ``gpus`` None or "auto" chooses as `train`/`serve` do (GPU nodes, else CPU nodes);
        ``nodes`` is the job's N or MIN:MAX (for serving: the replicas).
        """
        try:
            kind = Purpose(purpose)
        except ValueError as exc:
            raise ConfigError(f"--for must be train or serve, not {purpose!r}",
                              key="for") from exc
        if precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not "
                              f"{precision!r}", key="precision")
        fixed = _gpus(gpus)
        lo, hi = parse_nodes(nodes)
        if kind is Purpose.SERVE:
            sel = self.select_for_serving(min_vram_mib, hi, gpus=fixed)
        else:
            if backend not in BACKENDS:
                raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, not "
                                  f"{backend!r}", key="backend")
            sel = self.select_for_training(TrainNeed(
                min_nodes=lo, max_nodes=hi, gpus_per_node=fixed, min_vram_mib=min_vram_mib,
                backend=backend, precision=precision, overlay=self.settings.overlay))
        return sel.to_dict()

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
            software: SoftwareFacts | None = None  # an ssh node has no agent to probe it
            try:
                if node.kind == NodeKind.AGENT:
                    data = json.loads(await self.nodes.output(
                        node, f"{NODE_PYTHON} -m gpuhive agent probe --json"))
                    hw = Hardware.from_dict(data["hardware"])
                    software = fact_codec.stored(SoftwareFacts.from_dict, data["software"])
                else:
                    hw = _ssh_probe(node, await self.nodes.output(
                        node, remote_probe.PROBE_COMMAND))
            except (GpuhiveError, ValueError, KeyError, TypeError) as exc:
                return {"node": node.name, "ok": False, "error": str(exc)}
            self.registry.save_heartbeats([(node.id, node.last_heartbeat or self.clock(),
                                            node.agent_state, hw, None)])
            if software is not None:
                self.registry.set_facts(node.id, software=software)
            known = software or node.software
            return {"node": node.name, "ok": True, "gpus": len(hw.gpus),
                    "source": hw.probe_source, "hardware": hw.to_dict(),
                    "software": known.to_dict() if known else {}}
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
            rtt = await self.nodes.measure_rtt(node)
            quick = await self.nodes.measure_download(node, linkplan.PROBE_BYTES)
            down = await self.nodes.measure_download(node, linkplan.transfer_size(quick))
            up = await self.nodes.measure_upload(node, linkplan.transfer_size(down))
            measured_at = self.clock()
            skipped = gpu_bench_skipped(node, gpu)
            if skipped:  # keep what an earlier GPU bench measured: ranking uses it
                bench = node.link.gpu if node.link is not None else None
            else:
                bench = _gpu_bench(node, await self.nodes.output(
                    node, f"{NODE_PYTHON} -m gpuhive.probe.gpubench"))
            link = LinkMeasure(rtt_ms=round(rtt, 2), down_mbps=round(down, 1),
                               up_mbps=round(up, 1), measured_at=measured_at, gpu=bench)
        except (GpuhiveError, ValueError) as exc:  # NodeSessions: a drop is NodeUnreachable
            return {"node": node.name, "ok": False, "error": str(exc)}
        self.registry.set_facts(node.id, link=link)
        if skipped:  # the stored figure is not this run's
            return {"node": node.name, "ok": True, "gpu_skipped": skipped,
                    **fact_codec.replace(link, gpu=None).to_dict()}
        return {"node": node.name, "ok": True, **link.to_dict()}


def _ssh_probe(node: NodeRecord, text: str) -> Hardware:
    """The hardware an ssh node's probe printed; refused when it printed none of it (a
    shell that prints a banner only must not wipe what the registry knows)."""
    hw = remote_probe.parse_probe(text)
    if not hw.hostname and not hw.cpu.cores and not hw.memory_total_mib:
        raise ProtocolError(f"the probe on {node.name} printed no hardware facts: "
                            f"{text[:80]!r}", hint="run `gpuhive nodes exec "
                            f"{node.name} -- uname -a` to see what its shell prints",
                            node=node.name)
    return hw


def _gpu_bench(node: NodeRecord, output: str) -> GpuBench:
    """The GPU bench's one JSON object (anything else is the node's error, not a figure)."""
    data = json.loads(output)
    if not isinstance(data, dict):
        raise ProtocolError(f"the GPU bench on {node.name} printed {output[:80]!r}, not a "
                            "JSON object", hint=f"run `gpuhive nodes exec {node.name} -- "
                            "python3 -m gpuhive.probe.gpubench` to see what it prints",
                            node=node.name)
    return GpuBench.from_dict(data)


def _gpus(gpus: int | str | None) -> int | None:
    """--gpus: a count per node, or auto (None)."""
    if gpus is None or gpus == "auto":
        return None
    try:
        n = int(gpus)
    except (TypeError, ValueError):
        n = -1
    if n < 0:
        raise ConfigError(f"--gpus must be a number of GPUs or auto, not {gpus!r}",
                          hint="e.g. --gpus 2, --gpus 0 (CPU only) or --gpus auto",
                          key="gpus")
    return n


def gpu_bench_skipped(node: NodeRecord, asked: bool) -> str:
    """Why `nodes bench` does not run the GPU micro-benchmark on ``node`` ("" when it does)."""
    if not asked:
        return "--no-gpu"
    if not (node.hardware and node.hardware.gpus):
        return "no GPU on this node (a CPU node)"
    if node.kind != NodeKind.AGENT:
        return "an ssh node has no agent to run it"
    return ""
