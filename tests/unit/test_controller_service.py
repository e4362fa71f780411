"""The owner's node operations (HiveService) in-process: FakeNodes, a FakeLink per agent
connection and a real temporary registry. Invites, nodes rm/exec/add, the ssh-node
liveness poll, status; failures included (unreachable, dropped, non-zero exit, timeout)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpuhive.config import Settings
from gpuhive.controller.hive import Hive
from gpuhive.controller.overlay_hub import OverlayHub
from gpuhive.controller.registry import Registry
from gpuhive.controller.service import SSH_POLL_FAILED, HiveService
from gpuhive.core import remote_probe, tokens
from gpuhive.core.model import NodeKind, NodeStatus
from gpuhive.errors import (
    AmbiguousName,
    ConfigError,
    EnrollRefused,
    InviteNotFound,
    NodeNotFound,
    NodeUnreachable,
)
from gpuhive.overlay import keys as wg_keys
from gpuhive.testing import FakeHost, FakeLink, FakeNodes, Script
from gpuhive.testing.registry import NOW, add_ssh_node, enroll_agent
from gpuhive.transport.keys import PublicKeyInfo

HOST_KEY = PublicKeyInfo("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheHive",
                         "SHA256:" + "A" * 43)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Serving:
    """The serve manager as the service sees it: told when a node goes."""

    def __init__(self) -> None:
        self.gone: list[str] = []

    def list_replicas(self) -> list[dict[str, Any]]:
        return [{"replica_id": "llama-7b/0", "node": "alice"}]

    async def node_gone(self, node: str) -> None:
        self.gone.append(node)


class Jobs:
    def list_jobs(self) -> list[dict[str, Any]]:
        return [{"id": f"j{i}"} for i in range(25)]


class Hub:
    """The real hub's peer list, captured each time the service syncs it."""

    def __init__(self, real: OverlayHub) -> None:
        self.real = real
        self.synced: list[set[str]] = []

    async def sync(self) -> object:
        self.synced.append({p.public_key for p in self.real.desired()})
        return []


class World:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.clock = Clock()
        self.registry = Registry(tmp_path / "registry.db")
        self.settings = Settings(endpoint="hive.example:2222", **settings)
        self.hive = Hive(self.registry, self.settings, "ssh-ed25519 CLIENT", self.clock)
        self.nodes = FakeNodes()
        self.serving = Serving()
        self.service = HiveService(self.registry, self.hive, self.nodes, self.settings,
                                   HOST_KEY, self.clock, jobs=Jobs(), serving=self.serving)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


# ---- invites ----------------------------------------------------------------------------


def test_an_invite_carries_the_endpoint_and_the_pinned_host_key(tmp_path: Path) -> None:
    w = World(tmp_path)
    made = w.service.invite_create("alice", "2h", 2)
    token = tokens.parse_token(made["token"])
    assert (token.host, token.port, token.fingerprint) == \
        ("hive.example", 2222, HOST_KEY.fingerprint)
    assert made["command"] == f"gpuhive enroll {made['token']} --name alice"
    assert (made["state"], made["max_uses"], made["expires_at"]) == ("valid", 2, NOW + 7200)
    # the secret in the token is the one the registry checks at enroll
    tokens.verify(w.registry.get_token(token.token_id), token.token_id, token.secret, NOW)
    anyone = w.service.invite_create("", "24h", 1)
    assert anyone["command"] == f"gpuhive enroll {anyone['token']}"


def test_invite_flags_out_of_range_name_the_flag(tmp_path: Path) -> None:
    w = World(tmp_path)
    with pytest.raises(ConfigError) as bad_ttl:
        w.service.invite_create("a", "soon", 1)
    assert bad_ttl.value.data["key"] == "ttl" and "24h" in bad_ttl.value.hint
    with pytest.raises(ConfigError, match="--uses 0 is out of range"):
        w.service.invite_create("a", "1h", 0)
    assert w.service.invite_list() == []


def test_invites_expire_and_are_revoked_by_id_or_name(tmp_path: Path) -> None:
    w = World(tmp_path)
    short = w.service.invite_create("bob", "10m", 1)
    long = w.service.invite_create("carol", "1d", 1)
    w.clock.now += 601
    assert [(i["name"], i["state"]) for i in w.service.invite_list()] == \
        [("bob", "expired"), ("carol", "valid")]
    assert w.service.invite_revoke("carol")["state"] == "revoked"
    # a spent token is not revoked again: the name's tokens are listed instead
    with pytest.raises(InviteNotFound, match=r"no valid join token named 'bob' \(.* expired\)"):
        w.service.invite_revoke("bob")
    assert w.service.invite_revoke(short["id"])["state"] == "revoked"  # by id: always
    # 0.1.0 clients send token_id
    again = w.service.invite_create("dave", "1h", 1)
    assert w.service.invite_revoke(token_id=again["id"])["revoked_at"] == w.clock.now
    assert w.registry.get_token(long["id"]).revoked_at is not None  # type: ignore[union-attr]


def test_revoking_a_name_two_valid_tokens_share_is_refused(tmp_path: Path) -> None:
    w = World(tmp_path)
    one = w.service.invite_create("eve", "1h", 1)
    two = w.service.invite_create("eve", "1h", 1)
    with pytest.raises(AmbiguousName) as info:
        w.service.invite_revoke("eve")
    assert info.value.data["ids"] == [one["id"], two["id"]]
    assert f"gpuhive invite revoke {one['id']}" in info.value.hint
    assert {i["state"] for i in w.service.invite_list()} == {"valid"}  # nothing revoked
    with pytest.raises(InviteNotFound, match="no join token with id or name 'evee'") as typo:
        w.service.invite_revoke("evee")
    assert "eve" in typo.value.hint


# ---- nodes rm ---------------------------------------------------------------------------


def test_removing_a_node_closes_everything_it_had(tmp_path: Path) -> None:
    w = World(tmp_path, overlay=True)
    hub = Hub(OverlayHub(w.settings, w.registry, tmp_path / "hub.key"))
    w.service.hub = hub
    keys = {n: wg_keys.generate_keypair().public_key for n in ("alice", "bob")}
    alice = enroll_agent(w.registry, "alice", wg_public_key=keys["alice"])
    enroll_agent(w.registry, "bob", wg_public_key=keys["bob"])
    old, new = FakeLink(), FakeLink()  # a reconnect leaves the old link open a while
    w.hive.link_opened(alice, old, "198.51.100.7:40000", old.send)
    w.hive.link_opened(alice, new, "198.51.100.7:40001", new.send)
    w.nodes.add("alice").on("^uptime$", "up 3 days")
    assert run(w.nodes.output(alice, "uptime")) == "up 3 days"  # a session is open
    assert w.service.node_show("alice")["connected"]

    removed = run(w.service.node_remove("alice"))

    assert removed["status"] == "removed" and removed["closed_links"] == 2
    assert old.closed and new.closed  # its reverse forward goes with its links
    assert w.nodes["alice"].closed == 1  # the controller's session to it
    assert hub.synced == [{keys["bob"]}]  # its WireGuard peer is gone
    assert w.serving.gone == ["alice"]
    assert not w.hive.connected(alice.id) and alice.id not in w.hive.senders
    assert [n["name"] for n in w.service.nodes_list()] == ["bob"]
    shown = w.service.node_show("alice")  # still shown, with its history
    assert shown["status"] == "removed" and shown["events"][-1]["event"] == "removed"
    with pytest.raises(NodeNotFound) as info:
        run(w.service.node_remove("alice"))
    assert "gpuhive nodes" in info.value.hint


def test_removing_an_ssh_node_without_overlay_or_serving(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.service.serving = None
    add_ssh_node(w.registry, "box")
    removed = run(w.service.node_remove("box"))
    assert removed["closed_links"] == 0 and removed["kind"] == "ssh"
    with pytest.raises(NodeNotFound, match="no node named 'bx'") as info:
        run(w.service.node_remove("bx"))
    assert "box" not in info.value.hint  # a removed node is not offered


# ---- nodes exec -------------------------------------------------------------------------


def _three(w: World) -> None:
    for name in ("alice", "bob", "carol"):
        enroll_agent(w.registry, name)
    w.nodes.add("alice").on("^nvidia-smi -L$", "GPU 0: RTX 4090 (UUID: GPU-1)")
    w.nodes.add("bob").unreachable("the agent is not connected")
    w.nodes.add("carol").on("^nvidia-smi -L$", Script().err("NVIDIA-SMI has failed").exit(9))


def test_exec_fans_out_and_reports_each_node(tmp_path: Path) -> None:
    w = World(tmp_path)
    _three(w)
    lines: list[tuple[str, str, str]] = []
    results = run(w.service.nodes_exec("all", ["nvidia-smi", "-L"],
                                       lambda n, s, line: lines.append((n, s, line))))
    assert [(r["node"], r["exit_status"]) for r in results] == \
        [("alice", 0), ("bob", None), ("carol", 9)]
    assert "not connected" in results[1]["error"] and results[0]["error"] == ""
    assert sorted(lines) == [("alice", "out", "GPU 0: RTX 4090 (UUID: GPU-1)"),
                             ("carol", "err", "NVIDIA-SMI has failed")]
    # a chosen subset, by name or id
    only = run(w.service.nodes_exec("carol,alice", ["nvidia-smi", "-L"], lambda *a: None))
    assert [r["node"] for r in only] == ["alice", "carol"]


def test_exec_with_fresh_sessions_reopens_them_first(tmp_path: Path) -> None:
    w = World(tmp_path)
    _three(w)
    run(w.service.nodes_exec("alice", ["nvidia-smi", "-L"], lambda *a: None))
    assert w.nodes["alice"].closed == 0
    run(w.service.nodes_exec("alice", ["nvidia-smi", "-L"], lambda *a: None, fresh=True))
    assert w.nodes["alice"].closed == 1 and len(w.nodes["alice"].calls) == 2


def test_exec_reports_a_session_that_drops_mid_stream(tmp_path: Path) -> None:
    w = World(tmp_path)
    enroll_agent(w.registry, "alice")
    w.nodes.add("alice").on("^dmesg$", Script().out("[0.0] Linux").drop("connection lost"))
    lines: list[str] = []
    [res] = run(w.service.nodes_exec("alice", ["dmesg"], lambda n, s, line: lines.append(line)))
    assert res["exit_status"] is None and "broke: connection lost" in res["error"]
    assert lines == ["[0.0] Linux"]  # what came before the drop was shown


def test_cancelling_exec_stops_the_command_on_the_node(tmp_path: Path) -> None:
    w = World(tmp_path)
    enroll_agent(w.registry, "alice")
    alice = w.nodes.add("alice").on("^sleep", Script().hang())

    async def go() -> None:
        task = asyncio.ensure_future(w.service.nodes_exec("alice", ["sleep", "1d"],
                                                          lambda *a: None))
        while not alice.calls:
            await asyncio.sleep(0)
        task.cancel()  # the owner's Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await task
    run(go())
    assert alice.calls[0].command == "sleep 1d" and alice.calls[0].cancelled


def test_exec_needs_a_command_nodes_and_known_names(tmp_path: Path) -> None:
    w = World(tmp_path)
    with pytest.raises(ConfigError, match="no command given"):
        run(w.service.nodes_exec("all", [], lambda *a: None))
    with pytest.raises(NodeNotFound, match="the hive has no nodes yet") as empty:
        run(w.service.nodes_exec("all", ["true"], lambda *a: None))
    assert "gpuhive invite" in empty.value.hint
    _three(w)
    with pytest.raises(NodeNotFound, match="no node named 'alcie'") as typo:
        run(w.service.nodes_exec("alcie", ["true"], lambda *a: None))
    assert "alice" in typo.value.hint
    assert not any(w.nodes[n].calls for n in ("alice", "bob", "carol"))


# ---- nodes add --------------------------------------------------------------------------

PROBE = "hostname=lan-box\ncores=4\nmem_kib=8388608\navail_kib=4194304\nos=Linux 6.1.0"


def test_adding_a_machine_pins_its_host_key_and_stores_its_probe(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.nodes.hosts[("10.0.0.5", 22)] = FakeHost(probe_output=PROBE)
    added = run(w.service.node_add("me@10.0.0.5", ""))
    assert w.nodes.inspected == [("me", "10.0.0.5", 22, remote_probe.PROBE_COMMAND)]
    assert added["name"] == "lan-box" and added["kind"] == "ssh"  # named by its hostname
    assert added["host_key_fingerprint"] == "SHA256:fakehostkey"
    assert added["address"] == "me@10.0.0.5:22" and added["connected"]
    node = w.registry.get_node("lan-box")
    assert node.host_key == FakeHost().host_key and node.status is NodeStatus.ONLINE
    assert node.hardware is not None and (node.hardware.cpu.cores,
                                          node.hardware.memory_total_mib) == (4, 8192)
    w.nodes.hosts[("10.0.0.6", 2200)] = FakeHost(probe_output="cores=2")
    named = run(w.service.node_add("root@10.0.0.6:2200", "spare"))
    assert named["name"] == "spare"
    w.nodes.hosts[("10.0.0.7", 22)] = FakeHost(probe_output="cores=2")  # no hostname
    assert run(w.service.node_add("10.0.0.7", ""))["name"] == "10.0.0.7"
    assert w.nodes.inspected[-1][0] == "root"  # the default user


@pytest.mark.parametrize(("refuse", "message", "hint"), [
    ("refused", "connection refused: is sshd running on box:22?", "me@box:PORT"),
    ("denied", "box:22 refused the controller's key for user me", "~me/.ssh/authorized_keys"),
    ("timeout", "no answer from box:22 within 10 s", "firewall"),
    ("unresolved", "cannot resolve host 'box': Name or service not known", "spelling"),
])
def test_a_failed_first_contact_says_what_to_do_and_adds_nothing(
        tmp_path: Path, refuse: str, message: str, hint: str) -> None:
    w = World(tmp_path)
    w.nodes.hosts[("box", 22)] = FakeHost(refuse=refuse)
    with pytest.raises(NodeUnreachable) as info:
        run(w.service.node_add("me@box", ""))
    assert info.value.message == message and hint in info.value.hint
    assert info.value.data["address"] == "me@box:22"
    assert w.registry.list_nodes() == []


def test_a_probe_that_fails_or_a_bad_address_adds_nothing(tmp_path: Path) -> None:
    w = World(tmp_path)
    w.nodes.hosts[("box", 22)] = FakeHost(probe_exit=127, probe_error="sh: awk: not found")
    with pytest.raises(NodeUnreachable, match="probe on me@box:22 failed: sh: awk: not found"):
        run(w.service.node_add("me@box", ""))
    with pytest.raises(ConfigError) as bad:
        run(w.service.node_add("me@box:ssh", ""))
    assert bad.value.data["key"] == "address" and "user@host[:port]" in bad.value.hint
    assert w.nodes.inspected == [("me", "box", 22, remote_probe.PROBE_COMMAND)]
    assert w.registry.list_nodes() == []


def test_a_second_machine_cannot_take_a_name_in_use(tmp_path: Path) -> None:
    w = World(tmp_path)
    enroll_agent(w.registry, "lan-box")
    w.nodes.hosts[("box", 22)] = FakeHost(probe_output=PROBE)
    with pytest.raises(EnrollRefused, match="a node named 'lan-box' is already enrolled"):
        run(w.service.node_add("me@box", ""))
    assert run(w.service.node_add("me@box", "lan-box-2"))["name"] == "lan-box-2"


# ---- the ssh-node liveness poll ---------------------------------------------------------


def test_the_poll_marks_ssh_nodes_by_whether_a_command_still_runs(tmp_path: Path) -> None:
    w = World(tmp_path, connect_timeout=0.05)
    ids = {n: add_ssh_node(w.registry, n).id for n in ("ok", "down", "stuck", "broken")}
    agent = enroll_agent(w.registry, "agent")
    w.nodes.add("ok").on("^true$", "")
    w.nodes.add("down").unreachable("connection refused")
    w.nodes.add("stuck").on("^true$", Script().hang())
    w.nodes.add("broken").on("^true$", Script().exit(1))
    w.nodes.add("agent")

    results = dict(run(w.service.poll_ssh_nodes()))

    assert results == {ids["ok"]: True, ids["down"]: False, ids["stuck"]: False,
                       ids["broken"]: False}
    status = {n.name: (n.status, n.status_reason) for n in w.registry.list_nodes()}
    assert status["ok"] == (NodeStatus.ONLINE, "")
    for name in ("down", "stuck", "broken"):
        assert status[name] == (NodeStatus.OFFLINE, SSH_POLL_FAILED)
    assert w.nodes["stuck"].calls[0].cancelled  # the timeout gave up on it
    assert w.nodes["agent"].calls == [] and status["agent"][0] is NodeStatus.ONLINE
    assert w.registry.get_node(agent.id).kind is NodeKind.AGENT

    w.nodes["down"].reachable().on("^true$", "")
    w.clock.now += 5
    run(w.service.poll_ssh_nodes())
    down = w.registry.get_node("down")
    assert (down.status, down.status_reason) == (NodeStatus.ONLINE, "")
    assert [e.event for e in w.registry.events(down.id)] == ["registered", "offline", "online"]
    assert [e.event for e in w.registry.events(ids["ok"])] == ["registered"]  # no churn


def test_a_node_removed_while_the_poll_runs_stays_removed(tmp_path: Path) -> None:
    w = World(tmp_path)
    box = add_ssh_node(w.registry, "box")
    answered = asyncio.Event()
    w.nodes.add("box").on("^true$", Script().wait_for(answered).exit(255))

    async def go() -> None:
        poll = asyncio.ensure_future(w.service.poll_ssh_nodes())
        while not w.nodes["box"].calls:
            await asyncio.sleep(0)
        run_removed = w.registry.remove_node("box", w.clock.now)
        assert run_removed.status is NodeStatus.REMOVED
        answered.set()
        assert await poll == [(box.id, False)]
    run(go())
    assert w.registry.get_node(box.id, include_removed=True).status is NodeStatus.REMOVED


# ---- status -----------------------------------------------------------------------------


def test_status_and_overview_count_what_the_controller_holds(tmp_path: Path) -> None:
    w = World(tmp_path)
    alice = enroll_agent(w.registry, "alice")
    enroll_agent(w.registry, "bob", online=False)
    link = FakeLink()
    w.hive.link_opened(alice, link, "198.51.100.7:40000", link.send)
    st = w.service.status()
    assert st["host_key_fingerprint"] == HOST_KEY.fingerprint
    assert st["endpoint"] == "hive.example:2222"
    assert st["nodes"] == {"online": 1, "offline": 1} and st["connected"] == 1
    view = w.service.overview()
    assert len(view["jobs"]) == 20 and view["replicas"][0]["node"] == "alice"
    assert [n["name"] for n in view["nodes"]] == ["alice", "bob"]
    assert [n["connected"] for n in view["nodes"]] == [True, False]
    assert view["nodes"][0]["overlay_state"]["state"] == "off"  # no hub: no overlay
