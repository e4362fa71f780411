"""The controller's SSH sessions to nodes, kept open and reused: ``transport.api.NodeSessions``
over asyncssh.

An enrolled node is reached at controller 127.0.0.1:P (its reverse forward) and must show
the embedded-server host key pinned at enroll; a node added with ``nodes add`` is reached at
its own sshd and must show the host key pinned then. One event loop drives them all, so a
command on a hundred nodes is a hundred concurrent channels, not a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import asyncssh

from gpuhive.core.model import NodeKind, NodeRecord
from gpuhive.errors import NodeUnreachable
from gpuhive.transport.address import SshAddress, parse_address
from gpuhive.transport.api import ExecResult, HostInfo, LineSink, SendProgress
from gpuhive.transport.keys import CIPHERS, fingerprint, import_public, public_text
from gpuhive.transport.sftp_files import SftpFiles
from gpuhive.transport.ssh_login import login_failure

AGENT_USER = "gpuhive"

__all__ = ["ExecResult", "LineSink", "NodeConnections", "SshAddress", "parse_address"]


class NodeConnections:
    def __init__(self, client_key: asyncssh.SSHKey, *, connect_timeout: float = 10.0) -> None:
        self.client_key = client_key
        self.connect_timeout = connect_timeout
        self._conns: dict[str, asyncssh.SSHClientConnection] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def target(self, node: NodeRecord) -> SshAddress:
        if node.kind == NodeKind.SSH:
            return parse_address(node.address)
        if node.forward_port is None:
            raise NodeUnreachable(f"node {node.name} has no forward port")
        return SshAddress(AGENT_USER, "127.0.0.1", node.forward_port)

    async def get(self, node: NodeRecord) -> asyncssh.SSHClientConnection:
        lock = self._locks.setdefault(node.id, asyncio.Lock())
        async with lock:
            conn = self._conns.get(node.id)
            if conn is not None and not conn.is_closed():
                return conn
            addr = self.target(node)
            try:
                conn = await asyncio.wait_for(asyncssh.connect(
                    addr.host, addr.port, username=addr.user, client_keys=[self.client_key],
                    known_hosts=([import_public(node.host_key)], [], []), agent_path=None,
                    preferred_auth=["publickey"], keepalive_interval=30,
                    encryption_algs=CIPHERS), self.connect_timeout)
            except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
                hint = ("the node's agent may be disconnected: see `gpuhive nodes show "
                        f"{node.name}`" if node.kind == NodeKind.AGENT else
                        "check that its sshd runs and authorizes the controller key")
                raise NodeUnreachable(f"cannot open a session to node {node.name} ({addr}): "
                                      f"{exc or type(exc).__name__}", hint=hint,
                                      node=node.name) from exc
            self._conns[node.id] = conn
            return conn

    async def run(self, node: NodeRecord, argv: list[str], sink: LineSink, *,
                  stdin: bytes | None = None,
                  progress: SendProgress | None = None) -> ExecResult:
        """Run a command on one node, sending each output line to ``sink`` as it comes.

        ``stdin`` is streamed to the command in chunks, ``progress`` told the bytes sent.
        """
        command = " ".join(shlex.quote(a) for a in argv) if len(argv) != 1 else argv[0]
        try:
            conn = await self.get(node)
            async with conn.create_process(
                    command, encoding=None,
                    stdin=asyncssh.DEVNULL if stdin is None else asyncssh.PIPE) as proc:
                pumps = [_pump(proc.stdout, node.name, "out", sink),
                         _pump(proc.stderr, node.name, "err", sink)]
                if stdin is not None:
                    pumps.append(_feed(proc.stdin, stdin, progress))
                await asyncio.gather(*pumps)
                done = await proc.wait(check=False)
            status = done.exit_status
            if status is None and done.exit_signal:
                status = 128 + 15
            return ExecResult(node.name, status if status is not None else 255)
        except NodeUnreachable as exc:
            return ExecResult(node.name, None, exc.message)
        except (OSError, asyncssh.Error) as exc:
            await self.close(node.id)
            return ExecResult(node.name, None, f"session to {node.name} broke: {exc}")

    async def output(self, node: NodeRecord, command: str, *, stdin: bytes | None = None,
                     progress: Callable[[int], None] | None = None) -> str:
        """A command's stdout; ``NodeUnreachable`` with its stderr tail when it fails."""
        out: list[str] = []
        err: list[str] = []
        res = await self.run(node, [command],
                             lambda _n, s, line: (out if s == "out" else err).append(line),
                             stdin=stdin, progress=progress)
        if res.exit_status != 0:
            detail = res.error or " ".join(err[-3:]) or f"exit status {res.exit_status}"
            raise NodeUnreachable(f"a command on node {node.name} failed: {detail}",
                                  hint=f"see `gpuhive nodes show {node.name}`", node=node.name,
                                  command=command[:200])
        return "\n".join(out)

    @contextlib.asynccontextmanager
    async def process(self, node: NodeRecord, command: str) -> AsyncIterator[_Process]:
        conn = await self.get(node)
        try:
            async with conn.create_process(command, stdin=asyncssh.PIPE, encoding=None) as proc:
                yield _Process(proc, node.name)
        except (OSError, asyncssh.Error) as exc:
            await self.close(node.id)
            raise NodeUnreachable(f"session to {node.name} broke: {exc}", node=node.name,
                                  hint=f"see `gpuhive nodes show {node.name}`") from exc

    @contextlib.asynccontextmanager
    async def files(self, node: NodeRecord) -> AsyncIterator[SftpFiles]:
        conn = await self.get(node)
        try:
            async with conn.start_sftp_client() as sftp:
                yield SftpFiles(conn, sftp, node.name)
        except (OSError, asyncssh.Error) as exc:
            await self.close(node.id)
            raise NodeUnreachable(f"file transfer to {node.name} broke: {exc}",
                                  node=node.name, hint="run it again: pushes resume") from exc

    async def forward(self, node: NodeRecord, port: int) -> _Forward:
        conn = await self.get(node)
        try:
            listener = await conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", port)
        except (OSError, asyncssh.Error) as exc:
            raise NodeUnreachable(f"cannot forward to port {port} on {node.name}: {exc}",
                                  node=node.name) from exc
        return _Forward(listener)

    async def measure_rtt(self, node: NodeRecord, samples: int = 5) -> float:
        return await self._measure(node, measure_rtt, samples)

    async def measure_download(self, node: NodeRecord, nbytes: int) -> float:
        return await self._measure(node, measure_download, nbytes)

    async def measure_upload(self, node: NodeRecord, nbytes: int) -> float:
        return await self._measure(node, measure_upload, nbytes)

    async def _measure(self, node: NodeRecord,
                       how: Callable[[asyncssh.SSHClientConnection, int], Awaitable[float]],
                       arg: int) -> float:
        conn = await self.get(node)
        try:
            return await how(conn, arg)
        except (OSError, asyncssh.Error) as exc:
            await self.close(node.id)
            raise NodeUnreachable(f"measuring the link to {node.name} failed: {exc}",
                                  node=node.name) from exc

    async def inspect_host(self, user: str, host: str, port: int,
                           probe_command: str) -> HostInfo:
        addr = SshAddress(user, host, port)
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                host, port, username=user, client_keys=[self.client_key], known_hosts=None,
                agent_path=None, preferred_auth=["publickey"]), self.connect_timeout)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise login_failure(exc, user, host, port, self.connect_timeout) from exc
        async with conn:
            key = conn.get_server_host_key()
            result = await conn.run(probe_command, check=False)
        if key is None:
            raise NodeUnreachable(f"{addr} showed no host key", address=str(addr))
        return HostInfo(public_text(key), fingerprint(key), result.exit_status or 0,
                        _text(result.stdout), _text(result.stderr))

    async def close(self, node_id: str) -> None:
        conn = self._conns.pop(node_id, None)
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(nid) for nid in list(self._conns)))


async def _feed(writer: asyncssh.SSHWriter[bytes], data: bytes,
                progress: Callable[[int], None] | None) -> None:
    chunk = 256 * 1024
    sent = 0
    for start in range(0, len(data), chunk):
        piece = data[start:start + chunk]
        writer.write(piece)
        await writer.drain()
        sent += len(piece)
        if progress:
            progress(sent)
    writer.write_eof()


class _Process:
    def __init__(self, proc: asyncssh.SSHClientProcess[bytes], node: str) -> None:
        self._proc = proc
        self._node = node

    async def lines(self) -> AsyncIterator[str]:
        async for line in self._proc.stdout:
            if line:
                yield line.decode("utf-8", "replace").rstrip("\r\n")

    def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)

    async def wait(self) -> int | None:
        done = await self._proc.wait(check=False)
        return done.exit_status


class _Forward:
    def __init__(self, listener: asyncssh.SSHListener) -> None:
        self._listener = listener

    @property
    def local_port(self) -> int:
        return int(self._listener.get_port())

    def close(self) -> None:
        self._listener.close()


def _text(data: str | bytes | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


async def _pump(stream: asyncssh.SSHReader[bytes], node: str, name: str,
                sink: LineSink) -> None:
    async for line in stream:
        if line:  # asyncssh yields one final b"" at EOF
            sink(node, name, line.decode("utf-8", "replace").rstrip("\r\n"))


async def measure_rtt(conn: asyncssh.SSHClientConnection, samples: int = 5) -> float:
    """Median round trip in ms: a channel open the far side refuses at once (one RTT)."""
    times = []
    loop = asyncio.get_running_loop()
    for _ in range(samples):
        t0 = loop.time()
        with contextlib.suppress(asyncssh.ChannelOpenError, OSError):
            # the embedded server (and sshd with AllowTcpForwarding no) refuse this target
            _, w = await conn.open_connection("0.0.0.0", 9)
            w.close()
        times.append((loop.time() - t0) * 1000)
    times.sort()
    return times[len(times) // 2]


async def measure_download(conn: asyncssh.SSHClientConnection, nbytes: int) -> float:
    """Mbit/s node → controller: the node writes ``nbytes`` zeros, we count them."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    got = 0
    async with conn.create_process(f"head -c {int(nbytes)} /dev/zero", encoding=None,
                                   stdin=asyncssh.DEVNULL) as proc:
        while chunk := await proc.stdout.read(1 << 16):
            got += len(chunk)
        await proc.wait()
    return got * 8 / max(loop.time() - t0, 1e-6) / 1e6


async def measure_upload(conn: asyncssh.SSHClientConnection, nbytes: int) -> float:
    """Mbit/s controller → node: we write ``nbytes``; the node discards them."""
    loop = asyncio.get_running_loop()
    block = b"\0" * (1 << 16)
    t0 = loop.time()
    async with conn.create_process("cat > /dev/null", encoding=None) as proc:
        sent = 0
        while sent < nbytes:
            piece = block[: min(len(block), nbytes - sent)]
            proc.stdin.write(piece)
            await proc.stdin.drain()
            sent += len(piece)
        proc.stdin.write_eof()
        await proc.wait()
    return nbytes * 8 / max(loop.time() - t0, 1e-6) / 1e6


if TYPE_CHECKING:  # mypy proves the real sessions are a NodeSessions; nothing runs here
    from gpuhive.transport.api import NodeSessions

    def _conforms(c: NodeConnections) -> NodeSessions:
        return c
