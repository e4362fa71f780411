"""What to say when the first login to a machine's own sshd (`gpuhive nodes add`) fails.

A closed port, a silent host, a name that does not resolve, a port that is not SSH and a key
the host refuses each need a different next step; before, all of them read "add the key to
authorized_keys". ``login_failure`` is the pure decision: an exception in, the error to
raise out. ``NodeConnections.inspect_host`` raises what it returns.
"""

from __future__ import annotations

import asyncio
import socket

import asyncssh

from gpuhive.errors import NodeUnreachable


def login_failure(exc: BaseException, user: str, host: str, port: int,
                  timeout_s: float) -> NodeUnreachable:
    """The error for a failed first login as ``user`` to ``host:port``, with the hint for
    this failure."""
    where = f"{host}:{port}"
    data = {"address": f"{user}@{where}", "reason": type(exc).__name__}
    # TimeoutError is an OSError (and asyncio's one since 3.11): test it before the others
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return NodeUnreachable(
            f"no answer from {where} within {timeout_s:g} s",
            hint="is the host up, is sshd listening on that port, and does a firewall let "
                 "the controller in?", **data)
    if isinstance(exc, ConnectionRefusedError):
        return NodeUnreachable(
            f"connection refused: is sshd running on {where}?",
            hint=f"start sshd there, or give its port: `gpuhive nodes add "
                 f"{user}@{host}:PORT`", **data)
    if isinstance(exc, socket.gaierror):
        return NodeUnreachable(
            f"cannot resolve host {host!r}: {exc.strerror or exc}",
            hint="check the spelling, or give its IP address", **data)
    if isinstance(exc, asyncssh.PermissionDenied):
        return NodeUnreachable(
            f"{where} refused the controller's key for user {user}",
            hint="add the controller's public key (`gpuhive init --show-key`) to "
                 f"~{user}/.ssh/authorized_keys there", **data)
    not_ssh = (f"is {where} an SSH server? `ssh -p {port} {user}@{host}` "
               "from the controller shows what it says")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, asyncssh.ConnectionLost)):
        return NodeUnreachable(f"{where} closed the connection before SSH started",
                               hint=not_ssh, **data)
    if isinstance(exc, asyncssh.Error):
        return NodeUnreachable(f"SSH to {where} failed: {exc.reason or type(exc).__name__}",
                               hint=not_ssh, **data)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return NodeUnreachable(f"cannot reach {where}: {reason or type(exc).__name__}",
                           hint="check the address and the network between the controller "
                                "and that host", **data)
