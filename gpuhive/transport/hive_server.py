"""The controller's hive SSH endpoint (asyncssh server), what agents dial.

Policy, enforced per connection:

* user ``enroll`` authenticates with the token credential as its password and may open only
  the ``gpuhive-enroll`` subsystem; nothing else (no forwards, no shell, no exec).
* a node authenticates as its node id with its registered node key, may open only the
  ``gpuhive-agent`` subsystem and may ask for exactly one reverse forward: controller
  127.0.0.1:P, P being its own assigned port.
* a removed node's key is refused too, with an auth banner that says so (see
  ``messages.removed_banner``): the agent stops instead of retrying forever.
* anything else is refused. Message handling is delegated to a ``HiveHandler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import asyncssh

from gpuhive.core import messages
from gpuhive.core.messages import LineBuffer, Message
from gpuhive.core.model import NodeRecord
from gpuhive.errors import GpuhiveError, ProtocolError
from gpuhive.transport.api import AgentLink, Send
from gpuhive.transport.keys import CIPHERS, public_text

log = logging.getLogger(__name__)

ENROLL_USER = "enroll"
__all__ = ["ENROLL_USER", "AgentLink", "HiveEndpoint", "HiveHandler", "Send",
           "start_hive_server"]


class HiveHandler(Protocol):
    """What the hive endpoint asks of the controller."""

    def node_for_key(self, node_id: str, public_key: str) -> NodeRecord | None: ...

    def node_removed(self, node_id: str, public_key: str) -> bool:
        """Whether this id and key belonged to a node that was removed."""

    async def enroll(self, credential: str, request: Message, peer: str) -> dict[str, Any]: ...

    def link_opened(self, node: NodeRecord, link: AgentLink, peer: str,
                    send: Send) -> dict[str, Any]:
        """The welcome for a node's agent; ``send`` pushes later messages down ``link``
        (an asyncssh server connection here, any closable handle in tests)."""

    def heartbeat(self, node: NodeRecord, msg: Message) -> None: ...

    def goodbye(self, node: NodeRecord, msg: Message) -> None:
        """The agent is stopping cleanly (its friend stopped it): not a failure."""

    def link_closed(self, node: NodeRecord, link: AgentLink) -> None: ...


class _HiveConnection(asyncssh.SSHServer):
    def __init__(self, handler: HiveHandler, live: set[asyncssh.SSHServerConnection]) -> None:
        self.handler = handler
        self.live = live
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.node: NodeRecord | None = None
        self.credential: str | None = None
        self.told_removed = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.live.add(conn)
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer = f"{peer[0]}:{peer[1]}"

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self.conn)
        if self.node is not None and self.conn is not None:
            self.handler.link_closed(self.node, self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        # The token is judged inside the enroll channel, where a precise reason can be sent
        # back; this connection can do nothing but that one exchange.
        if username != ENROLL_USER:
            return False
        self.credential = password
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if username == ENROLL_USER:
            return False
        node = self.handler.node_for_key(username, public_text(key))
        if node is None:
            if self.handler.node_removed(username, public_text(key)):
                log.info("refused removed node %s from %s", username, self.peer)
                self._tell_removed(username)
            else:
                log.info("refused unknown key %s for %r from %s", key.get_fingerprint(),
                         username, self.peer)
            return False
        self.node = node
        return True

    def _tell_removed(self, node_id: str) -> None:
        # sent before the auth failure, so the agent has it when PermissionDenied comes
        if self.told_removed or self.conn is None:
            return
        self.told_removed = True
        with contextlib.suppress(OSError):
            self.conn.send_auth_banner(messages.removed_banner(node_id))

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        node = self.node
        ok = (node is not None and node.forward_port is not None
              and listen_host == "127.0.0.1" and listen_port == node.forward_port)
        if not ok:
            log.warning("refused forward %s:%s for %s from %s", listen_host, listen_port,
                        node.name if node else "enroll", self.peer)
        return ok

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str,
                             orig_port: int) -> bool:
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        return False

    def session_requested(self) -> asyncssh.SSHServerSession[bytes]:
        return _HiveSession(self)


class _HiveSession(asyncssh.SSHServerSession[bytes]):
    """One subsystem channel carrying JSON lines."""

    def __init__(self, owner: _HiveConnection) -> None:
        self.owner = owner
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.buffer = LineBuffer()
        self.kind = ""
        self.greeted = False
        self.left = False  # the agent said goodbye: nothing after it counts
        self.last_seq = -1
        self.busy = False
        self.task: asyncio.Future[None] | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def shell_requested(self) -> bool:
        return False

    def exec_requested(self, command: str) -> bool:
        return False

    def pty_requested(self, term_type: str, term_size: Any, term_modes: Any) -> bool:
        return False

    def subsystem_requested(self, subsystem: str) -> bool:
        expected = messages.ENROLL_SUBSYSTEM if self.owner.node is None \
            else messages.AGENT_SUBSYSTEM
        if subsystem != expected:
            return False
        self.kind = subsystem
        return True

    def data_received(self, data: bytes, datatype: int | None) -> None:
        if self.left:
            return
        try:
            for line in self.buffer.feed(data):
                if line.strip() and not self.left:
                    self._dispatch(messages.decode(line))
        except ProtocolError as exc:
            self._fail(exc)

    def _dispatch(self, msg: Message) -> None:
        if self.kind == messages.ENROLL_SUBSYSTEM:
            if msg.type != "enroll" or self.busy:
                raise ProtocolError(f"expected one enroll message, got {msg.type}")
            self.busy = True
            self.task = asyncio.ensure_future(self._enroll(msg))
            return
        node = self.owner.node
        assert node is not None and self.owner.conn is not None
        if msg.type == "hello":
            if self.greeted:
                raise ProtocolError("hello sent twice")
            self.greeted = True
            welcome = self.owner.handler.link_opened(node, self.owner.conn, self.owner.peer,
                                                     self._send)
            self._send("welcome", **welcome)
        elif msg.type == "heartbeat":
            if not self.greeted:
                raise ProtocolError("heartbeat before hello")
            if msg["seq"] <= self.last_seq:
                return  # stale or replayed: ignore, keep the link
            self.last_seq = msg["seq"]
            # no ack: the agent needs none, and each reply costs the controller two
            # encryptions and two sends (asyncssh pads with an ignore packet)
            self.owner.handler.heartbeat(node, msg)
        elif msg.type == "goodbye":
            if not self.greeted:
                raise ProtocolError("goodbye before hello")
            self.left = True
            self.owner.handler.goodbye(node, msg)
            if self.chan is not None:
                self.chan.exit(0)  # the agent waits for this close: its goodbye arrived
        else:
            raise ProtocolError(f"unexpected {msg.type} message from an agent")

    async def _enroll(self, msg: Message) -> None:
        try:
            if self.owner.credential is None:
                raise ProtocolError("enroll without a token credential")
            reply = await self.owner.handler.enroll(self.owner.credential, msg, self.owner.peer)
            self._send("enrolled", **reply)
        except GpuhiveError as exc:
            self._send("error", code=exc.code, message=exc.message, hint=exc.hint)
        except Exception as exc:  # never let one enrollment take the daemon down
            log.exception("enrollment from %s failed", self.owner.peer)
            self._send("error", code="internal", message=f"controller error: {exc}", hint="")
        finally:
            if self.chan is not None:
                self.chan.exit(0)

    def _send(self, type_: str, **fields: Any) -> None:
        if self.chan is not None and not self.chan.is_closing():
            self.chan.write(messages.encode(type_, **fields))

    def _fail(self, exc: ProtocolError) -> None:
        log.warning("protocol error from %s: %s", self.owner.peer, exc.message)
        self._send("error", code=exc.code, message=exc.message)
        if self.chan is not None:
            self.chan.exit(2)


class HiveEndpoint:
    """The listening endpoint and every connection it accepted.

    asyncssh's acceptor leaves accepted connections open when it stops listening; a
    controller that stops must drop them all, or agents would keep talking to a ghost.
    """

    def __init__(self, acceptor: asyncssh.SSHAcceptor,
                 live: set[asyncssh.SSHServerConnection]) -> None:
        self.acceptor = acceptor
        self.live = live

    @property
    def port(self) -> int:
        return int(self.acceptor.get_port())

    async def close(self) -> None:
        self.acceptor.close()
        conns = list(self.live)
        for conn in conns:
            conn.close()
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)


async def start_hive_server(handler: HiveHandler, host: str, port: int,
                            host_key: asyncssh.SSHKey, *, keepalive_interval: float = 15.0,
                            login_timeout: float = 20.0) -> HiveEndpoint:
    live: set[asyncssh.SSHServerConnection] = set()
    acceptor = await asyncssh.create_server(
        lambda: _HiveConnection(handler, live), host, port,
        server_host_keys=[host_key], encoding=None, allow_pty=False, encryption_algs=CIPHERS,
        agent_forwarding=False, x11_forwarding=False,
        keepalive_interval=keepalive_interval, keepalive_count_max=3,
        login_timeout=login_timeout, server_version="gpuhive")
    return HiveEndpoint(acceptor, live)
