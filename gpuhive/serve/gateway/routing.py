"""Which replica serves a request, and the gateway's passive health view. Pure: ``now`` in.

Order, best first, each key deciding only ties of the one before:

1. not cooling down (a replica that just failed is skipped until ``down_until``; it stays
   in the list, last, so a request still has somewhere to go when all have failed);
2. reliability, in steps of 0.1 (the node's earned score);
3. requests in flight through this gateway (spreads load);
4. latency (exponential moving average of time to first byte; unknown counts as 0 so a
   new replica gets tried);
5. replica id (stable order).

A failure cools a replica down for ``base · 2^(failures−1)`` seconds, capped; a success
clears it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from gpuhive.serve.api import Replica

LATENCY_ALPHA = 0.2
RATE_ALPHA = 0.3  # recent answers weigh more: a node's load changes


@dataclass(frozen=True)
class ReplicaHealth:
    in_flight: int = 0
    latency_ms: float | None = None
    failures: int = 0  # consecutive
    down_until: float = 0.0
    tokens_per_s: float | None = None  # generation speed seen through the gateway (EWMA)


IDLE = ReplicaHealth()


def rank_replicas(replicas: Sequence[Replica], model: str,
                  health: Mapping[str, ReplicaHealth], now: float,
                  exclude: Collection[str] = ()) -> list[Replica]:
    """Replicas of ``model`` not in ``exclude``, best first."""

    def key(r: Replica) -> tuple[bool, float, int, float, str]:
        h = health.get(r.replica_id, IDLE)
        cooling = now < h.down_until
        return (cooling, -round(r.reliability * 10), h.in_flight,
                h.latency_ms or 0.0, r.replica_id)

    return sorted((r for r in replicas if r.model == model and r.replica_id not in exclude),
                  key=key)


def started(h: ReplicaHealth) -> ReplicaHealth:
    return replace(h, in_flight=h.in_flight + 1)


def finished(h: ReplicaHealth) -> ReplicaHealth:
    return replace(h, in_flight=max(0, h.in_flight - 1))


def succeeded(h: ReplicaHealth, latency_ms: float) -> ReplicaHealth:
    ewma = latency_ms if h.latency_ms is None else (
        h.latency_ms + LATENCY_ALPHA * (latency_ms - h.latency_ms))
    return replace(h, latency_ms=ewma, failures=0, down_until=0.0)


def generated(h: ReplicaHealth, tokens: int, seconds: float) -> ReplicaHealth:
    """Fold one answer's speed (tokens after the first, over the time they took) in."""
    if tokens < 1 or seconds <= 0:
        return h
    rate = tokens / seconds
    ewma = rate if h.tokens_per_s is None else (
        h.tokens_per_s + RATE_ALPHA * (rate - h.tokens_per_s))
    return replace(h, tokens_per_s=ewma)


def failed(h: ReplicaHealth, now: float, *, base_s: float = 1.0,
           cap_s: float = 30.0) -> ReplicaHealth:
    n = h.failures + 1
    return replace(h, failures=n, down_until=now + min(cap_s, base_s * 2.0 ** min(n - 1, 30)))


def failover_order(ranked: Sequence[Replica], tried: Collection[str]) -> list[Replica]:
    """Untried replicas first (in rank order), then the tried ones again: a single replica
    whose pooled connection went stale deserves a second try; the caller's attempt limit
    bounds the loop."""
    fresh = [r for r in ranked if r.replica_id not in tried]
    return fresh + [r for r in ranked if r.replica_id in tried]
