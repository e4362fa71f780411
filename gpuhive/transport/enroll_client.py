"""The friend's side of enrollment: pin the controller's host key, then send the request.

The host key is checked during key exchange, before user authentication, so a controller
that is not the one the token names never receives the token's secret.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh

from gpuhive.core import messages
from gpuhive.core.messages import LineBuffer
from gpuhive.core.tokens import JoinToken
from gpuhive.errors import (
    BY_CODE,
    ControllerUnavailable,
    EnrollRefused,
    GpuhiveError,
    HostKeyMismatch,
    ProtocolError,
)
from gpuhive.transport.hive_server import ENROLL_USER
from gpuhive.transport.keys import public_text


class _PinnedClient(asyncssh.SSHClient):
    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.presented: asyncssh.SSHKey | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.presented = key
        return key.get_fingerprint("sha256") == self.fingerprint


async def enroll(token: JoinToken, request: dict[str, Any], *,
                 timeout: float = 20.0) -> tuple[messages.Message, str]:
    """Return the controller's ``enrolled`` reply and its (verified) host public key."""
    client = _PinnedClient(token.fingerprint)
    try:
        conn = await asyncio.wait_for(asyncssh.connect(
            token.host, token.port, username=ENROLL_USER,
            password=f"{token.token_id}.{token.secret}",
            client_factory=lambda: client, known_hosts=([], [], []),
            server_host_key_algs=["ssh-ed25519"], client_keys=None, agent_path=None,
            preferred_auth=["password"], encoding=None), timeout)
    except asyncssh.HostKeyNotVerifiable as exc:
        seen = client.presented.get_fingerprint("sha256") if client.presented else "none"
        raise HostKeyMismatch(
            f"the controller at {token.endpoint} presented host key {seen}, but the token "
            f"pins {token.fingerprint}; nothing was sent",
            hint="someone may be intercepting the connection, or the token is for another "
                 "controller: ask the owner to check `gpuhive invite` output",
            endpoint=token.endpoint, presented=seen, pinned=token.fingerprint) from exc
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        raise ControllerUnavailable(
            f"cannot reach the controller at {token.endpoint}: {exc or type(exc).__name__}",
            hint="check the address in the token and that `gpuhive up` runs there",
            endpoint=token.endpoint) from exc
    assert client.presented is not None
    try:
        async with conn:
            writer, reader, _ = await conn.open_session(subsystem=messages.ENROLL_SUBSYSTEM)
            writer.write(messages.encode("enroll", **request))
            reply = await asyncio.wait_for(_read_one(reader), timeout)
    except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
        raise ControllerUnavailable(f"enrollment with {token.endpoint} broke off: {exc}",
                                    hint="try again; the token is not used up by a failed "
                                         "attempt", endpoint=token.endpoint) from exc
    if reply.type == "error":
        cls = BY_CODE.get(reply["code"], EnrollRefused)
        raise cls(reply["message"], hint=reply.get("hint") or "")
    if reply.type != "enrolled":
        raise ProtocolError(f"controller answered {reply.type} to enroll")
    return reply, public_text(client.presented)


async def _read_one(reader: asyncssh.SSHReader[bytes]) -> messages.Message:
    buf = LineBuffer()
    while True:
        data = await reader.read(65536)
        if not data:
            raise ControllerUnavailable("the controller closed the enrollment channel",
                                        hint="see the controller's log")
        for line in buf.feed(data):
            if line.strip():
                return messages.decode(line)


__all__ = ["GpuhiveError", "enroll"]
