"""`nodes add`'s first login fails in four different ways, each with its own next step:
real connections on loopback (a closed port, a server that never speaks, one that is not SSH,
a real asyncssh server that refuses the key), through ``NodeConnections.inspect_host``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

import asyncssh
import pytest

from gpuhive.errors import NodeUnreachable
from gpuhive.transport.node_conn import NodeConnections, SshAddress
from gpuhive.transport.ssh_login import login_failure


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


async def _fails(addr: SshAddress, timeout_s: float = 5.0) -> NodeUnreachable:
    nodes = NodeConnections(_key(), connect_timeout=timeout_s)
    with pytest.raises(NodeUnreachable) as info:
        await nodes.inspect_host(addr.user, addr.host, addr.port, "true")
    return info.value


def test_closed_port_asks_whether_sshd_runs() -> None:
    with socket.socket() as s:  # a port that was just free: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _run(_fails(SshAddress("me", "127.0.0.1", port)))
    assert err.message == f"connection refused: is sshd running on 127.0.0.1:{port}?"
    assert "authorized_keys" not in err.hint and "me@127.0.0.1:PORT" in err.hint


def test_silent_server_times_out_with_its_own_message() -> None:
    async def go() -> NodeUnreachable:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await _fails(SshAddress("me", "127.0.0.1", port), timeout_s=0.5)
        finally:
            server.close()
    err = _run(go())
    assert err.message.startswith("no answer from 127.0.0.1:") and "within 0.5 s" in err.message
    assert "authorized_keys" not in err.hint


def test_a_port_that_is_not_ssh_says_so() -> None:
    async def go() -> NodeUnreachable:
        async def http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(http, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            return await _fails(SshAddress("me", "127.0.0.1", port))
        finally:
            server.close()
    err = _run(go())
    assert err.message.endswith("closed the connection before SSH started")
    assert "an SSH server?" in err.hint and "authorized_keys" not in err.hint
    garbled = login_failure(asyncssh.ProtocolError("Invalid SSH version"), "me", "h", 80, 5)
    assert garbled.message == "SSH to h:80 failed: Invalid SSH version"


def test_refused_key_points_at_authorized_keys() -> None:
    async def go() -> NodeUnreachable:
        server = await asyncssh.listen("127.0.0.1", 0, server_host_keys=[_key()],
                                       authorized_client_keys=None)  # no key is accepted
        port = server.get_port()
        try:
            return await _fails(SshAddress("me", "127.0.0.1", port))
        finally:
            server.close()
            await server.wait_closed()
    err = _run(go())
    assert "refused the controller's key for user me" in err.message
    assert "gpuhive init --show-key" in err.hint and "~me/.ssh/authorized_keys" in err.hint


def test_unresolvable_host_and_other_network_errors() -> None:
    where = ("me", "nowhere.invalid", 22)
    dns = login_failure(socket.gaierror(-2, "Name or service not known"), *where, 5)
    assert dns.message == "cannot resolve host 'nowhere.invalid': Name or service not known"
    unreachable = login_failure(OSError(113, "No route to host"), *where, 5)
    assert unreachable.message == "cannot reach nowhere.invalid:22: No route to host"
