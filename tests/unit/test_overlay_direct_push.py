"""The controller's side of direct paths: which nodes qualify, what goes on the wire, and
that each agent is sent its candidates once per change (real registry, fake link)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.overlay_hub import OverlayHub, node_net
from gpuhive.controller.registry import Registry
from gpuhive.core.endpoints import valid_endpoint
from gpuhive.core.messages import Message, decode, encode
from gpuhive.core.model import CpuInfo, Hardware
from gpuhive.core.node_facts import OverlayFacts
from gpuhive.core.spoke_report import SpokeReport
from gpuhive.overlay import driver, keys
from gpuhive.overlay.direct import DirectCandidate, from_wire, to_wire
from gpuhive.overlay.parse import PeerStatus

HW = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192)
KEY = keys.generate_keypair().public_key


def test_a_candidate_survives_the_wire() -> None:
    c = DirectCandidate("a", "b", KEY, "10.77.0.3", "192.168.1.3:51821", "same-lan")
    line = encode("peers", direct=[to_wire(c)])
    assert from_wire("a", decode(line)["direct"][0]) == c


@pytest.mark.parametrize("bad", [
    "nope", {}, {"peer": "b", "public_key": "short", "overlay_ip": "10.77.0.3",
                 "endpoint": None, "reason": "same-lan"},
    {"peer": "b", "public_key": KEY, "overlay_ip": "10.77.0", "endpoint": None,
     "reason": "same-lan"},
    {"peer": "b", "public_key": KEY, "overlay_ip": "10.77.0.3", "endpoint": "x y:1",
     "reason": "same-lan"},
    {"peer": "b", "public_key": KEY, "overlay_ip": "10.77.0.3", "endpoint": None,
     "reason": "teleport"},
])
def test_malformed_candidates_are_refused_with_a_reason(bad: object) -> None:
    with pytest.raises(ValueError, match="candidate"):
        from_wire("a", bad)


def test_endpoints_may_be_addresses_or_dynamic_dns_names() -> None:
    assert valid_endpoint("203.0.113.7:51821") and valid_endpoint("[2001:db8::1]:51821")
    assert valid_endpoint("home.example.org:51821")
    assert not valid_endpoint("203.0.113.7") and not valid_endpoint("1.2.3:5")
    assert not valid_endpoint("host:0") and not valid_endpoint("-x.org:1")


def test_spoke_reports_are_cleaned() -> None:
    st = SpokeReport.from_heartbeat({"up": True, "iface": "ghv0", "lan": "not an ip",
                                     "endpoint": "203.0.113.7:51821",
                                     "paths": {"b": "direct", "c": "warp", "d": "hub"}})
    assert st is not None
    assert st.lan is None and st.endpoint == "203.0.113.7:51821"
    assert st.paths == {"b": "direct", "d": "hub"}


class FakeSend:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def __call__(self, type_: str, **fields: Any) -> None:
        self.sent.append(decode(encode(type_, **fields)))  # what the agent would decode


def _hive(tmp_path: Path) -> tuple[Registry, Hive]:
    reg = Registry(tmp_path / "r.db")
    settings = Settings(overlay=True)
    hive = Hive(reg, settings, "ssh-ed25519 CLIENT")
    hub = OverlayHub(settings, reg, tmp_path / "hub.key")
    hive.hub = hub
    return reg, hive


def _enroll(reg: Registry, name: str, lan: str, public: str) -> str:
    rec, secret = reg.create_token(name, 3600, 1, now=1.0)
    node = reg.enroll(token_id=rec.token_id, secret=secret, name=name, name_given=True,
                      hostname=name, public_key=f"K{name}", host_key=f"H{name}", hardware=HW,
                      public_addr=f"{public}:40000", port_range=(24000, 24100), now=1.0,
                      overlay=OverlayFacts.from_dict({
                          "wg_public_key": keys.generate_keypair().public_key,
                          "lan": lan, "listen_port": 51821}),
                      overlay_subnet="10.77.0.0/16")
    ov = reg.fact(node.id, "overlay") or {}
    reg.set_facts(node.id, overlay={**ov, "status": {"up": True, "lan": lan}})
    return node.id


def test_agents_get_their_candidates_once_per_change(tmp_path: Path) -> None:
    asyncio.run(_once_per_change(tmp_path))


async def _once_per_change(tmp_path: Path) -> None:
    reg, hive = _hive(tmp_path)
    a = _enroll(reg, "a", "192.168.1.2", "198.18.0.11")
    b = _enroll(reg, "b", "192.168.101.2", "198.18.0.11")  # same router as a
    c = _enroll(reg, "c", "192.168.2.2", "198.18.0.12")  # another router
    sends = {nid: FakeSend() for nid in (a, b, c)}
    for nid, send in sends.items():
        hive.senders[nid] = (object(), send)  # type: ignore[assignment]
    assert await hive.push_direct() == 3
    (to_b,) = sends[a].sent[0]["direct"]
    assert (to_b["peer"], to_b["endpoint"], to_b["reason"]) == \
        ("b", "192.168.101.2:51821", "same-lan")
    assert sends[c].sent[0]["direct"] == []  # behind its own NAT: the hub only
    assert await hive.push_direct() == 0  # nothing changed, nothing sent

    # b's agent goes away (its link closes: no public address), a is told at once
    reg.set_connection(b, connected_since=None, public_addr="", now=2.0, event="disconnected")
    del hive.senders[b]
    assert await hive.push_direct() == 1
    assert sends[a].sent[-1]["direct"] == []


def test_node_net_needs_an_up_spoke_and_a_connection(tmp_path: Path) -> None:
    reg, _ = _hive(tmp_path)
    nid = _enroll(reg, "a", "192.168.1.2", "198.18.0.11")
    net = node_net(reg.get_node(nid), {})
    assert net is not None and (net.public_ip, net.lan_address, net.listen_port) == \
        ("198.18.0.11", "192.168.1.2", 51821)
    ov = reg.fact(nid, "overlay") or {}
    reg.set_facts(nid, overlay={**ov, "status": {"up": False}})
    assert node_net(reg.get_node(nid), {}) is None


def _one_household_direct(reg: Registry) -> tuple[str, str]:
    """Nodes a and b behind one router, each reporting the other direct."""
    a = _enroll(reg, "a", "192.168.1.2", "198.18.0.11")
    b = _enroll(reg, "b", "192.168.101.2", "198.18.0.11")
    for nid, other in ((a, "b"), (b, "a")):
        ov = reg.fact(nid, "overlay") or {}
        reg.set_facts(nid, overlay={**ov, "status": {**ov["status"], "paths": {other: "direct"}}})
    return a, b


def test_pairs_trust_only_live_reports(tmp_path: Path) -> None:
    reg, hive = _hive(tmp_path)
    _, b = _one_household_direct(reg)
    assert hive.hub.pairs() == [{"a": "a", "b": "b", "mode": "direct", "direct_by": "same-lan"}]
    reg.set_connection(b, connected_since=None, public_addr="", now=2.0, event="disconnected")
    assert hive.hub.pairs() == [{"a": "a", "b": "b", "mode": "hub", "direct_by": "hub"}]


class FakeConn:
    def close(self) -> None:
        pass


def test_a_closed_link_forgets_the_spoke_report_until_the_next_heartbeat(
        tmp_path: Path) -> None:
    # The agent that comes back may be a fresh process with no direct peers: its old
    # "direct" report must not make the pair read direct before it says so again.
    reg, hive = _hive(tmp_path)
    _, b = _one_household_direct(reg)
    conn = FakeConn()
    hive.links[b] = {conn}  # type: ignore[arg-type]
    hive.heartbeat(reg.get_node(b), Message(type="heartbeat", fields={
        "state": "idle", "hardware": HW.to_dict(),
        "overlay": {"up": True, "paths": {"a": "direct"}}}))
    hive.sent_direct[b] = [{"peer": "a"}]
    hive.link_closed(reg.get_node(b), conn)  # type: ignore[arg-type]
    assert b not in hive.sent_direct  # nothing kept for a link that is gone
    hive.flush()  # the beat that was waiting must not bring the old report back
    assert "status" not in (reg.fact(b, "overlay") or {})
    assert (reg.fact(b, "overlay") or {})["wg_public_key"]  # its identity stays
    # b's agent is back (connected again) but has not reported its spoke yet
    reg.set_connection(b, connected_since=3.0, public_addr="198.18.0.11:40001", now=3.0,
                       event="connected")
    assert node_net(reg.get_node(b), {}) is None  # not offered to others yet
    assert hive.hub.pairs() == [{"a": "a", "b": "b", "mode": "hub", "direct_by": "hub"}]
    hive.heartbeat(reg.get_node(b), Message(type="heartbeat", fields={
        "state": "idle", "hardware": HW.to_dict(),
        "overlay": {"up": True, "lan": "192.168.101.2", "paths": {"a": "trying"}}}))
    hive.flush()
    assert hive.hub.pairs()[0]["mode"] == "trying"


def test_punching_dials_the_mappings_the_hub_observed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry(tmp_path / "r.db")
    settings = Settings(overlay=True, overlay_punch=True)
    hub = OverlayHub(settings, reg, tmp_path / "hub.key")
    a = _enroll(reg, "a", "192.168.1.2", "198.18.0.11")
    b = _enroll(reg, "b", "192.168.2.2", "198.18.0.12")  # two routers: only punching applies
    keys_of = {nid: (reg.fact(nid, "overlay") or {})["wg_public_key"] for nid in (a, b)}
    seen = {keys_of[a]: "198.18.0.11:1024", keys_of[b]: "198.18.0.12:2048"}
    monkeypatch.setattr(driver, "status", lambda iface, ns=None: [
        PeerStatus(k, e, (), 1, 0, 0, None) for k, e in seen.items()])
    hub.device = object()  # type: ignore[assignment]  # "up": its wg show is the fake above
    plan = asyncio.run(hub.direct_plan(reg.list_nodes()))
    assert [(c.peer, c.endpoint, c.reason) for c in plan["a"]] == \
        [("b", "198.18.0.12:2048", "nat-punch")]
    hub.settings = Settings(overlay=True)  # off by default: the hub only
    assert asyncio.run(hub.direct_plan(reg.list_nodes())) == {"a": [], "b": []}
