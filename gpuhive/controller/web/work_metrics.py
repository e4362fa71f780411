"""Prometheus metrics for the work the hive does: training jobs and the gateway.

Model labels are limited to models the catalog knows or that are served (a client asking
for any string must not mint a new time series); anything else is counted as "other".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from gpuhive.controller.job_store import JobStore
from gpuhive.serve.gateway.metrics import GatewayMetrics

JOB_STATES = ("queued", "preflight", "syncing", "running", "succeeded", "failed", "cancelled")


class JobsCollector:
    def __init__(self, store: JobStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        jobs = self.store.recent(1000)
        by_state = GaugeMetricFamily("gpuhive_jobs", "Training jobs by state", labels=["state"])
        counts = dict.fromkeys(JOB_STATES, 0)
        for j in jobs:
            counts[j.state] = counts.get(j.state, 0) + 1
        for state, n in counts.items():
            by_state.add_metric([state], n)
        yield by_state
        durations = HistogramMetricFamily("gpuhive_job_duration_seconds",
                                          "Wall time of finished jobs", labels=["state"])
        bounds = (60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)
        for state in ("succeeded", "failed", "cancelled"):
            times = [j.ended_at - (j.started_at or j.created_at) for j in jobs
                     if j.state == state and j.ended_at]
            buckets = [(str(b), sum(1 for t in times if t <= b)) for b in bounds]
            buckets.append(("+Inf", len(times)))
            durations.add_metric([state], buckets, sum(times))
        yield durations


class GatewayCollector:
    def __init__(self, metrics: GatewayMetrics, known_models: Callable[[], set[str]]) -> None:
        self.metrics = metrics
        self.known_models = known_models

    def collect(self) -> Iterator[Metric]:
        snap: dict[str, Any] = self.metrics.snapshot()
        known = self.known_models()

        def label(model: str) -> str:
            return model if model in known else "other"

        requests = CounterMetricFamily("gpuhive_gateway_requests",
                                       "Gateway requests by model, route and status",
                                       labels=["model", "route", "status"])
        agg: dict[tuple[str, str, str], int] = {}
        for r in snap["requests"]:
            key = (label(r["model"]), r["route"], str(r["status"]))
            agg[key] = agg.get(key, 0) + r["count"]
        for key, n in sorted(agg.items()):
            requests.add_metric(list(key), n)
        yield requests
        for name, doc, rows, labels in (
                ("gpuhive_gateway_failovers", "Requests moved to another replica",
                 snap["failovers"], ("model", "kind")),
                ("gpuhive_gateway_tokens", "Tokens through the gateway", snap["tokens"],
                 ("model", "kind"))):
            counter = CounterMetricFamily(name, doc, labels=list(labels))
            sums: dict[tuple[str, str], int] = {}
            for r in rows:
                pair = (label(r["model"]), r["kind"])
                sums[pair] = sums.get(pair, 0) + r["count"]
            for pair, n in sorted(sums.items()):
                counter.add_metric(list(pair), n)
            yield counter
        for name, doc, hists in (
                ("gpuhive_gateway_request_seconds", "Whole request latency",
                 snap["latency_seconds"]),
                ("gpuhive_gateway_ttft_seconds", "Time to first token", snap["ttft_seconds"])):
            hist = HistogramMetricFamily(name, doc, labels=["model"])
            for model, h in hists.items():
                if model not in known:
                    continue
                running, buckets = 0, []
                for bound, count in zip(h["buckets"], h["counts"], strict=True):
                    running += count
                    buckets.append(("+Inf" if bound == float("inf") else str(bound), running))
                hist.add_metric([model], buckets, h["sum"])
            yield hist
        inflight = GaugeMetricFamily("gpuhive_gateway_in_flight", "Requests in flight")
        inflight.add_metric([], snap["in_flight"])
        yield inflight
