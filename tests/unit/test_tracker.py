"""Liveness and reliability over time, with an explicit clock and a real registry."""

from pathlib import Path

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import Registry
from gpuhive.controller.tracker import CREDIT_EVERY, Tracker
from gpuhive.core import reliability as rel
from gpuhive.core.messages import Message
from gpuhive.core.model import CpuInfo, GpuInfo, Hardware

HW = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _setup(tmp_path: Path) -> tuple[Registry, Hive, Tracker, Clock, str]:
    clock = Clock()
    reg = Registry(tmp_path / "r.db")
    rec, secret = reg.create_token("a", 3600, 1, now=clock.now)
    node = reg.enroll(token_id=rec.token_id, secret=secret, name="a", name_given=True,
                      hostname="box", public_key="K", host_key="H", hardware=HW,
                      public_addr="x", port_range=(24000, 24001), now=clock.now)
    settings = Settings(heartbeat_interval=5.0)
    hive = Hive(reg, settings, "ssh-ed25519 CLIENT", clock)
    return reg, hive, Tracker(reg, hive, settings), clock, node.id


def _beat(hive: Hive, reg: Registry, node_id: str, seq: int, hw: Hardware = HW,
          policy: dict | None = None) -> None:
    fields = {"seq": seq, "state": "available", "hardware": hw.to_dict()}
    if policy is not None:
        fields["policy"] = policy
    hive.heartbeat(reg.get_node(node_id), Message("heartbeat", fields))


def test_missed_heartbeats_cost_and_uptime_earns(tmp_path: Path) -> None:
    reg, hive, tracker, clock, nid = _setup(tmp_path)
    _beat(hive, reg, nid, 0)
    tracker.tick(clock.now)
    assert reg.get_node(nid).status.value == "online"
    start = rel.score_at(rel.new_node(1000.0), clock.now)
    for seq in range(1, 40):  # 195 s of steady heartbeats
        clock.now += 5
        _beat(hive, reg, nid, seq)
        tracker.tick(clock.now)
    earned = rel.Reliability.from_dict(reg.get_node(nid).reliability).score
    assert earned > start
    assert clock.now - 1000.0 > CREDIT_EVERY
    clock.now += 8.0  # one missed → degraded
    tracker.tick(clock.now)
    node = reg.get_node(nid)
    assert node.status.value == "degraded"
    after_miss = rel.Reliability.from_dict(node.reliability).score
    assert after_miss < earned
    clock.now += 10.0  # three missed → offline
    tracker.tick(clock.now)
    node = reg.get_node(nid)
    assert node.status.value == "offline"
    assert rel.Reliability.from_dict(node.reliability).score < after_miss
    assert [e.event for e in reg.events(nid)][-3:] == ["online", "degraded", "offline"]


def test_heartbeat_policy_and_thermal_onsets_are_stored(tmp_path: Path) -> None:
    reg, hive, tracker, clock, nid = _setup(tmp_path)
    cool = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=1,
                    gpus=[GpuInfo(0, "RTX 4090", 24564)])
    hot = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=1,
                   gpus=[GpuInfo(0, "RTX 4090", 24564,
                                 clock_event_reasons=["sw_thermal_slowdown"])])
    for seq, hw in enumerate([cool, hot, hot, cool, hot]):
        clock.now += 5
        _beat(hive, reg, nid, seq, hw, policy={"paused": seq >= 3})
        tracker.tick(clock.now)
    node = reg.get_node(nid)
    assert len(node.thermal_events) == 2
    assert node.policy["paused"] is True


def test_garbage_hardware_in_a_heartbeat_keeps_liveness(tmp_path: Path) -> None:
    reg, hive, tracker, clock, nid = _setup(tmp_path)
    hive.heartbeat(reg.get_node(nid), Message("heartbeat", {"seq": 1, "state": "available",
                                                            "hardware": {"gpus": "nope"}}))
    tracker.tick(clock.now)
    node = reg.get_node(nid)
    assert node.status.value == "online" and node.hardware == HW
