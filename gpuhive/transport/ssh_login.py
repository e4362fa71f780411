"""What to say when the first login to a machine's own sshd (`gpuhive nodes add`) fails.

A closed port, a silent host, a name that does not resolve, a port that is not SSH and a key
the host refuses each need a different next step; before, all of them read "add the key to
authorized_keys". Two pure steps: ``classify`` names the problem an exception shows (the only
part that knows asyncssh), ``login_error`` words it. ``NodeConnections.inspect_host`` raises
``login_failure`` (both together); the shipped fake (``gpuhive.testing.FakeHost``) raises
``login_error`` for the problem it plays, so tests read exactly what owners read.
"""

from __future__ import annotations

import asyncio
import socket
from enum import Enum

import asyncssh

from gpuhive.errors import NodeUnreachable


class LoginProblem(str, Enum):
    TIMEOUT = "timeout"  # nothing answered within the connect timeout
    REFUSED = "refused"  # the port is closed
    UNRESOLVED = "unresolved"  # the host name does not resolve
    DENIED = "denied"  # sshd refused the controller's key
    CLOSED = "closed"  # the far end hung up before SSH started (not an SSH server)
    NOT_SSH = "not-ssh"  # SSH started and failed (a garbled version line, …)
    NETWORK = "network"  # any other network error (no route, …)


def classify(exc: BaseException) -> tuple[LoginProblem, str]:
    """The problem a failed first login shows, and its detail for the message."""
    # TimeoutError is an OSError (and asyncio's one since 3.11): test it before the others
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return LoginProblem.TIMEOUT, ""
    if isinstance(exc, ConnectionRefusedError):
        return LoginProblem.REFUSED, ""
    if isinstance(exc, socket.gaierror):
        return LoginProblem.UNRESOLVED, str(exc.strerror or exc)
    if isinstance(exc, asyncssh.PermissionDenied):
        return LoginProblem.DENIED, ""
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, asyncssh.ConnectionLost)):
        return LoginProblem.CLOSED, ""
    if isinstance(exc, asyncssh.Error):
        return LoginProblem.NOT_SSH, exc.reason or type(exc).__name__
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return LoginProblem.NETWORK, reason or type(exc).__name__


def login_error(problem: LoginProblem, user: str, host: str, port: int, timeout_s: float,
                *, detail: str = "", reason: str = "") -> NodeUnreachable:
    """The error for a failed first login as ``user`` to ``host:port``, with the hint for
    this problem. ``reason`` (data only) names what was caught."""
    where = f"{host}:{port}"
    data = {"address": f"{user}@{where}", "reason": reason or problem.value}
    if problem is LoginProblem.TIMEOUT:
        return NodeUnreachable(
            f"no answer from {where} within {timeout_s:g} s",
            hint="is the host up, is sshd listening on that port, and does a firewall let "
                 "the controller in?", **data)
    if problem is LoginProblem.REFUSED:
        return NodeUnreachable(
            f"connection refused: is sshd running on {where}?",
            hint=f"start sshd there, or give its port: `gpuhive nodes add "
                 f"{user}@{host}:PORT`", **data)
    if problem is LoginProblem.UNRESOLVED:
        return NodeUnreachable(
            f"cannot resolve host {host!r}: {detail}",
            hint="check the spelling, or give its IP address", **data)
    if problem is LoginProblem.DENIED:
        return NodeUnreachable(
            f"{where} refused the controller's key for user {user}",
            hint="add the controller's public key (`gpuhive init --show-key`) to "
                 f"~{user}/.ssh/authorized_keys there", **data)
    not_ssh = (f"is {where} an SSH server? `ssh -p {port} {user}@{host}` "
               "from the controller shows what it says")
    if problem is LoginProblem.CLOSED:
        return NodeUnreachable(f"{where} closed the connection before SSH started",
                               hint=not_ssh, **data)
    if problem is LoginProblem.NOT_SSH:
        return NodeUnreachable(f"SSH to {where} failed: {detail}", hint=not_ssh, **data)
    return NodeUnreachable(f"cannot reach {where}: {detail}",
                           hint="check the address and the network between the controller "
                                "and that host", **data)


def login_failure(exc: BaseException, user: str, host: str, port: int,
                  timeout_s: float) -> NodeUnreachable:
    """``login_error`` for the problem ``exc`` shows."""
    problem, detail = classify(exc)
    return login_error(problem, user, host, port, timeout_s, detail=detail,
                       reason=type(exc).__name__)
