"""The agent's one outbound link to the controller, kept alive forever.

One connection carries: SSH keepalives, the reverse forward of controller 127.0.0.1:P to
the embedded server, and the ``gpuhive-agent`` channel (hello/welcome, then heartbeats).
When anything breaks the whole connection is dropped and redialled after a capped,
jittered exponential backoff (see ``core.backoff``); a successful session resets it.

Two things end the link instead of a redial, and ``run`` returns which: the controller's
auth banner says this node was removed (``LinkEnd.REMOVED``), or ``goodbye`` told the
controller this is a clean stop (``LinkEnd.STOPPED``). What happens along the way is
reported as ``LinkEvent`` values, for the foreground agent to print.
"""

from __future__ import annotations

import asyncio
import enum
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
from gpuhive.transport.link_errors import describe_failure

log = logging.getLogger(__name__)


@dataclass
class LinkStatus:
    connected: bool = False
    since: float | None = None  # connected since, or disconnected since
    attempts: int = 0
    last_error: str = ""  # in words (``link_errors.describe_failure``)
    heartbeats_sent: int = 0
    heartbeat_interval: float = 0.0
    state: str = "connecting"  # connecting | connected | disconnected | removed | stopped
    retry_at: float | None = None  # when the next dial is due, while disconnected


class LinkEnd(enum.Enum):
    REMOVED = "removed"  # the controller says the owner removed this node: stop for good
    STOPPED = "stopped"  # ``goodbye`` was said: a clean stop


@dataclass(frozen=True)
class Connecting:
    where: str  # host:port


@dataclass(frozen=True)
class Connected:
    where: str
    node_id: str


@dataclass(frozen=True)
class Disconnected:
    where: str
    why: str
    retry_in: float
    was_connected: bool  # False: this dial never got through


LinkEvent = Connecting | Connected | Disconnected


class _LinkClient(asyncssh.SSHClient):
    """Keeps the auth banners: the hive endpoint says in one why it refuses a removed node.
    The host key is checked before auth, so only the pinned controller can send one."""

    def __init__(self, banners: list[str]) -> None:
        self.banners = banners

    def auth_banner_received(self, msg: str, lang: str) -> None:
        self.banners.append(msg[:1024])


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
                 on_event: Callable[[LinkEvent], None] = lambda e: None,
                 rng: random.Random | None = None) -> None:
        self.target = target
        self.node_key = node_key
        self.embedded_port = embedded_port
        self.settings = settings
        self.heartbeat = heartbeat
        self.on_status = on_status
        self.on_welcome = on_welcome
        self.on_message = on_message  # what the controller pushes after welcome (peers)
        self.on_event = on_event
        self.rng = rng or random.Random()
        self.status = LinkStatus(since=time.time())
        self.started_at = time.time()
        self.where = f"{target.host}:{target.port}"
        self._welcome_task: asyncio.Future[None] | None = None
        self._banners: list[str] = []
        self._writer: asyncssh.SSHWriter[bytes] | None = None
        self._channel_closed: asyncio.Event | None = None
        self._leaving = False

    async def run(self) -> LinkEnd:
        """Keep the link up until cancelled, removed, or stopped with ``goodbye``."""
        attempt = 0
        announce = True
        while True:
            self.status.attempts += 1
            if announce:
                self.on_event(Connecting(self.where))
                announce = False
            self._banners.clear()
            why = "the controller closed the connection"
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except (OSError, asyncssh.Error, asyncssh.ChannelListenError, asyncio.TimeoutError,
                    GpuhiveError) as exc:
                if self._removed(exc):
                    return self._end(LinkEnd.REMOVED, "this machine was removed from the hive "
                                     "by its owner; ask the owner for a new token")
                why = describe_failure(exc, self.where, self.settings.connect_timeout)
                log.info("link to %s failed: %s", self.where, exc)
            finally:
                self._writer = None
            if self._leaving:
                return self._end(LinkEnd.STOPPED, "agent stopped")
            was_connected = self.status.connected
            if was_connected:
                attempt = 0  # the session lived and then ended: start the schedule over
            delay = backoff_delay(attempt, self.rng.random(), base=self.settings.backoff_base,
                                  cap=self.settings.backoff_cap)
            attempt += 1
            now = time.time()
            self.status.connected = False
            self.status.state = "disconnected"
            self.status.last_error = why
            self.status.retry_at = now + delay
            if was_connected or self.status.since is None:
                self.status.since = now
            self.on_status(self.status)
            self.on_event(Disconnected(self.where, why, delay, was_connected))
            announce = was_connected
            await asyncio.sleep(delay)

    async def goodbye(self, reason: str = "stopped", timeout: float = 3.0) -> bool:
        """Tell the controller this is a clean stop, not a failure; True once it confirmed
        (it closes the agent channel). ``run`` then returns ``LinkEnd.STOPPED``."""
        self._leaving = True
        writer, closed = self._writer, self._channel_closed
        if writer is None or closed is None or not self.status.connected:
            return False
        try:
            writer.write(messages.encode("goodbye", reason=reason))
            await asyncio.wait_for(closed.wait(), timeout)
        except (asyncssh.Error, OSError, asyncio.TimeoutError):
            return False
        return True

    def _removed(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncssh.PermissionDenied) and any(
            messages.removed_node(b) == self.target.node_id for b in self._banners)

    def _end(self, end: LinkEnd, why: str) -> LinkEnd:
        now = time.time()
        self.status = LinkStatus(False, now, self.status.attempts, why,
                                 self.status.heartbeats_sent, self.status.heartbeat_interval,
                                 state=end.value)
        self.on_status(self.status)
        return end

    async def _session(self) -> None:
        t = self.target
        banners = self._banners
        conn = await asyncio.wait_for(asyncssh.connect(
            t.host, t.port, username=t.node_id, client_keys=[self.node_key],
            client_factory=lambda: _LinkClient(banners),
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
            closed = asyncio.Event()
            reader_task = asyncio.ensure_future(_read_messages(reader, inbox, closed))
            try:
                welcome = await asyncio.wait_for(inbox.get(), self.settings.connect_timeout)
                if welcome is None or welcome.type != "welcome":
                    raise ProtocolError(_refusal(welcome))
                interval = float(welcome["heartbeat_interval"])
                self.status = LinkStatus(True, time.time(), self.status.attempts, "", 0, interval,
                                         state="connected")
                self._writer, self._channel_closed = writer, closed
                self.on_status(self.status)
                self.on_event(Connected(self.where, t.node_id))
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
            # after goodbye nothing more is sent: the controller would take it as a sign of life
            payload = None if self._leaving else await self.heartbeat()
            if payload is not None and not self._leaving:
                writer.write(messages.encode("heartbeat", seq=seq, sent_at=time.time(),
                                             **payload))
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
                         inbox: asyncio.Queue[messages.Message | None],
                         closed: asyncio.Event) -> None:
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
        closed.set()


def _refusal(msg: messages.Message | None) -> str:
    if msg is None:
        return "controller closed the channel before welcoming this agent"
    if msg.type == "error":
        return f"controller refused: {msg['message']}"
    return f"controller sent {msg.type} instead of welcome"
