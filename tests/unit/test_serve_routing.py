from gpuhive.serve.api import Replica
from gpuhive.serve.gateway.routing import (
    IDLE,
    ReplicaHealth,
    failed,
    failover_order,
    finished,
    generated,
    rank_replicas,
    started,
    succeeded,
)


def rep(rid: str, rel: float = 0.5, model: str = "m") -> Replica:
    return Replica(rid, model, f"node-{rid}", f"http://127.0.0.1:1{rid}", rel)


def ids(rs: list[Replica]) -> list[str]:
    return [r.replica_id for r in rs]


def test_only_the_model_and_not_excluded() -> None:
    rs = [rep("1"), rep("2", model="other"), rep("3")]
    assert ids(rank_replicas(rs, "m", {}, 0.0)) == ["1", "3"]
    assert ids(rank_replicas(rs, "m", {}, 0.0, exclude={"1"})) == ["3"]
    assert rank_replicas(rs, "nope", {}, 0.0) == []


def test_reliability_then_load_then_latency_then_id() -> None:
    rs = [rep("a", 0.52), rep("b", 0.9), rep("c", 0.48), rep("d", 0.5)]
    h = {"a": ReplicaHealth(in_flight=2), "c": ReplicaHealth(latency_ms=5.0),
         "d": ReplicaHealth(latency_ms=1.0)}
    # b is a step more reliable; a, c, d share the 0.5 step: load puts a last, latency d < c
    assert ids(rank_replicas(rs, "m", h, 0.0)) == ["b", "d", "c", "a"]


def test_cooling_replicas_go_last_until_their_time_is_up() -> None:
    rs = [rep("a", 0.9), rep("b", 0.1)]
    h = {"a": failed(IDLE, now=100.0)}
    assert h["a"].down_until == 101.0
    assert ids(rank_replicas(rs, "m", h, 100.5)) == ["b", "a"]
    assert ids(rank_replicas(rs, "m", h, 101.0)) == ["a", "b"]


def test_cooldown_doubles_to_a_cap_and_success_clears_it() -> None:
    h = IDLE
    downs = []
    for _ in range(8):
        h = failed(h, now=0.0, base_s=1.0, cap_s=30.0)
        downs.append(h.down_until)
    assert downs == [1, 2, 4, 8, 16, 30, 30, 30]
    h = succeeded(h, 10.0)
    assert (h.failures, h.down_until, h.latency_ms) == (0, 0.0, 10.0)
    assert succeeded(h, 20.0).latency_ms == 12.0  # EWMA, alpha 0.2


def test_in_flight_counts_never_go_negative() -> None:
    h = started(started(IDLE))
    assert h.in_flight == 2
    assert finished(finished(finished(h))).in_flight == 0


def test_failover_order_tries_untried_first_then_again() -> None:
    rs = [rep("a"), rep("b"), rep("c")]
    assert ids(failover_order(rs, {"a"})) == ["b", "c", "a"]
    assert ids(failover_order(rs, {"a", "b", "c"})) == ["a", "b", "c"]


def test_generation_speed_is_a_moving_average_that_ignores_empty_answers() -> None:
    h = generated(IDLE, 100, 2.0)
    assert h.tokens_per_s == 50.0
    assert generated(h, 0, 1.0) == h and generated(h, 10, 0.0) == h
    faster = generated(h, 100, 1.0)
    assert faster.tokens_per_s is not None and 50.0 < faster.tokens_per_s < 100.0
