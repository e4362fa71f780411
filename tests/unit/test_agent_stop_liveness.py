"""A clean agent stop (goodbye) versus missed heartbeats: liveness and reliability."""

from pathlib import Path

import pytest

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import Registry
from gpuhive.controller.tracker import Tracker
from gpuhive.core import liveness
from gpuhive.core.liveness import judge, plan_transitions
from gpuhive.core.messages import Message
from gpuhive.core.model import CpuInfo, Hardware, NodeStatus
from gpuhive.core.nodeview import status_reason

HW = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192)


def test_goodbye_is_offline_at_once_without_missed_heartbeats() -> None:
    live = judge(1000.0, 1000.5, 5.0, stopped_at=1000.0)
    assert (live.status, live.missed, live.stopped) == (NodeStatus.OFFLINE, 0, True)
    assert live.reason == liveness.STOPPED


def test_heard_after_goodbye_is_a_new_life() -> None:
    assert judge(1010.0, 1011.0, 5.0, stopped_at=1000.0).status == NodeStatus.ONLINE


def test_stored_reasons_carry_no_time() -> None:
    for age in (8.0, 30.0, 3600.0):
        live = judge(1000.0, 1000.0 + age, 5.0)
        assert live.reason == liveness.MISSED and not live.stopped


def test_plan_transitions_knows_who_said_goodbye() -> None:
    moves = plan_transitions({"a": NodeStatus.ONLINE, "b": NodeStatus.ONLINE},
                             {"a": 99.0, "b": 99.0}, 100.0, 5.0, stopped={"a": 99.0})
    assert [(t.node_id, t.new.status, t.new.reason) for t in moves] == [
        ("a", NodeStatus.OFFLINE, liveness.STOPPED)]


@pytest.mark.parametrize(("reason", "shown"), [
    ("agent stopped", "agent stopped 46s ago"),
    ("missed heartbeats", "missed heartbeats, last heard 46s ago"),
    ("never heard from", "never heard from"),
])
def test_explain_ages_at_view_time(reason: str, shown: str) -> None:
    assert liveness.explain(reason, 1000.0, 1046.0) == shown


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _hive(tmp_path: Path) -> tuple[Registry, Hive, Tracker, Clock, str]:
    clock = Clock()
    reg = Registry(tmp_path / "r.db")
    rec, secret = reg.create_token("a", 3600, 1, now=clock.now)
    node = reg.enroll(token_id=rec.token_id, secret=secret, name="a", name_given=True,
                      hostname="box", public_key="K", host_key="H", hardware=HW,
                      public_addr="x", port_range=(24000, 24001), now=clock.now)
    settings = Settings(heartbeat_interval=5.0)
    hive = Hive(reg, settings, "ssh-ed25519 CLIENT", clock)
    return reg, hive, Tracker(reg, hive, settings), clock, node.id


def _run_online(reg: Registry, hive: Hive, tracker: Tracker, clock: Clock, nid: str) -> float:
    for seq in range(10):
        hive.heartbeat(reg.get_node(nid), Message("heartbeat", {
            "seq": seq, "state": "available", "hardware": HW.to_dict()}))
        tracker.tick(clock.now)
        clock.now += 5
    assert reg.get_node(nid).status == NodeStatus.ONLINE
    return float(reg.get_node(nid).reliability["score"])


def test_goodbye_costs_no_reliability_and_reason_ages(tmp_path: Path) -> None:
    reg, hive, tracker, clock, nid = _hive(tmp_path)
    before = _run_online(reg, hive, tracker, clock, nid)
    hive.goodbye(reg.get_node(nid), Message("goodbye", {"reason": "stopped"}))
    said = clock.now
    clock.now += 0.5
    tracker.tick(clock.now)
    node = reg.get_node(nid)
    assert node.status == NodeStatus.OFFLINE and node.status_reason == liveness.STOPPED
    assert node.reliability["score"] == before
    assert node.last_heartbeat == said  # SEEN and the reason count from the goodbye
    assert [e.event for e in reg.events(nid)][-2:] == ["online", "offline"]
    clock.now = said + 46
    tracker.tick(clock.now)  # time passes: no new transition, no penalty
    node = reg.get_node(nid)
    assert status_reason(node, clock.now) == "agent stopped 46s ago"
    assert node.reliability["score"] == before


def test_missed_heartbeats_still_cost(tmp_path: Path) -> None:
    reg, hive, tracker, clock, nid = _hive(tmp_path)
    before = _run_online(reg, hive, tracker, clock, nid)
    clock.now += 30
    tracker.tick(clock.now)
    node = reg.get_node(nid)
    assert node.status == NodeStatus.OFFLINE and node.status_reason == liveness.MISSED
    assert node.reliability["score"] < before


def test_a_stopped_agent_heard_again_is_online(tmp_path: Path) -> None:
    reg, hive, tracker, clock, nid = _hive(tmp_path)
    _run_online(reg, hive, tracker, clock, nid)
    hive.goodbye(reg.get_node(nid), Message("goodbye", {"reason": "stopped"}))
    tracker.tick(clock.now)
    assert reg.get_node(nid).status == NodeStatus.OFFLINE
    clock.now += 60
    hive.heartbeat(reg.get_node(nid), Message("heartbeat", {
        "seq": 0, "state": "available", "hardware": HW.to_dict()}))
    tracker.tick(clock.now)
    assert reg.get_node(nid).status == NodeStatus.ONLINE
