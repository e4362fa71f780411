"""Knowing the nodes (NodeOps) in-process over FakeNodes and a real temporary registry:
nodes rank (pure over the registry), nodes probe (agent and ssh nodes, garbage, failures),
nodes bench (link facts stored, the GPU bench skipped with its reason, a drop mid-way)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gpuhive.config import Settings
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.core import linkplan, remote_probe
from gpuhive.errors import ConfigError
from gpuhive.testing import FakeNodes, LinkFacts, Script
from gpuhive.testing.registry import NOW, add_ssh_node, enroll_agent, machine

AGENT_PROBE = r"-m gpuhive agent probe --json$"
GPU_BENCH = r"-m gpuhive\.probe\.gpubench$"


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = NOW
        self.registry = Registry(tmp_path / "registry.db")
        self.nodes = FakeNodes()
        self.ops = NodeOps(self.registry, self.nodes, Settings(), clock=lambda: self.now)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# ---- nodes rank -------------------------------------------------------------------------


def _pool(w: World) -> None:
    enroll_agent(w.registry, "big", hardware=machine("big", gpus=[("RTX 4090", 24564)]))
    enroll_agent(w.registry, "small", hardware=machine("small", gpus=[("RTX 3060", 12288)]))
    enroll_agent(w.registry, "gone", hardware=machine("gone", gpus=[("RTX 4090", 24564)]),
                 online=False)
    add_ssh_node(w.registry, "cpu", hardware=machine("cpu", cores=32))
    for name in ("big", "small", "gone", "cpu"):
        w.nodes.add(name)


def test_rank_is_the_schedulers_choice_and_touches_no_node(tmp_path: Path) -> None:
    w = World(tmp_path)
    _pool(w)
    one = w.ops.rank(min_vram_mib=16000)
    assert one["fits"] and one["chosen"] == ["big"] and not one["cpu_fallback"]
    why = {e["name"]: [r["code"] for r in e["reasons"]] for e in one["excluded"]}
    assert set(why) == {"small", "gone", "cpu"} and why["gone"] == ["offline"]
    two = w.ops.rank(min_vram_mib=16000, nodes="2", gpus=1)
    assert not two["fits"] and two["need"] == 2 and two["chosen"] == ["big"]
    # with GPUs on auto, too few GPU nodes: the CPU ranking, as `train` falls back to
    auto = w.ops.rank(min_vram_mib=16000, nodes="2")
    assert auto["fits"] and auto["cpu_fallback"] and auto["chosen"] == ["big", "cpu"]
    assert {e["name"]: e["reasons"][0]["code"] for e in auto["gpu_excluded"]} == \
        {"cpu": "gpu_count", "gone": "offline", "small": "vram"}
    both = w.ops.rank(nodes="2")
    assert both["fits"] and both["chosen"] == ["big", "small"]  # the faster GPU first
    serve = w.ops.rank(purpose="serve", min_vram_mib=16000, nodes=1)
    assert serve["request"]["purpose"] == "serve" and serve["chosen"] == ["big"]
    cpu_only = w.ops.rank(gpus=0)  # every live machine can run a CPU job
    assert cpu_only["request"]["gpus"] == 0
    assert sorted(r["name"] for r in cpu_only["ranked"]) == ["big", "cpu", "small"]
    assert all(w.nodes[n].calls == [] and w.nodes[n].measured == [] for n in w.nodes.nodes)
    # what the scheduler calls gives the same answer
    assert w.ops.select_for_serving(16000, 1).to_dict()["chosen"] == serve["chosen"]


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"purpose": "eval"}, "for"),
    ({"precision": "int3"}, "precision"),
    ({"backend": "mpi"}, "backend"),
    ({"gpus": "two"}, "gpus"),
    ({"gpus": -1}, "gpus"),
])
def test_rank_refuses_a_bad_request_naming_the_flag(tmp_path: Path, kwargs: dict[str, Any],
                                                    key: str) -> None:
    w = World(tmp_path)
    with pytest.raises(ConfigError) as info:
        w.ops.rank(**kwargs)
    assert info.value.data["key"] == key


def test_a_finished_task_moves_history_and_reliability(tmp_path: Path) -> None:
    w = World(tmp_path)
    node = enroll_agent(w.registry, "alice")
    w.ops.record_task("alice", ok=True)
    w.now += 60
    w.ops.record_task("alice", ok=False)
    tasks = w.registry.fact(node.id, "tasks")
    assert tasks == {"finished": [NOW, NOW + 60], "failed": [NOW + 60]}
    assert w.registry.fact(node.id, "reliability")  # stored after each task


# ---- nodes probe ------------------------------------------------------------------------

FOUND = machine("alice", gpus=[("RTX 4090", 24564), ("RTX 4090", 24564)])
SSH_PROBE = "hostname=box\ncores=16\nmem_kib=67108864\navail_kib=33554432\nos=Linux 6.1.0"


def _agent_probe(hardware: dict[str, Any] | None = None) -> str:
    return json.dumps({"hardware": hardware or FOUND.to_dict(),
                       "software": {"torch": "2.13.0", "nccl": "2.21.5"}})


def test_probe_stores_what_an_agent_and_an_ssh_node_report(tmp_path: Path) -> None:
    w = World(tmp_path)
    alice = enroll_agent(w.registry, "alice")
    box = add_ssh_node(w.registry, "box", hardware=machine("box", cores=1))
    w.nodes.add("alice").on(AGENT_PROBE, _agent_probe())
    w.nodes.add("box").on(r"^echo hostname=", SSH_PROBE)
    got = {r["node"]: r for r in run(w.ops.probe())}
    assert got["alice"]["ok"] and got["alice"]["gpus"] == 2
    assert got["alice"]["software"]["torch"] == "2.13.0"
    assert got["box"]["ok"] and got["box"]["source"] == "ssh" and got["box"]["gpus"] == 0
    assert w.nodes["box"].calls[0].command == remote_probe.PROBE_COMMAND
    stored = w.registry.get_node(alice.id)
    assert stored.hardware is not None and len(stored.hardware.gpus) == 2
    assert w.registry.fact(alice.id, "software") == {"torch": "2.13.0", "nccl": "2.21.5"}
    ssh = w.registry.get_node(box.id).hardware
    assert ssh is not None and (ssh.cpu.cores, ssh.memory_total_mib) == (16, 65536)
    # one node only: the others are not asked
    run(w.ops.probe("box"))
    assert len(w.nodes["alice"].calls) == 1 and len(w.nodes["box"].calls) == 2


@pytest.mark.parametrize(("kind", "answer", "error"), [
    ("agent", "Traceback (most recent call last):", "Expecting value"),
    ("agent", '["not", "an", "object"]', "list indices"),
    ("agent", Script().err("No module named gpuhive").exit(1), "No module named gpuhive"),
    ("agent", Script().out('{"hardware"').drop("connection lost"), "broke: connection lost"),
    ("ssh", "Welcome to box! Unauthorized use is prohibited.", "printed no hardware facts"),
    ("ssh", Script().err("sh: 1: awk: not found").exit(127), "awk: not found"),
])
def test_a_probe_that_fails_or_prints_garbage_keeps_what_was_known(
        tmp_path: Path, kind: str, answer: str | Script, error: str) -> None:
    w = World(tmp_path)
    before = machine("n", gpus=[("RTX 3090", 24576)])
    node = enroll_agent(w.registry, "n", hardware=before) if kind == "agent" else \
        add_ssh_node(w.registry, "n", hardware=before)
    w.nodes.add("n").on(AGENT_PROBE if kind == "agent" else r"^echo hostname=", answer)
    [res] = run(w.ops.probe())
    assert not res["ok"] and error in res["error"]
    assert w.registry.get_node(node.id).hardware == before


def test_probe_reports_an_unreachable_node_and_probes_the_rest(tmp_path: Path) -> None:
    w = World(tmp_path)
    enroll_agent(w.registry, "alice")
    enroll_agent(w.registry, "bob")
    w.nodes.add("alice").on(AGENT_PROBE, _agent_probe())
    w.nodes.add("bob").unreachable("the agent is not connected")
    got = {r["node"]: r for r in run(w.ops.probe())}
    assert got["alice"]["ok"]
    assert not got["bob"]["ok"] and "not connected" in got["bob"]["error"]


# ---- nodes bench ------------------------------------------------------------------------

BENCH = {"available": True, "device": "RTX 4090", "matmul_tflops": 81.5}


def test_bench_measures_the_link_and_the_gpu_and_stores_them(tmp_path: Path) -> None:
    w = World(tmp_path)
    node = enroll_agent(w.registry, "alice", hardware=FOUND)
    alice = w.nodes.add("alice").on(GPU_BENCH, json.dumps(BENCH))
    alice.link = LinkFacts(rtt_ms=12.345, down_mbps=80.04, up_mbps=16.0)
    [res] = run(w.ops.bench())
    assert res == {"node": "alice", "ok": True, "rtt_ms": 12.35, "down_mbps": 80.0,
                   "up_mbps": 16.0, "measured_at": NOW, "gpu": BENCH}
    assert w.registry.fact(node.id, "link") == {k: v for k, v in res.items()
                                                if k not in ("node", "ok")}
    # a quick probe sizes the real transfers (about 1.5 s each at the measured rate)
    size = linkplan.transfer_size(80.04)
    assert alice.measured == [("rtt", 5), ("download", linkplan.PROBE_BYTES),
                              ("download", size), ("upload", size)]
    assert [c.command for c in alice.calls][-1].endswith("-m gpuhive.probe.gpubench")


def test_the_gpu_bench_is_skipped_with_its_reason(tmp_path: Path) -> None:
    w = World(tmp_path)
    enroll_agent(w.registry, "cpu-box", hardware=machine("cpu-box"))
    add_ssh_node(w.registry, "ssh-gpu", hardware=machine("ssh-gpu", gpus=[("A100", 81920)]))
    for name in ("cpu-box", "ssh-gpu"):
        w.nodes.add(name).on(GPU_BENCH, json.dumps(BENCH))
    got = {r["node"]: r for r in run(w.ops.bench())}
    assert got["cpu-box"]["gpu_skipped"] == "no GPU on this node (a CPU node)"
    assert got["ssh-gpu"]["gpu_skipped"] == "an ssh node has no agent to run it"
    assert all(r["ok"] and "gpu" not in r for r in got.values())
    assert all(w.nodes[n].ran(GPU_BENCH) == [] for n in got)


def test_no_gpu_keeps_the_gpu_figure_an_earlier_bench_stored(tmp_path: Path) -> None:
    w = World(tmp_path)
    node = enroll_agent(w.registry, "alice", hardware=FOUND)
    w.nodes.add("alice").on(GPU_BENCH, json.dumps(BENCH))
    run(w.ops.bench())
    w.now += 3600
    w.nodes["alice"].link = LinkFacts(rtt_ms=40.0)
    [res] = run(w.ops.bench(gpu=False))
    assert res["gpu_skipped"] == "--no-gpu" and "gpu" not in res and res["rtt_ms"] == 40.0
    link = w.registry.fact(node.id, "link")
    assert link["gpu"] == BENCH and link["rtt_ms"] == 40.0 and link["measured_at"] == w.now
    assert len(w.nodes["alice"].ran(GPU_BENCH)) == 1  # only the first bench ran it


def test_a_drop_mid_measurement_fails_that_node_only(tmp_path: Path) -> None:
    w = World(tmp_path)
    first = enroll_agent(w.registry, "alice", hardware=FOUND)
    enroll_agent(w.registry, "bob")
    w.registry.set_facts(first.id, link={"rtt_ms": 9.0, "measured_at": NOW - 100})
    w.nodes.add("alice").link = LinkFacts(drop_at="upload")
    w.nodes.add("bob")
    alice, bob = run(w.ops.bench())
    assert not alice["ok"] and alice["error"] == \
        "measuring the link to alice failed: connection lost"
    assert [k for k, _ in w.nodes["alice"].measured] == ["rtt", "download", "download",
                                                          "upload"]
    assert w.nodes["alice"].closed == 1  # the broken session is not reused
    assert w.registry.fact(first.id, "link") == {"rtt_ms": 9.0, "measured_at": NOW - 100}
    assert bob["ok"] and bob["rtt_ms"] == LinkFacts().rtt_ms  # the next node is measured


def test_bench_reports_an_unreachable_node_and_a_failing_gpu_bench(tmp_path: Path) -> None:
    w = World(tmp_path)
    enroll_agent(w.registry, "alice", hardware=FOUND)
    enroll_agent(w.registry, "bob")
    w.nodes.add("alice").on(GPU_BENCH, Script().err("RuntimeError: CUDA error: out of "
                                                    "memory").exit(1))
    w.nodes.add("bob").unreachable("the agent is not connected")
    alice, bob = run(w.ops.bench())
    assert not alice["ok"] and "CUDA error: out of memory" in alice["error"]
    assert not bob["ok"] and "not connected" in bob["error"]
    assert w.nodes["bob"].measured == []
    w.nodes["alice"].on(GPU_BENCH, "not json")
    [garbled] = run(w.ops.bench("alice"))
    assert not garbled["ok"] and "Expecting value" in garbled["error"]
