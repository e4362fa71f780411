"""Scripted nodes in memory: a ``transport.api.NodeSessions`` for controller tests.

    nodes = FakeNodes()
    alice = nodes.add("alice")
    alice.on(r"^df ", "fs 1 1 99999999 1% /")           # stdout, exit 0
    alice.on(r"torch\\.distributed\\.run",                 # a script: lines, pauses, exit
             Script().out("[rank0]:step 1").sleep(0.01).exit(0))
    alice.on(r"gpubench", lambda call: Script().err("no GPU").exit(1))
    bob = nodes.add("bob").unreachable("agent is offline")
    ...
    sup = JobSupervisor(registry, nodes, ops, tmp_path)     # the controller, unchanged

Commands match by ``re.search``; the handler added last wins, so a test can override a
default. A command no handler matches exits 127 and says so on stderr. Every call is kept
in ``node.calls`` (command, stdin, whether it was cancelled), which is how a test asserts
what the controller did. Failures a real node has are one call each: ``unreachable``
(sessions cannot open), ``Script.drop`` (the session breaks mid-stream), ``slow`` (every
call waits first), ``cut_writes_after`` / ``corrupt_write_at`` (file pushes),
``Script.hang`` (a command that never ends until the controller cancels it),
``cut_stdin_after`` (a command's stdin, a code bundle say, breaks the session part-way),
``LinkFacts(drop_at="upload")`` (a link measurement whose session breaks). Link
measurements are kept in ``node.measured`` ((kind, argument) pairs), first contacts with an
sshd in ``FakeNodes.inspected``; a ``FakeHost`` fails its first contact with any
``transport.ssh_login.LoginProblem``, worded exactly as a real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shlex
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from gpuhive.core.model import NodeRecord
from gpuhive.errors import NodeUnreachable, RemoteFileError
from gpuhive.transport.api import ExecResult, HostInfo, LineSink, SendProgress
from gpuhive.transport.ssh_login import LoginProblem, login_error


@dataclass
class Call:
    """One command the controller ran on a fake node."""

    node: str
    command: str
    stdin: bytes = b""  # what reached the node: all of it, or what came before a cut
    cancelled: bool = False  # the controller gave up on it (cancel, closed channel)
    process: bool = False  # started with ``process`` (a long-running worker)
    written: bytearray = field(default_factory=bytearray)  # what it wrote to a process

    def matches(self, pattern: str) -> bool:
        return re.search(pattern, self.command) is not None


class Script:
    """What a command does, step by step: ``Script().out("a").err("b").exit(3)``."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, object]] = []

    def out(self, *lines: str) -> Script:
        self.steps.extend(("out", line) for line in lines)
        return self

    def err(self, *lines: str) -> Script:
        self.steps.extend(("err", line) for line in lines)
        return self

    def sleep(self, seconds: float) -> Script:
        self.steps.append(("sleep", seconds))
        return self

    def wait_for(self, event: asyncio.Event) -> Script:
        """Pause until the test sets ``event`` (an exact interleaving, no sleeps)."""
        self.steps.append(("wait", event))
        return self

    def drop(self, reason: str = "connection lost") -> Script:
        """The session breaks here: no exit status."""
        self.steps.append(("drop", reason))
        return self

    def hang(self) -> Script:
        """Never ends by itself: only the controller's cancel stops it."""
        self.steps.append(("hang", None))
        return self

    def exit(self, status: int) -> Script:
        self.steps.append(("exit", status))
        return self


Handler = str | Script | Callable[[Call], str | Script]


@dataclass(frozen=True)
class LinkFacts:
    """What measuring a fake node's link finds."""

    rtt_ms: float = 20.0
    down_mbps: float = 100.0
    up_mbps: float = 20.0
    drop_at: str = ""  # "rtt", "download" or "upload": that measurement's session breaks


class _Dropped(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FakeNode:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[Call] = []
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = set()
        self.link = LinkFacts()
        self.measured: list[tuple[str, int]] = []  # ("rtt", samples) / ("download", bytes) …
        self.ports: dict[int, int] = {}  # node port → controller-local port that plays it
        self.closed = 0  # how often the controller closed this node's session
        self._handlers: list[tuple[re.Pattern[str], Handler]] = []
        self._unreachable = ""
        self._delay = 0.0
        self._cut_after: int | None = None
        self._corrupt_at: int | None = None
        self._written = 0
        self._stdin_cut: int | None = None

    # ---- scripting ------------------------------------------------------------------

    def on(self, pattern: str, handler: Handler) -> FakeNode:
        self._handlers.append((re.compile(pattern), handler))
        return self

    def unreachable(self, reason: str = "the agent is not connected") -> FakeNode:
        self._unreachable = reason
        return self

    def reachable(self) -> FakeNode:
        self._unreachable = ""
        return self

    def slow(self, seconds: float) -> FakeNode:
        self._delay = seconds
        return self

    def cut_writes_after(self, nbytes: int | None) -> FakeNode:
        """File writes break the session once ``nbytes`` more bytes arrived (None: never)."""
        self._cut_after, self._written = nbytes, 0
        return self

    def cut_stdin_after(self, nbytes: int | None) -> FakeNode:
        """A command's stdin breaks the session once ``nbytes`` of it arrived (None:
        never): the command gets no exit status, as when a link dies mid-transfer."""
        self._stdin_cut = nbytes
        return self

    def corrupt_write_at(self, offset: int | None) -> FakeNode:
        """Flip the byte written at ``offset`` (a disk that lies)."""
        self._corrupt_at = offset
        return self

    def listen(self, node_port: int, local_port: int) -> FakeNode:
        """A forward to ``node_port`` reaches ``local_port`` on this machine."""
        self.ports[node_port] = local_port
        return self

    def ran(self, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.matches(pattern)]

    # ---- what the sessions call -----------------------------------------------------

    async def _enter(self) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        if self._unreachable:
            raise NodeUnreachable(f"cannot open a session to node {self.name}: "
                                  f"{self._unreachable}", node=self.name,
                                  hint=f"see `gpuhive nodes show {self.name}`")

    def _script(self, call: Call) -> Script:
        for pattern, handler in reversed(self._handlers):
            if pattern.search(call.command):
                answer = handler(call) if callable(handler) else handler
                if isinstance(answer, str):
                    return Script().out(*answer.splitlines()).exit(0)
                return answer
        return Script().err(f"fake node {self.name}: no script for "
                            f"{shlex.quote(call.command[:120])}").exit(127)

    def _write(self, path: str, data: bytes, offset: int) -> None:
        if self._cut_after is not None and self._written + len(data) > self._cut_after:
            keep = max(0, self._cut_after - self._written)
            self._put(path, data[:keep], offset)
            self._written += keep
            raise NodeUnreachable(f"file transfer to {self.name} broke: connection lost",
                                  node=self.name, hint="run it again: pushes resume")
        if self._corrupt_at is not None and offset <= self._corrupt_at < offset + len(data):
            i = self._corrupt_at - offset
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        self._put(path, data, offset)
        self._written += len(data)

    def _put(self, path: str, data: bytes, offset: int) -> None:
        old = self.files.get(path, b"")
        if len(old) < offset:
            old = old + b"\0" * (offset - len(old))
        self.files[path] = old[:offset] + data + old[offset + len(data):]


async def _play(script: Script, emit: Callable[[str, str], None]) -> int:
    """Run a script's steps; its exit status (``_Dropped`` when the session breaks)."""
    for kind, arg in script.steps:
        if kind in ("out", "err"):
            emit(kind, str(arg))
        elif kind == "sleep":
            await asyncio.sleep(float(arg))  # type: ignore[arg-type]
        elif kind == "wait":
            await arg.wait()  # type: ignore[attr-defined]
        elif kind == "drop":
            raise _Dropped(str(arg))
        elif kind == "hang":
            await asyncio.Event().wait()
        elif kind == "exit":
            assert isinstance(arg, int)
            return arg
    return 0


class FakeProcess:
    def __init__(self, node: FakeNode, call: Call, script: Script) -> None:
        self._node, self._call, self._script = node, call, script
        self._status: int | None = None
        self._done = asyncio.Event()

    async def lines(self) -> AsyncIterator[str]:
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        async def play() -> None:
            try:
                self._status = await _play(self._script, lambda kind, line:
                                           queue.put_nowait(line) if kind == "out" else None)
            finally:
                self._done.set()
                queue.put_nowait(None)
        task = asyncio.ensure_future(play())
        try:
            while (line := await queue.get()) is not None:
                yield line
            await task
        except _Dropped as exc:
            raise NodeUnreachable(f"session to {self._node.name} broke: {exc.reason}",
                                  node=self._node.name) from exc
        finally:
            task.cancel()

    def write(self, data: bytes) -> None:
        self._call.written.extend(data)

    async def wait(self) -> int | None:
        await self._done.wait()
        return self._status


class FakeForward:
    def __init__(self, port: int) -> None:
        self._port = port
        self.closed = False

    @property
    def local_port(self) -> int:
        return self._port

    def close(self) -> None:
        self.closed = True


class FakeFile:
    def __init__(self, node: FakeNode, path: str) -> None:
        self._node, self._path = node, path

    async def write(self, data: bytes, offset: int) -> None:
        await asyncio.sleep(0)
        self._node._write(self._path, data, offset)


class FakeFiles:
    def __init__(self, node: FakeNode) -> None:
        self._node = node

    async def size(self, path: str) -> int | None:
        data = self._node.files.get(path)
        return None if data is None else len(data)

    async def sha256(self, path: str, length: int) -> str:
        if path not in self._node.files:
            raise RemoteFileError(f"cannot hash {path} on {self._node.name}: no such file",
                                  path=path, node=self._node.name)
        return hashlib.sha256(self._node.files[path][:length]).hexdigest()

    async def makedirs(self, path: str) -> None:
        self._node.dirs.add(path)

    @contextlib.asynccontextmanager
    async def open_write(self, path: str, *, keep: bool) -> AsyncIterator[FakeFile]:
        if not keep or path not in self._node.files:
            self._node.files[path] = b""
        yield FakeFile(self._node, path)

    async def replace(self, src: str, dst: str) -> None:
        self._node.files[dst] = self._node.files.pop(src)

    async def remove(self, path: str) -> None:
        self._node.files.pop(path, None)


@dataclass
class FakeHost:
    """A machine with its own sshd, for ``nodes add``: what first contact finds.

    ``refuse`` makes first contact fail: a ``LoginProblem`` value ("refused": port closed,
    "denied": key not authorized, "timeout", "unresolved", …), or the older spellings
    "connection" (= refused) and "login" (= denied)."""

    host_key: str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeHostKeyForTestsOnly0000000000000"
    fingerprint: str = "SHA256:fakehostkey"
    probe_output: str = ""
    probe_exit: int = 0
    refuse: str = ""
    probe_error: str = ""  # the probe's stderr


_REFUSALS = {"connection": LoginProblem.REFUSED, "login": LoginProblem.DENIED}


class FakeNodes:
    """``NodeSessions`` over ``FakeNode`` s, found by the node record's name."""

    def __init__(self) -> None:
        self.nodes: dict[str, FakeNode] = {}
        self.hosts: dict[tuple[str, int], FakeHost] = {}
        self.inspected: list[tuple[str, str, int, str]] = []  # (user, host, port, probe)
        self.connect_timeout = 10.0  # what a "timeout" refusal says it waited
        self._ids: dict[str, str] = {}  # node id → name, learnt from the records used

    def add(self, name: str) -> FakeNode:
        return self.nodes.setdefault(name, FakeNode(name))

    def __getitem__(self, name: str) -> FakeNode:
        return self.nodes[name]

    def _node(self, record: NodeRecord) -> FakeNode:
        self._ids[record.id] = record.name
        try:
            return self.nodes[record.name]
        except KeyError:
            raise NodeUnreachable(f"cannot open a session to node {record.name}: the fake "
                                  "has no such node", node=record.name,
                                  hint="add it with FakeNodes.add(name)") from None

    async def run(self, node: NodeRecord, argv: list[str], sink: LineSink, *,
                  stdin: bytes | None = None,
                  progress: SendProgress | None = None) -> ExecResult:
        command = argv[0] if len(argv) == 1 else " ".join(shlex.quote(a) for a in argv)
        try:
            fake = self._node(node)
            await fake._enter()
        except NodeUnreachable as exc:
            return ExecResult(node.name, None, exc.message)
        data = stdin or b""
        arrives = len(data) if fake._stdin_cut is None else min(len(data), fake._stdin_cut)
        call = Call(fake.name, command, data[:arrives])
        fake.calls.append(call)
        if stdin is not None and progress is not None:
            for sent in range(0, arrives, 256 * 1024):
                progress(min(arrives, sent + 256 * 1024))
                await asyncio.sleep(0)
        if arrives < len(data):  # node_conn's wording; it drops the broken session too
            await self.close(node.id)
            return ExecResult(node.name, None, f"session to {node.name} broke: connection "
                              "lost while sending stdin")
        try:
            status = await _play(fake._script(call),
                                 lambda kind, line: sink(fake.name, kind, line))
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        except _Dropped as exc:
            return ExecResult(node.name, None, f"session to {node.name} broke: {exc.reason}")
        return ExecResult(node.name, status)

    async def output(self, node: NodeRecord, command: str, *, stdin: bytes | None = None,
                     progress: SendProgress | None = None) -> str:
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
    async def process(self, node: NodeRecord, command: str) -> AsyncIterator[FakeProcess]:
        fake = self._node(node)
        await fake._enter()
        call = Call(fake.name, command, process=True)
        fake.calls.append(call)
        proc = FakeProcess(fake, call, fake._script(call))
        try:
            yield proc
        finally:
            if not proc._done.is_set():
                call.cancelled = True

    @contextlib.asynccontextmanager
    async def files(self, node: NodeRecord) -> AsyncIterator[FakeFiles]:
        fake = self._node(node)
        await fake._enter()
        yield FakeFiles(fake)

    async def forward(self, node: NodeRecord, port: int) -> FakeForward:
        fake = self._node(node)
        await fake._enter()
        if port not in fake.ports:
            raise NodeUnreachable(f"cannot forward to port {port} on {node.name}: nothing "
                                  "listens there", node=node.name)
        return FakeForward(fake.ports[port])

    async def _link(self, node: NodeRecord, kind: str, arg: int) -> LinkFacts:
        fake = self._node(node)
        await fake._enter()
        fake.measured.append((kind, arg))
        if fake.link.drop_at == kind:  # node_conn's wording for a session that broke
            await self.close(node.id)
            raise NodeUnreachable(f"measuring the link to {node.name} failed: connection "
                                  "lost", node=node.name)
        return fake.link

    async def measure_rtt(self, node: NodeRecord, samples: int = 5) -> float:
        return (await self._link(node, "rtt", samples)).rtt_ms

    async def measure_download(self, node: NodeRecord, nbytes: int) -> float:
        return (await self._link(node, "download", nbytes)).down_mbps

    async def measure_upload(self, node: NodeRecord, nbytes: int) -> float:
        return (await self._link(node, "upload", nbytes)).up_mbps

    async def inspect_host(self, user: str, host: str, port: int,
                           probe_command: str) -> HostInfo:
        self.inspected.append((user, host, port, probe_command))
        found = self.hosts.get((host, port))
        refuse = "refused" if found is None else found.refuse
        if refuse:  # no such host: its port is closed
            problem = _REFUSALS.get(refuse) or LoginProblem(refuse)
            detail = {LoginProblem.UNRESOLVED: "Name or service not known",
                      LoginProblem.NOT_SSH: "Invalid SSH version",
                      LoginProblem.NETWORK: "No route to host"}.get(problem, "")
            raise login_error(problem, user, host, port, self.connect_timeout, detail=detail)
        assert found is not None
        return HostInfo(found.host_key, found.fingerprint, found.probe_exit,
                        found.probe_output, found.probe_error)

    async def close(self, node_id: str) -> None:
        name = self._ids.get(node_id)
        if name in self.nodes:
            self.nodes[name].closed += 1

    async def close_all(self) -> None:
        for node_id in list(self._ids):
            await self.close(node_id)
