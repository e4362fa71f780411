"""What the controller can do to a node, as one interface: ``NodeSessions``.

Controller code (jobs, serving, node and overlay operations, the service) depends on this
protocol only. Two implementations ship:

* ``transport.node_conn.NodeConnections`` — real SSH sessions (asyncssh) to each node's
  embedded server through its reverse forward, or to a plain sshd;
* ``gpuhive.testing.FakeNodes`` — scripted nodes in memory (commands with output and exit
  codes, files, failures: unreachable, dropped mid-stream, slow), so every controller
  operation can be tested in-process in milliseconds, without root or SSH.

Failure contract, the same for both: connection trouble is ``NodeUnreachable`` (a
``GpuhiveError`` naming the node), never a library exception. ``run`` reports it in its
result instead (``exit_status`` None) because fan-out callers want every node's outcome;
``output`` raises it, with the command's stderr tail, also for a non-zero exit.

The other direction, an agent's own link to the hive endpoint, reaches the controller as an
``AgentLink`` handle and a ``Send`` callable (``transport.hive_server``): the hive keeps them
in its tables without knowing what carries them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from gpuhive.core.model import NodeRecord

LineSink = Callable[[str, str, str], None]  # (node name, stream "out"/"err", line)
SendProgress = Callable[[int], None]  # bytes of stdin sent so far
Send = Callable[..., None]  # send(type_, **fields): one message down one agent's link


class AgentLink(Protocol):
    """One connection an agent opened to the hive endpoint, as the controller holds it: an
    opaque handle (compared by identity) the controller can only close. Closing it drops
    the agent's reverse forward too."""

    def close(self) -> None: ...


@dataclass
class ExecResult:
    node: str
    exit_status: int | None  # None: could not run at all, or the session broke
    error: str = ""


@dataclass(frozen=True)
class HostInfo:
    """What ``nodes add`` learns from a machine's own sshd on first contact."""

    host_key: str  # OpenSSH public key text, pinned from now on
    fingerprint: str  # SHA256:…
    probe_exit: int  # of the probe command
    probe_output: str  # its stdout (``core.remote_probe.PROBE_COMMAND``)
    probe_error: str  # its stderr


class NodeProcess(Protocol):
    """A long-running command on a node (a serving worker): stdout lines, stdin, exit."""

    def lines(self) -> AsyncIterator[str]:
        """stdout, line by line without the newline, until the command ends."""
        ...

    def write(self, data: bytes) -> None: ...

    async def wait(self) -> int | None:
        """Exit status once it ended (None: killed by a signal or the session broke)."""
        ...


class Forward(Protocol):
    """A listener on the controller's 127.0.0.1 that reaches a port on the node's 127.0.0.1."""

    @property
    def local_port(self) -> int: ...

    def close(self) -> None: ...


class RemoteFile(Protocol):
    async def write(self, data: bytes, offset: int) -> None: ...


class RemoteFiles(Protocol):
    """The file operations a resumable, hash-checked push needs (SFTP on a real node)."""

    async def size(self, path: str) -> int | None:
        """Bytes in ``path``, or None when it does not exist."""
        ...

    async def sha256(self, path: str, length: int) -> str:
        """Hex sha256 of the first ``length`` bytes, computed on the node."""
        ...

    async def makedirs(self, path: str) -> None: ...

    def open_write(self, path: str, *, keep: bool) -> AbstractAsyncContextManager[RemoteFile]:
        """Open for writing at offsets; ``keep`` False truncates, True keeps what is there."""
        ...

    async def replace(self, src: str, dst: str) -> None:
        """Rename ``src`` over ``dst`` (atomically where the node's filesystem allows)."""
        ...

    async def remove(self, path: str) -> None: ...


class NodeSessions(Protocol):
    """Everything the controller does to a node. Sessions are opened on first use, reused,
    and reopened after they break."""

    async def run(self, node: NodeRecord, argv: list[str], sink: LineSink, *,
                  stdin: bytes | None = None,
                  progress: SendProgress | None = None) -> ExecResult:
        """Run a command (one argv element: a shell line), each output line to ``sink``."""
        ...

    async def output(self, node: NodeRecord, command: str, *, stdin: bytes | None = None,
                     progress: SendProgress | None = None) -> str:
        """A shell line's stdout; ``NodeUnreachable`` (with its stderr tail) on failure."""
        ...

    def process(self, node: NodeRecord, command: str) -> AbstractAsyncContextManager[NodeProcess]:
        """Start a long-running shell line; leaving the context ends it (the node's agent
        stops everything it started when the channel closes)."""
        ...

    def files(self, node: NodeRecord) -> AbstractAsyncContextManager[RemoteFiles]: ...

    async def forward(self, node: NodeRecord, port: int) -> Forward:
        """A local listener reaching ``127.0.0.1:port`` on the node through its session."""
        ...

    async def measure_rtt(self, node: NodeRecord, samples: int = 5) -> float:
        """Median round trip in ms through the node's session."""
        ...

    async def measure_download(self, node: NodeRecord, nbytes: int) -> float:
        """Mbit/s node → controller for ``nbytes``."""
        ...

    async def measure_upload(self, node: NodeRecord, nbytes: int) -> float:
        """Mbit/s controller → node for ``nbytes``."""
        ...

    async def inspect_host(self, user: str, host: str, port: int,
                           probe_command: str) -> HostInfo:
        """First contact with a machine's own sshd (``nodes add``): its host key, and the
        probe's output. ``NodeUnreachable`` says whether the port was closed or the login
        refused."""
        ...

    async def close(self, node_id: str) -> None: ...

    async def close_all(self) -> None: ...
