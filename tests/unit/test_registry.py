import threading
from pathlib import Path

import pytest

from gpuhive.controller.registry import Registry
from gpuhive.core.model import CpuInfo, Hardware, NodeStatus
from gpuhive.errors import (
    EnrollRefused,
    NodeNotFound,
    TokenExpired,
    TokenRevoked,
    TokenUnknown,
    TokenUsedUp,
)

HW = Hardware(hostname="box", cpu=CpuInfo(cores=4), memory_total_mib=8192)


def _enroll(reg: Registry, token_id: str, secret: str, key: str, *, name: str = "alice",
            name_given: bool = True, now: float = 10.0, ports: tuple[int, int] = (41000, 41010)):
    return reg.enroll(token_id=token_id, secret=secret, name=name, name_given=name_given,
                      hostname="box", public_key=key, host_key="ssh-ed25519 HOST",
                      hardware=HW, public_addr="198.18.0.11:5000", port_range=ports, now=now)


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "registry.db")


def test_enroll_consumes_token_and_registers(reg: Registry) -> None:
    rec, secret = reg.create_token("alice", 3600, 1, now=0.0)
    node = _enroll(reg, rec.token_id, secret, "ssh-ed25519 KEY1")
    assert node.name == "alice" and node.forward_port == 41000
    assert node.hardware == HW
    assert reg.get_token(rec.token_id).uses == 1  # type: ignore[union-attr]
    with pytest.raises(TokenUsedUp):
        _enroll(reg, rec.token_id, secret, "ssh-ed25519 KEY2", name="bob")
    assert [e.event for e in reg.events(node.id)] == ["registered"]


def test_token_errors_register_nothing(reg: Registry) -> None:
    rec, secret = reg.create_token("a", 10, 1, now=0.0)
    with pytest.raises(TokenExpired):
        _enroll(reg, rec.token_id, secret, "K", now=11.0)
    with pytest.raises(TokenUnknown):
        _enroll(reg, "0123456789ab", secret, "K")
    with pytest.raises(TokenUnknown):
        _enroll(reg, rec.token_id, "x" * 32, "K")
    reg.revoke_token(rec.token_id, now=1.0)
    with pytest.raises(TokenRevoked):
        _enroll(reg, rec.token_id, secret, "K", now=2.0)
    assert reg.list_nodes() == []
    assert reg.get_token(rec.token_id).uses == 0  # type: ignore[union-attr]


def test_secret_never_stored(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.db")
    _, secret = reg.create_token("a", 10, 1, now=0.0)
    reg.close()
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes()


def test_reenroll_with_same_key_keeps_identity(reg: Registry) -> None:
    rec, secret = reg.create_token("a", 3600, 2, now=0.0)
    first = _enroll(reg, rec.token_id, secret, "ssh-ed25519 SAME")
    again = _enroll(reg, rec.token_id, secret, "ssh-ed25519 SAME", name="other")
    assert (again.id, again.forward_port, again.name) == (first.id, first.forward_port, "alice")


def test_names_and_ports_are_unique(reg: Registry) -> None:
    rec, secret = reg.create_token("a", 3600, 5, now=0.0)
    a = _enroll(reg, rec.token_id, secret, "K1", name="box", name_given=False)
    b = _enroll(reg, rec.token_id, secret, "K2", name="box", name_given=False)
    assert (a.name, b.name) == ("box", "box-2")
    assert a.forward_port != b.forward_port
    with pytest.raises(EnrollRefused, match="already enrolled"):
        _enroll(reg, rec.token_id, secret, "K3", name="box", name_given=True)


def test_port_range_exhaustion_is_clear(reg: Registry) -> None:
    rec, secret = reg.create_token("a", 3600, 5, now=0.0)
    _enroll(reg, rec.token_id, secret, "K1", name="a", ports=(41000, 41000))
    with pytest.raises(EnrollRefused, match="no forward port"):
        _enroll(reg, rec.token_id, secret, "K2", name="b", ports=(41000, 41000))


def test_remove_frees_name_keeps_history(reg: Registry) -> None:
    rec, secret = reg.create_token("a", 3600, 2, now=0.0)
    node = _enroll(reg, rec.token_id, secret, "K1")
    reg.set_status(node.id, NodeStatus.ONLINE, "", now=11.0)
    reg.remove_node("alice", now=12.0)
    with pytest.raises(NodeNotFound):
        reg.get_node("alice")
    assert reg.node_for_key(node.id, "K1") is None  # its key stops working at once
    gone = reg.get_node(node.id, include_removed=True)
    assert gone.status == NodeStatus.REMOVED and gone.removed_at == 12.0
    assert [e.event for e in reg.events(node.id)] == ["registered", "online", "removed"]
    assert _enroll(reg, rec.token_id, secret, "K2").name == "alice"


def test_concurrent_enrollment_on_one_token_has_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    rec, secret = Registry(path).create_token("a", 3600, 1, now=0.0)
    outcomes: list[str] = []

    def go(i: int) -> None:
        reg = Registry(path)
        try:
            _enroll(reg, rec.token_id, secret, f"K{i}", name=f"n{i}")
            outcomes.append("ok")
        except TokenUsedUp:
            outcomes.append("used")
        finally:
            reg.close()

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["used"] * 7
    assert len(Registry(path).list_nodes()) == 1


def test_heartbeats_saved_in_batch(reg: Registry) -> None:
    rec, secret = reg.create_token("a", 3600, 1, now=0.0)
    node = _enroll(reg, rec.token_id, secret, "K1")
    hw = Hardware(hostname="renamed", cpu=CpuInfo(cores=8), memory_total_mib=1)
    reg.save_heartbeats([(node.id, 42.0, "busy", hw, {"paused": True})])
    got = reg.get_node(node.id)
    assert (got.last_heartbeat, got.agent_state, got.hostname) == (42.0, "busy", "renamed")
    reg.save_heartbeats([(node.id, 43.0, "available", None, None)])  # None keeps the old one
    assert reg.get_node(node.id).hardware == hw
    assert reg.get_node(node.id).policy == {"paused": True}
