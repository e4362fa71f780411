"""`overlay check` in-process: the controller's OverlayOps over FakeNodes and a real registry.

``FakeOverlay`` scripts the three commands the check runs on a node (ping, the bulk
receiver, the bulk sender) as a tiny network: a sender reaches a receiver only while one
listens on that address and port, so the test sees the procedure's order and ports, not
just its verdict. Every failure a real overlay has is one line: a node unreachable, ping
loss, a transfer that drops, stalls, is refused or prints garbage.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gpuhive.cli.overlay import pair_progress_line
from gpuhive.config import Settings
from gpuhive.controller.overlay_hub import OverlayHub
from gpuhive.controller.overlay_ops import (
    NODE_CHECK,
    OverlayOps,
    hints_from_status,
    shell_line,
)
from gpuhive.controller.registry import Registry
from gpuhive.core.model import CpuInfo, Hardware
from gpuhive.core.node_facts import OverlayFacts
from gpuhive.core.remote_probe import NODE_PYTHON
from gpuhive.errors import NodeNotFound
from gpuhive.overlay import driver, keys
from gpuhive.overlay.check_io import CheckOptions
from gpuhive.overlay.parse import PeerStatus
from gpuhive.testing import FakeNodes, Script
from gpuhive.testing.nodes import Call

HW = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192)
# Short guards, so a stalled command is given up on in a fraction of a second.
FAST = CheckOptions(timeout_s=0.2, grace_s=0.2, ping_timeout_s=0.3, settle_s=0.02,
                    python=NODE_PYTHON)
MB = 5_000_000
PING_OK = ("3 packets transmitted, 3 received, 0% packet loss, time 2002ms\n"
           "rtt min/avg/max/mdev = 1.1/1.2/1.3/0.1 ms")
_BULK = re.compile(r"gpuhive\.overlay\.bulk (recv|send) (\S+) (\d+)")


@dataclass
class FakeOverlay:
    """Ping and bulk transfers between fake nodes by overlay address."""

    nodes: FakeNodes
    ips: dict[str, str] = field(default_factory=dict)  # node name → overlay IP
    ping_replies: dict[tuple[str, str], int] = field(default_factory=dict)  # (src, dst) → of 3
    send: dict[tuple[str, str], Callable[[int], Script]] = field(default_factory=dict)
    listening: dict[tuple[str, int], asyncio.Event] = field(default_factory=dict)
    rate: float = 31.0

    def add(self, name: str, ip: str) -> None:
        self.ips[name] = ip
        node = self.nodes.add(name)
        node.on(r"^exec ping ", lambda call: self._ping(name, call))
        node.on(r"bulk recv ", self._recv)
        node.on(r"bulk send ", lambda call: self._send(name, call))

    def name_of(self, ip: str) -> str:
        return next(n for n, i in self.ips.items() if i == ip)

    def _ping(self, src: str, call: Call) -> Script:
        dst = self.name_of(call.command.split()[-1])
        got = self.ping_replies.get((src, dst), 3)
        rtt = "\nrtt min/avg/max/mdev = 1.1/1.2/1.3/0.1 ms" if got else ""
        return Script().out(f"3 packets transmitted, {got} received, "
                            f"{100 - 100 * got // 3}% packet loss, time 2002ms{rtt}"
                            ).exit(0 if got else 1)

    def _recv(self, call: Call) -> Script:
        m = _BULK.search(call.command)
        assert m, call.command
        done = asyncio.Event()
        self.listening[(m.group(2), int(m.group(3)))] = done
        return Script().wait_for(done).exit(0)  # until a sender is through

    def _send(self, src: str, call: Call) -> Script:
        m = _BULK.search(call.command)
        assert m, call.command
        ip, port = m.group(2), int(m.group(3))
        nbytes = int(call.command.split()[7])
        special = self.send.get((src, self.name_of(ip)))
        if special is not None:
            return special(nbytes)
        receiver = self.listening.pop((ip, port), None)
        if receiver is None:
            return Script().out(json.dumps({"error": "ConnectionRefusedError: [Errno 111] "
                                                     "Connection refused"})).exit(2)
        receiver.set()
        return Script().out(json.dumps({"bytes": nbytes, "received": nbytes, "seconds": 0.1,
                                        "mb_per_s": self.rate})).exit(0)


def _enroll(reg: Registry, name: str) -> str:
    rec, secret = reg.create_token(name, 3600, 1, now=1.0)
    node = reg.enroll(token_id=rec.token_id, secret=secret, name=name, name_given=True,
                      hostname=name, public_key=f"K{name}", host_key=f"H{name}", hardware=HW,
                      public_addr="198.18.0.11:40000", port_range=(24000, 24100), now=1.0,
                      overlay=OverlayFacts.from_dict({
                          "wg_public_key": keys.generate_keypair().public_key,
                          "lan": "192.168.1.2", "listen_port": 51821}),
                      overlay_subnet="10.77.0.0/16")
    return node.id


@dataclass
class Pool:
    reg: Registry
    nodes: FakeNodes
    net: FakeOverlay
    ops: OverlayOps
    events: list[dict[str, Any]] = field(default_factory=list)

    def check(self, target: str = "all", nbytes: int = MB) -> dict[str, Any]:
        return asyncio.run(self.ops.check(target, nbytes, progress=self.events.append))

    def cell(self, result: dict[str, Any], src: str, dst: str) -> dict[str, Any]:
        return next(c for c in result["cells"] if (c["src"], c["dst"]) == (src, dst))


def pool(tmp_path: Path, names: tuple[str, ...] = ("alice", "bob", "carol"),
         hub: OverlayHub | None = None) -> Pool:
    reg = Registry(tmp_path / "registry.db")
    nodes = FakeNodes()
    net = FakeOverlay(nodes)
    for name in names:
        _enroll(reg, name)
        overlay = reg.get_node(name).overlay
        assert overlay is not None and overlay.ip
        net.add(name, overlay.ip)
    return Pool(reg, nodes, net, OverlayOps(reg, nodes, hub, check_options=FAST,
                                            rng=random.Random(7), clock=lambda: 1000.0))


def test_all_pairs_ok_each_measured_on_its_nodes_in_turn(tmp_path: Path) -> None:
    p = pool(tmp_path)
    r = p.check()
    assert r["ok"], r["text"]
    assert len(r["cells"]) == 6 and all(c["ok"] and c["summary"] == "1.2 ms, 31 MB/s"
                                        for c in r["cells"])
    alice = p.nodes["alice"]
    # alice pings the other two, sends to both and receives from both
    assert [c.command.split()[-1] for c in alice.ran("ping")] == \
        [p.net.ips["bob"], p.net.ips["carol"]]
    sends, recvs = alice.ran("bulk send"), alice.ran("bulk recv")
    assert len(sends) == 2 and len(recvs) == 2 and not any(c.cancelled for c in recvs)
    # the node's Python is expanded by its shell, everything else is quoted
    assert sends[0].command.startswith(f'exec {NODE_PYTHON} -m gpuhive.overlay.bulk send ')
    assert f" {MB} --timeout 0.2" in sends[0].command
    # every receiver listened on its own drawn port, and each was used once
    ports = [int(_BULK.search(c.command).group(3))  # type: ignore[union-attr]
             for n in p.nodes.nodes.values() for c in n.ran("bulk recv")]
    assert len(set(ports)) == 6 and all(40000 <= port < 41000 for port in ports)
    assert p.net.listening == {}


def test_progress_events_keep_the_cli_contract(tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.check()
    assert [(e["phase"], e["n"], e["total"], e["src"], e["dst"]) for e in p.events] == [
        ("start", 1, 2, "alice", "bob"), ("done", 1, 2, "alice", "bob"),
        ("start", 2, 2, "bob", "alice"), ("done", 2, 2, "bob", "alice")]
    done = p.events[1]
    assert done["event"] == "pair" and done["ping_ok"] and done["transfer_ok"]
    assert pair_progress_line(done) == "[1/2] alice → bob: 1.2 ms, 31 MB/s"


def test_an_unreachable_node_fails_its_pairs_and_spares_the_others(tmp_path: Path) -> None:
    p = pool(tmp_path)
    p.nodes["carol"].unreachable("agent is offline")
    p.net.ping_replies.update({("alice", "carol"): 0, ("bob", "carol"): 0})  # its overlay too
    r = p.check()
    assert not r["ok"]
    assert p.cell(r, "alice", "bob")["ok"] and p.cell(r, "bob", "alice")["ok"]
    assert p.cell(r, "carol", "alice")["explanation"] == (
        "could not run ping on carol: cannot open a session to node carol: agent is offline")
    to_carol = p.cell(r, "alice", "carol")
    assert to_carol["summary"] == "no ping"
    assert to_carol["explanation"].startswith("no ping reply from carol")
    # no transfer is tried where ping failed: it could only wait for its timeout
    assert not p.nodes["alice"].ran(f"bulk send {p.net.ips['carol']}")
    assert p.nodes["carol"].calls == []


def test_a_receiver_that_cannot_start_is_named_not_the_firewall(tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.nodes["bob"].on(r"bulk recv ", Script().err("OSError: [Errno 98] Address already in use")
                      .exit(2))
    r = p.check()
    cell = p.cell(r, "alice", "bob")
    assert not cell["ok"] and cell["summary"] == "1.2 ms, tcp failed"
    assert cell["explanation"] == ("ping passes but the TCP receiver could not run on bob: "
                                   "OSError: [Errno 98] Address already in use")
    assert not p.nodes["alice"].ran("bulk send")  # not started once the receiver failed
    assert p.cell(r, "bob", "alice")["ok"]


def test_ping_loss_is_shown_and_total_loss_explained(tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.net.ping_replies.update({("alice", "bob"): 1, ("bob", "alice"): 0})
    r = p.check()
    lossy = p.cell(r, "alice", "bob")
    assert lossy["ok"] and lossy["summary"] == "1.2 ms (2/3 lost), 31 MB/s"
    dead = p.cell(r, "bob", "alice")
    assert not dead["ok"] and "no ping reply from alice" in dead["explanation"]
    assert "no ping" in r["text"] and "bob -> alice:" in r["text"]


def test_a_transfer_dropped_mid_stream_fails_the_pair_and_stops_the_receiver(
        tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.net.send[("alice", "bob")] = lambda _n: Script().out("connecting").drop("cable pulled")
    r = p.check()
    cell = p.cell(r, "alice", "bob")
    assert not cell["ok"] and cell["summary"] == "1.2 ms, tcp failed"
    assert cell["explanation"] == (f"ping passes but the {MB / 1e6:g} MB TCP transfer failed: "
                                   "session to alice broke: cable pulled")
    receiver = p.nodes["bob"].ran("bulk recv")[0]
    assert receiver.cancelled  # nothing is left listening on bob
    assert p.cell(r, "bob", "alice")["ok"]


@pytest.mark.parametrize(("sender", "explained"), [
    (lambda n: Script().out("Segmentation fault").exit(139),
     "transfer failed: Segmentation fault"),
    (lambda n: Script().out(json.dumps({"bytes": n, "received": 1000, "seconds": 1.0,
                                        "mb_per_s": 5.0})).exit(1),
     f"transfer failed: received 1000 of {MB} bytes"),
    (lambda n: Script().out('["not", "a", "report"]').exit(0),
     'transfer failed: ["not", "a", "report"]'),
    (lambda n: Script().exit(0), "transfer failed: the sender printed nothing (it exited with 0)"),
    (lambda n: Script().out(json.dumps({"error": "ConnectionRefusedError: [Errno 111] "
                                                 "Connection refused"})).exit(2),
     "TCP to bob is refused: a firewall on bob rejects overlay TCP"),
    (lambda n: Script().out(json.dumps({"error": "TimeoutError: timed out"})).exit(2),
     "large packets are lost"),
])
def test_garbage_short_or_refused_transfers_are_explained(
        tmp_path: Path, sender: Callable[[int], Script], explained: str) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.net.send[("alice", "bob")] = sender
    cell = p.cell(p.check(), "alice", "bob")
    assert not cell["ok"] and explained in cell["explanation"], cell


def test_a_stalled_sender_is_stopped_at_the_deadline(tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.net.send[("alice", "bob")] = lambda _n: Script().out("sending").hang()
    cell = p.cell(p.check(), "alice", "bob")
    assert not cell["ok"] and "a 5 MB TCP transfer stalls" in cell["explanation"]
    sender = p.nodes["alice"].ran("bulk send")[0]
    assert sender.cancelled and p.nodes["bob"].ran("bulk recv")[0].cancelled


def test_a_hanging_ping_times_out_into_its_own_explanation(tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob"))
    p.nodes["alice"].on(r"^exec ping ", Script().hang())
    cell = p.cell(p.check(), "alice", "bob")
    assert cell["explanation"] == "could not run ping on alice: timed out after 0.3s"
    assert p.nodes["alice"].ran("ping")[0].cancelled


def test_the_hub_s_handshakes_explain_failing_pairs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(overlay=True)
    reg_path = tmp_path / "registry.db"
    hub = OverlayHub(settings, Registry(reg_path), tmp_path / "hub.key")
    p = pool(tmp_path, ("alice", "bob", "carol", "dave"), hub=hub)
    hub.registry = p.reg
    hub.device = driver.Device("ghv0", None, "userspace", None, 51820, hub.public_key)
    key = {n.name: n.overlay.wg_public_key for n in p.reg.list_nodes() if n.overlay}
    handshakes = {"alice": 995, "bob": 990, "carol": None, "dave": 100}  # the clock is 1000
    monkeypatch.setattr(driver, "status", lambda iface, ns=None: [
        PeerStatus(key[n], f"198.18.0.1{i}:51821", (), at, 0, 0, 25)
        for i, (n, at) in enumerate(handshakes.items())])
    for src, dst in (("alice", "carol"), ("alice", "dave"), ("alice", "bob")):
        p.net.ping_replies[(src, dst)] = 0
    r = p.check()
    assert "carol has never completed a WireGuard handshake" in \
        p.cell(r, "alice", "carol")["explanation"]
    assert "dave's last handshake with the hub was 900 s ago" in \
        p.cell(r, "alice", "dave")["explanation"]
    assert "alice and bob both handshake with the hub but packets do not cross" in \
        p.cell(r, "alice", "bob")["explanation"]
    assert p.cell(r, "bob", "alice")["ok"]


def test_only_nodes_with_an_overlay_address_are_checked(tmp_path: Path) -> None:
    p = pool(tmp_path, ("alice", "bob", "carol"))
    p.reg.set_facts(p.reg.get_node("carol").id, overlay={})
    r = p.check()
    assert r["ok"] and {c["src"] for c in r["cells"]} == {"alice", "bob"}
    assert p.nodes["carol"].calls == []
    with pytest.raises(NodeNotFound, match="none of 'carol' has an overlay address"):
        p.check("carol")
    with pytest.raises(NodeNotFound, match="no node named 'erin'"):
        p.check("alice,erin")


def test_hints_read_the_hub_status() -> None:
    hints = hints_from_status({"peers": [
        {"node": "a", "latest_handshake": 90.0, "endpoint": "198.18.0.11:51821"},
        {"node": "b", "latest_handshake": None, "endpoint": None}]}, now=100.0)
    assert hints["a"].handshake_age_s == 10.0 and hints["a"].endpoint == "198.18.0.11:51821"
    assert hints["b"].handshake_age_s is None
    assert hints_from_status({"up": False, "peers": []}, 0.0) == {}


def test_shell_lines_expand_only_the_node_python() -> None:
    assert shell_line([NODE_PYTHON, "-m", "x", "a b", "$HOME"]) == \
        f"exec {NODE_PYTHON} -m x 'a b' '$HOME'"
    assert NODE_CHECK.python == NODE_PYTHON and NODE_CHECK.timeout_s == 60.0
