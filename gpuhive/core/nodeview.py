"""From what the registry stores about a node to what ranking and the CLI need. Pure."""

from __future__ import annotations

from typing import Any

from gpuhive.core import liveness
from gpuhive.core import reliability as rel
from gpuhive.core.model import AgentState, CpuInfo, Hardware, NodeRecord, NodeStatus
from gpuhive.core.ranking import NodeView, OwnerPolicy, TaskHistory

THERMAL_REASONS = frozenset({"sw_thermal_slowdown", "hw_thermal_slowdown",
                             "hw_power_brake_slowdown"})
KEEP_THERMAL_S = 7 * 86400.0


def reliability_of(node: NodeRecord) -> rel.Reliability:
    if node.reliability:
        return rel.Reliability.from_dict(node.reliability)
    return rel.new_node(node.registered_at)


def tasks_of(node: NodeRecord) -> TaskHistory:
    t = node.tasks or {}
    return TaskHistory(tuple(t.get("finished", ())), tuple(t.get("failed", ())))


def tasks_to_dict(t: TaskHistory) -> dict[str, Any]:
    return {"finished": list(t.finished), "failed": list(t.failed)}


def policy_of(node: NodeRecord) -> OwnerPolicy:
    names = OwnerPolicy.__dataclass_fields__
    return OwnerPolicy(**{k: v for k, v in (node.policy or {}).items() if k in names})


def agent_state_of(node: NodeRecord) -> AgentState:
    try:
        return AgentState(node.agent_state or "available")
    except ValueError:
        return AgentState.DEGRADED


def view(node: NodeRecord, now: float) -> NodeView:
    hw = node.hardware or Hardware(hostname=node.hostname, cpu=CpuInfo(cores=0),
                                   memory_total_mib=0)
    link = node.link
    gpu_bench = link.gpu if link is not None else None
    return NodeView(
        node_id=node.id, name=node.name, hardware=hw, status=node.status,
        agent_state=agent_state_of(node),
        reliability=rel.score_at(reliability_of(node), now),
        rtt_ms=link.rtt_ms if link is not None else None,
        thermal_events=tuple(node.thermal_events), tasks=tasks_of(node),
        policy=policy_of(node), utc_offset_s=hw.utc_offset_s,
        measured_tflops=gpu_bench.matmul_tflops if gpu_bench is not None else None)


def thermal_onsets(before: Hardware | None, after: Hardware, now: float) -> int:
    """How many GPUs entered a thermal slowdown between two snapshots."""
    was = {g.index: bool(THERMAL_REASONS & set(g.clock_event_reasons))
           for g in (before.gpus if before else [])}
    return sum(1 for g in after.gpus
               if THERMAL_REASONS & set(g.clock_event_reasons) and not was.get(g.index, False))


def prune_thermal(events: list[float], now: float) -> list[float]:
    return [t for t in events if now - t < KEEP_THERMAL_S]


# what the agent says about itself, in words; "the friend" lends the machine
_AGENT_STATE_REASONS = {
    AgentState.PAUSED: "paused by the friend",
    AgentState.DRAINING: "paused by the friend, finishing running work",
    AgentState.DEGRADED: "the agent reports a problem",
}


def status_reason(node: NodeRecord, now: float) -> str:
    """One line on why a node is not simply online and available, ages as of ``now``."""
    if node.status != NodeStatus.ONLINE:
        return liveness.explain(node.status_reason, node.last_heartbeat, now) \
            or node.status.value
    return _AGENT_STATE_REASONS.get(agent_state_of(node), "")
