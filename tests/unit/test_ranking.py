"""Eligibility and order, table-driven. ``now`` is fixed: 2026-01-01 12:00 UTC."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuhive.core.model import AgentState, CpuInfo, GpuInfo, Hardware, NodeStatus
from gpuhive.core.parse_tables import parse_driver_blacklist
from gpuhive.core.ranking import (
    Excluded,
    NodeView,
    OwnerPolicy,
    Purpose,
    Ranked,
    Request,
    TaskHistory,
    TaskRecord,
    capability_class,
    error_rate,
    evaluate,
    rank_nodes,
)
from gpuhive.data import load_gpu_throughput

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc).timestamp()
HOUR = 3600.0
TABLE = load_gpu_throughput()
BLACKLIST = parse_driver_blacklist("nvidia 545.23.06 corrupts NCCL all-reduce (test rule)\n")


def gpu(name: str = "NVIDIA GeForce RTX 4090", total: int = 24564, used: int = 0,
        cc: str | None = "8.9", index: int = 0, util: float | None = 0.0,
        driver: str = "550.54.15") -> GpuInfo:
    return GpuInfo(index=index, name=name, memory_total_mib=total, memory_used_mib=used,
                   utilization_pct=util, compute_capability=cc, driver_version=driver)


def node(name: str, *gpus: GpuInfo, **kw: Any) -> NodeView:
    hw = Hardware(hostname=name, cpu=CpuInfo(cores=8, flags=kw.pop("flags", ["avx2"])),
                  memory_total_mib=65536, memory_available_mib=kw.pop("ram", 60000),
                  gpus=list(gpus), load_1m=kw.pop("load_1m", 0.0))
    kw.setdefault("reliability", 0.5)
    kw.setdefault("rtt_ms", 20.0)
    if isinstance(kw.get("tasks"), list):
        kw["tasks"] = TaskHistory.of(kw["tasks"])
    return NodeView(node_id=f"id-{name}", name=name, hardware=hw, **kw)


H100 = gpu("NVIDIA H100 80GB HBM3", 81559, cc="9.0", driver="580.159.04")
A100 = gpu("NVIDIA A100-SXM4-40GB", 40960, cc="8.0")
R4090 = gpu()
R3090 = gpu("NVIDIA GeForce RTX 3090", 24576, cc="8.6")
GTX1080TI = gpu("NVIDIA GeForce GTX 1080 Ti", 11264, cc="6.1")
SERVE8 = Request(need_vram_mib=8000)
TRAIN20 = Request(need_vram_mib=20000, purpose=Purpose.TRAIN)


@dataclass
class Case:
    id: str
    nodes: list[NodeView]
    request: Request
    ranked: list[str]  # names, best first
    excluded: dict[str, list[str]] = field(default_factory=dict)  # name → reason codes


def ok_tasks(n: int, fails: int = 0, *, age_h: float = 1.0) -> list[TaskRecord]:
    out = [TaskRecord(NOW - age_h * HOUR - i, True) for i in range(n)]
    for i in range(fails):
        out[i] = out[i]._replace(ok=False)
    return sorted(out)


CASES = [
    Case("capability first: H100 > A100 > 4090 > 3090",
         [node("c", R4090), node("a", H100), node("d", R3090), node("b", A100)],
         SERVE8, ["a", "b", "c", "d"]),
    Case("same capability class: reliability decides",
         [node("low", R4090, reliability=0.35), node("high", R4090, reliability=0.9)],
         SERVE8, ["high", "low"]),
    Case("same class and reliability step: load, then latency",
         [node("busy", gpu(util=90.0), reliability=0.52),
          node("far", R4090, reliability=0.55, rtt_ms=120.0),
          node("near", R4090, reliability=0.58, rtt_ms=8.0)],
         SERVE8, ["near", "far", "busy"]),
    Case("full tie: name orders, deterministically",
         [node("zeta", R4090), node("alpha", R4090), node("mid", R4090)],
         SERVE8, ["alpha", "mid", "zeta"]),
    Case("serving prefers the tighter VRAM fit among equals",
         [node("big", gpu(total=49152, name="NVIDIA L40S", cc="8.9")),
          node("small", gpu(total=24564, name="NVIDIA L40S", cc="8.9"))],
         SERVE8, ["small", "big"]),
    Case("headroom: exactly need + 512 MiB is enough, one MiB less is not",
         [node("exact", gpu(total=20512)), node("short", gpu(total=20511))],
         Request(need_vram_mib=20000), ["exact"], {"short": ["vram"]}),
    Case("owner reserve and used memory shrink what is offered",
         [node("reserved", gpu(total=24564), policy=OwnerPolicy(reserve_vram_mib=4096)),
          node("used", gpu(total=24564, used=4096)), node("free", gpu(total=24564))],
         Request(need_vram_mib=20000), ["free"], {"reserved": ["vram"], "used": ["vram"]}),
    Case("fp16 training needs compute capability 7.0; serving does not",
         [node("pascal", GTX1080TI), node("ampere", R3090)],
         Request(need_vram_mib=8000, purpose=Purpose.TRAIN), ["ampere"],
         {"pascal": ["compute_capability"]}),
    Case("pascal can serve",
         [node("pascal", GTX1080TI)], Request(need_vram_mib=8000), ["pascal"]),
    Case("bf16 training needs 8.0",
         [node("turing", gpu("Tesla T4", 15360, cc="7.5")), node("ampere", R3090)],
         Request(need_vram_mib=8000, purpose=Purpose.TRAIN, precision="bf16"), ["ampere"],
         {"turing": ["compute_capability"]}),
    Case("unknown compute capability comes from the table",
         [node("v100", gpu("Tesla V100-SXM2-16GB", 16384, cc=None)),
          node("old", gpu("NVIDIA GeForce GTX 1080 Ti", 11264, cc=None))],
         Request(need_vram_mib=8000, purpose=Purpose.TRAIN, precision="bf16"), ["old"],
         {"v100": ["compute_capability"]}),  # 1080 Ti is not in the table: allowed
    Case("blacklisted driver",
         [node("bad", gpu(driver="545.23.06")), node("good", R4090)],
         SERVE8, ["good"], {"bad": ["driver"]}),
    Case("thermal: 3 events in 24 h exclude, 2 do not, old ones do not count",
         [node("hot", R4090, thermal_events=[NOW - 1 * HOUR, NOW - 5 * HOUR, NOW - 23 * HOUR]),
          node("warm", R4090, thermal_events=[NOW - HOUR, NOW - 2 * HOUR, NOW - 25 * HOUR])],
         SERVE8, ["warm"], {"hot": ["thermal"]}),
    Case("error rate: > 5% of the last 50 tasks",
         [node("flaky", R4090, tasks=ok_tasks(50, fails=3)),
          node("fine", R4090, tasks=ok_tasks(50, fails=2)),
          node("young", R4090, tasks=ok_tasks(5, fails=2)),
          node("forgiven", R4090, tasks=ok_tasks(50, fails=10, age_h=24 * 8))],
         SERVE8, ["fine", "forgiven", "young"], {"flaky": ["error_rate"]}),
    Case("error rate counts only the last 50",
         [node("recovered", R4090, tasks=ok_tasks(20, fails=20) + ok_tasks(50, age_h=0.5))],
         SERVE8, ["recovered"]),
    Case("paused, draining, owner paused, offline, degraded",
         [node("p", R4090, agent_state=AgentState.PAUSED),
          node("d", R4090, agent_state=AgentState.DRAINING),
          node("o", R4090, policy=OwnerPolicy(paused=True)),
          node("off", R4090, status=NodeStatus.OFFLINE),
          node("deg", R4090, status=NodeStatus.DEGRADED),
          node("busy", R4090, agent_state=AgentState.BUSY)],
         SERVE8, ["busy"],
         {"p": ["paused"], "d": ["draining"], "o": ["owner_paused"], "off": ["offline"],
          "deg": ["degraded"]}),
    Case("schedule across midnight, in the node's local time",
         # NOW is 12:00 UTC: 22:00 in UTC+10, 21:59 in UTC+9:59, 08:00 in UTC-4, 07:59 …
         [node("open-22", R4090, policy=OwnerPolicy(schedule="22:00-08:00"),
               utc_offset_s=10 * 3600),
          node("closed-2159", R4090, policy=OwnerPolicy(schedule="22:00-08:00"),
               utc_offset_s=9 * 3600 + 59 * 60),
          node("closed-0800", R4090, policy=OwnerPolicy(schedule="22:00-08:00"),
               utc_offset_s=-4 * 3600),
          node("open-0759", R4090, policy=OwnerPolicy(schedule="22:00-08:00"),
               utc_offset_s=-4 * 3600 - 60),
          node("open-0300", R4090, policy=OwnerPolicy(schedule="22:00-08:00"),
               utc_offset_s=-9 * 3600)],
         SERVE8, ["open-0300", "open-0759", "open-22"],
         {"closed-2159": ["schedule"], "closed-0800": ["schedule"]}),
    Case("owner's max_gpus limits what is offered",
         [node("four", R4090, replace(R4090, index=1), replace(R4090, index=2),
               replace(R4090, index=3), policy=OwnerPolicy(max_gpus=1)),
          node("two", R4090, replace(R4090, index=1))],
         Request(need_vram_mib=8000, gpus=2), ["two"], {"four": ["gpu_count"]}),
    Case("multi-GPU: the weakest chosen GPU sets the class",
         [node("mixed", H100, replace(R3090, index=1)),
          node("pair", R4090, replace(R4090, index=1))],
         Request(need_vram_mib=8000, gpus=2), ["pair", "mixed"]),
    Case("a GPU with too little memory does not count toward gpus",
         [node("one-fits", replace(R4090, memory_used_mib=20000), replace(R4090, index=1))],
         Request(need_vram_mib=8000, gpus=2), [], {"one-fits": ["vram"]}),
    Case("CPU-only request ranks avx512 > avx2 and checks RAM",
         [node("avx2", flags=["avx", "avx2"]), node("avx512", flags=["avx2", "avx512f"]),
          node("tiny", ram=4000)],
         Request(need_vram_mib=6000, gpus=0), ["avx512", "avx2"], {"tiny": ["ram"]}),
    Case("no GPU at all", [node("cpu-box")], SERVE8, [], {"cpu-box": ["gpu_count"]}),
    Case("all excluded, every reason listed",
         [node("worst", replace(GTX1080TI, driver_version="545.23.06"),
               status=NodeStatus.DEGRADED, agent_state=AgentState.DRAINING,
               policy=OwnerPolicy(paused=True, schedule="00:00-01:00"),
               thermal_events=[NOW - 60, NOW - 120, NOW - 180],
               tasks=ok_tasks(20, fails=5))],
         TRAIN20, [],
         {"worst": ["degraded", "draining", "owner_paused", "schedule", "driver", "vram",
                    "compute_capability", "thermal", "error_rate"]}),
    Case("measured throughput overrides the table",
         [node("tuned-3090", R3090, measured_tflops=400.0), node("a100", A100)],
         SERVE8, ["tuned-3090", "a100"]),
    Case("unknown GPU model ranks after known ones",
         [node("mystery", gpu("NVIDIA GeForce RTX 4070", 12282)), node("t4",
          gpu("Tesla T4", 15360, cc="7.5"))],
         SERVE8, ["t4", "mystery"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_ranking_table(case: Case) -> None:
    result = rank_nodes(case.nodes, case.request, NOW, throughput=TABLE, blacklist=BLACKLIST)
    assert [r.name for r in result.ranked] == case.ranked
    assert {e.name: e.codes for e in result.excluded} == case.excluded
    for e in result.excluded:
        assert all(r.message for r in e.reasons)
    # evaluate() (always collects every reason) agrees with rank_nodes' lazy reasons.
    for n in case.nodes:
        v = evaluate(n, case.request, NOW, throughput=TABLE, blacklist=BLACKLIST)
        if isinstance(v, Excluded):
            assert v.codes == case.excluded[n.name]
        else:
            assert n.name in case.ranked


def test_ranking_is_independent_of_input_order() -> None:
    nodes = CASES[0].nodes + CASES[2].nodes + CASES[3].nodes
    a = rank_nodes(nodes, SERVE8, NOW, throughput=TABLE)
    b = rank_nodes(list(reversed(nodes)), SERVE8, NOW, throughput=TABLE)
    assert [r.node_id for r in a.ranked] == [r.node_id for r in b.ranked]


def test_ranked_details_and_json() -> None:
    r = rank_nodes([node("h", H100, replace(H100, index=1, memory_used_mib=70000))],
                   Request(need_vram_mib=8000), NOW, throughput=TABLE)
    [top] = r.ranked
    assert top.gpu_indices == (0,)  # the GPU with the most free memory
    assert top.tflops == 989.5 and top.capability_class == capability_class(989.5) == 9
    assert top.spare_vram_mib == 81559 - 8512
    assert "989.5 TFLOPS" in top.why
    d = r.to_dict()
    assert d["ranked"][0]["gpus"] == [0] and d["excluded"] == []


def test_excluded_messages_are_readable() -> None:
    r = rank_nodes([node("short", gpu(total=20511), policy=OwnerPolicy(reserve_vram_mib=0),
                         utc_offset_s=0)], Request(need_vram_mib=20000), NOW)
    [e] = r.excluded
    assert e.reasons[0].message == ("needs 1 GPU(s) with 20000 + 512 MiB headroom free; "
                                    "0 qualify, the best offers 20511 MiB")
    assert e.to_dict()["reasons"][0]["code"] == "vram"
    sched = rank_nodes([node("s", R4090, policy=OwnerPolicy(schedule="22:00-08:00"))],
                       SERVE8, NOW).excluded[0]
    assert sched.reasons[0].message == ("outside the friend's window "
                                       "'22:00-08:00' (local time 12:00)")


def test_error_rate_helper() -> None:
    assert error_rate(TaskHistory.of(ok_tasks(60, fails=0)), NOW) == (0, 50)
    assert error_rate(TaskHistory(), NOW) == (0, 0)
    assert error_rate(TaskHistory.of(ok_tasks(10, fails=3, age_h=24 * 30)), NOW) == (0, 0)
    # 60 tasks a minute apart, oldest first; only the last 50 count.
    sixty = [TaskRecord(NOW - 3600 + 60 * i, True) for i in range(60)]
    ten_oldest_failed = [t._replace(ok=i >= 10) for i, t in enumerate(sixty)]
    eleven_oldest_failed = [t._replace(ok=i >= 11) for i, t in enumerate(sixty)]
    assert error_rate(TaskHistory.of(ten_oldest_failed), NOW) == (0, 50)
    assert error_rate(TaskHistory.of(eleven_oldest_failed), NOW) == (1, 50)


def test_task_history_added_matches_of() -> None:
    records = [TaskRecord(NOW - i * 7.0, i % 5 != 0) for i in (3, 9, 1, 4, 0, 7, 2)]
    h = TaskHistory()
    for r in records:
        h = h.added(r.finished_at, r.ok)
    assert h == TaskHistory.of(records)
    assert len(h) == 7
    trimmed = h.added(NOW + 1, False, keep=3)
    assert trimmed.finished == (NOW - 7.0, NOW, NOW + 1)
    assert trimmed.failed == (NOW, NOW + 1)


def test_evaluate_returns_ranked_for_a_good_node() -> None:
    v = evaluate(node("x", R4090), SERVE8, NOW, throughput=TABLE)
    assert isinstance(v, Ranked) and v.gpu_indices == (0,)


node_specs = st.lists(st.tuples(
    st.sampled_from([H100, A100, R4090, R3090, GTX1080TI]),
    st.integers(0, 4),  # GPUs
    st.integers(0, 30000),  # used MiB on each
    st.sampled_from([NodeStatus.ONLINE, NodeStatus.ONLINE, NodeStatus.DEGRADED]),
    st.sampled_from(["", "22:00-08:00", "09:00-17:00"]),
    st.integers(0, 4),  # thermal events in the last day
    st.floats(0, 1),  # reliability
    st.integers(0, 4096),  # owner reserve
), max_size=25)


@settings(max_examples=150, deadline=None)
@given(node_specs, st.integers(1000, 70000), st.integers(0, 3),
       st.sampled_from(list(Purpose)))
def test_ranking_properties(specs: list[Any], need: int, want: int, purpose: Purpose) -> None:
    nodes = []
    for i, (g, n, used, status, sched, hot, rel, reserve) in enumerate(specs):
        gpus = [replace(g, index=j, memory_used_mib=min(used, g.memory_total_mib))
                for j in range(n)]
        nodes.append(node(f"n{i:02d}", *gpus, status=status, reliability=rel,
                          policy=OwnerPolicy(schedule=sched, reserve_vram_mib=reserve),
                          thermal_events=[NOW - 60 * (k + 1) for k in range(hot)]))
    req = Request(need_vram_mib=need, gpus=want, purpose=purpose)
    r = rank_nodes(nodes, req, NOW, throughput=TABLE, blacklist=BLACKLIST)
    seen = [x.node_id for x in r.ranked] + [x.node_id for x in r.excluded]
    assert sorted(seen) == sorted(n.node_id for n in nodes)
    assert [x.key for x in r.ranked] == sorted(x.key for x in r.ranked)
    for x in r.ranked:
        chosen = [g for g in x.node.hardware.gpus if g.index in x.gpu_indices]
        assert len(chosen) == want
        for g in chosen:
            assert (g.memory_total_mib - g.memory_used_mib - x.node.policy.reserve_vram_mib
                    >= need + 512)
    for e in r.excluded:
        assert e.reasons  # never excluded without a reason
        full = evaluate(next(n for n in nodes if n.node_id == e.node_id), req, NOW,
                        throughput=TABLE, blacklist=BLACKLIST)
        assert isinstance(full, Excluded) and full.codes == e.codes
