from gpuhive.core import nodeview
from gpuhive.core import reliability as rel
from gpuhive.core.linkplan import MAX_BYTES, MIN_BYTES, transfer_size
from gpuhive.core.model import (
    AgentState,
    CpuInfo,
    GpuInfo,
    Hardware,
    NodeKind,
    NodeRecord,
    NodeStatus,
)
from gpuhive.core.node_facts import LinkMeasure


def _hw(*reasons: list[str]) -> Hardware:
    return Hardware(hostname="h", cpu=CpuInfo(cores=8), memory_total_mib=1024,
                    gpus=[GpuInfo(i, "NVIDIA H100", 81559, clock_event_reasons=list(r))
                          for i, r in enumerate(reasons)], utc_offset_s=3600)


def _node(**kw: object) -> NodeRecord:
    base: dict[str, object] = dict(id="n-1", name="a", kind=NodeKind.AGENT,
                                   status=NodeStatus.ONLINE, registered_at=1000.0)
    base.update(kw)
    return NodeRecord(**base)  # type: ignore[arg-type]


def test_thermal_onsets_count_only_transitions() -> None:
    cool, hot = [], ["sw_thermal_slowdown"]
    assert nodeview.thermal_onsets(None, _hw(hot, cool), 0) == 1
    assert nodeview.thermal_onsets(_hw(hot, cool), _hw(hot, cool), 0) == 0  # still hot
    assert nodeview.thermal_onsets(_hw(hot, cool), _hw(cool, ["hw_thermal_slowdown"]), 0) == 1
    assert nodeview.thermal_onsets(_hw(cool), _hw(["gpu_idle"]), 0) == 0


def test_prune_thermal_keeps_a_week() -> None:
    now = 10 * 86400.0
    assert nodeview.prune_thermal([0.0, now - 86400, now], now) == [now - 86400, now]


def test_view_assembles_ranking_input() -> None:
    r = rel.on_task(rel.new_node(1000.0), True, 2000.0)
    node = _node(hardware=_hw([]), agent_state="draining", reliability=r.to_dict(),
                 policy={"max_gpus": 1, "schedule": "22:00-08:00", "bogus": 1},
                 tasks={"finished": [5.0, 6.0], "failed": [6.0]}, thermal_events=[7.0],
                 link=LinkMeasure.from_dict({"rtt_ms": 12.5, "gpu": {"matmul_tflops": 600.0}}))
    v = nodeview.view(node, 2000.0)
    assert v.agent_state == AgentState.DRAINING
    assert v.policy.max_gpus == 1 and v.policy.schedule == "22:00-08:00"
    assert v.tasks.failed == (6.0,) and len(v.tasks) == 2
    assert v.rtt_ms == 12.5 and v.measured_tflops == 600.0 and v.utc_offset_s == 3600
    assert abs(v.reliability - rel.score_at(r, 2000.0)) < 1e-9
    assert v.thermal_events == (7.0,)


def test_new_node_starts_low_and_unknown_state_is_degraded() -> None:
    v = nodeview.view(_node(agent_state="weird"), 1000.0)
    assert v.reliability == rel.new_node(1000.0).score
    assert v.agent_state == AgentState.DEGRADED


def test_status_reason() -> None:
    assert nodeview.status_reason(_node(), 0) == ""
    # "the friend" lends the machine; "the owner" runs the hive
    assert nodeview.status_reason(_node(agent_state="paused"), 0) == "paused by the friend"
    assert "friend" in nodeview.status_reason(_node(agent_state="draining"), 0)
    assert nodeview.status_reason(_node(status=NodeStatus.OFFLINE, status_reason="gone"),
                                  0) == "gone"


def test_status_reason_ages_are_computed_when_shown() -> None:
    late = _node(status=NodeStatus.DEGRADED, status_reason="missed heartbeats",
                 last_heartbeat=1000.0)
    assert nodeview.status_reason(late, 1004.0) == "missed heartbeats, last heard 4s ago"
    assert nodeview.status_reason(late, 1046.0) == "missed heartbeats, last heard 46s ago"
    stopped = _node(status=NodeStatus.OFFLINE, status_reason="agent stopped",
                    last_heartbeat=1000.0)
    assert nodeview.status_reason(stopped, 1300.0) == "agent stopped 5m ago"
    # what 0.1.0 stored, frozen at the transition, is re-aged too
    old = _node(status=NodeStatus.OFFLINE, status_reason="missed 3 heartbeats, last heard 4s ago",
                last_heartbeat=1000.0)
    assert nodeview.status_reason(old, 1046.0) == "missed heartbeats, last heard 46s ago"


def test_transfer_size_targets_a_second_and_a_half() -> None:
    assert transfer_size(20.0) == int(20e6 / 8 * 1.5)
    assert transfer_size(0.0) == MIN_BYTES
    assert transfer_size(1e6) == MAX_BYTES
