"""Metrics, upstream error translation, errors' OpenAI shape, the restart schedule."""

import json

from gpuhive.serve.errors import NoReplica, RateLimited
from gpuhive.serve.gateway.metrics import GatewayMetrics
from gpuhive.serve.gateway.upstream_errors import from_upstream
from gpuhive.serve.node.supervisor import SupervisorConfig, restart_plan


def test_metrics_snapshot() -> None:
    m = GatewayMetrics()
    m.request_done("tiny", "chat", 200, 0.003)
    m.request_done("tiny", "chat", 200, 7.0)
    m.first_token("tiny", 0.02)
    m.failover("tiny", "mid_stream")
    m.add_tokens("tiny", 10, 5)
    s = m.snapshot()
    assert s["requests"] == [{"model": "tiny", "route": "chat", "status": 200, "count": 2}]
    lat = s["latency_seconds"]["tiny"]
    assert lat["count"] == 2 and sum(lat["counts"]) == 2 and lat["counts"][0] == 1
    assert s["ttft_seconds"]["tiny"]["count"] == 1
    assert s["failovers"] == [{"model": "tiny", "kind": "mid_stream", "count": 1}]
    assert {t["kind"]: t["count"] for t in s["tokens"]} == {"prompt": 10, "completion": 5}
    json.dumps(s)


def test_engine_refusals_become_openai_errors() -> None:
    openai_style = json.dumps({"error": {"message": "too long", "type": "invalid_request_error",
                                         "param": "messages",
                                         "code": "context_length_exceeded"}}).encode()
    e = from_upstream(400, openai_style)
    assert (e.status, e.message, e.api_code, e.param) == (
        400, "too long", "context_length_exceeded", "messages")
    e = from_upstream(422, b'{"detail": [{"msg": "bad"}]}')
    assert e.status == 400 and "bad" in e.message
    e = from_upstream(404, b"<html>nope</html>")
    assert e.status == 404 and "nope" in e.message
    assert from_upstream(400, b"").body()["error"]["type"] == "invalid_request_error"


def test_error_bodies_and_headers() -> None:
    e = RateLimited("slow down", retry_after_s=1.2)
    assert e.status == 429 and e.headers() == {"Retry-After": "2"}
    assert e.body()["error"] == {"message": "slow down", "type": "rate_limit_error",
                                 "param": None, "code": "rate_limit_exceeded"}
    assert RateLimited("x", retry_after_s=0.0).headers() == {"Retry-After": "1"}
    assert NoReplica("none").status == 503


def test_restart_schedule() -> None:
    cfg = SupervisorConfig(backoff_base_s=1, backoff_cap_s=8, max_restarts=5, stable_after_s=60)
    n, delays = 0, []
    for _ in range(6):
        n, d = restart_plan(n, 1.0, cfg, 0.0)
        delays.append(d)
    assert delays == [1, 2, 4, 8, 8, None]
    assert restart_plan(5, 61.0, cfg, 0.0) == (1, 1)  # ran fine for a while: start over
    assert restart_plan(3, 0.0, SupervisorConfig(max_restarts=None), 0.0)[1] is not None
    assert restart_plan(0, 0.0, cfg, 0.999)[1] == 1 * (1 - 0.25 * 0.999)
