"""Prometheus metrics, computed from controller state at scrape time.

Labels stay bounded: node names, GPU indices and model names (things the owner created),
never request ids, prompts or API keys. Other parts add collectors with ``register``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import Registry
from gpuhive.core import nodeview
from gpuhive.core import reliability as rel
from gpuhive.core.model import NodeStatus

MIB = 1024 * 1024


class HiveCollector:
    """Node, GPU and heartbeat metrics from the registry and the live link table."""

    def __init__(self, registry: Registry, hive: Hive,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.hive = hive
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        nodes = self.registry.list_nodes()
        by_status = GaugeMetricFamily("gpuhive_nodes", "Nodes by status", labels=["status"])
        counts = {s.value: 0 for s in NodeStatus if s != NodeStatus.REMOVED}
        for n in nodes:
            counts[n.status.value] = counts.get(n.status.value, 0) + 1
        for status, count in counts.items():
            by_status.add_metric([status], count)
        yield by_status

        g: dict[str, GaugeMetricFamily] = {}

        def gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
            if name not in g:
                g[name] = GaugeMetricFamily(name, doc, labels=labels)
            return g[name]

        for n in nodes:
            up = 1.0 if n.status == NodeStatus.ONLINE else 0.0
            gauge("gpuhive_node_up", "1 if the node is online", ["node"]).add_metric([n.name], up)
            if n.last_heartbeat is not None:
                gauge("gpuhive_node_heartbeat_age_seconds", "Seconds since the last heartbeat",
                      ["node"]).add_metric([n.name], max(0.0, now - n.last_heartbeat))
            gauge("gpuhive_node_reliability", "Earned reliability score (0..1)",
                  ["node"]).add_metric([n.name], rel.score_at(nodeview.reliability_of(n), now))
            hw = n.hardware
            if hw is None:
                continue
            gauge("gpuhive_node_cpu_cores", "CPU cores", ["node"]).add_metric(
                [n.name], hw.cpu.cores)
            gauge("gpuhive_node_memory_total_bytes", "RAM", ["node"]).add_metric(
                [n.name], hw.memory_total_mib * MIB)
            gauge("gpuhive_node_load1", "1-minute load average", ["node"]).add_metric(
                [n.name], hw.load_1m)
            for gpu in hw.gpus:
                labels = [n.name, str(gpu.index), gpu.name]
                names = ["node", "gpu", "model"]
                gauge("gpuhive_gpu_memory_total_bytes", "GPU memory", names).add_metric(
                    labels, gpu.memory_total_mib * MIB)
                gauge("gpuhive_gpu_memory_used_bytes", "GPU memory in use", names).add_metric(
                    labels, gpu.memory_used_mib * MIB)
                if gpu.utilization_pct is not None:
                    gauge("gpuhive_gpu_utilization_ratio", "GPU utilization (0..1)",
                          names).add_metric(labels, gpu.utilization_pct / 100)
                if gpu.temperature_c is not None:
                    gauge("gpuhive_gpu_temperature_celsius", "GPU temperature",
                          names).add_metric(labels, gpu.temperature_c)
                if gpu.power_w is not None:
                    gauge("gpuhive_gpu_power_watts", "GPU power draw", names).add_metric(
                        labels, gpu.power_w)
        yield from g.values()
        beats = CounterMetricFamily("gpuhive_heartbeats_received",
                                    "Heartbeats received since the controller started")
        beats.add_metric([], self.hive.heartbeats_received)
        yield beats
        links = GaugeMetricFamily("gpuhive_agent_links", "Agents connected right now")
        links.add_metric([], len(self.hive.links))
        yield links


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)

    def register(self, collector: Any) -> None:
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)
