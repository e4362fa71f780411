"""The hive endpoint's policy, with real asyncssh on both ends, in one process on loopback."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from pathlib import Path

import asyncssh
import pytest

from gpuhive.agent.enroll import enroll
from gpuhive.core import messages, tokens
from gpuhive.errors import (
    HostKeyMismatch,
    NodeNotFound,
    TokenExpired,
    TokenMalformed,
    TokenRevoked,
    TokenUnknown,
    TokenUsedUp,
)
from gpuhive.ports import free_port
from gpuhive.transport import keys
from tests.integration.conftest import Hive, running_hive


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _node_conn(hive: Hive, name: str) -> asyncssh.SSHClientConnection:
    home = hive.root / name
    ident = __import__("json").loads((home / "agent.json").read_text())
    return await asyncssh.connect(
        "127.0.0.1", hive.settings.listen_port, username=ident["node_id"],
        client_keys=[keys.load_key(home / "node_key")], known_hosts=None, agent_path=None,
        encoding=None)


def test_enroll_heartbeat_exec(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("alice"):
            node = await hive.wait_status("alice", "online")
            assert node["hardware"]["cpu"]["cores"] == os.cpu_count()
            assert node["connected"] and node["forward_port"]
            lines: list[tuple[str, str, str]] = []
            results = await hive.ctl.service.nodes_exec(
                "all", ["sh", "-c", "echo out; echo err >&2; exit 3"],
                lambda *a: lines.append(a))
            assert results == [{"node": "alice", "exit_status": 3, "error": ""}]
            assert ("alice", "out", "out") in lines and ("alice", "err", "err") in lines
            with pytest.raises(NodeNotFound):
                await hive.ctl.service.nodes_exec("bob", ["true"], lambda *a: None)
    run(go())


def test_token_errors_over_the_wire(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            svc = hive.ctl.service
            used = svc.invite_create("u", "1h", 1)["token"]
            await enroll(tmp_path / "first", used, "first")
            revoked = svc.invite_create("r", "1h", 1)
            svc.invite_revoke(revoked["id"])
            expired = svc.invite_create("e", "1s", 1)["token"]
            good = tokens.parse_token(used)
            unknown = tokens.JoinToken("00000000beef", "x" * 32, good.host, good.port,
                                       good.fingerprint).encode()
            await asyncio.sleep(1.1)
            cases = [(used, TokenUsedUp), (revoked["token"], TokenRevoked),
                     (expired, TokenExpired), (unknown, TokenUnknown),
                     (used[:-8], TokenMalformed)]
            for token, error in cases:
                with pytest.raises(error):
                    await enroll(tmp_path / "second", token, "second")
            assert [n["name"] for n in svc.nodes_list()] == ["first"]
            assert not (tmp_path / "second" / "agent.json").exists()
    run(go())


def test_impostor_controller_never_sees_the_secret(tmp_path: Path) -> None:
    passwords: list[str] = []

    class Recorder(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            passwords.append(password)
            return True

    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            real = tokens.parse_token(hive.invite("alice"))
            port = free_port()
            impostor = await asyncssh.create_server(
                Recorder, "127.0.0.1", port,
                server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")])
            try:
                forged = tokens.JoinToken(real.token_id, real.secret, "127.0.0.1", port,
                                          real.fingerprint)
                with pytest.raises(HostKeyMismatch, match="nothing was sent"):
                    await enroll(tmp_path / "alice", forged.encode(), "alice")
            finally:
                impostor.close()
            assert passwords == []
            assert hive.ctl.service.nodes_list() == []
            assert not (tmp_path / "alice" / "agent.json").exists()
            # the real token is still unused and works against the real controller
            await enroll(tmp_path / "alice", real.encode(), "alice")
    run(go())


def test_node_key_gets_only_its_own_forward_and_no_shell(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            a = await hive.enroll("a")
            b = await hive.enroll("b")
            conn = await _node_conn(hive, "a")
            async with conn:
                for host, port in (("127.0.0.1", b.forward_port), ("0.0.0.0", a.forward_port),
                                   ("127.0.0.1", 0), ("localhost", a.forward_port)):
                    with pytest.raises(asyncssh.ChannelListenError):
                        await conn.forward_remote_port(host, port, "127.0.0.1", 9)
                with pytest.raises((asyncssh.ChannelOpenError, asyncssh.ProcessError)):
                    await conn.run("id", check=True)
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.open_session(subsystem=messages.ENROLL_SUBSYSTEM)
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.open_connection("127.0.0.1", hive.settings.listen_port)
                ok = await conn.forward_remote_port("127.0.0.1", a.forward_port, "127.0.0.1", 9)
                ok.close()
            # an unknown key, and a known key claiming another node's id, are refused
            stranger = asyncssh.generate_private_key("ssh-ed25519")
            for user, key in ((a.node_id, stranger), (b.node_id,
                                                      keys.load_key(tmp_path / "a/node_key"))):
                with pytest.raises(asyncssh.PermissionDenied):
                    await asyncssh.connect("127.0.0.1", hive.settings.listen_port,
                                           username=user, client_keys=[key], known_hosts=None,
                                           agent_path=None)
    run(go())


def test_enroll_user_can_do_nothing_else(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            async with asyncssh.connect(
                    "127.0.0.1", hive.settings.listen_port, username="enroll",
                    password="whatever", known_hosts=None, agent_path=None,
                    encoding=None) as conn:
                with pytest.raises(asyncssh.ChannelListenError):
                    await conn.forward_remote_port("127.0.0.1", 41000, "127.0.0.1", 9)
                with pytest.raises((asyncssh.ChannelOpenError, asyncssh.ProcessError)):
                    await conn.run("id", check=True)
                with pytest.raises(asyncssh.ChannelOpenError):
                    await conn.open_session(subsystem=messages.AGENT_SUBSYSTEM)
                # a bad credential on the enroll channel gets a clear answer, not a crash
                w, r, _ = await conn.open_session(subsystem=messages.ENROLL_SUBSYSTEM)
                w.write(messages.encode("enroll", name="x", hostname="x", node_key="k",
                                        embedded_host_key="k", hardware={}))
                reply = messages.decode((await r.read()).strip())
                assert reply.type == "error"
            assert hive.ctl.service.nodes_list() == []
    run(go())


def test_removed_node_is_cut_off_at_once(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("alice") as agent:
            node = await hive.wait_status("alice", "online")
            res = await hive.ctl.service.node_remove("alice")
            assert res["closed_links"] == 1
            await asyncio.sleep(0.3)
            assert agent.link is not None and not agent.link.status.connected
            with pytest.raises(OSError):  # the reverse forward is gone
                socket.create_connection(("127.0.0.1", node["forward_port"]), 1).close()
            with pytest.raises(asyncssh.PermissionDenied):
                await _node_conn(hive, "alice")
            assert hive.ctl.service.nodes_list() == []
            shown = hive.ctl.service.node_show("alice")
            assert shown["status"] == "removed" and shown["events"][-1]["event"] in (
                "removed", "disconnected")
    run(go())


def test_garbage_on_the_hive_port_hurts_nobody(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("alice"):
            await hive.wait_status("alice", "online")
            port = hive.settings.listen_port
            before = hive.ctl.hive.heartbeats_received
            rng = random.Random(7)
            for _ in range(20):  # random bytes
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(rng.randbytes(rng.randrange(1, 4096)))
                await w.drain()
                w.close()
            for cut in (5, 30, 200):  # a truncated handshake
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.write((b"SSH-2.0-OpenSSH_9.2\r\n" + b"\x00\x00\x01\x2c\x0a\x14" +
                         rng.randbytes(400))[:cut])
                await w.drain()
                w.close()
            half_open = [await asyncio.open_connection("127.0.0.1", port) for _ in range(100)]
            await asyncio.sleep(1.0)
            assert hive.ctl.hive.heartbeats_received > before + 1
            assert hive.ctl.hive.connected(hive.ctl.registry.get_node("alice").id)
            await hive.enroll("bob")  # new enrollments work during the flood
            for _, w in half_open:
                w.close()
            assert (await hive.wait_status("alice", "online"))["connected"]
    run(go())


BAD_LINES = [b"\xff\xfe\n", b"{}\n", b"[]\n",
             b'{"type":"welcome","node_id":"x","heartbeat_interval":1,"forward_port":1}\n',
             b'{"type":"heartbeat","seq":1,"state":"x","hardware":{}}\n',  # before hello
             b"x" * (messages.MAX_LINE + 10), b'{"type":"hello"}\n']


@pytest.mark.parametrize("line", BAD_LINES, ids=range(len(BAD_LINES)))
def test_malformed_agent_messages_close_only_that_channel(tmp_path: Path, line: bytes) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive, hive.agent("good"):
            await hive.wait_status("good", "online")
            await hive.enroll("evil")
            async with await _node_conn(hive, "evil") as conn:
                w, r, _ = await conn.open_session(subsystem=messages.AGENT_SUBSYSTEM)
                w.write(line)
                reply = await asyncio.wait_for(r.read(), 5)
                assert messages.decode(reply.splitlines()[0]).type == "error"
            node = await hive.wait_status("good", "online")
            assert node["connected"]
            await hive.enroll("after")
    run(go())


def test_replayed_heartbeats_are_ignored(tmp_path: Path) -> None:
    async def go() -> None:
        async with running_hive(tmp_path) as hive:
            await hive.enroll("n")
            async with await _node_conn(hive, "n") as conn:
                w, r, _ = await conn.open_session(subsystem=messages.AGENT_SUBSYSTEM)
                w.write(messages.encode("hello", version=1, agent_started_at=0))
                await asyncio.wait_for(r.read(4096), 2)  # welcome
                before = hive.ctl.hive.heartbeats_received
                hw = {"hostname": "n", "cpu": {"cores": 1}, "memory_total_mib": 1}
                for seq in (5, 3, 5, 6):
                    w.write(messages.encode("heartbeat", seq=seq, state="busy", hardware=hw))
                await asyncio.sleep(0.5)
                assert hive.ctl.hive.heartbeats_received - before == 2  # 5 and 6 only
                assert not conn.is_closed()  # stale ones cost nothing, not even the link
    run(go())


def test_agent_returns_after_controller_restart(tmp_path: Path) -> None:
    async def go() -> None:
        from gpuhive.controller.daemon import Controller
        async with running_hive(tmp_path) as hive, hive.agent("alice"):
            first = await hive.wait_status("alice", "online")
            await hive.ctl.stop()
            await asyncio.sleep(0.5)
            hive.ctl = Controller(hive.ctl.home, hive.settings)
            await hive.ctl.start()
            for _ in range(100):
                node = {n["name"]: n for n in hive.ctl.service.nodes_list()}["alice"]
                if node["connected"] and node["status"] == "online":
                    break
                await asyncio.sleep(0.1)
            assert node["connected"] and node["id"] == first["id"]
            assert node["connected_since"] > first["connected_since"]
    run(go())
