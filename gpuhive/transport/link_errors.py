"""Why the agent's link failed, in words a friend can act on. Pure: no I/O.

asyncssh and the socket layer say "Permission denied", "[Errno 111] Connect call failed
('198.18.0.1', 2222)" or nothing at all (a bare TimeoutError); the foreground agent and
`gpuhive agent status` show this instead.
"""

from __future__ import annotations

import asyncio
import errno
import socket

import asyncssh

from gpuhive.errors import GpuhiveError


def describe_failure(exc: BaseException, where: str, timeout: float) -> str:
    """One line for a failed or broken link to the controller at ``where`` (host:port)."""
    if isinstance(exc, asyncssh.PermissionDenied):
        return ("the controller refused this machine's key (not removed, but not known "
                "either: was the hive set up again?)")
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return (f"the controller at {where} presented another host key than at enroll: "
                "it is not the controller this machine joined")
    if isinstance(exc, asyncssh.ChannelListenError):
        return ("the controller refused this machine's reverse tunnel (its port is still "
                "held, by an earlier connection of this node or a copy of this machine)")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return f"the controller refused the agent channel: {exc.reason or exc}"
    if isinstance(exc, asyncssh.ConnectionLost):
        return "the connection to the controller was lost"
    if isinstance(exc, asyncssh.DisconnectError):
        return f"the controller closed the connection: {exc.reason or exc}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer from {where} within {timeout:.0f} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {where.rsplit(':', 1)[0]}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError) or \
            getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return f"nothing listens at {where}: is the controller up?"
    if isinstance(exc, GpuhiveError):
        return exc.message
    if isinstance(exc, OSError) and exc.errno is None:  # the link's own ConnectionError
        return str(exc) or "the connection broke"
    if isinstance(exc, OSError):
        return f"cannot reach {where}: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__
