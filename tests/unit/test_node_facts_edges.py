"""Where typed node facts meet JSON: the registry's columns, the enroll request and
heartbeats in the hive, and the GPU bench's output in `nodes bench`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.node_ops import NodeOps
from gpuhive.controller.registry import Registry
from gpuhive.core.messages import decode, encode
from gpuhive.core.node_facts import LinkMeasure, SoftwareFacts
from gpuhive.core.spoke_state import Spoke
from gpuhive.overlay import keys
from gpuhive.probe.software import SoftwareInfo
from gpuhive.testing import FakeNodes
from gpuhive.testing.registry import NOW, enroll_agent, machine
from gpuhive.transport import keys as ssh_keys

LINK = {"rtt_ms": 12.35, "down_mbps": 80.0, "up_mbps": 16.0, "measured_at": 1000.0,
        "gpu": {"available": True, "device": "RTX 4090", "matmul_tflops": 81.5}}
SOFTWARE = SoftwareInfo(python="3.11.7", torch="2.13.0").to_dict()


def test_the_registry_stores_typed_facts_as_their_json(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    node = enroll_agent(reg, "alice")
    assert node.software is None and node.link is None and node.overlay is None
    assert node.to_dict()["software"] == {} and node.to_dict()["overlay"] == {}
    reg.set_facts(node.id, link=LinkMeasure.from_dict(LINK),
                  software=SoftwareFacts.from_dict(SOFTWARE))
    assert reg.fact(node.id, "link") == LINK and reg.fact(node.id, "software") == SOFTWARE
    again = reg.get_node("alice")
    assert again.link == LinkMeasure.from_dict(LINK)
    assert again.to_dict()["link"] == LINK and again.to_dict()["software"] == SOFTWARE
    reg.set_facts(node.id, link=None)
    assert reg.fact(node.id, "link") == {} and reg.get_node("alice").link is None
    with pytest.raises(TypeError, match="link takes LinkMeasure"):
        reg.set_facts(node.id, link=SoftwareFacts())


def test_enroll_keeps_unknown_overlay_keys_and_stores_today_s_shape(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    hive = Hive(reg, Settings(overlay=True), "ssh-ed25519 CLIENT", clock=lambda: NOW)
    rec, secret = reg.create_token("alice", 3600, 1, NOW)
    key = keys.generate_keypair().public_key
    request = decode(encode(
        "enroll", name="alice", hostname="alice", node_key=_ssh_key(), hardware=machine(
            "alice").to_dict(), embedded_host_key=_ssh_key(), wg_public_key=key,
        lan_address="192.168.1.2", software={"python": "3.11.7", "torch": None}))
    reply = asyncio.run(hive.enroll(f"{rec.token_id}.{secret}", request, "203.0.113.9"))
    stored = reg.fact(reply["node_id"], "overlay")
    # an agent without a spoke port: null, as the controller has always stored it
    assert stored == {"wg_public_key": key, "lan": "192.168.1.2", "listen_port": None,
                      "ip": "10.77.0.2", "subnet": "10.77.0.0/16"}
    assert reg.fact(reply["node_id"], "software") == {"python": "3.11.7", "torch": None}


def test_a_heartbeat_s_spoke_report_is_stored_with_every_field(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    node = enroll_agent(reg, "alice", wg_public_key=keys.generate_keypair().public_key)
    hive = Hive(reg, Settings(overlay=True), "ssh-ed25519 CLIENT", clock=lambda: NOW)
    hive.heartbeat(node, decode(encode("heartbeat", seq=1, state="available",
                                       hardware=machine("alice").to_dict(),
                                       overlay={"up": True, "iface": "ghv0", "rogue": 1})))
    hive.flush()
    stored = reg.fact(node.id, "overlay")
    assert stored["status"] == {"up": True, "iface": "ghv0", "error": "", "since": None,
                                "lan": None, "endpoint": None, "paths": {}}
    assert stored["wg_public_key"] == (node.overlay.wg_public_key if node.overlay else None)
    assert Spoke.of(reg.get_node("alice").overlay).usable


def test_a_gpu_bench_that_prints_no_object_fails_that_node(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    gpus = machine("alice", gpus=[("RTX 4090", 24564)])
    node = enroll_agent(reg, "alice", hardware=gpus)
    nodes = FakeNodes()
    nodes.add("alice").on(r"-m gpuhive\.probe\.gpubench$", "[612.3]")
    [res] = asyncio.run(NodeOps(reg, nodes, Settings(), clock=lambda: NOW).bench())
    assert not res["ok"] and "not a JSON object" in res["error"]
    assert reg.fact(node.id, "link") == {}  # nothing stored for it


def _ssh_key() -> str:
    return ssh_keys.public_text(asyncssh.generate_private_key("ssh-ed25519"))
