"""The one node choice `train`, `serve` and `nodes rank` share, and the spoke state it reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gpuhive.config import Settings
from gpuhive.controller.jobs import JobSupervisor
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.core.model import CpuInfo, Hardware, NodeStatus
from gpuhive.core.node_facts import OverlayFacts
from gpuhive.core.ranking import NodeView, Purpose
from gpuhive.core.selection import TrainNeed, select_for_serving, select_for_training
from gpuhive.core.spoke_state import Spoke, SpokeState
from gpuhive.train.placement import (
    Candidate,
    PlacementError,
    addresses,
    need_of,
    not_enough_nodes,
    rank_command,
)
from gpuhive.train.spec import build_spec
from tests.unit.test_ranking import NOW, R4090, TABLE, node

WG_ERROR = ("`wg set ghvw3 listen-port 51821 private-key /k` failed: Unable to modify "
            "interface: Address already in use")
UP = Spoke(ip="10.77.0.2", reported=True, up=True, iface="ghv0")
DOWN = Spoke(ip="10.77.0.4", reported=True, up=False, error=WG_ERROR, iface="ghv0")


def cpu(name: str, **kw: Any) -> NodeView:
    return node(name, **kw)


# ---- spoke state -----------------------------------------------------------------------


@pytest.mark.parametrize(("overlay", "on", "state"), [
    ({}, False, SpokeState.OFF),
    ({"ip": "10.77.0.2", "status": {"up": True}}, False, SpokeState.OFF),
    ({}, True, SpokeState.NO_ADDRESS),
    ({"ip": "10.77.0.2"}, True, SpokeState.UNKNOWN),
    ({"ip": "10.77.0.2", "status": {"up": True, "iface": "ghv0"}}, True, SpokeState.UP),
    ({"ip": "10.77.0.2", "status": {"up": False, "error": WG_ERROR}}, True, SpokeState.DOWN),
    ({"ip": "10.77.0.2", "status": {"up": False, "error": ""}}, True, SpokeState.WAITING),
])
def test_spoke_state_from_the_stored_report(overlay: dict, on: bool, state: SpokeState) \
        -> None:
    spoke = Spoke.of(OverlayFacts.from_dict(overlay))
    assert spoke.state(on) is state
    assert spoke.to_dict(on)["state"] == state.value
    assert spoke.usable == (state is SpokeState.UP or (not on and spoke.up))
    assert (spoke.problem() == "") == spoke.usable


def test_a_down_spoke_names_its_own_error_and_counts_direct_paths() -> None:
    spoke = Spoke.of(OverlayFacts.from_dict({"ip": "10.77.0.4",
                                             "status": {"up": False, "error": WG_ERROR}}))
    assert spoke.problem() == f"its WireGuard spoke is down: {WG_ERROR}"
    up = Spoke.of(OverlayFacts.from_dict({"ip": "10.77.0.2", "status": {"up": True, "paths": {
        "a": "direct", "b": "hub", "c": "direct", "d": "trying"}}}))
    assert up.direct == 2


# ---- training --------------------------------------------------------------------------


def test_cpu_only_nodes_train_with_gloo_when_gpus_are_auto() -> None:
    views = [cpu("c1"), cpu("c2"), cpu("c3")]
    sel = select_for_training(views, TrainNeed(min_nodes=2, max_nodes=2), NOW)
    assert sel.fits and sel.fell_back_to_cpu and sel.request.gpus == 0
    assert [c.name for c in sel.chosen] == ["c1", "c2"]
    assert sel.chosen[0].why.startswith("cpu only (avx2), reliability 0.50")
    assert sel.gpu_ranking is not None
    assert {e.name: e.codes for e in sel.gpu_ranking.excluded} == {
        n: ["gpu_count"] for n in ("c1", "c2", "c3")}
    d = sel.to_dict()
    assert d["cpu_fallback"] and d["fits"] and d["chosen"] == ["c1", "c2"]
    assert d["gpu_excluded"][0]["reasons"][0]["code"] == "gpu_count"


def test_no_fallback_when_gpus_or_backend_are_fixed() -> None:
    views = [cpu("c1"), cpu("c2")]
    fixed = select_for_training(views, TrainNeed(gpus_per_node=1), NOW)
    assert not fixed.fits and not fixed.fell_back_to_cpu and fixed.request.gpus == 1
    nccl = select_for_training(views, TrainNeed(backend="nccl"), NOW)
    assert not nccl.fits and not nccl.fell_back_to_cpu
    gloo = select_for_training(views, TrainNeed(backend="gloo", min_vram_mib=100_000), NOW)
    assert gloo.request.gpus == 0 and not gloo.fits  # gloo asks RAM for what was asked
    assert {e.name: e.codes for e in gloo.ranking.excluded} == {"c1": ["ram"], "c2": ["ram"]}


def test_gpu_nodes_are_chosen_when_enough_fit() -> None:
    views = [cpu("c1"), node("g1", R4090), node("g2", R4090)]
    sel = select_for_training(views, TrainNeed(min_nodes=2, max_nodes=3), NOW,
                              throughput=TABLE)
    assert [c.name for c in sel.chosen] == ["g1", "g2"] and not sel.fell_back_to_cpu
    # one GPU node is too few for two: all three train on CPU instead
    sel = select_for_training(views[:2], TrainNeed(min_nodes=2, max_nodes=2), NOW)
    assert sel.fell_back_to_cpu and {c.name for c in sel.chosen} == {"c1", "g1"}


def test_a_node_whose_spoke_is_down_is_excluded_from_multi_node_training() -> None:
    views = [cpu("a", spoke=UP), cpu("b", spoke=replace(UP, ip="10.77.0.3")),
             cpu("c", spoke=DOWN)]
    sel = select_for_training(views, TrainNeed(min_nodes=3, max_nodes=3, overlay=True), NOW)
    assert not sel.fits and [c.name for c in sel.chosen] == ["a", "b"]
    [gone] = sel.ranking.excluded
    assert gone.name == "c" and gone.codes == ["overlay"]
    assert gone.reasons[0].message == f"its WireGuard spoke is down: {WG_ERROR}"
    # one node needs no overlay; without the hub nothing is judged (placement says why)
    assert select_for_training(views, TrainNeed(overlay=True), NOW).ranking.excluded == []
    assert select_for_training(views, TrainNeed(min_nodes=3, max_nodes=3), NOW).fits


def test_the_supervisor_error_points_at_the_rank_command_for_that_spec() -> None:
    spec = build_spec({"script": "t.py", "nodes": "3", "min_vram": "12G",
                       "backend": "gloo"})
    views = [cpu("a", spoke=UP), cpu("c", spoke=DOWN)]
    sel = select_for_training(views, need_of(spec, overlay=True), NOW)
    err = not_enough_nodes(spec, sel)
    assert "needs 3 node(s) but only 1 can take it" in err.message
    assert "c: its WireGuard spoke is down: `wg set" in err.message
    assert rank_command(spec) == ("gpuhive nodes rank --for train --nodes 3 --min-vram 12G "
                                  "--backend gloo")
    assert rank_command(spec) in err.hint
    assert rank_command(build_spec({"script": "t.py", "nodes": "2:4", "gpus_per_node": 2,
                                    "min_vram": "1500M"})) == (
        "gpuhive nodes rank --for train --nodes 2:4 --gpus 2 --min-vram 1500M")


# ---- addresses -------------------------------------------------------------------------


def _cand(name: str, ip: str | None, problem: str = "", host: str = "198.18.0.11") \
        -> Candidate:
    return Candidate(name, 0, ip, "ghv0" if ip else None, host, "2.13.0", None,
                     overlay_problem=problem)


def test_placement_names_the_spokes_own_error_when_the_overlay_runs() -> None:
    with pytest.raises(PlacementError) as exc:
        addresses([_cand("a", "10.77.0.2"),
                   _cand("c", None, f"its WireGuard spoke is down: {WG_ERROR}")])
    assert "Address already in use" in exc.value.message
    assert "gpuhive up --overlay" not in exc.value.hint
    assert "gpuhive nodes show c" in exc.value.hint
    with pytest.raises(PlacementError) as off:  # no hub: that is the cause to name
        addresses([_cand("a", None), _cand("b", None, host="198.18.0.12")])
    assert "gpuhive up --overlay" in off.value.hint


# ---- serving ---------------------------------------------------------------------------


def test_serving_falls_back_to_cpu_nodes_with_the_ram() -> None:
    views = [cpu("small", ram=2000), cpu("big", ram=60000)]
    sel = select_for_serving(views, 4000, 1, NOW)
    assert sel.fits and sel.fell_back_to_cpu and [c.name for c in sel.chosen] == ["big"]
    assert sel.request.purpose is Purpose.SERVE
    assert {e.name: e.codes for e in sel.ranking.excluded} == {"small": ["ram"]}
    gpu_only = select_for_serving(views, 4000, 1, NOW, gpus=1)
    assert not gpu_only.fits and not gpu_only.fell_back_to_cpu


# ---- the scheduler and `nodes rank` agree ----------------------------------------------


def test_nodes_rank_and_the_job_supervisor_choose_the_same(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "registry.db")
    hw = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192,
                  memory_available_mib=6000)
    reports = {"f1": {"ip": "10.77.0.2", "status": {"up": True, "iface": "ghv0"}},
               "f2": {"ip": "10.77.0.3", "status": {"up": True, "iface": "ghv0"}},
               "f3": {"ip": "10.77.0.4", "status": {"up": False, "error": WG_ERROR}}}
    for name, overlay in reports.items():
        n = reg.add_ssh_node(name=name, address=f"u@{name}:22", host_key="ssh-ed25519 K",
                             hostname=name, hardware=hw, now=NOW)
        reg.set_status(n.id, NodeStatus.ONLINE, "", NOW)
        reg.set_facts(n.id, overlay=overlay, software={"torch": "2.13.0"})
    ops = NodeOps(reg, None, Settings(overlay=True), clock=lambda: NOW)  # type: ignore[arg-type]
    sup = JobSupervisor(reg, None, ops, tmp_path / "jobs",  # type: ignore[arg-type]
                        clock=lambda: NOW)

    two = build_spec({"script": "t.py", "nodes": 2})
    ranked = ops.rank(nodes="2")
    assert ranked["fits"] and ranked["cpu_fallback"]  # CPU nodes: gloo, as train does
    _, chosen = sup.choose(two, ops.views(NOW))
    assert [c.name for c in chosen] == ranked["chosen"] == ["f1", "f2"]
    assert [c.overlay_ip for c in chosen] == ["10.77.0.2", "10.77.0.3"]

    three = build_spec({"script": "t.py", "nodes": 3})
    shown = ops.rank(nodes="3")
    assert not shown["fits"]
    [why] = shown["excluded"]
    assert why["name"] == "f3" and why["reasons"][0]["code"] == "overlay"
    with pytest.raises(PlacementError) as exc:
        sup.choose(three, ops.views(NOW))
    assert "Address already in use" in exc.value.message
    assert "`gpuhive nodes rank --for train --nodes 3`" in exc.value.hint


def test_best_split_runs_the_most_gpus_at_one_count_per_node() -> None:
    from gpuhive.core.selection import best_split
    assert best_split([4, 2, 2], 1, 3) == (3, 2)  # 6 GPUs beat 4 on one node
    assert best_split([4, 1, 1], 1, 3) == (1, 4)
    assert best_split([2, 1], 1, 2) == (1, 2)  # a tie: fewer nodes, less traffic
    assert best_split([8, 8, 1], 3, 3) == (3, 1)  # a fixed size takes what the third has
    assert best_split([4, 4, 2, 2], 2, 4) == (2, 4)  # 8 either way: the fewer nodes
    assert best_split([4, 4, 2], 2, 3) == (2, 4)  # 8 beats 6
