"""The replicas requests go to, as the gateway and the relay both see them.

``ReplicaPool`` holds what carrying a request to a replica needs: the controller's
``ReplicaSource`` (which replicas are ready), the passive health of each (in flight,
latency, failures, tokens/s) and the ranking over it, the HTTP client that reaches them,
the counters, the clock and the limits. The gateway (``app``) admits a request and hands it
to the relay with the pool; the relay picks candidates, reports each attempt back
(``begin``/``end``/``succeeded``/``failed``/``generated``) and never sees the gateway.

``health`` may be passed in: the controller reads the same map for `serve ls` (requests in
flight, tokens/s) and to choose which replicas a scale-down stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gpuhive.serve.api import ModelProfile, Replica, ReplicaSource
from gpuhive.serve.gateway import routing
from gpuhive.serve.gateway.metrics import GatewayMetrics
from gpuhive.serve.gateway.upstream import Upstream


@dataclass(frozen=True)
class GatewayConfig:
    max_body_bytes: int = 1 << 20
    # The longest silence of a stream between two events; also the period of the liveness
    # probes while waiting for a first event or a whole answer (see upstream.watched): a
    # dead or stalled replica is dropped after about this long, whatever the limits below.
    token_gap_timeout_s: float = 15.0
    first_token_timeout_s: float = 300.0  # request sent → first event, busy but alive
    request_timeout_s: float = 900.0  # a whole non-streaming answer, busy but alive
    connect_timeout_s: float = 5.0
    max_attempts: int = 3  # replicas tried per request (failovers + 1)
    cooldown_base_s: float = 1.0
    cooldown_cap_s: float = 30.0


class ReplicaPool:
    def __init__(self, source: ReplicaSource, *, config: GatewayConfig = GatewayConfig(),
                 metrics: GatewayMetrics | None = None,
                 health: dict[str, routing.ReplicaHealth] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.cfg = config
        self.metrics = metrics or GatewayMetrics()
        self.health: dict[str, routing.ReplicaHealth] = {} if health is None else health
        self.clock = clock
        self.upstream = Upstream(connect_timeout_s=config.connect_timeout_s)

    async def aclose(self) -> None:
        await self.upstream.aclose()

    # ---- what is served -----------------------------------------------------------------

    def ready(self) -> Sequence[Replica]:
        return self.source.replicas()

    def profile(self, model: str) -> ModelProfile | None:
        return self.source.profile(model)

    def candidates(self, model: str, tried: set[str]) -> list[Replica]:
        """Replicas of ``model`` to try next, best first (untried ones before the rest)."""
        ranked = routing.rank_replicas(self.ready(), model, self.health, self.clock())
        return routing.failover_order(ranked, tried)

    # ---- one attempt's outcome --------------------------------------------------------

    def _h(self, r: Replica) -> routing.ReplicaHealth:
        return self.health.get(r.replica_id, routing.IDLE)

    def begin(self, r: Replica) -> None:
        self.health[r.replica_id] = routing.started(self._h(r))
        self.metrics.in_flight += 1

    def end(self, r: Replica) -> None:
        self.health[r.replica_id] = routing.finished(self._h(r))
        self.metrics.in_flight -= 1

    def succeeded(self, r: Replica, seconds: float) -> None:
        self.health[r.replica_id] = routing.succeeded(self._h(r), seconds * 1000.0)

    def generated(self, r: Replica, tokens: int, seconds: float) -> None:
        self.health[r.replica_id] = routing.generated(self._h(r), tokens, seconds)

    def failed(self, r: Replica, *, cool: bool = True) -> None:
        """``cool`` False: the replica answered, the request was at fault; no cooldown."""
        if cool:
            self.health[r.replica_id] = routing.failed(
                self._h(r), self.clock(), base_s=self.cfg.cooldown_base_s,
                cap_s=self.cfg.cooldown_cap_s)
