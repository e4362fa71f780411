"""The agent's one outbound link to the controller, kept alive forever.

One connection carries: SSH keepalives, the reverse forward of controller 127.0.0.1:P to
the embedded server, and the ``gpuhive-agent`` channel (hello/welcome, then heartbeats).
When anything breaks the whole connection is dropped and redialled after a capped,
jittered exponential backoff (see ``core.backoff``); a successful session resets it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from gpuhive.config import Settings
from gpuhive.core import messages
from gpuhive.core.backoff import backoff_delay
from gpuhive.core.messages import LineBuffer
from gpuhive.errors import GpuhiveError, ProtocolError
from gpuhive.transport.keys import CIPHERS, import_public

log = logging.getLogger(__name__)


@dataclass
class LinkStatus:
    connected: bool = False
    since: float | None = None  # connected since, or disconnected since
    attempts: int = 0
    last_error: str = ""
    heartbeats_sent: int = 0
    heartbeat_interval: float = 0.0


@dataclass
class LinkTarget:
    host: str
    port: int
    node_id: str
    forward_port: int
    controller_host_key: str
    extra: dict[str, Any] = field(default_factory=dict)


class AgentLink:
    def __init__(self, target: LinkTarget, node_key: asyncssh.SSHKey, embedded_port: int,
                 settings: Settings, *, heartbeat: Callable[[], Awaitable[dict[str, Any]]],
                 on_status: Callable[[LinkStatus], None] = lambda s: None,
                 on_welcome: Callable[[messages.Message], Awaitable[None]] | None = None,
                 on_message: Callable[[messages.Message], None] = lambda m: None,
                 rng: random.Random | None = None) -> None:
        self.target = target
        self.node_key = node_key
        self.embedded_port = embedded_port
        self.settings = settings
        self.heartbeat = heartbeat
        self.on_status = on_status
        self.on_welcome = on_welcome
        self.on_message = on_message  # what the controller pushes after welcome (peers)
        self.rng = rng or random.Random()
        self.status = LinkStatus(since=time.time())
        self.started_at = time.time()
        self._welcome_task: asyncio.Future[None] | None = None

    async def run(self) -> None:
        """Keep the link up until cancelled."""
        attempt = 0
        while True:
            self.status.attempts += 1
            try:
                await self._session()
                attempt = 0  # the session lived and then ended: start the schedule over
            except asyncio.CancelledError:
                raise
            except (OSError, asyncssh.Error, asyncio.TimeoutError, GpuhiveError) as exc:
                self.status.last_error = str(exc) or type(exc).__name__
                log.info("link to %s:%s failed: %s", self.target.host, self.target.port,
                         self.status.last_error)
            if self.status.connected:
                self.status.connected = False
                self.status.since = time.time()
            self.on_status(self.status)
            delay = backoff_delay(attempt, self.rng.random(), base=self.settings.backoff_base,
                                  cap=self.settings.backoff_cap)
            attempt += 1
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        t = self.target
        conn = await asyncio.wait_for(asyncssh.connect(
            t.host, t.port, username=t.node_id, client_keys=[self.node_key],
            known_hosts=([import_public(t.controller_host_key)], [], []),
            server_host_key_algs=["ssh-ed25519"], agent_path=None, preferred_auth=["publickey"],
            encryption_algs=CIPHERS,
            keepalive_interval=self.settings.keepalive_interval,
            keepalive_count_max=self.settings.keepalive_count_max, encoding=None),
            self.settings.connect_timeout)
        async with conn:
            await conn.forward_remote_port("127.0.0.1", t.forward_port, "127.0.0.1",
                                           self.embedded_port)
            writer, reader, _ = await conn.open_session(subsystem=messages.AGENT_SUBSYSTEM)
            writer.write(messages.encode("hello", version=messages.PROTOCOL_VERSION,
                                         agent_started_at=self.started_at))
            inbox: asyncio.Queue[messages.Message | None] = asyncio.Queue()
            reader_task = asyncio.ensure_future(_read_messages(reader, inbox))
            try:
                welcome = await asyncio.wait_for(inbox.get(), self.settings.connect_timeout)
                if welcome is None or welcome.type != "welcome":
                    raise ProtocolError(_refusal(welcome))
                interval = float(welcome["heartbeat_interval"])
                self.status = LinkStatus(True, time.time(), self.status.attempts, "", 0, interval)
                self.on_status(self.status)
                if self.on_welcome is not None:
                    # e.g. the overlay spoke: slow and fallible, must not hold up heartbeats
                    self._welcome_task = asyncio.ensure_future(self.on_welcome(welcome))
                await self._beat(writer, inbox, interval, reader_task)
            finally:
                reader_task.cancel()

    async def _beat(self, writer: asyncssh.SSHWriter[bytes],
                    inbox: asyncio.Queue[messages.Message | None], interval: float,
                    reader_task: asyncio.Future[None]) -> None:
        seq = 0
        while True:
            payload = await self.heartbeat()
            writer.write(messages.encode("heartbeat", seq=seq, sent_at=time.time(), **payload))
            seq += 1
            self.status.heartbeats_sent = seq
            deadline = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await asyncio.wait_for(inbox.get(), left)
                except asyncio.TimeoutError:
                    break
                if msg is None:
                    raise ConnectionError("controller closed the agent channel")
                if msg.type == "error":
                    raise ProtocolError(_refusal(msg))
                self.on_message(msg)
            if reader_task.done():
                raise ConnectionError("controller closed the agent channel")


async def _read_messages(reader: asyncssh.SSHReader[bytes],
                         inbox: asyncio.Queue[messages.Message | None]) -> None:
    buf = LineBuffer()
    try:
        while data := await reader.read(65536):
            for line in buf.feed(data):
                if line.strip():
                    try:
                        inbox.put_nowait(messages.decode(line))
                    except ProtocolError as exc:
                        log.warning("ignoring malformed message from controller: %s", exc)
    except (asyncssh.Error, OSError, ProtocolError):
        pass
    finally:
        inbox.put_nowait(None)


def _refusal(msg: messages.Message | None) -> str:
    if msg is None:
        return "controller closed the channel before welcoming this agent"
    if msg.type == "error":
        return f"controller refused: {msg['message']}"
    return f"controller sent {msg.type} instead of welcome"
