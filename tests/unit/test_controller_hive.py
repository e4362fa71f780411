"""The hive's side of agent links in-process: enrollment through a real invite, and the link
tables kept over ``transport.api.AgentLink`` handles (``gpuhive.testing.FakeLink``), so
reconnects, disconnects and `nodes rm` are tested without an SSH server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.registry import Registry
from gpuhive.core.messages import Message
from gpuhive.errors import EnrollRefused, TokenUsedUp
from gpuhive.testing import FakeLink
from gpuhive.testing.registry import NOW, enroll_agent, machine
from gpuhive.transport import keys


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.now = NOW
        self.registry = Registry(tmp_path / "registry.db")
        self.settings = Settings(heartbeat_interval=5.0, forward_port_min=24100,
                                 forward_port_max=24101)
        self.hive = Hive(self.registry, self.settings, "ssh-ed25519 CLIENT",
                         lambda: self.now)


def _public() -> str:
    return keys.public_text(asyncssh.generate_private_key("ssh-ed25519"))


def _request(name: str, **fields: object) -> Message:
    return Message("enroll", {"name": name, "hostname": "box", "node_key": _public(),
                              "embedded_host_key": _public(),
                              "hardware": machine("box").to_dict(),
                              "software": {"torch": "2.13.0"}, **fields})


def test_an_agent_enrolls_with_an_invite_once(tmp_path: Path) -> None:
    w = World(tmp_path)
    rec, secret = w.registry.create_token("alice", 3600, 1, NOW)
    reply = asyncio.run(w.hive.enroll(f"{rec.token_id}.{secret}", _request("alice"),
                                      "198.51.100.7:40000"))
    assert reply["name"] == "alice" and reply["forward_port"] == 24100
    assert reply["controller_client_key"] == "ssh-ed25519 CLIENT"
    assert reply["heartbeat_interval"] == 5.0
    node = w.registry.get_node("alice")
    assert node.public_addr == "198.51.100.7:40000" and node.forward_port == 24100
    assert w.registry.fact(node.id, "software") == {"torch": "2.13.0"}
    with pytest.raises(TokenUsedUp):
        asyncio.run(w.hive.enroll(f"{rec.token_id}.{secret}", _request("bob"), "x:1"))


@pytest.mark.parametrize(("request_", "message"), [
    (_request("eve", node_key="ssh-ed25519 not-a-key"), "invalid node_key"),
    (_request("eve; rm -rf /"), "node name 'eve; rm -rf /' is not allowed"),
])
def test_a_bad_enroll_request_is_refused_and_spends_no_use(
        tmp_path: Path, request_: Message, message: str) -> None:
    w = World(tmp_path)
    rec, secret = w.registry.create_token("", 3600, 1, NOW)
    with pytest.raises(EnrollRefused, match=message):
        asyncio.run(w.hive.enroll(f"{rec.token_id}.{secret}", request_, "x:1"))
    assert w.registry.list_nodes() == []
    assert w.registry.get_token(rec.token_id).uses == 0  # type: ignore[union-attr]


def test_links_come_and_go_and_the_newest_one_sends(tmp_path: Path) -> None:
    w = World(tmp_path)
    node = enroll_agent(w.registry, "alice")
    old, new = FakeLink(), FakeLink()
    welcome = w.hive.link_opened(node, old, "198.51.100.7:40000", old.send)
    assert welcome == {"node_id": node.id, "heartbeat_interval": 5.0,
                       "forward_port": node.forward_port}  # no overlay without a hub
    w.now += 1
    w.hive.link_opened(node, new, "198.51.100.7:40001", new.send)
    assert w.hive.senders[node.id] == (new, new.send)
    w.hive.link_closed(node, old)  # the stale link of a reconnect goes: still connected
    assert w.hive.connected(node.id) and w.hive.senders[node.id][0] is new
    assert w.registry.get_node(node.id).connected_since == NOW + 1
    w.hive.link_closed(node, new)
    assert not w.hive.connected(node.id) and node.id not in w.hive.senders
    stored = w.registry.get_node(node.id)
    assert stored.connected_since is None and stored.public_addr == ""
    assert [e.event for e in w.registry.events(node.id)][-3:] == \
        ["connected", "connected", "disconnected"]
    assert not (old.closed or new.closed)  # they closed themselves; the hive closed nothing


def test_disconnect_closes_every_link_of_a_node_and_forgets_it(tmp_path: Path) -> None:
    w = World(tmp_path)
    alice = enroll_agent(w.registry, "alice")
    bob = enroll_agent(w.registry, "bob")
    links = [FakeLink(), FakeLink()]
    for link in links:
        w.hive.link_opened(alice, link, "198.51.100.7:40000", link.send)
    theirs = FakeLink()
    w.hive.link_opened(bob, theirs, "203.0.113.9:40000", theirs.send)
    assert w.hive.disconnect(alice.id) == 2
    assert all(link.closed for link in links) and not theirs.closed
    assert not w.hive.connected(alice.id) and alice.id not in w.hive.last_heard
    assert w.hive.connected(bob.id)
    events = len(w.registry.events(alice.id))
    for link in links:  # the endpoint reports the closes afterwards: nothing more happens
        w.hive.link_closed(alice, link)
    assert len(w.registry.events(alice.id)) == events
    assert w.hive.disconnect(alice.id) == 0
