"""The gateway's counters, in memory, shaped for a Prometheus exporter to read.

Counters are keyed by label tuples; histograms keep cumulative-ready bucket counts plus sum
and count (Prometheus' own layout), so exposing them is a loop over ``snapshot()``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Histogram:
    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)  # per bucket, last = +Inf
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts or [0] * (len(self.bounds) + 1)
        return {"buckets": [*self.bounds, float("inf")], "counts": list(counts),
                "sum": self.total, "count": self.count}


@dataclass
class GatewayMetrics:
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # model, route, status
    failovers: Counter[tuple[str, str]] = field(default_factory=Counter)  # model, kind
    tokens: Counter[tuple[str, str]] = field(default_factory=Counter)  # model, prompt|completion
    stream_errors: Counter[tuple[str, str]] = field(default_factory=Counter)  # model, reason
    latency_s: dict[str, Histogram] = field(default_factory=dict)  # whole request, by model
    ttft_s: dict[str, Histogram] = field(default_factory=dict)  # to first content, by model
    in_flight: int = 0

    def request_done(self, model: str, route: str, status: int, seconds: float) -> None:
        self.requests[(model, route, status)] += 1
        self.latency_s.setdefault(model, Histogram()).observe(seconds)

    def first_token(self, model: str, seconds: float) -> None:
        self.ttft_s.setdefault(model, Histogram()).observe(seconds)

    def failover(self, model: str, kind: str) -> None:
        """kind: ``before_first_byte`` or ``mid_stream``."""
        self.failovers[(model, kind)] += 1

    def add_tokens(self, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens[(model, "prompt")] += prompt
        if completion:
            self.tokens[(model, "completion")] += completion

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": [{"model": m, "route": r, "status": s, "count": n}
                         for (m, r, s), n in sorted(self.requests.items())],
            "failovers": [{"model": m, "kind": k, "count": n}
                          for (m, k), n in sorted(self.failovers.items())],
            "tokens": [{"model": m, "kind": k, "count": n}
                       for (m, k), n in sorted(self.tokens.items())],
            "stream_errors": [{"model": m, "reason": r, "count": n}
                              for (m, r), n in sorted(self.stream_errors.items())],
            "latency_seconds": {m: h.to_dict() for m, h in sorted(self.latency_s.items())},
            "ttft_seconds": {m: h.to_dict() for m, h in sorted(self.ttft_s.items())},
            "in_flight": self.in_flight,
        }
