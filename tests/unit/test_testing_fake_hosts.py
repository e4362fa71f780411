"""The shipped fake's first-contact failures read exactly as real ones do: each
``FakeHost(refuse=…)`` against ``ssh_login.login_failure`` of the exception a real sshd
(or network) raises for it."""

from __future__ import annotations

import asyncio
import socket

import asyncssh
import pytest

from gpuhive.errors import NodeUnreachable
from gpuhive.testing import FakeHost, FakeNodes
from gpuhive.transport.ssh_login import LoginProblem, classify, login_failure

REAL = {
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "connection": ConnectionRefusedError(111, "Connection refused"),
    "denied": asyncssh.PermissionDenied("Permission denied"),
    "login": asyncssh.PermissionDenied("Permission denied"),
    "timeout": asyncio.TimeoutError(),
    "unresolved": socket.gaierror(-2, "Name or service not known"),
    "closed": ConnectionResetError(104, "Connection reset by peer"),
    "not-ssh": asyncssh.ProtocolError("Invalid SSH version"),
    "network": OSError(113, "No route to host"),
}


@pytest.mark.parametrize("refuse", sorted(REAL))
def test_a_fake_refusal_is_worded_as_the_real_one(refuse: str) -> None:
    nodes = FakeNodes()
    nodes.connect_timeout = 5.0
    nodes.hosts[("box", 2222)] = FakeHost(refuse=refuse)
    with pytest.raises(NodeUnreachable) as fake:
        asyncio.run(nodes.inspect_host("me", "box", 2222, "probe"))
    real = login_failure(REAL[refuse], "me", "box", 2222, 5.0)
    assert (fake.value.message, fake.value.hint) == (real.message, real.hint)
    assert fake.value.data["address"] == real.data["address"] == "me@box:2222"


def test_every_problem_has_a_real_cause() -> None:
    assert {classify(exc)[0] for exc in REAL.values()} == set(LoginProblem)
